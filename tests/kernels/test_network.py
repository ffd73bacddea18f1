"""Networks (stacked, bidirectional, variable lengths, dropout) over the single-layer
kernels, against torch.nn.GRU/LSTM: forward and every gradient, float64 on the NumPy
reference (FLOAT64) and float32 on numba-cpu (the float32 tolerances). The reset-before
GRU, which torch lacks, is checked against a per-sequence composition of reference calls
and by finite differences."""
import threading
import types

import numpy as np
import pytest

from grubench import tolerances
from grubench.kernels import numba_cpu, reference
from grubench.kernels.cells import NetworkSpec
from grubench.kernels.network import Network

torch = pytest.importorskip("torch")
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence  # noqa: E402

T, B, I, H = 5, 3, 4, 6     # noqa: E741
LENGTHS = np.array([5, 2, 4])

needs_numba = pytest.mark.skipif(not numba_cpu.availability()[0],
                                 reason=str(numba_cpu.availability()[1]))


def make_torch(spec: NetworkSpec, dtype, seed=0):
    torch.manual_seed(seed)
    module = getattr(torch.nn, spec.spec.torch_class)(
        spec.input_size, spec.hidden_size, num_layers=spec.num_layers, bias=spec.bias,
        batch_first=spec.batch_first, bidirectional=spec.bidirectional)
    return module.to(getattr(torch, np.dtype(dtype).name))


def make_inputs(spec: NetworkSpec, dtype, seed=1, lengths=None):
    """x in the spec's layout, h0 [, c0], dy, dh_n [, dc_n]; with ``lengths``, x and dy
    hold NaN in the padding (no result may read it)."""
    rng = np.random.default_rng(seed)
    x_shape = (B, T, spec.input_size) if spec.batch_first else (T, B, spec.input_size)
    y_shape = x_shape[:2] + (spec.output_size,)
    arrays = dict(x=rng.standard_normal(x_shape), dy=rng.standard_normal(y_shape))
    for state in spec.spec.states:
        arrays[f"{state}0"] = rng.standard_normal(spec.state_shape(B))
        arrays[f"d{state}_n"] = rng.standard_normal(spec.state_shape(B))
    if lengths is not None:
        for name in ("x", "dy"):
            arrays[name] = np.where(zero_padding_of(np.ones_like(arrays[name]), spec,
                                                    lengths) == 0, np.nan, arrays[name])
    return {name: value.astype(dtype) for name, value in arrays.items()}


def torch_step(module, spec, inputs, lengths):
    """torch's outputs and gradients (numpy, float64) of sum(y*dy) + sum(h_n*dh_n)
    [+ sum(c_n*dc_n)], lengths through pack_padded_sequence(enforce_sorted=False)."""
    tensors = {name: torch.tensor(value, requires_grad=name in ("x", "h0", "c0"))
               for name, value in inputs.items()}
    x = torch.nan_to_num(tensors["x"])
    state = ((tensors["h0"], tensors["c0"]) if spec.cell == "lstm" else tensors["h0"])
    if lengths is None:
        y, final = module(x, state)
    else:
        packed = pack_padded_sequence(x, torch.tensor(lengths), batch_first=spec.batch_first,
                                      enforce_sorted=False)
        y, final = module(packed, state)
        y, _ = pad_packed_sequence(y, batch_first=spec.batch_first, total_length=T)
    finals = final if spec.cell == "lstm" else (final,)
    dy = torch.nan_to_num(tensors["dy"]) if lengths is not None else tensors["dy"]
    if lengths is not None:     # torch's padded y is 0 and has no gradient there: mask dy
        steps = torch.arange(T)[None, :] if spec.batch_first else torch.arange(T)[:, None]
        inside = steps < (torch.tensor(lengths)[:, None] if spec.batch_first
                          else torch.tensor(lengths)[None, :])
        dy = dy * inside[..., None]
    loss = (y * dy).sum() + sum((s * tensors[f"d{n}_n"]).sum()
                                for s, n in zip(finals, spec.spec.states))
    module.zero_grad()
    loss.backward()
    outputs = (y,) + tuple(finals)
    grads = {name: tensors[name].grad for name in ("x", "h0", "c0") if name in tensors}
    grads.update({name: p.grad for name, p in module.named_parameters()})
    as_numpy = lambda t: t.detach().double().numpy()  # noqa: E731
    return [as_numpy(o) for o in outputs], {k: as_numpy(v) for k, v in grads.items()}


def params_of(module, dtype):
    return {name: p.detach().numpy().astype(dtype) for name, p in module.named_parameters()}


def network_step(backend, spec, inputs, params, lengths, **options):
    network = Network(backend, spec, **options)
    states = {name: inputs[name] for name in spec.spec.initial_states}
    outputs, saved = network.forward_train(inputs["x"], params, lengths=lengths, **states)
    upstream = {f"d{s}_n": inputs[f"d{s}_n"] for s in spec.spec.states}
    grads = network.backward(saved, inputs["dy"], **upstream)
    return outputs, grads


def zero_padding_of(y, spec, lengths):
    """y with the padding of ``lengths`` set to 0 (time axis per spec's layout)."""
    if lengths is None:
        return y
    steps = np.arange(T)
    inside = (steps[None, :] < lengths[:, None]) if spec.batch_first else \
        (steps[:, None] < lengths[None, :])
    return np.where(inside[..., None], y, 0)


def assert_matches(outputs, grads, want_outputs, want_grads, dtype, spec, lengths):
    forward = tolerances.forward_tolerance(dtype)
    gradient = tolerances.gradient_tolerance(dtype)
    names = ("y",) + tuple(f"{s}_n" for s in spec.spec.states)
    assert len(outputs) == len(want_outputs)
    for name, got, want in zip(names, outputs, want_outputs):
        assert got.dtype == dtype, name
        forward.assert_close(got, want, name)
    assert list(grads) == ["x", *spec.spec.initial_states, *spec.parameter_shapes()]
    for name, want in want_grads.items():
        got = grads[name]
        assert got.dtype == dtype, name
        if name == "x":     # torch leaves the padding's gradient 0; so do we
            want = zero_padding_of(want, spec, lengths)
        gradient.assert_close(got, want, f"gradient of {name}")


CASES = [(cell, layers, bidirectional, batch_first)
         for cell in ("gru", "lstm") for layers in (1, 2, 3)
         for bidirectional in (False, True) for batch_first in (False, True)]
BACKENDS = [pytest.param(reference, np.float64, id="numpy-float64"),
            pytest.param(numba_cpu, np.float32, id="numba-cpu-float32", marks=needs_numba)]


@pytest.mark.parametrize("backend, dtype", BACKENDS)
@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "lengths"])
@pytest.mark.parametrize("cell, layers, bidirectional, batch_first", CASES)
def test_network_matches_torch(backend, dtype, lengths, cell, layers, bidirectional,
                               batch_first):
    spec = NetworkSpec(cell, I, H, num_layers=layers, bidirectional=bidirectional,
                       batch_first=batch_first)
    module = make_torch(spec, np.float64)
    inputs = make_inputs(spec, np.float64, lengths=lengths)
    want = torch_step(module, spec, inputs, lengths)
    cast = {name: value.astype(dtype) for name, value in inputs.items()}
    got = network_step(backend, spec, cast, params_of(module, dtype), lengths)
    assert_matches(*got, *want, dtype, spec, lengths)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_bias_false_uses_zero_biases_and_returns_no_bias_gradients(cell):
    spec = NetworkSpec(cell, I, H, num_layers=2, bidirectional=True, bias=False)
    module = make_torch(spec, np.float64)
    inputs = make_inputs(spec, np.float64, lengths=LENGTHS)
    want = torch_step(module, spec, inputs, LENGTHS)
    got = network_step(reference, spec, inputs, params_of(module, np.float64), LENGTHS)
    assert not any(name.startswith("bias") for name in got[1])
    assert_matches(*got, *want, np.float64, spec, LENGTHS)


# ------------------------------------------------------------------ reset-before GRU

def composed_forward(spec, x, params, h0, lengths):
    """The network's y and h_n, sequence by sequence and layer by layer from the reference
    backend's single-layer gru_forward (reversing a sequence with np.flip), time-major."""
    y = np.zeros((T, B, spec.output_size))
    h_n = np.zeros(spec.state_shape(B))
    for b in range(B):
        layer_input = x[:lengths[b], b:b + 1]
        for layer in range(spec.num_layers):
            outputs = []
            for _layer, direction, suffix in [k for k in spec.layers() if k[0] == layer]:
                state = layer * spec.directions + direction
                source = np.flip(layer_input, 0) if direction else layer_input
                out, h = reference.gru_forward(
                    source, h0[state, b:b + 1], params[f"weight_ih{suffix}"],
                    params[f"weight_hh{suffix}"], params[f"bias_ih{suffix}"],
                    params[f"bias_hh{suffix}"], reset_after=False)
                outputs.append(np.flip(out, 0) if direction else out)
                h_n[state, b] = h[0]
            layer_input = np.concatenate(outputs, axis=2)
        y[:lengths[b], b] = layer_input[:, 0]
    return y, h_n


def reset_before_case(seed=0):
    spec = NetworkSpec("gru", I, H, num_layers=2, bidirectional=True)
    rng = np.random.default_rng(seed)
    params = {name: 0.5 * rng.standard_normal(shape)
              for name, shape in spec.parameter_shapes().items()}
    return spec, params, make_inputs(spec, np.float64, seed)


def test_reset_before_forward_matches_a_per_sequence_composition():
    spec, params, inputs = reset_before_case()
    y, h_n = Network(reference, spec, reset_after=False).forward(
        inputs["x"], params, inputs["h0"], lengths=LENGTHS)
    want_y, want_h_n = composed_forward(spec, inputs["x"], params, inputs["h0"], LENGTHS)
    tolerances.FLOAT64.assert_close(y, want_y, "y")
    tolerances.FLOAT64.assert_close(h_n, want_h_n, "h_n")


def loss_of(network, inputs, params, lengths, **options):
    y, h_n = network.forward(inputs["x"], params, inputs["h0"], lengths=lengths, **options)
    y = np.where(np.isnan(y), 0, y)
    return float((y * np.nan_to_num(inputs["dy"])).sum() + (h_n * inputs["dh_n"]).sum())


def assert_gradients_by_finite_differences(network, inputs, params, grads, lengths,
                                           names, **options):
    """Central differences of the loss on a few entries of each named array."""
    step = tolerances.FINITE_DIFFERENCE_STEP
    rng = np.random.default_rng(7)
    for name in names:
        array = inputs[name] if name in inputs else params[name]
        for flat in rng.choice(array.size, size=min(4, array.size), replace=False):
            index = np.unravel_index(flat, array.shape)
            if name == "x" and index[0] >= lengths[index[1]]:
                continue                                   # padding: no gradient
            saved = array[index]
            array[index] = saved + step
            up = loss_of(network, inputs, params, lengths, **options)
            array[index] = saved - step
            down = loss_of(network, inputs, params, lengths, **options)
            array[index] = saved
            tolerances.FINITE_DIFFERENCE.assert_close(
                grads[name][index], (up - down) / (2 * step), f"gradient of {name}{index}")


def test_reset_before_gradients_match_finite_differences():
    spec, params, inputs = reset_before_case()
    network = Network(reference, spec, reset_after=False)
    _, saved = network.forward_train(inputs["x"], params, inputs["h0"], lengths=LENGTHS)
    grads = network.backward(saved, inputs["dy"], inputs["dh_n"])
    assert_gradients_by_finite_differences(network, inputs, params, grads, LENGTHS,
                                           ["x", "h0", *params])


@needs_numba
def test_reset_before_float32_on_numba_matches_the_float64_reference_network():
    spec, params, inputs = reset_before_case()
    want = network_step(reference, spec, inputs, params, LENGTHS, reset_after=False)
    cast = lambda d: {k: v.astype(np.float32) for k, v in d.items()}  # noqa: E731
    got = network_step(numba_cpu, spec, cast(inputs), cast(params), LENGTHS,
                       reset_after=False)
    assert_matches(*got, *want, np.float32, spec, LENGTHS)


# ------------------------------------------------------------------ dropout

def test_dropout_masks_every_layer_but_the_last_with_torch_statistics():
    spec = NetworkSpec("gru", I, 16, num_layers=3, bidirectional=True)
    rng = np.random.default_rng(0)
    params = {n: 0.1 * rng.standard_normal(s) for n, s in spec.parameter_shapes().items()}
    x = rng.standard_normal((20, 25, I))
    network = Network(reference, spec, dropout=0.3)
    (_, saved), (_, again) = (network.forward_train(x, params, dropout_seed=seed)
                              for seed in (11, 11))
    assert saved.masks[-1] is None
    for mask, same in zip(saved.masks[:-1], again.masks[:-1]):
        assert set(np.unique(mask)) == {0.0, 1 / 0.7}
        assert abs((mask == 0).mean() - 0.3) < 0.02      # 16,000 draws: sd 0.0036
        np.testing.assert_array_equal(mask, same)        # one seed, one mask
    _, other = network.forward_train(x, params, dropout_seed=12)
    assert not np.array_equal(saved.masks[0], other.masks[0])
    _, evaluation = network.forward_train(x, params)     # no seed: evaluation, no dropout
    assert evaluation.masks == [None, None, None]


def test_dropout_zero_is_exact_and_one_drops_everything_between_layers():
    spec, params, inputs = reset_before_case()
    plain = Network(reference, spec).forward(inputs["x"], params, inputs["h0"])
    zero = Network(reference, spec, dropout=0.0).forward(inputs["x"], params, inputs["h0"],
                                                          dropout_seed=3)
    for got, want in zip(zero, plain):
        np.testing.assert_array_equal(got, want)
    _, saved = Network(reference, spec, dropout=1.0).forward_train(
        inputs["x"], params, inputs["h0"], dropout_seed=3)
    assert not saved.masks[0].any()


def test_dropout_gradients_match_finite_differences_under_a_fixed_seed():
    spec, params, inputs = reset_before_case()
    network = Network(reference, spec, dropout=0.5)
    _, saved = network.forward_train(inputs["x"], params, inputs["h0"], lengths=LENGTHS,
                                     dropout_seed=5)
    assert saved.masks[0] is not None and not saved.masks[0].all()
    grads = network.backward(saved, inputs["dy"], inputs["dh_n"])
    assert_gradients_by_finite_differences(network, inputs, params, grads, LENGTHS,
                                           ["x", "weight_ih_l0", "weight_hh_l0_reverse"],
                                           dropout_seed=5)


# ------------------------------------------------------------------ threads

@needs_numba
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_concurrent_directions_are_bit_identical_to_sequential(cell):
    spec = NetworkSpec(cell, 16, 128, num_layers=2, bidirectional=True)
    rng = np.random.default_rng(0)
    params = {n: (0.1 * rng.standard_normal(s)).astype(np.float32)
              for n, s in spec.parameter_shapes().items()}
    x = rng.standard_normal((6, 4, 16)).astype(np.float32)
    dy = rng.standard_normal((6, 4, 256)).astype(np.float32)
    lengths = np.array([6, 3, 5, 1])
    ran_in = set()

    def prepare(args):                  # records the thread each (layer, direction) runs in
        ran_in.add(threading.current_thread().name)
        return numba_cpu.prepare(args)

    spy = types.ModuleType(numba_cpu.__name__)     # numba-cpu as the network sees it
    spy.prepare = prepare
    results, threads_used = {}, {}
    for threads, at_once in ((1, True), (2, True), (2, False)):
        ran_in.clear()
        network = Network(spy, spec, threads=threads, concurrent_directions=at_once)
        outputs, saved = network.forward_train(x, params, lengths=lengths)
        results[threads, at_once] = (outputs, network.backward(saved, dy))
        threads_used[threads, at_once] = {name.split("_")[0] for name in ran_in}
    assert threads_used == {(1, True): {"MainThread"}, (2, False): {"MainThread"},
                            (2, True): {"MainThread", "network"}}
    sequential, concurrent = results[1, True], results[2, True]
    for got, want in zip(concurrent[0], sequential[0]):
        np.testing.assert_array_equal(got, want)
    for name, want in sequential[1].items():
        np.testing.assert_array_equal(concurrent[1][name], want, err_msg=name)


def steps_spy(ran_in: list, fail_in_layer_input_of=None):
    """numba-cpu as a network sees it, recording the thread each ``forward_steps`` piece
    runs in, and its layer's input size. Its second and third pieces (layer 0's second and layer 1's first, the
    first two a wavefront can run at once) wait for each other: run one after the
    other, they fail. With ``fail_in_layer_input_of`` (an input size), that layer's
    pieces fail."""
    meet = threading.Barrier(2, timeout=60)
    lock = threading.Lock()

    def prepare(args):
        prepared = numba_cpu.prepare(args)
        run_steps = prepared.forward_steps

        def forward_steps(*arguments):
            with lock:
                ran_in.append((threading.current_thread().name.split("_")[0], args.I))
                piece = len(ran_in)
            if piece in (2, 3):
                meet.wait()
            if args.I == fail_in_layer_input_of:
                raise FloatingPointError("planted")
            return run_steps(*arguments)

        prepared.forward_steps = forward_steps
        return prepared

    spy = types.ModuleType(numba_cpu.__name__)
    spy.prepare = prepare
    return spy


@needs_numba
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_a_stack_infers_as_a_wavefront_bit_identical_to_layer_by_layer(cell):
    spec = NetworkSpec(cell, 16, 40, num_layers=3, batch_first=True)
    rng = np.random.default_rng(0)
    params = {n: (0.3 * rng.standard_normal(s)).astype(np.float32)
              for n, s in spec.parameter_shapes().items()}
    x = rng.standard_normal((5, 7, 16)).astype(np.float32)      # (B, T, I)
    lengths = np.array([7, 0, 3, 6, 1])
    options = dict(lengths=lengths, dropout_seed=3)     # inference with dropout masks
    ran_in = []
    wavefront = Network(steps_spy(ran_in), spec, threads=2, dropout=0.4).forward(
        x, params, **options)
    # 3 layers x min(T, 2 * 3) pieces, shared by the caller and the second thread
    assert len(ran_in) == 18
    assert {thread for thread, _ in ran_in[1:3]} == {"MainThread", "network"}
    for threads, at_once in ((2, False), (1, True)):
        want = Network(numba_cpu, spec, threads=threads, dropout=0.4,
                       wavefront=at_once).forward(x, params, **options)
        for got, expected in zip(wavefront, want, strict=True):
            np.testing.assert_array_equal(got, expected)


@needs_numba
def test_a_failing_wavefront_piece_raises_its_error_and_stops_both_threads():
    spec = NetworkSpec("gru", 8, 12, num_layers=3)
    params = {n: np.zeros(s, np.float32) for n, s in spec.parameter_shapes().items()}
    ran_in = []
    network = Network(steps_spy(ran_in, fail_in_layer_input_of=12), spec, threads=2)
    with pytest.raises(FloatingPointError, match="planted"):
        network.forward(np.zeros((9, 2, 8), np.float32), params)
    # the failing piece, and no piece of a layer after it (layer 0 may finish its own)
    assert [size for _, size in ran_in].count(12) == 1


# ------------------------------------------------------------------ bad input

def good_call(cell="gru"):
    spec = NetworkSpec(cell, I, H, num_layers=2, bidirectional=True, batch_first=True)
    params = {n: np.zeros(s) for n, s in spec.parameter_shapes().items()}
    return spec, params, np.zeros((B, T, I)), np.zeros(spec.state_shape(B))


@pytest.mark.parametrize("change, error, message", [
    (lambda c: c.update(x=np.zeros((T, B, I + 1))), ValueError,
     r"x has shape \(5, 3, 5\); expected \(B, T, I\) with I = input_size = 4"),
    (lambda c: c.update(h0=np.zeros((2, B, H))), ValueError,
     r"h0 has shape \(2, 3, 6\); expected \(4, 3, 6\) \(num_layers\*directions, B, H\)"),
    (lambda c: c.update(h0=np.zeros((B, H))), ValueError,
     r"h0 has shape \(3, 6\); expected \(4, 3, 6\)"),
    (lambda c: c["params"].update(weight_hh_l1=np.zeros((3 * H, H + 1))), ValueError,
     r"weight_hh_l1 has shape \(18, 7\); expected \(18, 6\)"),
    (lambda c: c["params"].pop("bias_ih_l1_reverse"), ValueError,
     r"missing \['bias_ih_l1_reverse'\]"),
    (lambda c: c["params"].update(weight_ih_l2=np.zeros(1)), ValueError,
     r"unexpected \['weight_ih_l2'\]"),
    (lambda c: c.update(x=np.zeros((B, T, I), np.float32)), TypeError,
     r"weight_ih_l0 has dtype float64; x has float32"),
    (lambda c: c.update(lengths=np.array([5, 6, 1])), ValueError,
     r"lengths must lie in \[0, T=5\]"),
    (lambda c: c.update(lengths=np.array([5, 1])), ValueError,
     r"lengths has shape \(2,\); expected \(3,\)"),
    (lambda c: c.update(c0=np.zeros((4, B, H))), TypeError, r"c0 is an LSTM state"),
])
def test_bad_arguments_are_named_before_any_kernel_runs(change, error, message):
    spec, params, x, h0 = good_call()
    call = dict(x=x, params=params, h0=h0)
    change(call)

    class NoKernel:
        @staticmethod
        def prepare(args):
            raise AssertionError("a kernel ran on a bad call")

    with pytest.raises(error, match=message):
        Network(NoKernel, spec).forward(**call)


def test_bad_upstream_gradients_and_options_are_named():
    spec, params, x, h0 = good_call("lstm")
    network = Network(reference, spec)
    _, saved = network.forward_train(x, params, h0, h0)
    with pytest.raises(ValueError, match=r"dy has shape \(5, 3, 12\); expected \(3, 5, 12\)"):
        network.backward(saved, np.zeros((T, B, 2 * H)))
    with pytest.raises(ValueError, match=r"dc_n has shape \(3, 6\); expected \(4, 3, 6\)"):
        network.backward(saved, dc_n=np.zeros((B, H)))
    with pytest.raises(ValueError, match="reset_after=False is a GRU variant"):
        Network(reference, spec, reset_after=False)
    with pytest.raises(ValueError, match=r"dropout must be a number in \[0, 1\], got 1.5"):
        Network(reference, spec, dropout=1.5)
    with pytest.raises(TypeError, match="backend must have a prepare"):
        Network("numpy", spec)


def test_networks_import_without_torch_or_numba():
    """torch is optional for all of grubench but grubench.nn; numba loads with numba-cpu."""
    import subprocess
    import sys
    code = ("import sys, grubench.kernels.network; "
            "print(sorted(m for m in ('torch', 'numba') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "[]"
