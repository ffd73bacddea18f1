"""Test-only backends, injected through GRUBENCH_PLUGINS=tests.fake_backends (the
registry's plugin hook; use :func:`install`): one that works (the NumPy reference), one
whose every output and gradient is off by the known relative error :data:`OFF_BY`, one
that raises, one that aborts the process, one that segfaults, one that hangs, one that
is unavailable, one whose training raises NotImplementedError, one that works slowly
(SLOW_CALL_S a call: a run still going when a test interferes), one whose entry
declares it inference-only, one that ignores lengths and one that runs no networks."""
import ctypes
import functools
import os
import time

from grubench import backends
from grubench.kernels import reference

BEHAVIOURS = ("ok", "off", "raise", "abort", "segfault", "hang", "unavailable", "unimplemented",
              "slow")
SLOW_CALL_S = 0.3


#: fake-off returns the reference times (1 + OFF_BY): every array's relative error
#: ||out - ref|| / ||ref|| is OFF_BY, and its max-abs error OFF_BY * max|ref|.
OFF_BY = 1e-3


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

    def off(self, arrays):
        if self.behaviour != "off":
            return arrays
        return type(arrays)(a * (1 + OFF_BY) for a in arrays)

    def forward(self):
        self.misbehave()
        return self.off(super().forward())

    def training_step(self):
        outputs, grads = super().training_step()
        if self.behaviour == "off":
            grads = {name: grad * (1 + OFF_BY) for name, grad in grads.items()}
        return self.off(outputs), grads

    def forward_train(self):
        self.misbehave()
        if self.behaviour == "unimplemented":
            raise NotImplementedError("fake: this library has no gradients")
        return super().forward_train()


def prepare(args, behaviour):
    return FakePrepared(args, behaviour)


def register():
    """The plugin hook (grubench.backends.load_plugins): add the fake entries."""
    for behaviour in BEHAVIOURS:
        backends.REGISTRY[f"fake-{behaviour}"] = backends.Entry(
            __name__, f"test backend that does: {behaviour}", {"behaviour": behaviour})
    # It could train (it is the reference), so an "unsupported" row can only come from
    # its registry entry.
    backends.REGISTRY["fake-inference-only"] = backends.Entry(
        __name__, "test backend declared inference-only", {"behaviour": "ok"},
        unsupported={"training": "fake: declared inference only"})
    # The reference again, declared to run every sequence to T (a padded baseline), and
    # declared unable to run stacked or bidirectional networks.
    backends.REGISTRY["fake-padded"] = backends.Entry(
        __name__, "test backend that ignores lengths", {"behaviour": "ok"},
        ignores_lengths=True)
    backends.REGISTRY["fake-no-networks"] = backends.Entry(
        __name__, "test backend declared single-layer", {"behaviour": "ok"},
        unsupported={"networks": "fake: one layer, one direction only"})


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
