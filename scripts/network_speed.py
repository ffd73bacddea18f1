"""Networks on numba-cpu, timed outside the harness (float32, one process).

1. Bidirectional: the two directions at once (two threads, one each) against one after
   the other (each with both threads), one layer, inference and training, at
   100,1,256,256 and 100,16,256,256 (T,B,I,H).
2. A torch model, embedding -> 2-layer bidirectional GRU -> linear, forward+backward of
   the whole model with grubench.nn.GRU against torch.nn.GRU (same weights), B = 1 and
   B = 32, T = 100, 256 wide, at one thread.
3. grubench.nn.GRU's own cost (tensor conversion, autograd bookkeeping): the module's
   forward+backward against the network's on NumPy arrays, at 100,16,256,256.
4. Variable lengths (uniform in [T/2, T]) at 100,64,256,256, one layer, one thread:
   grubench.nn.GRU against torch.nn.GRU, both given the same PackedSequence, inference
   and training (forward+backward).
5. Stacked: 3 one-direction layers inferred as a wavefront (two threads, one each)
   against layer by layer (each layer with both threads), at 100,1,256,256 and
   100,16,256,256.

    nice -n 10 .venv/bin/python scripts/network_speed.py [--quick]

Prints medians (grubench.timing's statistics) of calls timed in alternation, with the
CPU; on a shared machine the figures are noisy, the ratios less so.
"""
from __future__ import annotations

import argparse
import concurrent.futures

import numba
import numpy as np
import torch
from torch.nn.utils.rnn import pack_padded_sequence

from grubench import machine, timing
from grubench.kernels import numba_cpu
from grubench.kernels.cells import NetworkSpec
from grubench.kernels.network import Network
from grubench.nn import GRU


def paired_ms(first, second, min_time) -> tuple[float, float]:
    """Median ms of ``first`` and of ``second``, timed in alternation (after a warm-up
    call of each) so that both see the same load on a shared machine."""
    first(), second()
    times = ([], [])
    while len(times[0]) < 7 or sum(times[0]) + sum(times[1]) < min_time:
        for call, samples in zip((first, second), times):
            samples.append(timing.time_call(call, lambda: None)[0])
    return tuple(timing.summarize(samples).median_s * 1e3 for samples in times)


@numba.njit(nogil=True, cache=False)
def _busy(n):
    total = 0.0
    for i in range(n):
        total += np.sin(i)
    return total


def cores_delivered() -> float:
    """How many cores two threads get now: the work of two nogil loops over the time the
    two take at once, in units of one loop alone (2.0 on two idle cores). A VM whose
    host takes the other core (steal time) or a loaded machine gives less, and the
    concurrency figures below can show no gain however the threads are used."""
    _busy(10)
    work = 20_000_000
    started = timing.time_call(lambda: _busy(work), lambda: None)[0]
    helper = concurrent.futures.ThreadPoolExecutor(1)
    at_once = timing.time_call(
        lambda: (helper.submit(_busy, work), _busy(work), helper.shutdown(wait=True)),
        lambda: None)[0]
    return 2 * started / at_once


def arrays(spec: NetworkSpec, T: int, B: int):
    rng = np.random.default_rng(0)
    params = {name: (0.1 * rng.standard_normal(shape)).astype(np.float32)
              for name, shape in spec.parameter_shapes().items()}
    x = rng.standard_normal((T, B, spec.input_size)).astype(np.float32)
    dy = rng.standard_normal((T, B, spec.output_size)).astype(np.float32)
    return params, x, dy


def training(network, x, params, dy):
    outputs, saved = network.forward_train(x, params)
    return network.backward(saved, dy)


def bidirectional(min_time):
    numba.set_num_threads(2)
    print("\n1. bidirectional GRU, 1 layer, numba-cpu float32, threads 2: directions at once "
          "vs one after the other")
    print("| T,B,I,H | mode | at once (ms) | in sequence (ms) | ratio |")
    print("|---|---|---|---|---|")
    for T, B, I, H in ((100, 1, 256, 256), (100, 16, 256, 256)):  # noqa: E741
        spec = NetworkSpec("gru", I, H, bidirectional=True)
        params, x, dy = arrays(spec, T, B)
        both = Network(numba_cpu, spec, threads=2)
        one_by_one = Network(numba_cpu, spec, threads=2, concurrent_directions=False)
        for mode, run in (("inference", lambda n: n.forward(x, params)),
                          ("training", lambda n: training(n, x, params, dy))):
            at_once, sequence = paired_ms(lambda: run(both), lambda: run(one_by_one),
                                          min_time)
            print(f"| {T},{B},{I},{H} | {mode} | {at_once:.2f} | {sequence:.2f} | "
                  f"{at_once / sequence:.2f} |")


def stacked(min_time):
    numba.set_num_threads(2)
    print("\n5. 3-layer GRU, one direction, numba-cpu float32, threads 2, inference: "
          "wavefront vs layer by layer")
    print("| T,B,I,H | wavefront (ms) | layer by layer (ms) | ratio |")
    print("|---|---|---|---|")
    for T, B, I, H in ((100, 1, 256, 256), (100, 16, 256, 256)):  # noqa: E741
        spec = NetworkSpec("gru", I, H, num_layers=3)
        params, x, _ = arrays(spec, T, B)
        overlapped = Network(numba_cpu, spec, threads=2)
        layer_by_layer = Network(numba_cpu, spec, threads=2, wavefront=False)
        wave, layers = paired_ms(lambda: overlapped.forward(x, params),
                                 lambda: layer_by_layer.forward(x, params), min_time)
        print(f"| {T},{B},{I},{H} | {wave:.2f} | {layers:.2f} | {wave / layers:.2f} |")


class Tagger(torch.nn.Module):
    """embedding -> 2-layer bidirectional GRU -> linear, per step."""

    def __init__(self, gru_class, vocabulary=1000, width=256, classes=10):
        super().__init__()
        self.embedding = torch.nn.Embedding(vocabulary, width)
        self.gru = gru_class(width, width, num_layers=2, bidirectional=True)
        self.linear = torch.nn.Linear(2 * width, classes)

    def forward(self, tokens):
        y, _ = self.gru(self.embedding(tokens))
        return self.linear(y)


def model(min_time):
    numba.set_num_threads(1)
    torch.set_num_threads(1)
    print("\n2. embedding -> 2-layer bidirectional GRU (256) -> linear, T = 100, float32, "
          "1 thread, forward+backward of the model")
    print("| B | grubench.nn.GRU (ms) | torch.nn.GRU (ms) | speedup |")
    print("|---|---|---|---|")
    for B in (1, 32):
        torch.manual_seed(0)
        theirs = Tagger(torch.nn.GRU)
        ours = Tagger(GRU)
        ours.load_state_dict(theirs.state_dict())
        tokens = torch.randint(1000, (100, B))
        labels = torch.randint(10, (100, B))

        def step(module):
            module.zero_grad()
            loss = torch.nn.functional.cross_entropy(module(tokens).reshape(-1, 10),
                                                     labels.reshape(-1))
            loss.backward()

        grubench_ms, torch_ms = paired_ms(lambda: step(ours), lambda: step(theirs), min_time)
        print(f"| {B} | {grubench_ms:.2f} | {torch_ms:.2f} | {torch_ms / grubench_ms:.2f}x |")


def overhead(min_time):
    numba.set_num_threads(1)
    torch.set_num_threads(1)
    T, B, I, H = 100, 16, 256, 256  # noqa: E741
    spec = NetworkSpec("gru", I, H)
    params, x, dy = arrays(spec, T, B)
    network = Network(numba_cpu, spec)
    module = GRU(I, H)
    module.load_state_dict({k: torch.from_numpy(v) for k, v in params.items()})
    x_tensor = torch.from_numpy(x).requires_grad_()
    dy_tensor = torch.from_numpy(dy)

    def module_step():
        y, _ = module(x_tensor)
        y.backward(dy_tensor)

    module_ms, network_ms = paired_ms(module_step, lambda: training(network, x, params, dy),
                                      min_time)
    print(f"\n3. grubench.nn.GRU at {T},{B},{I},{H}, float32, 1 thread, forward+backward: "
          f"module {module_ms:.2f} ms, network on arrays {network_ms:.2f} ms, overhead "
          f"{(module_ms / network_ms - 1) * 100:+.1f}% of the module's time")


def lengths(min_time):
    numba.set_num_threads(1)
    torch.set_num_threads(1)
    T, B, I, H = 100, 64, 256, 256  # noqa: E741
    torch.manual_seed(0)
    theirs = torch.nn.GRU(I, H)
    ours = GRU.from_torch(theirs)
    sequence_lengths = torch.randint(T // 2, T + 1, (B,))
    x = torch.randn(T, B, I, requires_grad=True)
    print(f"\n4. lengths uniform in [{T // 2}, {T}] at {T},{B},{I},{H}, float32, 1 thread, "
          f"PackedSequence (enforce_sorted=False) into both")
    print("| mode | grubench.nn.GRU (ms) | torch.nn.GRU (ms) | speedup |")
    print("|---|---|---|---|")

    def inference(module):
        with torch.no_grad():
            module(pack_padded_sequence(x, sequence_lengths, enforce_sorted=False))

    def train(module):
        y, h_n = module(pack_padded_sequence(x, sequence_lengths, enforce_sorted=False))
        (y.data.sum() + h_n.sum()).backward()

    for mode, run in (("inference", inference), ("training", train)):
        grubench_ms, torch_ms = paired_ms(lambda: run(ours), lambda: run(theirs), min_time)
        print(f"| {mode} | {grubench_ms:.2f} | {torch_ms:.2f} | "
              f"{torch_ms / grubench_ms:.2f}x |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="0.3 s of samples per figure")
    options = parser.parse_args()
    min_time = 0.3 if options.quick else 1.0
    print(f"CPU: {machine.cpu_model()}, {machine.isa_level()}; numba {numba.__version__}, "
          f"torch {torch.__version__}; git {machine.git_commit()}")
    print(f"two threads get {cores_delivered():.2f} cores now (2.00 on two idle cores)")
    bidirectional(min_time)
    model(min_time)
    overhead(min_time)
    lengths(min_time)
    stacked(min_time)


if __name__ == "__main__":
    main()
