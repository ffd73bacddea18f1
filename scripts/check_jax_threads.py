"""How many threads does JAX's CPU backend really use? Runs a GRU training step
(T,B,I,H = 50,64,512,512) five times and prints, for the environment it was started with,
CPU time / wall time and the CPU ticks of the busiest threads of this process.

    PJRT_NPROC=1 python scripts/check_jax_threads.py
    XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1" \
        python scripts/check_jax_threads.py

docs/peers.md has the figures; grubench.threads.thread_env sets PJRT_NPROC for workers.
"""
import os
import resource
import time

from grubench.kernels import jax as jax_backend
from grubench.case import Case


def thread_ticks() -> dict[str, int]:
    """user + system clock ticks of each thread of this process, by thread id."""
    ticks = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:         # the thread ended meanwhile
            continue
        ticks[tid] = int(fields[11]) + int(fields[12])
    return ticks


def main() -> None:
    prepared = jax_backend.prepare(Case("gru", 50, 64, 512, 512, mode="training").make_args())
    prepared.training_step()
    prepared.synchronize()                  # compiled
    before, usage = thread_ticks(), resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    for _ in range(5):
        prepared.training_step()
        prepared.synchronize()
    wall = time.perf_counter() - start
    after, used = thread_ticks(), resource.getrusage(resource.RUSAGE_SELF)
    cpu = used.ru_utime - usage.ru_utime + used.ru_stime - usage.ru_stime
    busiest = sorted((after[t] - before.get(t, 0) for t in after), reverse=True)[:3]
    setting = {k: os.environ[k] for k in ("PJRT_NPROC", "XLA_FLAGS") if k in os.environ}
    print(f"{setting or 'no setting'}: {wall / 5 * 1e3:.0f} ms per step, CPU time / wall "
          f"time {cpu / wall:.2f}, ticks of the busiest threads {busiest}")


if __name__ == "__main__":
    main()
