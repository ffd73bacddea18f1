"""The "jax" and "jax-cuda" backends: a GRU and an LSTM as a JAX user writes them.

The input projection of every step is one product over the whole sequence, then
``lax.scan`` runs the recurrence step by step, all under ``jax.jit``; variable lengths are
masks (a finished sequence keeps its state and outputs zeros, the padding of x is zeroed
first so that it never reaches a gradient). Backward is ``jax.vjp`` of the same function,
jitted too: ``forward_train`` returns the outputs and the vjp closure (its residuals are
what is saved for backward), ``backward`` applies it to the upstream gradients.

* float32 and float64: importing jax through this module turns on ``jax_enable_x64`` in
  the process (the harness gives each backend its own worker process), and every array
  keeps the dtype it was given.
* Inputs live on the device (``jax.device_put`` in ``prepare``); calls are asynchronous and
  ``synchronize`` is ``block_until_ready`` on the last result.
* The first call of a shape traces and compiles (the harness times it apart as
  ``compile_s``); the jitted functions are shared by every prepared problem of a variant,
  so a shape seen before is not compiled again.
* Threads: XLA's CPU pools are sized when its backend starts, from ``XLA_FLAGS``
  (grubench.threads.thread_env sets them for a worker before jax is imported).
"""
from __future__ import annotations

import functools

import numpy as np

from .contract import GRU_N, GRU_R, GRU_Z, LSTM_F, LSTM_G, LSTM_I, LSTM_O, BackendUnavailable
from .contract import Prepared, RNNArgs, convenience_api, map_arrays

#: jax's platform name of each device this backend runs on.
PLATFORMS = {"cpu": "cpu", "cuda": "gpu"}


@functools.cache
def _jax():
    import jax

    jax.config.update("jax_enable_x64", True)   # float64 stays float64 (see above)
    return jax


def _device(device: str):
    return _jax().devices(PLATFORMS[device])[0]


def availability(device: str = "cpu") -> tuple[bool, str | None]:
    try:
        _jax()
    except ImportError as error:
        return False, f"{error} (install the peers extra: pip install -e '.[peers]')"
    try:
        _device(device)
    except RuntimeError as error:       # no backend of that platform in this jaxlib
        return False, f"jax sees no {PLATFORMS[device]} device: {error}"
    return True, None


def version(device: str = "cpu") -> str:
    jax = _jax()
    import jaxlib

    return f"jax {jax.__version__}, jaxlib {jaxlib.__version__} ({_device(device).device_kind})"


# ----------------------------------------------------------------------------- the model

def gate(a, k: int, H: int):
    """Gate k's columns of a (B, G*H) array."""
    return a[:, k * H:(k + 1) * H]


def gru_step(w_hh, b_hh, reset_after: bool):
    """One GRU step (h, gi_t) -> h' over the step's input projection gi_t = W_i x + b_i."""
    import jax.numpy as jnp
    from jax.nn import sigmoid

    H = w_hh.shape[1]

    def step(h, gi):
        gh = h @ w_hh[:2 * H].T + b_hh[:2 * H]                 # recurrent part of r, z
        r = sigmoid(gate(gi, GRU_R, H) + gate(gh, GRU_R, H))
        z = sigmoid(gate(gi, GRU_Z, H) + gate(gh, GRU_Z, H))
        w_hn, b_hn = gate(w_hh.T, GRU_N, H), gate(b_hh[None], GRU_N, H)
        if reset_after:
            n = jnp.tanh(gate(gi, GRU_N, H) + r * (h @ w_hn + b_hn))
        else:
            n = jnp.tanh(gate(gi, GRU_N, H) + (r * h) @ w_hn + b_hn)
        return n + z * (h - n)

    return step


def lstm_step(w_hh, b_hh):
    """One LSTM step ((h, c), gi_t) -> (h', c')."""
    import jax.numpy as jnp
    from jax.nn import sigmoid

    H = w_hh.shape[1]

    def step(state, gi):
        h, c = state
        a = gi + h @ w_hh.T + b_hh
        c = (sigmoid(gate(a, LSTM_F, H)) * c
             + sigmoid(gate(a, LSTM_I, H)) * jnp.tanh(gate(a, LSTM_G, H)))
        return sigmoid(gate(a, LSTM_O, H)) * jnp.tanh(c), c

    return step


def run(cell: str, reset_after: bool, inputs: dict, mask):
    """(y, h_n[, c_n]) of the inputs (keyed as RNNArgs.inputs()); ``mask`` (T, B, 1)
    bool, or None when every sequence runs all T steps."""
    import jax.numpy as jnp
    from jax import lax
    from jax.tree_util import tree_map

    x = inputs["x"]
    if mask is not None:
        x = jnp.where(mask, x, 0)                       # padding never reaches a gradient
    gi = x @ inputs["w_ih"].T + inputs["b_ih"]          # (T, B, G*H): one product
    if cell == "gru":
        step = gru_step(inputs["w_hh"], inputs["b_hh"], reset_after)
        state = inputs["h0"]
    else:
        step = lstm_step(inputs["w_hh"], inputs["b_hh"])
        state = (inputs["h0"], inputs["c0"])

    def masked_step(state, xs):
        gi_t, m = xs
        new = step(state, gi_t)
        h = new if cell == "gru" else new[0]
        if m is None:
            return new, h
        kept = tree_map(lambda n, old: jnp.where(m, n, old), new, state)   # finished
        return kept, jnp.where(m, h, 0)                                     # keep theirs

    state, y = lax.scan(masked_step, state, (gi, mask))
    return (y, state) if cell == "gru" else (y, *state)


@functools.cache
def compiled(cell: str, reset_after: bool):
    """The jitted (forward, forward_train, backward) of a variant. Cached, so every
    prepared problem of the variant shares jit's cache of compiled shapes."""
    jax = _jax()
    model = functools.partial(run, cell, reset_after)
    forward = jax.jit(model)
    # vjp's closure is a pytree (its residuals are the leaves), so jit can return it.
    forward_train = jax.jit(lambda inputs, mask: jax.vjp(lambda i: model(i, mask), inputs))
    backward = jax.jit(lambda vjp, upstream: vjp(upstream)[0])
    return forward, forward_train, backward


class JaxPrepared(Prepared):
    def __init__(self, args: RNNArgs, device: str):
        super().__init__(args)
        self.device = _device(device)
        self.inputs = {name: self.from_numpy(value) for name, value in args.inputs().items()}
        self.mask = None
        if args.lengths is not None:
            steps = np.arange(args.T)[:, None, None]
            self.mask = self.from_numpy(steps < args.lengths[None, :, None])
        self._forward, self._forward_train, self._backward = compiled(args.cell,
                                                                      args.reset_after)
        self._pending = None        # the last result, which synchronize waits for

    def forward(self):
        self._pending = self._forward(self.inputs, self.mask)
        return self._pending

    def forward_train(self):
        outputs, vjp = self._forward_train(self.inputs, self.mask)
        if self.saved_bytes is None:
            self.saved_bytes = sum(leaf.nbytes for leaf in _jax().tree_util.tree_leaves(vjp))
        self._pending = outputs
        return outputs, vjp

    def backward(self, saved, upstream):
        grads = self._backward(saved, tuple(upstream))
        self._pending = {name: grads[name] for name in self.args.inputs()}   # contract order
        return self._pending

    def synchronize(self) -> None:
        if self._pending is not None:
            _jax().block_until_ready(self._pending)
            self._pending = None

    def from_numpy(self, array):
        return _jax().device_put(array, self.device)

    def to_numpy(self, result):
        return map_arrays(result, np.asarray)


def prepare(args: RNNArgs, device: str = "cpu") -> JaxPrepared:
    ok, why = availability(device)
    if not ok:
        raise BackendUnavailable(why)
    return JaxPrepared(args, device)


gru_forward, gru_backward, lstm_forward, lstm_backward = convenience_api(prepare)
