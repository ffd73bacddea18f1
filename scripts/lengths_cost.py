"""The cost of ``lengths`` for numba-cpu GRUs, timed interleaved: each case with lengths = T
for every sequence (the same work as none, so what is timed is the masking) against the same
case without, in alternating blocks in one pinned process, so the machine's drift weighs on
both alike (sequential pytest-benchmark rounds of the two moved by up to 13% between runs).

    python scripts/lengths_cost.py --threads 1 > lengths-cost.md

Prints a markdown table: the median of the per-pair ratios (lengths / none), as a cost.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DEFAULT_SIZES = ["100,1,64,64", "100,1,256,256", "25,1,512,512", "64,32,32,64",
                 "100,16,256,256", "100,64,512,512", "50,64,1024,1024"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--size", action="append", help="T,B,I,H (default: DEFAULT_SIZES)")
    parser.add_argument("--pairs", type=int, default=21)
    options = parser.parse_args()

    from grubench.threads import thread_env
    os.environ.update(thread_env(options.threads))   # before numba and BLAS load
    import numpy as np

    from grubench.kernels import numba_cpu
    from grubench.case import Case
    from grubench.timing import interleaved_ratios
    from grubench.threads import pin_threads

    pin_threads(options.threads)
    print(f"numba-cpu GRU (reset_after), float32, {options.threads} thread(s), "
          f"{options.pairs} interleaved pairs per case\n")
    print("| mode | T,B,I,H | median, no lengths (ms) | lengths / none | cost |")
    print("|---|---|---:|---:|---:|")
    for size in options.size or DEFAULT_SIZES:
        T, B, I, H = map(int, size.split(","))
        plain = Case("gru", T, B, I, H, mode="training").make_args(seed=0)
        masked = dataclasses.replace(plain, lengths=np.full(B, T, np.int64))
        for mode in ("inference", "training"):
            runs = []
            for args in (plain, masked):
                prepared = numba_cpu.prepare(args)
                runs.append(prepared.forward if mode == "inference" else prepared.training_step)
                runs[-1]()                           # compile and warm outside the pairs
            ratio = statistics.median(interleaved_ratios(runs[1], runs[0], options.pairs))
            plain_ms = statistics.median(timeit.repeat(runs[0], number=1, repeat=5)) * 1e3
            print(f"| {mode} | {size} | {plain_ms:.3g} | {ratio:.3f} | "
                  f"{(ratio - 1) * 100:+.1f}% |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
