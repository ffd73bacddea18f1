"""pytest-benchmark runs every backend in this one process, so pin every thread pool to
one thread before torch or numba load (pools spinning against each other on a small
machine distort timings 20x; grubench's own harness uses one process per backend)."""
import os

from grubench.threads import pin_threads, thread_env

os.environ.update(thread_env(int(os.environ.get("GRUBENCH_BENCH_THREADS", "1"))))


def pytest_collection_finish(session):
    pin_threads(int(os.environ["OMP_NUM_THREADS"]))
