"""Test-only backends, injected through GRUBENCH_PLUGINS=tests.fake_backends (the
registry's plugin hook; use :func:`install`): one that works (the NumPy reference), one
that raises, one that aborts the process, one that segfaults, one that hangs, one that
is unavailable and one that works slowly (SLOW_CALL_S a call: a run still going when a test
interferes)."""
import ctypes
import functools
import os
import time

from grubench import backends
from grubench.kernels import reference

BEHAVIOURS = ("ok", "raise", "abort", "segfault", "hang", "unavailable", "slow")
SLOW_CALL_S = 0.3


def availability(behaviour):
    if behaviour == "unavailable":
        return False, "fake reason it cannot run"
    return True, None


def version(behaviour):
    return f"fake {behaviour}"


class FakePrepared(reference.ReferencePrepared):
    def __init__(self, args, behaviour):
        super().__init__(args)
        self.behaviour = behaviour

    def misbehave(self):
        if self.behaviour == "raise":
            raise RuntimeError("fake kernel failed")
        if self.behaviour == "abort":
            os.abort()
        if self.behaviour == "segfault":
            ctypes.string_at(0)
        if self.behaviour == "hang":
            time.sleep(3600)
        if self.behaviour == "slow":
            time.sleep(SLOW_CALL_S)

    def forward(self):
        self.misbehave()
        return super().forward()

    def forward_train(self):
        self.misbehave()
        return super().forward_train()


def prepare(args, behaviour):
    return FakePrepared(args, behaviour)


def register():
    """The plugin hook (grubench.worker.load_plugins): add the fake entries."""
    for behaviour in BEHAVIOURS:
        backends.REGISTRY[f"fake-{behaviour}"] = backends.Entry(
            __name__, f"test backend that does: {behaviour}", {"behaviour": behaviour})


def install(monkeypatch):
    """Make the fake backends visible to this process and to every worker it starts, for
    one test: the registry and its lookup cache are restored afterwards, so no other test
    ever sees a backend that aborts."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    monkeypatch.syspath_prepend(root)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        p for p in (root, os.environ.get("PYTHONPATH")) if p))
    monkeypatch.setenv("GRUBENCH_PLUGINS", "tests.fake_backends")
    monkeypatch.setattr(backends, "REGISTRY", dict(backends.REGISTRY))
    monkeypatch.setattr(backends, "get", functools.cache(backends.get.__wrapped__))
