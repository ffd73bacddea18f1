"""Thread pinning."""
import subprocess
import sys

import pytest

from grubench import threads


def test_thread_env_sets_every_pool_and_passive_waiting():
    env = threads.thread_env(2)
    for name in threads.THREAD_ENV_VARS:
        assert env[name] == "2"
    assert env["OMP_WAIT_POLICY"] == "PASSIVE"


def test_pin_threads_sets_loaded_pools_in_a_fresh_process():
    code = ("import torch, numba; from grubench.threads import pin_threads, pinned_threads;"
            "before = pinned_threads(); p = pin_threads(1);"
            "print(p['torch'], p['numba'], before, pinned_threads())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["1", "1", "None", "1"]   # pinned_threads: for pools made later (ORT)


def test_pin_threads_refuses_zero():
    with pytest.raises(ValueError, match="threads must be >= 1"):
        threads.pin_threads(0)
