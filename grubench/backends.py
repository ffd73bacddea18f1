"""The backend registry: the one place a backend is added.

    >>> from grubench import backends
    >>> backends.names()
    >>> be = backends.get("numpy")
    >>> y, h_n = be.gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh)

Each entry names a module of :mod:`grubench.kernels` that defines ``availability()``,
``version()`` and ``prepare(args)`` (with optional keyword options such as a device), and
:class:`Backend` builds the convenience API over it. An entry also declares what its
backend cannot run (an inference-only backend: ``unsupported={"training": why}``) and,
where the result's type does not tell, the memory counter that sees its allocations. Kernel modules are imported on first
use, so listing backends costs nothing and a missing optional package only makes its
backend unavailable, with the reason.
"""
from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass, field

import numpy as np

from grubench.kernels import onnxruntime
from grubench.kernels.contract import BackendUnavailable, Prepared, RNNArgs, convenience_api


@dataclass(frozen=True)
class Entry:
    module: str
    description: str
    options: dict = field(default_factory=dict)
    device: str = "cpu"
    #: What the backend cannot run, keyed by mode ("training") or dtype ("float64"), with
    #: the reason: the runner reports those cases as "unsupported" without asking a worker.
    unsupported: dict = field(default_factory=dict)
    #: The grubench.memory counter that sees its allocations (None: chosen from the type
    #: of its result arrays).
    memory: str | None = None

    def why_unsupported(self, mode: str, dtype) -> str | None:
        """Why this backend cannot run a case of ``mode`` and ``dtype`` (a name or a NumPy
        dtype), or None."""
        return self.unsupported.get(mode) or self.unsupported.get(np.dtype(dtype).name)


REGISTRY: dict[str, Entry] = {
    "numpy": Entry("reference", "exact NumPy reference (the oracle of every test)"),
    "torch-cpu": Entry("torch_nn", "torch.nn.GRU / torch.nn.LSTM on the CPU",
                       {"device": "cpu"}),
    "torch-cuda": Entry("torch_nn", "torch.nn.GRU / torch.nn.LSTM on CUDA (cuDNN)",
                        {"device": "cuda"}, device="cuda"),
    "numba-cpu": Entry("numba_cpu", "fused @njit GRU/LSTM kernels (float32 gate math for float32, "
                       "weight products on packed panels, weight gradients on tiles (narrow) or "
                       "OpenBLAS (wide), steps shared among numba's threads)"),
    "numba-cuda": Entry("numba_cuda", "numba.cuda kernels: tiled matmul, fused gates, "
                        "persistent small-batch forward", device="cuda"),
    # Peers (the peers extra). ONNX Runtime and XLA allocate outside tracemalloc's view.
    "onnxruntime": Entry("onnxruntime", "ONNX Runtime's GRU/LSTM operators (MLAS) on a "
                         "one-node ONNX graph", unsupported=onnxruntime.UNSUPPORTED,
                         memory="rss"),
    "onnxruntime-cuda": Entry("onnxruntime", "ONNX Runtime's GRU/LSTM on its CUDA "
                              "execution provider", {"device": "cuda"}, device="cuda",
                              unsupported=onnxruntime.UNSUPPORTED, memory="none"),
    "jax": Entry("jax", "lax.scan under jax.jit, jax.vjp backward (XLA)", memory="rss"),
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

    def prepare(self, args: RNNArgs) -> Prepared:
        """Lay validated arguments out for this backend (see :mod:`...contract`)."""
        if not self.available:
            raise BackendUnavailable(f"backend {self.name!r} is unavailable: "
                                     f"{self.why_unavailable}")
        return self._module.prepare(args, **self.entry.options)

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
