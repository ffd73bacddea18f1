"""The per-step products on MKL's packed GEMM, the second product path beside the tiles.

MKL's ``cblas_?gemm_pack`` lays the recurrent weights out once per prepared run (MKL
introduced it for RNNs; oneDNN's RNN primitives work the same way) and
``cblas_?gemm_compute`` runs every step's product on them. MKL comes from the optional
``mkl`` package (its libmkl_rt), runs on its sequential layer (the team's workers are the
threads), and is loaded with its symbols kept local, so its ``cblas_*`` never shadow the
OpenBLAS numba calls. The compute function's address is a run-time argument of the
kernels: a cached kernel holds no pointer of the process that compiled it.

Each dot product is summed in order with FMA, as the tiles sum it, so both paths give the
same bits (a test checks it); which one is faster depends on the core, which the tuning
measures (grubench.tuning).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import glob
import os
import sys

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from .jit import JIT, cached_njit
from .team import CACHE_LINE, aligned_empty

ROW_MAJOR, NO_TRANS, TRANS, PACKED, B_MATRIX = 101, 111, 112, 151, 162   # CBLAS's enums
THREADING_SEQUENTIAL = 1


@functools.cache
def library() -> tuple[ctypes.CDLL | None, str | None]:
    """MKL's single dynamic library (the ``mkl`` package's, in this environment's lib
    folder, or one on the loader's path) on its sequential layer, or None and why not."""
    found = sorted(glob.glob(os.path.join(sys.prefix, "lib", "libmkl_rt.so*")))
    path = found[0] if found else ctypes.util.find_library("mkl_rt")
    if path is None:
        return None, "MKL is not installed (pip install mkl, or grubench's mkl extra)"
    try:
        mkl = ctypes.CDLL(path)
        mkl.MKL_Set_Threading_Layer.argtypes = [ctypes.c_int]
        mkl.MKL_Set_Threading_Layer(THREADING_SEQUENTIAL)
        for prefix, real in (("s", ctypes.c_float), ("d", ctypes.c_double)):
            size = getattr(mkl, f"cblas_{prefix}gemm_pack_get_size")
            size.restype, size.argtypes = ctypes.c_size_t, [ctypes.c_int] * 4
            pack = getattr(mkl, f"cblas_{prefix}gemm_pack")
            pack.restype = None
            pack.argtypes = [ctypes.c_int] * 6 + [real, ctypes.c_void_p, ctypes.c_int,
                                                  ctypes.c_void_p]
    except (OSError, AttributeError) as error:
        return None, f"MKL at {path} cannot be used: {error}"
    return mkl, None


def _prefix(dtype) -> str:
    return "s" if np.dtype(dtype) == np.float32 else "d"


def compute_address(dtype) -> int:
    """The address of cblas_?gemm_compute for ``dtype``, for :func:`packed_product`."""
    function = getattr(library()[0], f"cblas_{_prefix(dtype)}gemm_compute")
    return ctypes.cast(function, ctypes.c_void_p).value


def packed_weights(w: np.ndarray, rows: list[int]) -> np.ndarray:
    """W (n, k) packed by MKL once per worker of a team, as the B operand of that worker's
    products a (rows[worker], k) @ W.T: (workers, size). MKL's packed data may not move
    once made, so each worker's is packed where it stays."""
    mkl = library()[0]
    n, k = w.shape
    prefix = _prefix(w.dtype)
    size_of = getattr(mkl, f"cblas_{prefix}gemm_pack_get_size")
    size = max(size_of(B_MATRIX, m, n, k) for m in rows)
    w = np.ascontiguousarray(w)
    packed = aligned_empty((len(rows), -(-size // CACHE_LINE) * CACHE_LINE // w.itemsize),
                           w.dtype)
    for worker, m in enumerate(rows):
        getattr(mkl, f"cblas_{prefix}gemm_pack")(ROW_MAJOR, B_MATRIX, TRANS, m, n, k, 1.0,
                                                 w.ctypes.data, k, packed[worker].ctypes.data)
    return packed


@intrinsic
def _gemm_compute(typingctx, address, m, n, k, a, lda, packed, c, ldc):
    """c (m,n) = a (m,k) @ B with B packed by :func:`packed_weights` (row major, beta 0),
    through cblas_?gemm_compute at ``address``."""
    sig = types.void(address, m, n, k, a, lda, packed, c, ldc)
    dtype = c.dtype

    def codegen(context, builder, signature, args):
        int32 = ir.IntType(32)
        void_p = ir.IntType(8).as_pointer()
        real = context.get_value_type(dtype)
        fnty = ir.FunctionType(ir.VoidType(), [int32] * 6 + [void_p, int32, void_p, int32,
                                                             real, void_p, int32])
        function = builder.inttoptr(args[0], fnty.as_pointer())
        argtys = signature.args

        def integer(i):
            return builder.trunc(context.cast(builder, args[i], argtys[i], types.int64), int32)

        def data(i):
            return builder.bitcast(context.make_array(argtys[i])(context, builder, args[i]).data,
                                   void_p)

        def constant(value):
            return ir.Constant(int32, value)

        # ldb (the n passed again) is unused for a packed B
        builder.call(function, [constant(ROW_MAJOR), constant(NO_TRANS), constant(PACKED),
                                integer(1), integer(2), integer(3), data(4), integer(5),
                                data(6), integer(2), ir.Constant(real, 0.0), data(7),
                                integer(8)])
        return context.get_dummy_value()

    return sig, codegen


@cached_njit(**JIT)
def packed_product(address, a, packed, n, out):
    """out[:, :n] = a @ W.T with W (n, k) packed by :func:`packed_weights` for a's row
    count, through MKL at ``address``. a (m,k) and out (m,>=n) with contiguous rows."""
    m, k = a.shape
    if a.strides[1] != a.itemsize or out.strides[1] != out.itemsize \
            or out.shape[0] != m or out.shape[1] < n:
        raise ValueError("packed_product: operands out of bounds")
    if m > 0:
        _gemm_compute(address, m, n, k, a, a.strides[0] // a.itemsize, packed, out,
                      out.strides[0] // out.itemsize)
