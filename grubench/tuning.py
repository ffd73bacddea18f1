"""Per-machine tuning: which code path of a backend is fastest on this machine, measured once
and kept, as FFTW's wisdom and ATLAS's install-time search keep theirs.

A backend declares its tunable option and candidates in the registry (``Entry.tunable``).
For a case the option is not given for, :func:`choose` looks the case up in this machine's
cache; when it is missing it times every candidate on the case's own arrays (a few short
runs: milliseconds to a few seconds) and stores the winner. The cache is one JSON file per
machine fingerprint (:func:`grubench.machine.fingerprint`: CPU, ISA level, cores, BLAS
kernel, ISA restrictions), so a choice made on one core is never used on another: a file
whose fingerprint differs, or that cannot be read, is ignored with a warning and rewritten
at the next choice.
"""
from __future__ import annotations

import datetime
import functools
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from grubench import machine, threads, timing
from grubench.files import locked, write_atomic
from grubench.kernels.contract import RNNArgs

SCHEMA = "grubench.tuning/1"

#: Where tuning caches live (default: $XDG_CACHE_HOME/grubench, else ~/.cache/grubench);
#: "off" disables tuning (candidates' first choice, nothing measured or written).
DIR_ENV = "GRUBENCH_TUNING_DIR"

#: Tuning on first use measures a case only where one call has at most this many FLOPs
#: (tens of milliseconds on one core): above it the module's default serves until
#: ``grubench tune`` measures the size.
AUTO_MAX_FLOPS = 2e9

#: Each candidate is timed this long at least (and MIN_RUNS times): enough for a stable
#: median of a short run, small enough that a first use costs well under a second per size.
MIN_TIME_S = 0.05
MIN_RUNS = 3


def enabled() -> bool:
    return os.environ.get(DIR_ENV, "").lower() != "off"


def cache_dir() -> Path:
    configured = os.environ.get(DIR_ENV)
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "grubench"


@dataclass(frozen=True)
class Choice:
    """The winner of one tuning, with every candidate's median seconds."""

    value: str
    seconds: dict
    measured: str

    def as_dict(self) -> dict:
        return {"value": self.value, "seconds": self.seconds, "measured": self.measured}


class TuningCache:
    """One machine's choices: ``{backend: {option: {case key: Choice}}}``."""

    def __init__(self, path: Path, fingerprint: dict, choices: dict | None = None):
        self.path = path
        self.fingerprint = fingerprint
        self.choices: dict = choices or {}

    @classmethod
    def for_this_machine(cls, directory: Path | None = None,
                         fingerprint: dict | None = None) -> TuningCache:
        fingerprint = machine.fingerprint() if fingerprint is None else fingerprint
        directory = cache_dir() if directory is None else Path(directory)
        path = directory / f"tuning-{machine.fingerprint_id(fingerprint)}.json"
        return cls(path, fingerprint, _read_choices(path, fingerprint))

    def get(self, backend: str, option: str, key: str) -> Choice | None:
        return self.choices.get(backend, {}).get(option, {}).get(key)

    def put(self, backend: str, option: str, key: str, choice: Choice) -> None:
        self.choices.setdefault(backend, {}).setdefault(option, {})[key] = choice

    def forget(self, backend: str, option: str, key: str) -> None:
        self.choices.get(backend, {}).get(option, {}).pop(key, None)

    def count(self, backend: str) -> int:
        return sum(len(keys) for keys in self.choices.get(backend, {}).values())

    def save(self) -> Path:
        """Write the cache atomically, merged with what another process stored meanwhile
        (under a lock, so two workers tuning at once both keep their choices)."""
        with locked(self.path.with_suffix(".lock")):
            stored = _read_choices(self.path, self.fingerprint, quiet=True)
            for backend, options in self.choices.items():
                for option, keys in options.items():
                    stored.setdefault(backend, {}).setdefault(option, {}).update(keys)
            self.choices = stored
            document = {"schema": SCHEMA, "fingerprint": self.fingerprint,
                        "choices": {b: {o: {k: c.as_dict() for k, c in keys.items()}
                                        for o, keys in options.items()}
                                    for b, options in stored.items()}}
            return write_atomic(self.path, json.dumps(document, indent=1, sort_keys=True))


def _read_choices(path: Path, fingerprint: dict, quiet: bool = False) -> dict:
    """The choices stored at ``path`` for ``fingerprint``; {} (with a warning unless
    ``quiet``) when the file is missing, unreadable, malformed or another machine's."""
    if not path.exists():
        return {}
    try:
        document = json.loads(path.read_text())
        if document.get("schema") != SCHEMA:
            raise ValueError(f"schema {document.get('schema')!r}, expected {SCHEMA!r}")
        if document.get("fingerprint") != fingerprint:
            if not quiet:
                warnings.warn(f"ignoring the tuning cache {path}: it was made on another "
                              f"machine ({document.get('fingerprint')})", RuntimeWarning,
                              stacklevel=3)
            return {}
        return {backend: {option: {key: Choice(str(c["value"]), dict(c["seconds"]),
                                               str(c["measured"]))
                                   for key, c in keys.items()}
                          for option, keys in options.items()}
                for backend, options in document["choices"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        if not quiet:
            warnings.warn(f"ignoring the tuning cache {path}: it cannot be read "
                          f"({type(error).__name__}: {error})", RuntimeWarning, stacklevel=3)
        return {}


def measure(candidates: dict[str, Callable[[], object]],
            synchronize: Callable[[], None] = lambda: None) -> Choice:
    """Time every candidate (a call running one option's code) and return the fastest by
    median. Each is called once untimed first (compilation, packing)."""
    seconds = {}
    for value, call in candidates.items():
        call()
        synchronize()
        samples = timing.measure(call, synchronize, min_runs=MIN_RUNS, min_time=MIN_TIME_S)
        seconds[value] = timing.summarize(samples).median_s
    best = min(seconds, key=seconds.get)
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    return Choice(best, seconds, now)


def choose(cache: TuningCache | None, backend: str, option: str, key: str,
           candidates: dict[str, Callable[[], object]],
           synchronize: Callable[[], None] = lambda: None) -> str:
    """The stored choice for ``key``, else measure the candidates, store and return the
    winner. Without a cache (tuning off) the first candidate, unmeasured."""
    if cache is None:
        return next(iter(candidates))
    stored = cache.get(backend, option, key)
    if stored is not None and stored.value in candidates:
        return stored.value
    choice = measure(candidates, synchronize)
    cache.put(backend, option, key, choice)
    try:
        cache.save()
    except OSError as error:        # a read-only cache folder: tuned for this process only
        warnings.warn(f"tuning cache {cache.path} not written: {error}", RuntimeWarning,
                      stacklevel=2)
    return choice.value


@functools.cache
def machine_cache() -> TuningCache | None:
    """This process's tuning cache (one per process: the machine does not change under
    it), or None where tuning is off."""
    return TuningCache.for_this_machine() if enabled() else None


def case_key(args: RNNArgs) -> str:
    """What a choice is kept for: the cell, variant, mode, sizes but T (a choice is about
    one step's products), dtype and the process's thread count, e.g.
    ``gru/reset_after/training/32,384,384/float32/t1``."""
    mode = "training" if args.has_grads else "inference"
    pinned = threads.pinned_threads()
    return (f"{args.cell}/{args.variant}/{mode}/{args.B},{args.I},{args.H}/{args.dtype}/"
            f"t{pinned if pinned is not None else 'any'}")


def call_flops(args: RNNArgs) -> float:
    """Matrix-product FLOPs of one call of ``args`` (training: forward and backward)."""
    return args.spec.flops(args.T, args.B, args.I, args.H, args.has_grads)
