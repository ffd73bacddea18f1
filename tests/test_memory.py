"""Memory counters: each sees the allocations of the library it is chosen for."""
import sys

import numpy as np
import pytest
import torch

from grubench import memory

MIB = 2 ** 20


def test_no_counter_gives_no_peak():
    assert memory.peak_bytes(lambda: None, "none") is None


def test_tracemalloc_sees_a_numpy_allocation():
    peak = memory.peak_bytes(lambda: np.ones(4 * MIB, dtype=np.uint8), "tracemalloc")
    assert 4 * MIB <= peak < 5 * MIB


def test_torch_profiler_sees_a_torch_allocation_that_tracemalloc_misses():
    def allocate():
        return torch.ones(4 * MIB, dtype=torch.uint8)

    assert 4 * MIB <= memory.peak_bytes(allocate, "torch-profiler") < 5 * MIB
    assert memory.peak_bytes(allocate, "tracemalloc") < MIB


def test_peak_is_the_high_water_mark_not_the_end_state():
    def temporary():
        scratch = torch.ones(8 * MIB, dtype=torch.uint8)
        del scratch
        return torch.ones(MIB, dtype=torch.uint8)

    assert memory.peak_bytes(temporary, "torch-profiler") >= 8 * MIB


def test_rss_is_at_least_the_arrays_this_process_holds():
    held = np.ones(16 * MIB, dtype=np.uint8)
    assert memory.rss_bytes() >= held.nbytes


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux's /proc counters")
def test_rss_counter_sees_what_tracemalloc_misses_and_its_peak():
    """The peak-RSS counter (ONNX Runtime, JAX) counts pages whichever allocator asks for
    them, and the high-water mark of a temporary freed before the call returns."""
    def allocate():
        return torch.ones(16 * MIB, dtype=torch.uint8)

    def temporary():
        scratch = torch.ones(32 * MIB, dtype=torch.uint8)
        del scratch
        return torch.ones(MIB, dtype=torch.uint8)

    assert memory.peak_bytes(allocate, "tracemalloc") < MIB
    # page-granular, less what the process returns to the system during the call
    assert 15 * MIB <= memory.peak_bytes(allocate, "rss") < 20 * MIB
    assert memory.peak_bytes(temporary, "rss") >= 30 * MIB
    assert memory.peak_bytes(lambda: None, "rss") < 4 * MIB


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_allocator_peak():
    peak = memory.peak_bytes(lambda: torch.ones(4 * MIB, dtype=torch.uint8, device="cuda"),
                             "torch-cuda-allocator")
    assert 4 * MIB <= peak < 5 * MIB
