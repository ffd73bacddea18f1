"""Compile every numba-cuda kernel of grubench to PTX for a GPU that is not here.

The CUDA simulator runs kernels as Python, so it never types or lowers them: a kernel that
the simulator runs correctly can still fail to compile on a GPU (a shared array shaped by
an expression, a float32 kernel silently promoted to float64, ...). This script compiles
each kernel, for float32 and float64 and every compile-time variant, with NVVM only (no
driver, no GPU), and checks that the float32 kernels contain no float64 arithmetic.

    python scripts/check_ptx.py [--cc 9.0] [--dtype float32]

Needs numba-cuda and NVVM/NVRTC (the ``cuda-ptx`` extra). Exit status 0: all compiled;
1: some failed (listed); 77: numba-cuda or NVVM is not installed (nothing checked).
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys

import numpy as np

os.environ["NUMBA_ENABLE_CUDASIM"] = "0"      # compile for real, before numba.cuda loads

from numba import cuda, types  # noqa: E402

from grubench.kernels import cuda_matmul, numba_cuda  # noqa: E402
from grubench.kernels.cells import CELLS  # noqa: E402
from grubench.kernels.cuda_matmul import Tile  # noqa: E402

NO_NVVM = 77


def any_layout(dtype, ndim):
    return types.Array(dtype, ndim, "A")


def kernels_with_signatures(np_dtype: np.dtype):
    """(name, dispatcher, argument types) for every kernel and variant in one dtype."""
    dt = types.float32 if np_dtype == np.float32 else types.float64
    m1, m2, m3 = (any_layout(dt, n) for n in (1, 2, 3))
    step, lengths = types.int64, any_layout(types.int64, 1)
    # the flag combinations the backend uses: x @ w.T + b; dgates @ w (+= or =); dgates.T @ x
    for trans_a, trans_b, accumulate, bias in [(False, True, False, True),
                                               (False, False, True, False),
                                               (False, False, False, False),
                                               (True, False, False, False)]:
        yield (f"matmul ta={trans_a} tb={trans_b} acc={accumulate} bias={bias}",
               cuda_matmul.matmul_kernel(np_dtype, trans_a, trans_b, accumulate, bias,
                                         Tile()), (m2, m2, m2, m1))
    for accumulate in (False, True):
        yield (f"column_sum acc={accumulate}", cuda_matmul.column_sum_kernel(accumulate),
               (m2, m1))
    for reset_after in (True, False):
        for save in (True, False):
            gru, gru_reset, lstm = numba_cuda.step_kernels(np_dtype, reset_after, save)
            tag = f"reset_after={reset_after} save={save}"
            yield f"gru_step {tag}", gru, (step, m2, m2, lengths, m2, m2, m2, m2)
            yield f"gru_reset_step {tag}", gru_reset, (m2,) * 4
            yield f"lstm_step {tag}", lstm, (step, m2, m2, lengths) + (m2,) * 6
            for cell in CELLS:
                yield (f"persistent {cell} {tag}",
                       numba_cuda.persistent_kernel(np_dtype, cell, reset_after, save, 3, 2,
                                                    8, 64, 4),
                       (step, m3, m2, m1, lengths, m3, m3, m3, m3, m3))
        gru_back, gru_back_reset, lstm_back = numba_cuda.backward_kernels(np_dtype, reset_after)
        yield (f"gru_back_step reset_after={reset_after}", gru_back,
               (step, m2, m2, lengths, m2, m2, m2, m2, m2))
        yield f"gru_back_reset_step reset_after={reset_after}", gru_back_reset, (m2,) * 6
        yield (f"lstm_back_step reset_after={reset_after}", lstm_back,
               (step, m2, m2, m2, lengths) + (m2,) * 6)


def pretend_device(cc: tuple[int, int]) -> None:
    """Calls to device functions ask the current device for its compute capability;
    without a GPU, answer with the target's."""
    import numba.cuda.dispatcher as dispatcher

    class Target:
        compute_capability = cc

    dispatcher.get_current_device = lambda: Target()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cc", default="9.0", help="compute capability (default 9.0, H100)")
    parser.add_argument("--dtype", choices=["float32", "float64"], action="append",
                        help="check only this dtype (repeatable; default both)")
    options = parser.parse_args(argv)
    cc = tuple(int(part) for part in options.cc.split("."))
    if importlib.util.find_spec("numba_cuda") is None:
        # numba's own numba.cuda may find a system NVVM but lowers cooperative grid groups
        # differently; the GPU path is numba-cuda's, so only its compile is meaningful.
        print("numba-cuda is not installed (the cuda-ptx extra), nothing checked")
        return NO_NVVM
    if cuda.is_available():
        print("a GPU is present: compiling for it instead of pretending")
    else:
        pretend_device(cc)
    failures, compiled = [], 0
    for np_dtype in map(np.dtype, options.dtype or ["float32", "float64"]):
        for name, kernel, signature in kernels_with_signatures(np_dtype):
            label = f"{name} [{np_dtype}]"
            try:
                ptx, _ = cuda.compile_ptx(kernel.py_func, signature, cc=cc)
            except Exception as error:
                text = f"{type(error).__name__}: {error}"
                if "nvvm" in text.lower() or "DynamicLibNotFound" in text:
                    print(f"NVVM is not available, nothing checked: {text.splitlines()[0]}")
                    return NO_NVVM
                failures.append(f"{label}: {text}")
                continue
            compiled += 1
            if np_dtype == np.float32 and ".f64" in ptx:
                failures.append(f"{label}: float64 arithmetic in a float32 kernel "
                                f"({ptx.count('.f64')} .f64 instructions)")
    for failure in failures:
        print("FAIL", failure[:2000])
    print(f"{compiled} kernels compiled to PTX for sm_{cc[0]}{cc[1]}; {len(failures)} problems")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
