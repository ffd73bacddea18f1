"""The repository stands on its own: its code, scripts and documents never point a reader
to a place they do not have: the project's shared folder, its notes file, or an issue
of its tracker. Measurements and history belong in docs/ with the command that reproduces
them, explanations in the code's own comments.

What counts as an issue reference (case-insensitive):

* the word issue followed by its number: ``issue 12``, ``issue-3``, ``issues 3``,
  ``issue #4``, and in names: ``issue4_cases``, ``reports/.../issue3``;
* a bare ``#12``; an upstream repository's issue written ``owner/repo#12`` is a
  reference a reader can follow and passes, as do CSS colours (``#222`` in a .css file),
  HTML entities (``&#39;``) and URLs (``.../issues/12``);
* "the issue" as a noun for this project's task: ``the issue's sizes``, ``the issues'
  targets`` (the verb, ``issue BEGIN``, passes).
"""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHECKED = ("grubench", "kernels", "scripts", "docs", "README.md")

RULES = {
    "the shared folder": re.compile(r"(?<![\w.-])shared/"),
    "the notes file": re.compile(r"NOTES\.md", re.I),
    "an issue": re.compile(r"\bissues?[\s_-]?#?\d+|(?<![\w/&#])#\d+\b|\bthe\s+issues?\b", re.I),
}
#: Files where ``#`` followed by digits is no reference (a CSS colour).
NO_HASH_REFERENCES = (".css",)


def text_files():
    """(relative path, text) of every text file in the checked parts of the repository."""
    for part in CHECKED:
        path = ROOT / part
        for file in sorted([path] if path.is_file() else path.rglob("*")):
            if not file.is_file() or "__pycache__" in file.parts:
                continue
            data = file.read_bytes()
            if b"\0" in data[:8192]:            # binary (compressed data, images)
                continue
            yield file.relative_to(ROOT).as_posix(), data.decode("utf-8", errors="replace")


def offending_lines(rule: re.Pattern) -> list[str]:
    """``path:line: text`` of each line where a match of ``rule`` starts (matched over
    the whole text: a reference may be broken over two lines)."""
    found = {}
    for name, text in text_files():
        lines = text.splitlines()
        for match in rule.finditer(text):
            if match.group().startswith("#") and name.endswith(NO_HASH_REFERENCES):
                continue
            number = text.count("\n", 0, match.start()) + 1
            found.setdefault(f"{name}:{number}", lines[number - 1].strip())
    return [f"{where}: {line}" for where, line in found.items()]


@pytest.mark.parametrize("what", list(RULES))
def test_nothing_points_outside_the_repository(what):
    offending = offending_lines(RULES[what])
    assert not offending, f"{len(offending)} lines point to {what}:\n" + "\n".join(offending)


@pytest.mark.parametrize("what, line", [
    ("the shared folder", "see /work/shared/NOTES.md"),
    ("the shared folder", "figures in shared/figures.txt"),
    ("the notes file", "as NOTES.md says"),
    ("an issue", "The one device call of issue 4"),
    ("an issue", "the issue-3 sizes"),
    ("an issue", "def issue4_cases():"),
    ("an issue", "reports/cpu/peers/issue3"),
    ("an issue", "fixed in #12"),
    ("an issue", "(#7)"),
    ("an issue", "at the issue's sizes"),
    ("an issue", "Targets of the issues for float32"),
    ("an issue", "float32 has the\n    issues' targets"),
])
def test_each_rule_finds_its_reference(what, line):
    assert RULES[what].search(line)


@pytest.mark.parametrize("line", [
    "a GRU with reset-before (pytorch/pytorch#8153)",
    "https://github.com/pytorch/pytorch/issues/8153",
    "issue BEGIN itself (pysqlite would defer it)",
    "&#39;quoted&#39;",
    "shared memory of the block (cuda.shared.array)",
    "torch.multiprocessing_shared/ no",
    "# 1. first step",
    "x[#] = 0",
])
def test_upstream_references_and_ordinary_words_pass(line):
    assert not any(rule.search(line) for rule in RULES.values())
