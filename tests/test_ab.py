"""grubench regress --against: base revisions, the temporary worktree and install (made and
removed, also when interrupted), bad revisions, and the A/B gate end to end."""
import json
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from grubench import ab, calibrated, cli, regress
from grubench.case import Case, Task

PYPROJECT = """[build-system]
requires = ["setuptools"]
build-backend = "setuptools.build_meta"

[project]
name = "tinypkg"
version = "0.1"
"""


def git(root, *args):
    return subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


def commit(root, message, files):
    for name, text in files.items():
        (root / name).write_text(text)
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", message)
    return git(root, "rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path):
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.email", "t@example.invalid")
    git(root, "config", "user.name", "t")
    commit(root, "one", {"pyproject.toml": PYPROJECT, "tinypkg.py": "VALUE = 1\n"})
    commit(root, "two", {"tinypkg.py": "VALUE = 2\n"})
    return root


@pytest.fixture
def scratch(tmp_path, monkeypatch):
    """Where base_install makes its temporary folder, to check nothing is left there."""
    folder = tmp_path / "scratch"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def worktrees(root):
    return [line for line in git(root, "worktree", "list", "--porcelain").splitlines()
            if line.startswith("worktree ")]


def test_default_base_is_the_previous_commit_on_main_and_the_merge_base_on_a_branch(repo):
    assert ab.default_base(repo) == git(repo, "rev-parse", "HEAD~1")
    fork = git(repo, "rev-parse", "HEAD")
    git(repo, "checkout", "-q", "-b", "feature")
    commit(repo, "three", {"tinypkg.py": "VALUE = 3\n"})
    commit(repo, "four", {"tinypkg.py": "VALUE = 4\n"})
    assert ab.default_base(repo) == fork


def test_no_base_without_history(tmp_path, repo):
    assert ab.default_base(tmp_path) is None and not ab.has_history(tmp_path)
    single = tmp_path / "single"
    single.mkdir()
    git(single, "init", "-q", "-b", "main")
    git(single, "config", "user.email", "t@example.invalid")
    git(single, "config", "user.name", "t")
    commit(single, "only", {"a": "1"})
    assert ab.has_history(single) and ab.default_base(single) is None


def test_a_revision_that_does_not_exist(repo):
    with pytest.raises(ab.RevisionError, match="revision 'no-such-rev' does not exist"):
        ab.resolve("no-such-rev", repo)
    assert ab.resolve("HEAD~1", repo) == git(repo, "rev-parse", "HEAD~1")


def test_the_worktree_is_made_and_removed(repo, tmp_path):
    dest = tmp_path / "wt"
    with ab.worktree(git(repo, "rev-parse", "HEAD~1"), dest, repo):
        assert (dest / "tinypkg.py").read_text() == "VALUE = 1\n"
        assert len(worktrees(repo)) == 2
    assert not dest.exists() and len(worktrees(repo)) == 1


def test_the_worktree_is_removed_when_interrupted(repo, tmp_path):
    dest = tmp_path / "wt"
    with pytest.raises(KeyboardInterrupt):
        with ab.worktree(git(repo, "rev-parse", "HEAD"), dest, repo):
            raise KeyboardInterrupt
    assert not dest.exists() and len(worktrees(repo)) == 1


def test_sigterm_removes_the_worktree_and_the_install(repo, tmp_path):
    """A real SIGTERM to a process holding a base install: everything temporary goes."""
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from grubench import ab\n"
        "ab.check_importable = lambda site, label: None   # tinypkg has no kernels\n"
        "with ab.sigterm_as_interrupt(), \\\n"
        "        ab.base_install('HEAD', Path(sys.argv[1])) as (commit, site):\n"
        "    print(site, flush=True)\n"
        "    time.sleep(120)\n")
    process = subprocess.Popen([sys.executable, "-c", script, str(repo)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    site = Path(process.stdout.readline().strip())
    assert (site / "tinypkg.py").is_file()          # installed there
    assert len(worktrees(repo)) == 1                # the checkout is gone once installed
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode != 0 and "KeyboardInterrupt" in err
    assert not site.parent.exists()
    assert len(worktrees(repo)) == 1


def test_a_revision_that_does_not_build(repo, scratch):
    commit(repo, "broken", {"pyproject.toml": PYPROJECT.replace("setuptools.build_meta",
                                                                "no_such_build_backend")})
    with pytest.raises(ab.RevisionError, match=r"revision HEAD \([0-9a-f]{12}\) does not build"):
        with ab.base_install("HEAD", repo):
            pytest.fail("installed a revision that does not build")
    assert list(scratch.iterdir()) == [] and len(worktrees(repo)) == 1


def test_a_revision_without_kernels_is_refused(repo, scratch):
    with pytest.raises(ab.RevisionError, match="its kernels do not import"):
        with ab.base_install("HEAD", repo):
            pytest.fail("accepted a revision without grubench.kernels")
    assert list(scratch.iterdir()) == []


def test_regress_against_a_missing_revision_exits_2_with_one_line(capsys):
    assert cli.main(["regress", "--against", "no-such-revision-anywhere"]) == 2
    err = capsys.readouterr().err
    assert "revision 'no-such-revision-anywhere' does not exist" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.skipif(not ab.has_history(), reason="grubench runs from outside a git checkout")
def test_ab_gate_end_to_end_slowdown_reaches_the_current_side_only(monkeypatch, capsys,
                                                                   tmp_path):
    """HEAD against the working tree on a tiny numpy case: unchanged passes (a tolerance no
    noise reaches), a 4x slowdown injected into the current side is a regression. Were
    the base slowed too, the two would cancel and this would pass."""
    monkeypatch.setenv("GRUBENCH_PLUGINS", "")
    monkeypatch.setattr(regress, "SUITES", {"ci": (
        Task(Case("gru", 4, 1, 4, 4), "numpy"),)})
    quick = ["regress", "--against", "HEAD", "--rounds", "2", "--pairs", "3"]
    assert cli.main([*quick, "--tolerance", "5"]) == 0
    assert "A/B against HEAD" in capsys.readouterr().err
    monkeypatch.setenv(calibrated.SLOWDOWN_ENV, "4")
    verdicts = tmp_path / "verdicts.json"
    assert cli.main([*quick, "--json", str(verdicts)]) == 1
    out = capsys.readouterr().out
    assert "regression (first" in out and "REGRESSION" in out
    [verdict] = json.loads(verdicts.read_text())["verdicts"]
    assert verdict["verdict"] == "regression" and verdict["change"] > 1.5
