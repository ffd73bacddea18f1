"""The backend registry: the one place a backend is added.

    >>> from grubench import backends
    >>> backends.names()
    >>> be = backends.get("numpy")
    >>> y, h_n = be.gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh)

Each entry names a module of :mod:`grubench.kernels` that defines ``availability()``,
``version()`` and ``prepare(args)`` (with optional keyword options such as a device), and
:class:`Backend` builds the convenience API over it. An entry also declares the backend's
capabilities: its device, the memory counter that sees its allocations, the modes and
dtypes it cannot run (an inference-only backend: ``unsupported={"training": why}``), how it
runs stacked and bidirectional cases (``networks``: layer by layer through
grubench.kernels.network, or its module's own ``prepare_network``; ``unsupported=
{"networks": why}`` when it cannot) and whether it ignores sequence lengths; an entry that
declares nothing runs on the CPU, is measured by tracemalloc, runs every mode, dtype and
network layer by layer, and honours lengths. Kernel modules are imported on first use, so listing backends costs
nothing and a missing optional package only makes its backend unavailable, with the
reason.

Plugins: ``GRUBENCH_PLUGINS`` (comma-separated module names) are imported by
:func:`load_plugins`, which the runner, every worker, a cluster node and ``grubench
train`` call before they read the registry; each module's ``register()`` (if any) may add
entries to :data:`REGISTRY` (the tests inject their crashing backends this way).
"""
from __future__ import annotations

import functools
import importlib
import os
from dataclasses import dataclass, field

import numpy as np

from grubench import tuning
from grubench.case import DTYPES, MODES
from grubench.kernels import onnxruntime
from grubench.kernels.contract import BackendUnavailable, Prepared, RNNArgs, convenience_api
from grubench.memory import COUNTERS

PLUGINS_ENV = "GRUBENCH_PLUGINS"


@dataclass(frozen=True)
class Entry:
    module: str
    description: str
    options: dict = field(default_factory=dict)
    #: "cpu" or "cuda": which suites select it, and whether a cluster node needs a GPU.
    device: str = "cpu"
    #: What the backend cannot run, keyed by mode ("training") or dtype ("float64"), with
    #: the reason: the runner reports those cases as "unsupported" without asking a worker.
    unsupported: dict = field(default_factory=dict)
    #: The grubench.memory counter that sees its allocations ("none": no counter does).
    memory: str = "tracemalloc"
    #: How a stacked or bidirectional case runs: "layered" (grubench.kernels.network's
    #: Network calls ``prepare`` per layer and direction) or "native" (the module's own
    #: ``prepare_network(inputs)``).
    networks: str = "layered"
    #: Runs every sequence to T whatever the case's lengths (a padded baseline): only
    #: variable-length cases are run, and accuracy is taken against the reference run to T.
    ignores_lengths: bool = False

    def __post_init__(self):
        unknown = sorted(set(self.unsupported) - {*MODES, *DTYPES, "networks"})
        if unknown:
            raise ValueError(f"backend entry {self.module!r}: unsupported names "
                             f"{', '.join(unknown)}; expected modes ({', '.join(MODES)}), "
                             f"dtypes ({', '.join(DTYPES)}) or networks")
        if self.networks not in ("layered", "native"):
            raise ValueError(f"backend entry {self.module!r}: networks must be 'layered' "
                             f"or 'native', got {self.networks!r}")
        if self.memory not in COUNTERS:
            raise ValueError(f"backend entry {self.module!r}: unknown memory counter "
                             f"{self.memory!r}; expected one of {', '.join(COUNTERS)}")

    @property
    def modes(self) -> tuple[str, ...]:
        """The modes it runs."""
        return tuple(mode for mode in MODES if mode not in self.unsupported)

    @property
    def dtypes(self) -> tuple[str, ...]:
        """The dtypes it runs."""
        return tuple(dtype for dtype in DTYPES if dtype not in self.unsupported)

    def why_unsupported(self, mode: str, dtype, network: bool = False) -> str | None:
        """Why this backend cannot run a case of ``mode`` and ``dtype`` (a name or a NumPy
        dtype), stacked or bidirectional when ``network``, or None."""
        return (self.unsupported.get(mode) or self.unsupported.get(np.dtype(dtype).name)
                or (self.unsupported.get("networks") if network else None))


# Memory counters: NumPy and Numba allocate through Python's tracked allocator
# (tracemalloc); torch's CPU allocator is seen by its profiler, its CUDA one by its own
# statistics; ONNX Runtime and XLA allocate outside tracemalloc's view (the resident set);
# other devices have no per-call counter.
REGISTRY: dict[str, Entry] = {
    "numpy": Entry("reference", "exact NumPy reference (the oracle of every test)"),
    "torch-cpu": Entry("torch_nn", "torch.nn.GRU / torch.nn.LSTM on the CPU (variable "
                       "lengths as a PackedSequence)", {"device": "cpu"},
                       memory="torch-profiler", networks="native"),
    "torch-cpu-padded": Entry("torch_nn", "torch.nn.GRU / torch.nn.LSTM on the CPU on the "
                              "padded batch without lengths (every sequence run to T): "
                              "the baseline of packing; runs variable-length cases only",
                              {"device": "cpu"}, memory="torch-profiler", networks="native",
                              ignores_lengths=True),
    "torch-cuda": Entry("torch_nn", "torch.nn.GRU / torch.nn.LSTM on CUDA (cuDNN)",
                        {"device": "cuda"}, device="cuda", memory="torch-cuda-allocator",
                        networks="native"),
    "numba-cpu": Entry("numba_cpu", "fused @njit GRU/LSTM kernels (float32 gate math for float32, "
                       "weight products on packed panels, weight gradients on tiles (narrow) or "
                       "OpenBLAS (wide), steps shared among numba's threads)"),
    "numba-cuda": Entry("numba_cuda", "numba.cuda kernels: tiled matmul, fused gates, "
                        "persistent small-batch forward", device="cuda", memory="none"),
    # Peers (the peers extra).
    "onnxruntime": Entry("onnxruntime", "ONNX Runtime's GRU/LSTM operators (MLAS) on a "
                         "one-node ONNX graph", unsupported=onnxruntime.UNSUPPORTED,
                         memory="rss"),
    "onnxruntime-cuda": Entry("onnxruntime", "ONNX Runtime's GRU/LSTM on its CUDA "
                              "execution provider", {"device": "cuda"}, device="cuda",
                              unsupported=onnxruntime.UNSUPPORTED, memory="none"),
    # XLA's CPU allocator reuses pages it holds, so the resident set saw from 20 KiB to
    # all of a 1 MiB output of one call, run to run: no counter measures it reliably
    "jax": Entry("jax", "lax.scan under jax.jit, jax.vjp backward (XLA)", memory="none"),
    "jax-cuda": Entry("jax", "lax.scan under jax.jit, jax.vjp backward (XLA on CUDA)",
                      {"device": "cuda"}, device="cuda", memory="none"),
}


class Backend:
    """One registered backend: availability, version, the prepared path and the
    convenience API (``gru_forward``, ``gru_backward``, ``lstm_forward``, ``lstm_backward``)."""

    def __init__(self, name: str, entry: Entry):
        self.name = name
        self.entry = entry
        self.description = entry.description
        self.device = entry.device

    @functools.cached_property
    def _module(self):
        # A dotted name is a full module path (an out-of-tree backend, e.g. a plugin
        # loaded through GRUBENCH_PLUGINS); a plain name lives in grubench.kernels.
        module = self.entry.module
        return importlib.import_module(module if "." in module else f"grubench.kernels.{module}")

    @functools.cached_property
    def _status(self) -> tuple[bool, str | None]:
        # Importing a kernel module runs its setup (numba's cache, a device query): any
        # failure there makes the backend unavailable with the reason, never a traceback
        # from `list` or `run`.
        try:
            return self._module.availability(**self.entry.options)
        except Exception as error:
            return False, f"{type(error).__name__}: {error}"

    @property
    def available(self) -> bool:
        return self._status[0]

    @property
    def why_unavailable(self) -> str | None:
        return self._status[1]

    @property
    def version(self) -> str:
        return self._module.version(**self.entry.options) if self.available else "unavailable"

    def prepare(self, args: RNNArgs, **choices) -> Prepared:
        """Lay validated arguments out for this backend (see :mod:`...contract`).
        ``choices`` set its tunable options (:meth:`tunable`); an option not given takes
        this machine's tuned choice for ``args`` (:meth:`tuned`)."""
        if not self.available:
            raise BackendUnavailable(f"backend {self.name!r} is unavailable: "
                                     f"{self.why_unavailable}")
        options = {**self.entry.options, **self.tuned(args, skip=choices), **choices}
        return self._module.prepare(args, **options)

    def prepare_network(self, inputs):
        """A stacked/bidirectional case's inputs (grubench.case.NetworkInputs) laid out
        for a backend whose entry runs networks natively (grubench.prepare)."""
        if not self.available:
            raise BackendUnavailable(f"backend {self.name!r} is unavailable: "
                                     f"{self.why_unavailable}")
        return self._module.prepare_network(inputs, **self.entry.options)

    @property
    def tunes(self) -> bool:
        """Whether the backend has options the tuning may choose (for some cases)."""
        return self.available and hasattr(self._module, "tunable")

    def tunable(self, args: RNNArgs) -> dict[str, tuple[str, ...]]:
        """The options the tuning may choose for ``args``, each with its usable values (the
        default first): what the kernel module's ``tunable(args)`` says; {} without one."""
        hook = getattr(self._module, "tunable", None)
        return hook(args) if hook is not None else {}

    def tuned(self, args: RNNArgs, skip=(), measure_flops: float = tuning.AUTO_MAX_FLOPS
              ) -> dict[str, str]:
        """For each tunable option (but those in ``skip``): the choice this machine's
        tuning cache holds for ``args``, measured now and stored where it is missing and a
        call of ``args`` has at most ``measure_flops`` FLOPs (tuning on first use costs
        well under a second then; ``grubench tune`` measures any size). Options left out
        take the module's default."""
        cache = tuning.machine_cache()
        chosen = {}
        for option, values in self.tunable(args).items():
            if option in skip or cache is None:
                continue
            key = tuning.case_key(args)
            stored = cache.get(self.name, option, key)
            if (stored is not None and stored.value in values
                    or tuning.call_flops(args) <= measure_flops):
                # choose reads a stored choice back, and measures only where none is
                chosen[option] = tuning.choose(
                    cache, self.name, option, key,
                    {value: self._candidate(args, option, value) for value in values})
        return chosen

    def _candidate(self, args: RNNArgs, option: str, value: str):
        """One call of ``args`` with ``option`` set to ``value``: a training step when
        ``args`` carries upstream gradients, else a forward (prepared on first call)."""
        prepared = None

        def call():
            nonlocal prepared
            if prepared is None:
                prepared = self._module.prepare(args, **{**self.entry.options, option: value})
            prepared.to_numpy(prepared.training_step() if args.has_grads
                              else prepared.forward())
        return call

    @functools.cached_property
    def _api(self):
        return convenience_api(self.prepare)

    @property
    def gru_forward(self):
        return self._api.gru_forward

    @property
    def gru_backward(self):
        return self._api.gru_backward

    @property
    def lstm_forward(self):
        return self._api.lstm_forward

    @property
    def lstm_backward(self):
        return self._api.lstm_backward

    def __repr__(self) -> str:
        state = "available" if self.available else f"unavailable: {self.why_unavailable}"
        return f"<Backend {self.name} ({state})>"


def names() -> list[str]:
    """Every registered backend name, available here or not."""
    return list(REGISTRY)


@functools.cache
def get(name: str) -> Backend:
    """The backend called ``name``; ValueError listing the valid names otherwise."""
    if name not in REGISTRY:
        raise ValueError(f"unknown backend {name!r}; valid names: {', '.join(REGISTRY)}")
    return Backend(name, REGISTRY[name])


def available() -> list[Backend]:
    return [get(n) for n in names() if get(n).available]


def load_plugins() -> list[str]:
    """Import the modules named in ``GRUBENCH_PLUGINS`` and call their ``register()``
    (idempotent: it runs on every call); returns the module names."""
    modules = [m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(",") if m.strip()]
    for name in modules:
        register = getattr(importlib.import_module(name), "register", None)
        if register is not None:
            register()
    return modules
