"""The BLAS numba already links (SciPy's OpenBLAS), called from compiled code through
numba's own ``numba_xxgemm`` helper (the one np.dot uses) on transposed views and column
blocks, with no copy; and the host-side control that keeps it on one thread."""
from __future__ import annotations

import ctypes
import functools
import itertools

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic
from numba.np.linalg import ensure_blas, get_blas_kind

from .jit import JIT, cached_njit


@intrinsic
def _xxgemm(typingctx, transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    """Column-major BLAS ?gemm through numba's own helper (the BLAS np.dot uses)."""
    ensure_blas()
    sig = types.int32(transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
    dtype = c.dtype
    char = ir.IntType(8)
    void_p = char.as_pointer()
    intp = cgutils.intp_t

    def codegen(context, builder, signature, args):
        fnty = ir.FunctionType(ir.IntType(32), [char, char, char, intp, intp, intp,
                                                void_p, void_p, intp, void_p, intp,
                                                void_p, void_p, intp])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "numba_xxgemm")
        argtys = signature.args

        def integer(i):
            return context.cast(builder, args[i], argtys[i], types.intp)

        def scalar_slot(i):
            value = context.cast(builder, args[i], argtys[i], dtype)
            return builder.bitcast(cgutils.alloca_once_value(builder, value), void_p)

        def data(i):
            array = context.make_array(argtys[i])(context, builder, args[i])
            return builder.bitcast(array.data, void_p)

        def char_of(i):
            return builder.trunc(integer(i), char)

        kind = ir.Constant(char, ord(get_blas_kind(dtype)))
        return builder.call(fn, [kind, char_of(0), char_of(1), integer(2), integer(3),
                                 integer(4), scalar_slot(5), data(6), integer(7),
                                 data(8), integer(9), scalar_slot(10), data(11),
                                 integer(12)])

    return sig, codegen


@cached_njit(**JIT)
def _blas_operand(matrix):
    """(transpose flag, leading dimension) of a row-major (rows, cols) operand as BLAS's
    column-major (cols, rows) matrix: rows contiguous -> 'n', columns contiguous -> 't'."""
    rows, cols = matrix.shape
    step0 = matrix.strides[0] // matrix.itemsize
    step1 = matrix.strides[1] // matrix.itemsize
    if step1 == 1 or cols == 1:
        return ord("n"), (step0 if rows > 1 else cols)
    if step0 == 1 or rows == 1:
        return ord("t"), (step1 if cols > 1 else rows)
    raise ValueError("gemm: an operand has neither contiguous rows nor columns")


@cached_njit(**JIT)
def gemm(a, b, c, beta):
    """c = a @ b + beta * c (beta 0 overwrites c). a (m,k), b (k,n), c (m,n); a and b
    may be transposed views or column blocks (rows or columns contiguous), c needs
    contiguous rows."""
    m, k = a.shape
    n = b.shape[1]
    if b.shape[0] != k or c.shape[0] != m or c.shape[1] != n:
        raise ValueError("gemm: shapes do not match")
    if m == 0 or n == 0:
        return
    if k == 0:
        for i in range(m):
            for j in range(n):
                c[i, j] = beta * c[i, j] if beta != 0 else 0
        return
    c_trans, ldc = _blas_operand(c)
    if c_trans != ord("n"):
        raise ValueError("gemm: the output needs contiguous rows")
    # Row-major c = a @ b is column-major c^T = b^T a^T.
    trans_b, ldb = _blas_operand(b)
    trans_a, lda = _blas_operand(a)
    status = _xxgemm(trans_b, trans_a, n, m, k, 1.0, b, ldb, a, lda, beta, c, ldc)
    if status != 0:
        raise RuntimeError("gemm: the BLAS call failed")


@functools.cache
def _numba_blas():
    """threadpoolctl's handle on the OpenBLAS numba calls (SciPy's), or None if unknown."""
    import scipy.linalg.cython_blas  # noqa: F401 - loads the library numba calls
    from threadpoolctl import ThreadpoolController
    for library in ThreadpoolController().lib_controllers:
        if library.internal_api == "openblas" and "scipy.libs" in library.filepath:
            return library
    return None


@functools.cache
def _numba_blas_thread_count():
    """The OpenBLAS numba calls' own openblas_get_num_threads, as a ctypes function, or
    None. Every run asks it, and threadpoolctl's getter costs a noticeable part of a small
    run."""
    blas = _numba_blas()
    if blas is None:
        return None
    library = ctypes.CDLL(blas.filepath)
    for prefix, suffix in itertools.product(("", "scipy_"), ("", "64_", "_64")):
        getter = getattr(library, f"{prefix}openblas_get_num_threads{suffix}", None)
        if getter is not None:
            return getter
    return None


def keep_blas_on_one_thread() -> None:
    """Set the OpenBLAS numba calls (SciPy's) to one thread, and leave it there: the
    team's workers are the threads. Setting it back after each run would wake OpenBLAS's
    own threads, which then spin beside the team for a while. NumPy's BLAS is another
    library and keeps its threads; SciPy's linear algebra in this process runs on one
    thread."""
    thread_count = _numba_blas_thread_count()
    if thread_count is not None and thread_count() != 1:
        _numba_blas().set_num_threads(1)
