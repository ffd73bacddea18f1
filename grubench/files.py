"""Atomic file writes: a report is either the old file or the complete new one, never half
written (a crash or Ctrl-C mid-write leaves only a temporary file, removed on error); and
reading a JSON document back with a one-line error."""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from pathlib import Path


def read_json(path: Path):
    """A JSON file's document; ValueError saying why a file cannot be read or parsed."""
    try:
        return json.loads(path.read_text())
    except OSError as error:
        raise ValueError(f"cannot read {path}: {error.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from None


def write_atomic(path: str | os.PathLike, data: str | bytes) -> Path:
    """Write ``data`` to a temporary file beside ``path``, fsync it, then rename over."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = "wb" if isinstance(data, bytes) else "w"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp makes the file 0600; a report is read by others like any file the
        # user writes: the mode umask gives (0644 under the usual 022).
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, mode) as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0o022)       # the only way to read it is to set it; set it back
    os.umask(mask)
    return mask


def check_writable_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` if needed and prove it writable, before any measuring starts.
    Raises PermissionError/NotADirectoryError with the path in the message."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"output path {path} exists and is not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-", delete=True)
        probe.close()
    except OSError as error:
        raise PermissionError(f"cannot write to output directory {path}: "
                              f"{error.strerror or error}") from error
    return path


class OutputBusy(ValueError):
    """Another run holds the output folder."""


@contextlib.contextmanager
def exclusive_dir(path: str | os.PathLike):
    """Hold ``path`` (an existing folder) for one run: a second run into it is refused
    with OutputBusy naming the holder, instead of two runs interleaving their reports.
    The lock is the kernel's (flock on ``.grubench.lock``), so it ends with its process,
    however that ends: no stale lock after a crash or kill -9."""
    lock_path = Path(path) / ".grubench.lock"
    with open(lock_path, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "unknown"
            raise OutputBusy(f"another grubench run (pid {holder}) is writing to {path}; "
                             f"wait for it or give another --out") from None
        lock.seek(0)
        lock.truncate()
        lock.write(str(os.getpid()))
        lock.flush()
        yield
