"""numba-cpu's two per-step product paths side by side: its own tiles and MKL's packed GEMM,
on the same prepared arrays, timed in alternation (grubench.timing), one thread.

    python scripts/product_paths.py > reports/cpu/tuning/product-paths.md
    python scripts/product_paths.py --isa avx2 > reports/cpu/tuning/product-paths-avx2.md

With --isa the script starts itself again under that restriction (numba reads its target
when it loads)."""
from __future__ import annotations

import argparse
import os
import subprocess
import sys

SIZES = ((60, 32, 384, 384), (100, 1, 256, 256), (25, 1, 512, 512), (64, 32, 32, 64),
         (100, 16, 256, 256))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--isa", default="native")
    parser.add_argument("--rounds", type=int, default=3, help="alternations per case")
    options = parser.parse_args()
    from grubench import isa
    if options.isa != isa.NATIVE and os.environ.get(isa.ISA_ENV) != options.isa:
        env = isa.worker_env(options.isa, os.environ)
        return subprocess.call([sys.executable, *sys.argv], env=env)

    import numpy as np

    from grubench import machine, timing
    from grubench.case import Case
    from grubench.kernels import numba_cpu
    from grubench.threads import pin_threads

    pin_threads(1)
    print(f"# numba-cpu per-step products: tiles vs MKL's packed GEMM\n\n"
          f"{machine.short_name(machine.context())}; {isa.code_paths() if options.isa != 'native' else 'native code paths'}; "
          f"1 thread, float32, median of {options.rounds} alternations (each >= 0.2 s).\n")
    print("| cell, mode | T,B,I,H | tiles ms | mkl ms | mkl / tiles |\n|---|---|---|---|---|")
    for cell in ("gru", "lstm"):
        for mode in ("inference", "training"):
            for size in SIZES:
                args = Case(cell, *size, mode=mode).make_args(seed=0)
                if "mkl" not in numba_cpu.usable_products(args):
                    print(f"| {cell} {mode} | {','.join(map(str, size))} | - | - | "
                          f"{numba_cpu.why_not_mkl(args)} |")
                    continue
                calls = {}
                for product in ("tiles", "mkl"):
                    prepared = numba_cpu.prepare(args, product)
                    calls[product] = (prepared.training_step if args.has_grads
                                      else prepared.forward)
                    calls[product]()
                medians = {p: [] for p in calls}
                for _ in range(options.rounds):
                    for product, call in calls.items():
                        samples = timing.measure(call, lambda: None, min_runs=3, min_time=0.2)
                        medians[product].append(timing.summarize(samples).median_s)
                tiles, mkl = (float(np.median(medians[p])) * 1e3 for p in ("tiles", "mkl"))
                print(f"| {cell} {mode} | {','.join(map(str, size))} | {tiles:.2f} | "
                      f"{mkl:.2f} | {mkl / tiles:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
