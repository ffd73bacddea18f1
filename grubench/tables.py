"""Tables as every command prints them: one :class:`Table` (title, header, rows, footer),
rendered for the terminal by rich (column widths, wide cells, no colour codes in text that
goes to a file or a pipe) and as GitHub Markdown for report.md; and the units a table picks
so one table keeps one unit and short numbers."""
from __future__ import annotations

import io
import math
from dataclasses import dataclass

from grubench.kernels.cells import cell

TIME_UNITS = (("s", 1.0), ("ms", 1e-3), ("us", 1e-6))
BYTE_UNITS = (("GiB", 2.0 ** 30), ("MiB", 2.0 ** 20), ("KiB", 2.0 ** 10), ("B", 1.0))

#: Columns divided by " | ", the header underlined by "-+-": plain ASCII, which every
#: terminal, log and CI page shows alike.
def _ascii_grid():
    from rich.box import Box

    return Box("    \n"
               "  | \n"
               " -+ \n"
               "  | \n"
               " -+ \n"
               " -+ \n"
               "  | \n"
               "    \n", ascii=True)


#: Wider than any table: rich never wraps a row; a terminal narrower than the table wraps
#: its lines as it would any long line.
_NO_WRAP_WIDTH = 100_000


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list[str]]
    footer: str = ""
    left: int = 1               # the leading columns aligned left (names); the rest right


def case_name(cell_name: str, variant: str | None) -> str:
    """A cell and its variant as tables name them: "gru reset_after", "lstm" (a cell with
    one formula has no variant to name)."""
    return cell_name if len(cell(cell_name).variants) == 1 else f"{cell_name} {variant}"


def pick_unit(values, units) -> tuple[str, float]:
    """The largest of ``units`` (name, scale; largest first) in which the smallest
    positive value reads at least 0.1, so one table keeps one unit and short numbers."""
    positive = [v for v in values if v and v > 0 and not math.isnan(v)]
    smallest = min(positive) if positive else units[0][1]
    for name, scale in units:
        if smallest >= 0.1 * scale:
            return name, scale
    return units[-1]


def render_text(table: Table) -> str:
    """The table for a terminal: its title in brackets, the first column left-aligned and
    the others right-aligned (:attr:`Table.left`) under a rule, the footer under the rows."""
    from rich.console import Console
    from rich.table import Table as RichTable

    grid = RichTable(box=_ascii_grid(), show_edge=False, pad_edge=False)
    for number, name in enumerate(table.header):
        grid.add_column(name, justify="left" if number < table.left else "right",
                        no_wrap=True)
    for row in table.rows:
        grid.add_row(*map(str, row))
    text = io.StringIO()
    Console(file=text, width=_NO_WRAP_WIDTH, color_system=None, markup=False,
            highlight=False, emoji=False).print(grid)
    lines = [f"[ {table.title} ]"]
    lines += ["  " + line.rstrip() for line in text.getvalue().splitlines() if line.strip()]
    if table.footer:
        lines.append(f"  {table.footer}")
    return "\n".join(lines)


def render_markdown(table: Table) -> str:
    out = [f"**{table.title}**", "", "| " + " | ".join(table.header) + " |",
           "|" + "|".join(["---"] * table.left + ["---:"] * (len(table.header) - table.left))
           + "|"]
    out += ["| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |" for r in table.rows]
    if table.footer:
        out += ["", f"_{table.footer}_"]
    return "\n".join(out)
