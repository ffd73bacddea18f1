"""The progress of a run on stderr: on a terminal a rich progress bar, redrawn in place
(bar, cases done, elapsed time, the last case and its outcome); anywhere else (a log, CI,
pytest's capture) one plain line per case, which stays readable in a file and which
scripts/estimate_sweep.py parses:

    [############............] 12/24  31.4s numba-cpu t1 gru training 8,2,8,8 0.0794 ms
"""
from __future__ import annotations

import sys
import time

#: Width of the plain line's bar, in characters.
PLAIN_BAR_WIDTH = 24


class Progress:
    """Counts cases done; ``update`` after each, ``finish`` at the end (also after an
    interruption)."""

    def __init__(self, total: int, stream=None, enabled: bool = True):
        stream = sys.stderr if stream is None else stream   # the stderr of now, not of import
        self.total, self.done, self.stream, self.enabled = total, 0, stream, enabled
        self.start = time.monotonic()
        self.tty = enabled and hasattr(stream, "isatty") and stream.isatty()
        self._bar = self._task = None
        if self.tty:
            self._start_bar()

    def _start_bar(self) -> None:
        from rich.console import Console
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                   TimeElapsedColumn)

        # Redrawn only when a case ends: no refresh thread competing with the workers for
        # the cores they are timed on.
        self._bar = Progress(BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                             TextColumn("{task.description}", markup=False),
                             console=Console(file=self.stream), auto_refresh=False,
                             redirect_stdout=False, redirect_stderr=False)
        self._task = self._bar.add_task("", total=max(self.total, 1))
        self._bar.start()

    def update(self, label: str, outcome: str = "") -> None:
        self.done += 1
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done, description=f"{label} {outcome}")
            self._bar.refresh()
            return
        filled = PLAIN_BAR_WIDTH * self.done // max(self.total, 1)
        self.stream.write(f"[{'#' * filled}{'.' * (PLAIN_BAR_WIDTH - filled)}] "
                          f"{self.done}/{self.total} {time.monotonic() - self.start:5.1f}s "
                          f"{label} {outcome}\n")
        self.stream.flush()

    def finish(self) -> None:
        """Leave the bar where it stands and the cursor on the line below it."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
