"""The "numba-cpu" backend: GRU (both variants) and LSTM, forward and exact BPTT, in @njit code.

Structure of every pass (haste's and cuDNN's, on the CPU):

* forward: one product projects the inputs of all T steps, ``gi = x @ w_ih.T``; then per step
  one recurrent product for all gates, ``gh = h @ w_hh.T``, and one call of a pointwise
  function that adds the biases, applies the gates and updates the state of the worker's
  sequences (reset-before GRUs need a second, (B,H)x(H,H) product per step, because r
  multiplies h before W_hn).
* backward: per step a fused pointwise loop writes the gate pre-activation gradients of all
  T steps into one buffer, then one recurrent product carries dh back a step; the weight and
  input gradients are then single large products over all T*B rows.

Design choices, each measured:

* Gate math runs in the problem's dtype inside the pointwise loops, as torch's does. For
  float32 problems tanh and sigmoid are an arithmetic-only rational approximation in float32
  (:func:`tanh_rational`: within 6 float32 ulps of tanh, sigmoid within 3 ulps plus 2**-22;
  end to end within 5% of the error of the float64 gate math it replaced, whose gates were
  correctly rounded, because the products' rounding dominates; 16 lanes per AVX-512
  vector, so the forward's pointwise loops run 1.4-2.5x faster). With
  ``error_model='numpy'`` and fastmath flags the loops vectorize (libm's scalar ``tanh``
  does not). float64 problems use ``math.tanh`` itself, so float64 results match the
  reference to its rounding. The backward's pointwise loops and its carried gradients
  stay in float64 (they have no transcendental functions but LSTM's tanh(c)).
* fastmath without ``nnan``/``ninf``: NaN and Inf inputs propagate like in the reference.
* The pointwise functions are compiled with their arrays marked non-overlapping
  (``DISJOINT_JIT``), so LLVM drops the run-time overlap checks it otherwise runs before
  each vectorized loop: a fixed cost per call, which weighs where H is small.
* Every product with a weight matrix (the recurrent one of each step, the input
  projection and dx) is :func:`matmul_nt`: the weights are packed once per prepared run
  into panels, and an outer-product micro-kernel written in LLVM vector IR
  (:func:`_panel_tile`) multiplies them, at 105-115 GFLOP/s on one core (float32) where
  OpenBLAS, which repacks the weights on every call, reaches 44-85 at per-step shapes.
  The weight gradients, whose operands change every run, are :func:`weight_gradient`:
  narrow ones (at most 96 columns: small inputs, small H) on a tile of the same kind that
  reads the gradients and inputs where they lie (:func:`_gradient_tile`, 65-112 GFLOP/s
  where OpenBLAS reaches 40-82), wider ones on the BLAS numba already links (SciPy's
  OpenBLAS, via numba's ``numba_xxgemm`` helper) through :func:`gemm`, which takes
  transposed views and column blocks and accumulates (beta = 1), so no pass copies or
  allocates.
* Threads: a run shares its work among numba's thread count (``numba.set_num_threads``)
  of threads, each running the same kernel on its part (see the "threads" section): its
  own sequences where the batch has PANEL_ROWS per worker (sequences are independent, so
  the steps need no barrier), else a slice of the hidden units of every sequence,
  meeting at a barrier of atomics once per step; and a slice of the all-steps products.
  The threads are the module's own (a ``parallel=True`` kernel cannot be cached by
  numba, and every process would recompile for 40 s), BLAS runs on one thread inside
  each, and runs whose steps are too small to share (TEAM_MIN_STEP_FLOPS) use one thread.
  So no pool spins against another, and results are bit-identical run to run at a fixed
  thread count.
* Lengths (ONNX semantics): a sequence past its length keeps its state, writes y = 0 and
  gets zero gate gradients; the products still run over the full batch.
* Training saves only the gate activations (plus W_hn h + b_hn for reset-after GRUs, plus the
  cell states for LSTMs); backward reads the previous hidden states from the output y and h0,
  so no state sequence is saved twice.

All kernels and their helpers live in this one module on purpose: numba's on-disk cache
(``cache=True``) is keyed on the source file of the cached function alone, so an
approximation edited in another module would leave stale compiled kernels behind.

Shapes are those of :mod:`grubench.kernels.contract`; G = 3 (GRU) or 4 (LSTM).
"""
from __future__ import annotations

import concurrent.futures
import ctypes
import functools
import itertools
import math
import warnings

import numpy as np

from .contract import (GRU_N, GRU_R, GRU_Z, LSTM_F, LSTM_G, LSTM_I, LSTM_O,
                       BackendUnavailable, Prepared, RNNArgs, convenience_api)

try:
    import numba
    from llvmlite import ir
    from numba import njit, types
    from numba.core import cgutils, compiler
    from numba.core.caching import FunctionCache
    from numba.extending import intrinsic, overload
    from numba.np.linalg import ensure_blas, get_blas_kind
except ImportError as error:  # numba is a dependency; a broken install must not crash us
    numba = None
    _IMPORT_ERROR = f"numba cannot be imported: {error}"


def availability() -> tuple[bool, str | None]:
    if numba is None:
        return False, _IMPORT_ERROR
    try:
        ensure_blas()
    except (ImportError, RuntimeError) as error:
        return False, f"numba has no BLAS: {error}"
    return True, None


def version() -> str:
    if numba is None:
        return "numba missing"
    import scipy
    return f"numba {numba.__version__}, scipy {scipy.__version__} (OpenBLAS)"


if numba is not None:
    # No nnan/ninf: those would let LLVM assume NaN and Inf never occur.
    FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}

    def _cache_usable() -> bool:
        """Whether numba finds a writable folder for its on-disk cache (beside this file,
        NUMBA_CACHE_DIR or the user's cache folder). A read-only install with a read-only
        HOME has none, and numba would raise "no locator available" at the first cached
        kernel: the kernels then compile without the cache (every process compiles again),
        with one warning."""
        try:
            FunctionCache(_cache_usable)
        except RuntimeError as error:
            warnings.warn(f"numba-cpu compiles without its on-disk cache, so every process "
                          f"compiles again: {error}", RuntimeWarning, stacklevel=2)
            return False
        return True

    class _RecoveringCache(FunctionCache):
        """numba's on-disk cache of one function, where an entry that cannot be read
        (a truncated or corrupt index or data file: pickle errors, EOFError) is a miss:
        the index is emptied, the function compiles again and its entry is rewritten,
        with one warning. numba's own cache raises such errors at the first call."""

        def load_overload(self, sig, target_context):
            try:
                return super().load_overload(sig, target_context)
            except Exception as error:      # whatever a corrupt pickle raises
                warnings.warn(f"numba-cpu: unreadable cache entry for "
                              f"{self._py_func.__qualname__} ({type(error).__name__}: "
                              f"{error}); compiling it again", RuntimeWarning, stacklevel=2)
                try:
                    self.flush()
                except OSError:
                    pass                    # the compile still runs; saving may fail later
                return None

    def cached_njit(**options):
        """``numba.njit`` with the on-disk cache when one is usable (:func:`_cache_usable`),
        recovering from a corrupt one (:class:`_RecoveringCache`)."""
        def decorate(function):
            dispatcher = njit(**options, cache=CACHE)(function)
            if CACHE:
                dispatcher._cache = _RecoveringCache(function)  # numba's enable_caching, ours
            return dispatcher
        return decorate

    CACHE = _cache_usable()
    JIT = dict(nogil=True, error_model="numpy", fastmath=FASTMATH)

    class _DisjointArgumentsCompiler(compiler.Compiler):
        """numba's compiler, with every pointer argument marked ``noalias`` for LLVM (the
        flag numba sets for its parallel loops, which njit does not take). Before a
        vectorized loop LLVM otherwise checks at run time that no array the loop writes
        overlaps another it touches: at H = 64 that was 8% of a GRU step's pointwise call
        and 17% of an LSTM's (one thread, float32). LLVM's noalias promises that memory
        the function modifies is reached through one argument only. numba's own use
        rests on its alias analysis; here it rests on the callers and the functions: it
        serves only the pointwise functions, whose callers pass outputs and workspaces of
        their own (never a view of memory another argument reads), and which update no
        reference count (views of one array share theirs; see "shared parts"; a test
        checks their code)."""

        def define_pipelines(self):
            self.state.flags.noalias = True
            return super().define_pipelines()

    DISJOINT_JIT = dict(JIT, pipeline_class=_DisjointArgumentsCompiler)

    # ------------------------------------------------------------------------- BLAS

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

    @intrinsic
    def nonnegative(typingctx, value):
        """``value``, with LLVM told it is >= 0. Indexes built from it then need no
        negative-index wraparound, which would keep the loops over them scalar (4x)."""
        def codegen(context, builder, signature, args):
            assume = builder.module.declare_intrinsic(
                "llvm.assume", fnty=ir.FunctionType(ir.VoidType(), [ir.IntType(1)]))
            builder.call(assume, [builder.icmp_signed(">=", args[0],
                                                      ir.Constant(args[0].type, 0))])
            return args[0]

        return value(value), codegen

    # ------------------------------------------------------ products with the weights
    # A product with a weight matrix W, a (B,K) @ W.T, is small per step: at recurrent
    # shapes BLAS spends much of it repacking W (44 of 110 GFLOP/s left at 16x256x768).
    # W is fixed for a run, so it is packed once, when a run is prepared, into panels of
    # PANEL_COLS of its rows, each stored depth-major: panel[k, :] holds element k of
    # those rows, one run of PANEL_COLS values. A tile of PANEL_ROWS batch rows x one
    # panel then accumulates in vector registers (:func:`_panel_tile`): per depth step it
    # loads the panel's row once and broadcasts each batch row's value, with no horizontal
    # sums and no stores until the end (an outer-product GEMM micro-kernel). The same
    # panels serve the all-steps products with W (input projection, dx).

    #: a tile: PANEL_ROWS batch rows x PANEL_COLS outputs, accumulated in vectors of
    #: VECTOR_LANES values (float32: one AVX-512 or two AVX2 registers per vector). Tiles
    #: of 4 x 32 ran at 107-114 GFLOP/s (one core, float32), within 5% of 8 x 32, 4 x 64
    #: and 8 x 16; smaller batches take one tile of all their rows.
    PANEL_ROWS, PANEL_COLS, VECTOR_LANES = 4, 32, 16

    def _emit_tile(context, builder, real, tile_rows, depth, a_element, panel_row, out_rows,
                   cols, accumulate=None):
        """The micro-kernel's LLVM IR: out_rows[r][c] (+)= sum over k < depth of
        a_element(r, k) * panel_row(k)[c], for r < tile_rows (a constant) and c < cols
        (cols < PANEL_COLS only without accumulate). a_element(r, k) and panel_row(k) return
        pointers (a scalar; PANEL_COLS contiguous values), out_rows[r] a pointer to row r's
        first output; accumulate, an i1 or None, adds the outputs' old values. Each output
        is one lane's sum over k in order, so results do not depend on where a tile
        starts."""
        vector = ir.VectorType(real, VECTOR_LANES)
        intp = cgutils.intp_t

        def vector_at(pointer, lane):
            return builder.bitcast(builder.gep(pointer, [ir.Constant(intp, lane)]),
                                   vector.as_pointer())

        suffix = f"v{VECTOR_LANES}f{context.get_abi_sizeof(real) * 8}"
        fmuladd = builder.module.declare_intrinsic(
            f"llvm.fmuladd.{suffix}", fnty=ir.FunctionType(vector, [vector] * 3))
        per_row = PANEL_COLS // VECTOR_LANES
        # allocas in the entry block: LLVM promotes them to registers
        sums = [[cgutils.alloca_once_value(builder, ir.Constant(vector, None))
                 for _ in range(per_row)] for _ in range(tile_rows)]
        lane0 = ir.Constant(ir.IntType(32), 0)
        broadcast = ir.Constant(ir.VectorType(ir.IntType(32), VECTOR_LANES),
                                [0] * VECTOR_LANES)
        with cgutils.for_range(builder, depth) as loop:
            k = loop.index
            panel_k = panel_row(k)
            weights = [builder.load(vector_at(panel_k, v * VECTOR_LANES), align=4)
                       for v in range(per_row)]
            for r in range(tile_rows):
                value = builder.load(a_element(r, k))
                values = builder.shuffle_vector(
                    builder.insert_element(ir.Constant(vector, ir.Undefined), value, lane0),
                    ir.Constant(vector, ir.Undefined), broadcast)
                for v in range(per_row):
                    total = builder.call(fmuladd, [values, weights[v],
                                                   builder.load(sums[r][v])])
                    builder.store(total, sums[r][v])
        if accumulate is not None:
            with builder.if_then(accumulate):
                for r in range(tile_rows):
                    for v in range(per_row):
                        old = builder.load(vector_at(out_rows[r], v * VECTOR_LANES), align=4)
                        builder.store(builder.fadd(builder.load(sums[r][v]), old), sums[r][v])
        whole = builder.icmp_signed("==", cols, ir.Constant(intp, PANEL_COLS))
        with builder.if_else(whole) as (whole_panel, part_panel):
            with whole_panel:
                for r in range(tile_rows):
                    for v in range(per_row):
                        builder.store(builder.load(sums[r][v]),
                                      vector_at(out_rows[r], v * VECTOR_LANES), align=4)
            with part_panel:            # the last panel of a block: through a buffer
                buffer = builder.bitcast(
                    cgutils.alloca_once(builder, ir.ArrayType(real, PANEL_COLS)),
                    real.as_pointer())
                for r in range(tile_rows):
                    for v in range(per_row):
                        builder.store(builder.load(sums[r][v]),
                                      vector_at(buffer, v * VECTOR_LANES), align=4)
                    with cgutils.for_range(builder, cols) as column:
                        builder.store(builder.load(builder.gep(buffer, [column.index])),
                                      builder.gep(out_rows[r], [column.index]))

    def _strides(context, builder, array_type, array):
        """An array's strides in elements, as LLVM values."""
        real = context.get_value_type(array_type.dtype)
        size = ir.Constant(cgutils.intp_t, context.get_abi_sizeof(real))
        return [builder.sdiv(stride, size)
                for stride in cgutils.unpack_tuple(builder, array.strides)]

    def _is_float_array(array, ndim, dtype, layout="C"):
        """Whether a numba type is an ndim float array of ``dtype`` (a layout of "A"
        accepts any layout)."""
        return (isinstance(array, types.Array) and array.ndim == ndim
                and array.dtype == dtype and dtype in (types.float32, types.float64)
                and (layout == "A" or array.layout == layout))

    @intrinsic
    def _panel_tile(typingctx, a, row, k0, K, panels, block, panel, out, out_col, cols, rows):
        """out[row:row+rows, out_col:out_col+cols] =
        a[row:row+rows, k0:k0+K] @ panels[block, panel, k0:k0+K, :cols], in LLVM vector
        IR (:func:`_emit_tile`); rows is a constant (one set of accumulators per row).
        a (B,*) and out (B,*) 2-D, panels (blocks, P, depth, PANEL_COLS): C-contiguous, one
        float dtype; the caller checks the bounds (this reads and writes through raw
        pointers, and makes no view, whose reference count two workers would contend
        for)."""
        dtype = getattr(a, "dtype", None)
        if not (_is_float_array(a, 2, dtype) and _is_float_array(panels, 4, dtype)
                and _is_float_array(out, 2, dtype)
                and isinstance(rows, types.IntegerLiteral)):
            return None
        sig = types.none(a, row, k0, K, panels, block, panel, out, out_col, cols, rows)

        def codegen(context, builder, signature, args):
            real = context.get_value_type(signature.args[0].dtype)
            intp = cgutils.intp_t

            def array(i):
                return context.make_array(signature.args[i])(context, builder, args[i])

            def index(i):
                return context.cast(builder, args[i], signature.args[i], types.intp)

            def constant(value):
                return ir.Constant(intp, value)

            a_array, panels_array, out_array = array(0), array(4), array(7)
            row, k0, depth = index(1), index(2), index(3)
            block, panel, out_col, cols = index(5), index(6), index(8), index(9)
            _blocks, count, panel_depth, _cols = cgutils.unpack_tuple(builder,
                                                                      panels_array.shape)
            panel_start = builder.mul(builder.add(builder.mul(block, count), panel),
                                      builder.mul(panel_depth, constant(PANEL_COLS)))
            lda = _strides(context, builder, signature.args[0], a_array)[0]
            ldo = _strides(context, builder, signature.args[7], out_array)[0]
            tile_rows = signature.args[10].literal_value
            a_rows = [builder.gep(a_array.data, [builder.add(
                builder.mul(builder.add(row, constant(r)), lda), k0)])
                for r in range(tile_rows)]
            panel_rows = builder.gep(panels_array.data, [builder.add(
                panel_start, builder.mul(k0, constant(PANEL_COLS)))])
            out_rows = [builder.gep(out_array.data, [builder.add(
                builder.mul(builder.add(row, constant(r)), ldo), out_col)])
                for r in range(tile_rows)]
            _emit_tile(context, builder, real, tile_rows, depth,
                       lambda r, k: builder.gep(a_rows[r], [k]),
                       lambda k: builder.gep(panel_rows,
                                             [builder.mul(k, constant(PANEL_COLS))]),
                       out_rows, cols)
            return context.get_dummy_value()

        return sig, codegen

    @intrinsic
    def _gradient_tile(typingctx, d, m0, g, x, i0, depth, out, accumulate, rows):
        """out[g:g+rows, i0:i0+PANEL_COLS] (+)= d[m0:m0+depth, g:g+rows].T @
        x[m0:m0+depth, i0:i0+PANEL_COLS]: the micro-kernel of :func:`weight_gradient`, with
        d read through its strides (its columns are the tile's rows) and x's rows as the
        panel rows, so neither is copied. d 2-D, x and out 2-D with contiguous rows, one
        float dtype; rows a constant; accumulate adds to out. The caller checks the bounds."""
        dtype = getattr(d, "dtype", None)
        if not (_is_float_array(d, 2, dtype, "A") and _is_float_array(x, 2, dtype, "A")
                and _is_float_array(out, 2, dtype, "A")
                and isinstance(rows, types.IntegerLiteral)):
            return None
        sig = types.none(d, m0, g, x, i0, depth, out, accumulate, rows)

        def codegen(context, builder, signature, args):
            argtys = signature.args
            real = context.get_value_type(argtys[0].dtype)
            intp = cgutils.intp_t

            def array(i):
                return context.make_array(argtys[i])(context, builder, args[i])

            def index(i):
                return context.cast(builder, args[i], argtys[i], types.intp)

            d_array, x_array, out_array = array(0), array(3), array(6)
            m0, g, i0, depth = index(1), index(2), index(4), index(5)
            d_row, d_col = _strides(context, builder, argtys[0], d_array)
            ldx = _strides(context, builder, argtys[3], x_array)[0]
            ldo = _strides(context, builder, argtys[6], out_array)[0]
            tile_rows = argtys[8].literal_value
            d_columns = [builder.gep(d_array.data, [builder.add(
                builder.mul(m0, d_row), builder.mul(builder.add(g, ir.Constant(intp, r)),
                                                    d_col))])
                for r in range(tile_rows)]
            x_rows = builder.gep(x_array.data, [builder.add(builder.mul(m0, ldx), i0)])
            out_rows = [builder.gep(out_array.data, [builder.add(builder.mul(
                builder.add(g, ir.Constant(intp, r)), ldo), i0)]) for r in range(tile_rows)]
            accumulate = context.cast(builder, args[7], argtys[7], types.boolean)
            _emit_tile(context, builder, real, tile_rows, depth,
                       lambda r, k: builder.gep(d_columns[r], [builder.mul(k, d_row)]),
                       lambda k: builder.gep(x_rows, [builder.mul(k, ldx)]),
                       out_rows, ir.Constant(intp, PANEL_COLS), accumulate)
            return context.get_dummy_value()

        return sig, codegen

    @cached_njit(**JIT)
    def matmul_nt(a, k0, K, panels, block, unit, N, out, out_col):
        """out[:, out_col:out_col+N] = a[:, k0:k0+K] @ W[r:r+N, k0:k0+K].T with
        r = block * R + unit: the per-step recurrent product (and the all-steps ones), over
        rows of one block of W (blocks, R, depth) (forward: the gate blocks of w_hh;
        backward: w_hh.T, one block), as :func:`pack_panels` lays it out: panels (blocks,
        ceil(R/PANEL_COLS), depth, PANEL_COLS). a (B,*) and out (B,*) C-contiguous; unit a
        multiple of PANEL_COLS. Measured against OpenBLAS on one core (float32, GFLOP/s):
        16x256x768 110 vs 44; 64x512x1536 110 vs 72; B = 1 at 1x512x2048: 44 vs 6."""
        B = a.shape[0]
        if out.shape[0] != B or k0 < 0 or k0 + K > a.shape[1] or out_col < 0 \
                or out_col + N > out.shape[1] or N < 0 or unit < 0:
            raise ValueError("matmul_nt: operands out of bounds")
        if N == 0:          # a worker with no units (H < workers * UNIT_ALIGN)
            return
        first = unit // PANEL_COLS
        count = (N + PANEL_COLS - 1) // PANEL_COLS
        if unit % PANEL_COLS or block < 0 or block >= panels.shape[0] \
                or first + count > panels.shape[1] or k0 + K > panels.shape[2] \
                or panels.shape[3] != PANEL_COLS:
            raise ValueError("matmul_nt: rows out of the weight panels")
        last_tile = B - PANEL_ROWS
        for p in range(first, first + count):
            column = out_col + (p - first) * PANEL_COLS
            cols = min(PANEL_COLS, N - (p - first) * PANEL_COLS)
            if B == 1:      # small batches: one tile of all rows
                _panel_tile(a, 0, k0, K, panels, block, p, out, column, cols, 1)
            elif B == 2:
                _panel_tile(a, 0, k0, K, panels, block, p, out, column, cols, 2)
            elif B == 3:
                _panel_tile(a, 0, k0, K, panels, block, p, out, column, cols, 3)
            else:
                for row in range(0, last_tile + 1, PANEL_ROWS):
                    _panel_tile(a, row, k0, K, panels, block, p, out, column, cols,
                                PANEL_ROWS)
                if B % PANEL_ROWS:  # the last rows as one more tile, overlapping the one
                    _panel_tile(a, last_tile, k0, K, panels, block, p, out, column,  # before
                                cols, PANEL_ROWS)

    # ----------------------------------------------------------------------- threads
    # A run on n threads is n calls of the same kernel, one per thread (the kernels release
    # the GIL), each with a team = (worker, workers, sync). Each worker owns a part of every
    # step (:func:`step_part`): its own sequences where the batch allows, which need no
    # barrier, or else a slice of the hidden units of every sequence, so the per-step
    # products and gate math split with no shared writes and the workers meet at a barrier
    # once per step (twice for reset-before GRUs, whose r*h feeds a second product). Each
    # also owns a slice of the all-steps products' outputs. BLAS runs on one thread inside
    # every worker, so no other pool spins against the team.

    @intrinsic
    def _arrive(typingctx, sync):
        """sync[ARRIVALS] += 1 atomically (sequentially consistent); the new count."""
        def codegen(context, builder, signature, args):
            counter = context.make_array(signature.args[0])(context, builder, args[0]).data
            one = ir.Constant(ir.IntType(64), 1)
            return builder.add(builder.atomic_rmw("add", counter, one, "seq_cst"), one)

        return types.int64(sync), codegen

    #: slots of a team's sync array: arrivals at barriers, and a flag a failing worker sets
    ARRIVALS, ABORTED = 0, 1

    @intrinsic
    def _load_acquire(typingctx, sync, slot):
        """sync[slot], loaded with acquire ordering: what other workers wrote before they
        arrived is visible after it."""
        def codegen(context, builder, signature, args):
            data = context.make_array(signature.args[0])(context, builder, args[0]).data
            index = context.cast(builder, args[1], signature.args[1], types.intp)
            return builder.load_atomic(builder.gep(data, [index]), "acquire", 8)

        return types.int64(sync, slot), codegen

    @intrinsic
    def _yield_core(typingctx):
        """sched_yield(2): a waiting worker lets whatever else is runnable on its core run
        (on a loaded machine a pure spin would hold back the worker it waits for)."""
        def codegen(context, builder, signature, args):
            fnty = ir.FunctionType(ir.IntType(32), [])
            builder.call(cgutils.get_or_insert_function(builder.module, fnty, "sched_yield"),
                         [])
            return context.get_dummy_value()

        return types.none(), codegen

    @cached_njit(**JIT)
    def barrier(team):
        """Return once every worker of the team has arrived. sync[ARRIVALS] counts arrivals
        since the run began, so the k-th barrier opens at k * workers: nothing to reset.
        Once a worker has failed (sync[ABORTED]), barriers no longer wait: the others run
        to their end, and :func:`run_team` raises the error instead of hanging."""
        _worker, workers, sync = team
        if workers == 1:
            return
        opens_at = (_arrive(sync) + workers - 1) // workers * workers
        while _load_acquire(sync, ARRIVALS) < opens_at:
            if _load_acquire(sync, ABORTED):
                return
            _yield_core()

    #: hidden-unit slices start at panel boundaries (:func:`matmul_nt`), which are
    #: multiples of 16 floats (one 64-byte cache line): no two workers write one line
    UNIT_ALIGN = PANEL_COLS

    @cached_njit(**JIT)
    def share(team, n, align):
        """This worker's part [start, stop) of range(n): equal chunks, multiples of align."""
        worker, workers, _sync = team
        chunk = (n + workers - 1) // workers
        chunk = (chunk + align - 1) // align * align
        start = min(worker * chunk, n)
        return start, min(start + chunk, n)

    @cached_njit(**JIT)
    def step_part(team, B, H):
        """This worker's part of every step: (seqs, start, stop, step_team), its sequences
        (a slice of range(B)) and units [start, stop). Where every worker gets
        PANEL_ROWS sequences or more, whole sequences: they are independent, so step_team
        is a team of one, whose barriers return at once, and every call covers all H
        units (split by units, GRU inference at 64,32,32,64 ran 1.1x slower on two
        threads than on one). Otherwise every sequence and a slice of the units, meeting
        at the team's barriers."""
        _worker, workers, sync = team
        if workers > 1 and B >= workers * PANEL_ROWS:
            first, stop_seq = share(team, B, 1)
            return slice(first, stop_seq), 0, H, (0, 1, sync)
        start, stop = share(team, H, UNIT_ALIGN)
        return slice(0, B), start, stop, team

    @cached_njit(**JIT)
    def team_gemm(team, a, b, c, beta):
        """:func:`gemm` shared by the team: each worker takes a block of c's rows, or of its
        columns when those are more, so the operand every worker reads whole is the
        smaller one. No barrier: callers place one before c is read by other workers."""
        m, n = c.shape
        if m >= n:
            start, stop = share(team, m, 1)
            gemm(a[start:stop], b, c[start:stop], beta)
        else:
            start, stop = share(team, n, UNIT_ALIGN)
            gemm(a, b[:, start:stop], c[:, start:stop], beta)

    #: :func:`weight_gradient` runs on tiles of its own where x has at most this many
    #: columns (three panels), and calls BLAS for wider ones. One core, float32, GFLOP/s,
    #: tiles vs OpenBLAS, at M = 1600 rows: K = 32: 92-111 vs 40-69 (N = 256-2048);
    #: K = 64-96: 65-112 vs 55-82; K = 128-192: 59-86 vs 61-87; K >= 256: 43-99 vs 78-97.
    GRADIENT_MAX_COLUMNS = 96
    #: depth chunk of the tiles: x's chunk stays in cache while every tile of the worker's
    #: rows passes over it
    GRADIENT_DEPTH = 128
    #: tile rows that share one cache line of d's rows: their tiles run back to back
    GRADIENT_ROWS = 16

    @cached_njit(**JIT)
    def weight_gradient(team, d, x, out, accumulate):
        """out (+)= d.T @ x, this worker's part of out (the same part for every call of a
        shape, so a worker only ever adds to its own: no barrier between calls).
        d (M,N): gradients of N outputs over M rows (a column block is fine); x (M,K) the
        inputs of those rows; out (N,K); x and out with contiguous rows. Narrow products
        (K <= GRADIENT_MAX_COLUMNS: the input weights of small inputs, the recurrent ones
        of small H) run their whole panels of PANEL_COLS columns on
        :func:`_gradient_tile`, which reads d and x where they lie, and the columns past
        them on BLAS; wider ones run on BLAS, which packs its operands."""
        M, N = d.shape
        K = x.shape[1]
        if x.shape[0] != M or out.shape[0] != N or out.shape[1] != K:
            raise ValueError("weight_gradient: shapes do not match")
        if K > 1 and (x.strides[1] != x.itemsize or out.strides[1] != out.itemsize):
            raise ValueError("weight_gradient: x and out need contiguous rows")
        if K > GRADIENT_MAX_COLUMNS:
            team_gemm(team, d.T, x, out, 1.0 if accumulate else 0.0)
            return
        start, stop = share(team, N, UNIT_ALIGN)
        if M == 0:
            if not accumulate:
                out[start:stop] = 0
            return
        whole = K // PANEL_COLS * PANEL_COLS
        for m0 in range(0, M, GRADIENT_DEPTH):
            depth = min(GRADIENT_DEPTH, M - m0)
            add = accumulate or m0 > 0
            for block in range(start, stop, GRADIENT_ROWS):
                block_stop = min(block + GRADIENT_ROWS, stop)
                for i0 in range(0, whole, PANEL_COLS):
                    g = block
                    while g + PANEL_ROWS <= block_stop:
                        _gradient_tile(d, m0, g, x, i0, depth, out, add, PANEL_ROWS)
                        g += PANEL_ROWS
                    for row in range(g, block_stop):    # only where N % PANEL_ROWS
                        _gradient_tile(d, m0, row, x, i0, depth, out, add, 1)
        if whole < K and start < stop:
            gemm(d[:, start:stop].T, x[:, whole:], out[start:stop, whole:],
                 1.0 if accumulate else 0.0)

    @cached_njit(**JIT)
    def gate_products(a, panels, gates, H, start, stop, out):
        """out[:, g*H + start : g*H + stop] = a @ W[g*H + start : g*H + stop].T for the
        first ``gates`` blocks of H rows of W: a worker's units of every gate. a (B,K),
        panels of W as :func:`matmul_nt` (depth K), out (B,gates*H) or wider."""
        for gate in range(gates):
            matmul_nt(a, 0, a.shape[1], panels, gate, start, stop - start, out,
                      gate * H + start)

    # ------------------------------------------------------------------- gate math

    # tanh(x) / x = P(x^2) / Q(x^2) on |x| <= TANH_CLAMP, a (4,5) rational fitted for minimal
    # relative error (3.5e-9 in exact arithmetic, by linear programming), evaluated in
    # float32: with its roundings within 6 float32 ulps of tanh, mean 0.04 (the tests check
    # every 61st float32). Past 9.02, tanh rounds to +-1 in float32: clamping there is exact.
    TANH_CLAMP = np.float32(9.02)
    P0, P1, P2, P3, P4 = (np.float32(c) for c in (
        0.9999999999915583, 0.13774671356493162, 0.003994863080375839,
        3.12922463579297e-05, 4.972694864481796e-08))
    Q1, Q2, Q3, Q4, Q5 = (np.float32(c) for c in (
        0.4710800463242281, 0.02768821986376614, 0.0004182718017601931,
        1.5945285894167751e-06, 7.167683350473911e-10))
    ONE, HALF = np.float32(1.0), np.float32(0.5)

    @cached_njit(**JIT)
    def tanh_rational(x):
        """tanh of a float32 in float32 arithmetic only (vectorizes, 16 lanes per AVX-512
        register); never past +-1. NaN stays NaN: the clamps compare, never min/max."""
        x = TANH_CLAMP if x > TANH_CLAMP else x
        x = -TANH_CLAMP if x < -TANH_CLAMP else x
        s = x * x
        p = P0 + s * (P1 + s * (P2 + s * (P3 + s * P4)))
        q = ONE + s * (Q1 + s * (Q2 + s * (Q3 + s * (Q4 + s * Q5))))
        t = x * p / q
        t = ONE if t > ONE else t
        return -ONE if t < -ONE else t

    def gate_tanh(x, dtype):
        """tanh of a pre-activation, in the arithmetic of ``dtype``."""
        raise NotImplementedError("gate_tanh is for compiled code")

    def gate_sigmoid(x, dtype):
        """The logistic function as 0.5 + 0.5 tanh(x/2), like the reference."""
        raise NotImplementedError("gate_sigmoid is for compiled code")

    def _is_float32(dtype):
        return getattr(dtype, "dtype", dtype) == types.float32

    @overload(gate_tanh, jit_options=dict(fastmath=FASTMATH, error_model="numpy"))
    def _gate_tanh(x, dtype):
        if _is_float32(dtype):
            return lambda x, dtype: tanh_rational(np.float32(x))
        return lambda x, dtype: math.tanh(x)

    @overload(gate_sigmoid, jit_options=dict(fastmath=FASTMATH, error_model="numpy"))
    def _gate_sigmoid(x, dtype):
        if _is_float32(dtype):
            return lambda x, dtype: HALF + HALF * tanh_rational(HALF * np.float32(x))
        return lambda x, dtype: 0.5 * (1.0 + math.tanh(0.5 * x))

    @cached_njit(**JIT)
    def tanh_for(values, out):
        """out = gate_tanh(values) elementwise over 1-D arrays; the test and timing hook."""
        for i in range(values.size):
            out[i] = gate_tanh(values[i], out.dtype)

    @cached_njit(**JIT)
    def sigmoid_for(values, out):
        """out = gate_sigmoid(values) elementwise over 1-D arrays."""
        for i in range(values.size):
            out[i] = gate_sigmoid(values[i], out.dtype)

    # ----------------------------------------------------------------- shared parts
    # Every kernel takes the team first; ``start, stop`` are the worker's hidden units
    # (:func:`share`). Pointwise functions take one step's 2-D arrays (B, width) and the
    # worker's sequences ``seqs`` (a slice), and work on those rows' units. They index
    # those arrays rather than take row views, and call nothing LLVM does not inline: a
    # view, or an array passed to a call, updates the array's reference count atomically
    # (a cache line every worker would write for every row), and a reference count
    # updated through two noalias arguments sharing one count breaks DISJOINT_JIT's
    # promise. Their loops run ``for unit in range(stop - start)`` with
    # ``j = start + unit`` and start marked :func:`nonnegative`: LLVM proves j >= 0 only
    # in that form, and a possibly negative index keeps a loop scalar (4x).

    @cached_njit(**JIT)
    def previous_states(y, h0, t):
        """The state each sequence entered step t with, where step t is inside it: h0 at
        t = 0, else y[t-1] (a sequence inside step t was inside step t-1, so y is unmasked
        there). y (T,B,H), h0 (B,H); returns (B,H)."""
        return h0 if t == 0 else y[t - 1]

    @cached_njit(**JIT)
    def column_sums(team, rows, out):
        """out = rows.sum(axis=0) with float64 accumulation, this worker's columns.
        rows (M,N), out (N,)."""
        start, stop = share(team, out.shape[0], UNIT_ALIGN)
        start, stop = nonnegative(start), nonnegative(stop)
        total = np.zeros(stop - start, np.float64)
        for i in range(rows.shape[0]):
            for unit in range(stop - start):
                total[unit] += rows[i, start + unit]
        for unit in range(stop - start):
            out[start + unit] = total[unit]

    @cached_njit(**JIT)
    def weight_gradient_from_states(team, d_rows, y, h0, out):
        """out = sum over steps t of d_t.T @ h_{t-1} (h_{-1} = h0), as two products over the
        rows of y, with no copy of the state sequence. d_rows (T*B,N) holds d_t in rows
        t*B..t*B+B-1 (a column block is fine); y (T,B,H), h0 (B,H), out (N,H). Rows past
        a sequence's length must be zero: y is zero there, not the carried state."""
        T, B, H = y.shape
        weight_gradient(team, d_rows[:B], h0, out, False)
        if T > 1:
            weight_gradient(team, d_rows[B:], y.reshape((T * B, H))[:(T - 1) * B], out, True)

    #: rows one pass of an all-steps product takes: its panels then stay in L2 while the
    #: rows stream through (6400x512x1536, one core: 104 GFLOP/s in passes of 256 rows,
    #: 86 in one pass)
    PASS_ROWS = 256

    @cached_njit(**JIT)
    def all_steps_product(a, panels, gates, H, start, stop, out):
        """:func:`gate_products` over the T*B rows of all steps, in passes of PASS_ROWS to
        2 * PASS_ROWS rows. a (T*B,K), out (T*B,gates*H) or wider."""
        M = a.shape[0]
        passes = max(1, M // PASS_ROWS)
        for i in range(passes):
            first, stop_row = i * M // passes, (i + 1) * M // passes
            gate_products(a[first:stop_row], panels, gates, H, start, stop,
                          out[first:stop_row])

    @cached_njit(**JIT)
    def input_gradients(team, d_gates, x, w_ih_t, dx, dw_ih, db_ih):
        """dx = d_gates @ w_ih, dw_ih = d_gates.T @ x, db_ih = column sums, each one pass over
        all T*B rows. d_gates (T,B,G*H), x (T,B,I), w_ih_t: w_ih.T laid out for
        :func:`matmul_nt` (one block of I rows, depth G*H)."""
        T, B, I = x.shape
        rows = d_gates.reshape((T * B, d_gates.shape[2]))
        start, stop = share(team, I, UNIT_ALIGN)
        all_steps_product(rows, w_ih_t, 1, I, start, stop, dx.reshape((T * B, I)))
        weight_gradient(team, rows, x.reshape((T * B, I)), dw_ih, False)
        column_sums(team, rows, db_ih)

    @cached_njit(**JIT)
    def project_inputs(team, x, w_ih, gates, gi):
        """gi = x @ w_ih.T for all steps at once, this worker's slice of the units of every
        gate, then a barrier (every worker reads all of gi's rows). x (T,B,I), w_ih laid out
        for :func:`matmul_nt` (``gates`` blocks of H rows, depth I), gi (T,B,gates*H)."""
        T, B, I = x.shape
        H = gi.shape[2] // gates
        start, stop = share(team, H, UNIT_ALIGN)
        all_steps_product(x.reshape((T * B, I)), w_ih, gates, H, start, stop,
                          gi.reshape((T * B, gates * H)))
        barrier(team)

    @cached_njit(**DISJOINT_JIT)
    def add_rows(into, rows, lengths, t, replace, start, stop):
        """into[b, start:stop] (+)= rows[b, start:stop] for the sequences inside step t.
        into (B,H) float64, rows (B,H)."""
        start, stop = nonnegative(start), nonnegative(stop)
        for b in range(into.shape[0]):
            if t < lengths[b]:
                for unit in range(stop - start):
                    j = start + unit
                    into[b, j] = rows[b, j] if replace else into[b, j] + rows[b, j]

    # -------------------------------------------------------------------------- GRU

    # Slots of the GRU's saved activations, each H wide: r, z, n and (reset-after only) the
    # recurrent part of the candidate, W_hn h + b_hn, that dr needs.
    SAVED_R, SAVED_Z, SAVED_N, SAVED_GH_N = 0, 1, 2, 3

    @cached_njit(**DISJOINT_JIT)
    def gru_reset_rows(gi_t, gh, bias_gi, prev, reset_state, saved_t, seqs, start, stop):
        """Reset-before pre-pass for the sequences seqs (a slice), units start:stop: r into
        saved_t's r slot and reset_state = r * h. gi_t, gh (B,3H) (gh's r part filled),
        bias_gi (3H,); prev, reset_state (B,H); saved_t (B,3H)."""
        H = nonnegative(prev.shape[1])
        start, stop = nonnegative(start), nonnegative(stop)
        R = GRU_R * H
        for b in range(seqs.start, seqs.stop):
            for unit in range(stop - start):
                j = start + unit
                r = gate_sigmoid(gi_t[b, R + j] + bias_gi[R + j] + gh[b, R + j],
                                 prev.dtype)
                saved_t[b, SAVED_R * H + j] = r
                reset_state[b, j] = r * prev[b, j]

    @cached_njit(**DISJOINT_JIT)
    def gru_step_rows(gi_t, gh, bias_gi, b_hn, reset_after, prev, new, y_t, saved_t,
                      lengths, t, seqs, start, stop):
        """Step t of the GRU for the sequences seqs (a slice), units start:stop: gates from
        gi_t, gh (B,3H) and the biases (see :func:`gru_forward_kernel`); from the state
        prev (B,H) writes the new state to new and y_t (B,H) and the activations to
        saved_t (B,4H) or (B,3H) (reset-before: r is there already, from
        :func:`gru_reset_rows`). Reset-after, gh's n part leaves holding r * (W_hn h +
        b_hn). A sequence past its length (lengths (B,)) keeps its state and outputs
        zeros.

        Like every pointwise function, one call serves all of a worker's sequences: with
        a call per sequence, each paid the call's fixed cost (at H = 64, one thread,
        float32, a sequence took 126 ns, now 88; the LSTM step's 159, now 116)."""
        H = nonnegative(prev.shape[1])
        start, stop = nonnegative(start), nonnegative(stop)
        R, Z, N = GRU_R * H, GRU_Z * H, GRU_N * H
        dtype = prev.dtype
        for b in range(seqs.start, seqs.stop):
            if t >= lengths[b]:
                for unit in range(stop - start):
                    new[b, start + unit] = prev[b, start + unit]
                    y_t[b, start + unit] = 0
                continue
            if reset_after:
                # r, then r * (W_hn h + b_hn) in place of W_hn h in gh: the loop below
                # then serves both variants (a variant test inside it kept LLVM computing
                # r for reset-before too)
                for unit in range(stop - start):
                    j = start + unit
                    r = gate_sigmoid(gi_t[b, R + j] + bias_gi[R + j] + gh[b, R + j], dtype)
                    gh_n = gh[b, N + j] + b_hn[j]
                    saved_t[b, SAVED_R * H + j] = r
                    saved_t[b, SAVED_GH_N * H + j] = gh_n
                    gh[b, N + j] = r * gh_n
            for unit in range(stop - start):
                j = start + unit
                z = gate_sigmoid(gi_t[b, Z + j] + bias_gi[Z + j] + gh[b, Z + j], dtype)
                n = gate_tanh(gi_t[b, N + j] + bias_gi[N + j] + gh[b, N + j], dtype)
                h_new = n + z * (prev[b, j] - n)
                saved_t[b, SAVED_Z * H + j] = z
                saved_t[b, SAVED_N * H + j] = n
                new[b, j] = h_new
                y_t[b, j] = h_new

    @cached_njit(**JIT)
    def gru_forward_kernel(team, x, h0, w_ih, w_hh, bias_gi, b_hn, lengths, reset_after, y,
                           h, saved, gi, gh, reset_state, states):
        """GRU forward over all T steps.

        x (T,B,I); h0 (B,H); w_ih and w_hh laid out for :func:`matmul_nt` (3 blocks of H
        rows, depth I and H); bias_gi (3H,), of x's dtype (the gate math runs in it): the
        biases added to the input part (b_ih, plus b_hh for r and z, plus b_hn when
        reset-before); b_hn (H,): the candidate's recurrent bias when reset-after (r
        multiplies it; unused when reset-before); lengths (B,) int64.
        Outputs: y (T,B,H); h (B,H) = h_n. saved (T,B,4H) (reset-after) or (T,B,3H)
        receives r, z, n [, W_hn h + b_hn] for backward; inference passes a (1,B,4H)
        scratch that each step overwrites.
        Workspaces: gi (T,B,3H), gh (B,3H) (reset-after, :func:`gru_step_rows` overwrites
        its n part), reset_state (B,H) (r*h, reset-before only),
        states (2,B,H): the state before and after a step (other workers still read the
        one before while this worker writes its units of the next).
        """
        T, B, _ = x.shape
        H = h0.shape[1]
        N = GRU_N * H
        seqs, start, stop, step_team = step_part(team, B, H)
        states[0, seqs, start:stop] = h0[seqs, start:stop]
        project_inputs(team, x, w_ih, 3, gi)     # and a barrier
        for t in range(T):
            prev, new = states[t % 2], states[(t + 1) % 2]
            gi_t, y_t = gi[t], y[t]
            saved_t = saved[t if saved.shape[0] == T else 0]
            if reset_after:
                gate_products(prev[seqs], w_hh, 3, H, start, stop, gh[seqs])
            else:
                # r is needed before the candidate's product: W_hn (r*h).
                gate_products(prev[seqs], w_hh, 2, H, start, stop, gh[seqs])
                gru_reset_rows(gi_t, gh, bias_gi, prev, reset_state, saved_t, seqs, start,
                               stop)
                barrier(step_team)
                matmul_nt(reset_state[seqs], 0, H, w_hh, GRU_N, start, stop - start,
                          gh[seqs], N + start)
            gru_step_rows(gi_t, gh, bias_gi, b_hn, reset_after, prev, new, y_t, saved_t,
                          lengths, t, seqs, start, stop)
            barrier(step_team)
        h[seqs, start:stop] = states[T % 2, seqs, start:stop]

    @cached_njit(**DISJOINT_JIT)
    def gru_backward_rows(dy_t, saved_t, prev, reset_after, dh, d_gi_t, d_gh_t, reset_t,
                          lengths, t, seqs, start, stop):
        """Step t of the GRU backward for the sequences seqs (a slice), units start:stop.
        dy_t (B,H), saved_t (B,4H) or (B,3H), prev (B,H) the state before the step; dh
        (B,H) float64 holds dL/dh after the step and leaves with its direct part (d * z).
        Writes d_gi_t (B,3H) and, reset-after, d_gh_t (B,3H) (the recurrent parts'
        gradients: r*da_n in n) or, reset-before, reset_t (B,H) = r*h_prev, the input of
        W_hn (dr waits for d(r*h)). A sequence past its length (lengths (B,)) gets zeros
        there and keeps dh.

        Several short loops, each with few arrays: written when LLVM still checked the
        arrays for overlap (before DISJOINT_JIT), when one fused loop over all of them
        stayed scalar (4x)."""
        H = nonnegative(dy_t.shape[1])
        start, stop = nonnegative(start), nonnegative(stop)
        R, Z, N = GRU_R * H, GRU_Z * H, GRU_N * H
        for b in range(seqs.start, seqs.stop):
            if t >= lengths[b]:
                for unit in range(stop - start):
                    j = start + unit
                    d_gi_t[b, R + j] = 0
                    d_gi_t[b, Z + j] = 0
                    d_gi_t[b, N + j] = 0
                    if reset_after:
                        d_gh_t[b, R + j] = 0
                        d_gh_t[b, Z + j] = 0
                        d_gh_t[b, N + j] = 0
                    else:
                        reset_t[b, j] = 0
                continue
            for unit in range(stop - start):
                j = start + unit
                dh[b, j] += dy_t[b, j]
            for unit in range(stop - start):
                j = start + unit
                d = dh[b, j]
                z = np.float64(saved_t[b, SAVED_Z * H + j])
                n = np.float64(saved_t[b, SAVED_N * H + j])
                d_gi_t[b, Z + j] = d * (np.float64(prev[b, j]) - n) * z * (1.0 - z)
                d_gi_t[b, N + j] = d * (1.0 - z) * (1.0 - n * n)
            if reset_after:
                for unit in range(stop - start):
                    j = start + unit
                    r = np.float64(saved_t[b, SAVED_R * H + j])
                    gh_n = np.float64(saved_t[b, SAVED_GH_N * H + j])
                    d_gi_t[b, R + j] = np.float64(d_gi_t[b, N + j]) * gh_n * r * (1.0 - r)
                for unit in range(stop - start):
                    j = start + unit
                    r = np.float64(saved_t[b, SAVED_R * H + j])
                    d_gh_t[b, R + j] = d_gi_t[b, R + j]
                    d_gh_t[b, Z + j] = d_gi_t[b, Z + j]
                    d_gh_t[b, N + j] = d_gi_t[b, N + j] * r
            else:
                for unit in range(stop - start):
                    j = start + unit
                    reset_t[b, j] = saved_t[b, SAVED_R * H + j] * prev[b, j]
            for unit in range(stop - start):
                j = start + unit
                dh[b, j] *= np.float64(saved_t[b, SAVED_Z * H + j])

    @cached_njit(**DISJOINT_JIT)
    def gru_reset_backward_rows(d_reset, saved_t, prev, dh, d_gi_t, lengths, t, seqs,
                                start, stop):
        """Reset-before, step t, the sequences seqs (a slice) inside it (lengths (B,)),
        units start:stop: from d(r*h) in d_reset (B,H), the r gradient into d_gi_t (B,3H)
        and the r-path into dh (B,H) float64."""
        H = nonnegative(d_reset.shape[1])
        start, stop = nonnegative(start), nonnegative(stop)
        R = GRU_R * H
        for b in range(seqs.start, seqs.stop):
            if t >= lengths[b]:
                continue
            for unit in range(stop - start):
                j = start + unit
                r = np.float64(saved_t[b, SAVED_R * H + j])
                d_reset_j = np.float64(d_reset[b, j])
                d_gi_t[b, R + j] = d_reset_j * np.float64(prev[b, j]) * r * (1.0 - r)
                dh[b, j] += d_reset_j * r

    @cached_njit(**JIT)
    def gru_backward_kernel(team, x, h0, w_ih_t, w_hh_t, lengths, reset_after, y, saved,
                            dy, dh_n, dx, dh0, dw_ih, dw_hh, db_ih, db_hh,
                            d_gi, d_gh, reset_states, dh, dh_rec, d_reset):
        """GRU backpropagation through time.

        Inputs as :func:`gru_forward_kernel`, except the weights: w_ih.T and w_hh.T laid
        out for :func:`matmul_nt` (one block of I or H rows, depth 3H); y (T,B,H) and saved of its
        training run,
        upstream dy (T,B,H), dh_n (B,H). Outputs: dx (T,B,I), dh0 (B,H), dw_ih (3H,I),
        dw_hh (3H,H), db_ih, db_hh (3H,).
        Workspaces: d_gi (T,B,3H) gradients of the gates' input parts (da_r, da_z, da_n);
        reset-after: d_gh (T,B,3H) those of the recurrent parts (da_r, da_z, r*da_n);
        reset-before: reset_states (T,B,H) = r*h_{t-1}, the input of W_hn; unused ones may
        be empty. dh (B,H) float64, the gradient carried back; dh_rec, d_reset (B,H).
        """
        T, B, _ = x.shape
        H = h0.shape[1]
        N = GRU_N * H
        seqs, start, stop, step_team = step_part(team, B, H)
        dh[seqs, start:stop] = dh_n[seqs, start:stop]
        for t in range(T - 1, -1, -1):
            prev = previous_states(y, h0, t)
            dy_t, saved_t, d_gi_t = dy[t], saved[t], d_gi[t]
            # the workspace a variant does not use is empty: pass a valid array instead
            d_gh_t = d_gh[t] if reset_after else dh_rec
            reset_t = dh_rec if reset_after else reset_states[t]
            gru_backward_rows(dy_t, saved_t, prev, reset_after, dh, d_gi_t, d_gh_t, reset_t,
                              lengths, t, seqs, start, stop)
            barrier(step_team)     # the products below read every worker's gate gradients
            if reset_after:
                matmul_nt(d_gh_t[seqs], 0, 3 * H, w_hh_t, 0, start, stop - start,
                          dh_rec[seqs], start)
            else:
                matmul_nt(d_gi_t[seqs], N, H, w_hh_t, 0, start, stop - start, d_reset[seqs],
                          start)                                                # d(r*h)
                gru_reset_backward_rows(d_reset, saved_t, prev, dh, d_gi_t, lengths, t, seqs,
                                        start, stop)
                barrier(step_team)
                matmul_nt(d_gi_t[seqs], 0, N, w_hh_t, 0, start, stop - start, dh_rec[seqs],
                          start)
            add_rows(dh[seqs], dh_rec[seqs], lengths[seqs], t, False, start, stop)
        dh0[seqs, start:stop] = dh[seqs, start:stop]
        barrier(team)              # the gradients below read every worker's sequences
        input_gradients(team, d_gi, x, w_ih_t, dx, dw_ih, db_ih)
        if reset_after:
            d_rows = d_gh.reshape((T * B, 3 * H))
            weight_gradient_from_states(team, d_rows, y, h0, dw_hh)
            column_sums(team, d_rows, db_hh)
        else:
            d_rows = d_gi.reshape((T * B, 3 * H))
            weight_gradient_from_states(team, d_rows[:, :N], y, h0, dw_hh[:N])
            weight_gradient(team, d_rows[:, N:], reset_states.reshape((T * B, H)), dw_hh[N:],
                            False)
            column_sums(team, d_rows, db_hh)

    # ------------------------------------------------------------------------- LSTM

    # Slots of the LSTM's saved activations, each H wide: the gates and the new cell state.
    SAVED_I, SAVED_F, SAVED_G, SAVED_O, SAVED_C = 0, 1, 2, 3, 4

    @cached_njit(**DISJOINT_JIT)
    def lstm_step_rows(gi_t, gh, bias, prev, new, c, y_t, saved_t, lengths, t, seqs, start,
                       stop):
        """Step t of the LSTM for the sequences seqs (a slice), units start:stop: gates
        from gi_t, gh (B,4H) and bias (4H,); from the state prev (B,H) writes the new one
        to new and y_t (B,H), updates c (B,H) and writes saved_t (B,5H). A sequence past
        its length (lengths (B,)) keeps its state and outputs zeros.

        Two loops, the gates, then the state: one loop was slower, measured with a call
        per sequence (172 against 160 ns a call at H = 64, one thread, float32; before
        DISJOINT_JIT, 269 against 197, LLVM's overlap checks for eight arrays in one
        loop being some 1,500 instructions)."""
        H = nonnegative(prev.shape[1])
        start, stop = nonnegative(start), nonnegative(stop)
        GI, GF, GG, GO = LSTM_I * H, LSTM_F * H, LSTM_G * H, LSTM_O * H
        dtype = prev.dtype
        for b in range(seqs.start, seqs.stop):
            if t >= lengths[b]:
                for unit in range(stop - start):
                    new[b, start + unit] = prev[b, start + unit]
                    y_t[b, start + unit] = 0
                continue
            for unit in range(stop - start):
                j = start + unit
                saved_t[b, SAVED_I * H + j] = gate_sigmoid(
                    gi_t[b, GI + j] + bias[GI + j] + gh[b, GI + j], dtype)
                saved_t[b, SAVED_F * H + j] = gate_sigmoid(
                    gi_t[b, GF + j] + bias[GF + j] + gh[b, GF + j], dtype)
                saved_t[b, SAVED_G * H + j] = gate_tanh(
                    gi_t[b, GG + j] + bias[GG + j] + gh[b, GG + j], dtype)
                saved_t[b, SAVED_O * H + j] = gate_sigmoid(
                    gi_t[b, GO + j] + bias[GO + j] + gh[b, GO + j], dtype)
            for unit in range(stop - start):
                j = start + unit
                c_new = (saved_t[b, SAVED_F * H + j] * c[b, j]
                         + saved_t[b, SAVED_I * H + j] * saved_t[b, SAVED_G * H + j])
                h_new = saved_t[b, SAVED_O * H + j] * gate_tanh(c_new, dtype)
                saved_t[b, SAVED_C * H + j] = c_new
                c[b, j] = c_new
                new[b, j] = h_new
                y_t[b, j] = h_new

    @cached_njit(**JIT)
    def lstm_forward_kernel(team, x, h0, c0, w_ih, w_hh, bias, lengths, y, h, c, saved, gi,
                            gh, states):
        """LSTM forward over all T steps.

        x (T,B,I); h0, c0 (B,H); w_ih and w_hh laid out for :func:`matmul_nt` (4 blocks of
        H rows, depth I and H); bias (4H,) = b_ih + b_hh, of x's dtype; lengths (B,)
        int64. Outputs: y (T,B,H); h = h_n and c, the running cell state, = c_n (B,H).
        saved (T,B,5H) receives i, f, g, o and the new c for backward; inference passes a
        (1,B,5H) scratch.
        Workspaces: gi (T,B,4H), gh (B,4H), states (2,B,H) (see :func:`gru_forward_kernel`).
        """
        T, B, _ = x.shape
        H = h0.shape[1]
        seqs, start, stop, step_team = step_part(team, B, H)
        states[0, seqs, start:stop] = h0[seqs, start:stop]
        c[seqs, start:stop] = c0[seqs, start:stop]   # read by this worker only
        project_inputs(team, x, w_ih, 4, gi)     # and a barrier
        for t in range(T):
            prev, new = states[t % 2], states[(t + 1) % 2]
            gi_t, y_t = gi[t], y[t]
            saved_t = saved[t if saved.shape[0] == T else 0]
            gate_products(prev[seqs], w_hh, 4, H, start, stop, gh[seqs])
            lstm_step_rows(gi_t, gh, bias, prev, new, c, y_t, saved_t, lengths, t, seqs,
                           start, stop)
            barrier(step_team)
        h[seqs, start:stop] = states[T % 2, seqs, start:stop]

    @cached_njit(**DISJOINT_JIT)
    def lstm_backward_rows(dy_t, saved_t, c_prev, c_col, dh, dc, d_gi_t, lengths, t, seqs,
                           start, stop):
        """Step t of the LSTM backward for the sequences seqs (a slice), units start:stop.
        dy_t (B,H), saved_t (B,5H); the cell state before the step is
        c_prev[b, c_col:c_col+H] (c0, or the c slot of the step before); dh, dc (B,H)
        float64 hold the gradients after the step (dh is clobbered), dc leaves with the
        one before it. Writes d_gi_t (B,4H); a sequence past its length (lengths (B,))
        gets zeros there and keeps dh and dc. Short loops over few arrays (see
        :func:`gru_backward_rows` for why)."""
        H = nonnegative(dy_t.shape[1])
        start, stop = nonnegative(start), nonnegative(stop)
        c_col = nonnegative(c_col)
        GI, GF, GG, GO = LSTM_I * H, LSTM_F * H, LSTM_G * H, LSTM_O * H
        for b in range(seqs.start, seqs.stop):
            if t >= lengths[b]:
                for unit in range(stop - start):
                    j = start + unit
                    d_gi_t[b, GI + j] = 0
                    d_gi_t[b, GF + j] = 0
                    d_gi_t[b, GG + j] = 0
                    d_gi_t[b, GO + j] = 0
                continue
            for unit in range(stop - start):
                j = start + unit
                dh[b, j] += dy_t[b, j]
            for unit in range(stop - start):
                j = start + unit
                o = np.float64(saved_t[b, SAVED_O * H + j])
                tanh_c = gate_tanh(np.float64(saved_t[b, SAVED_C * H + j]), dy_t.dtype)
                d_h = dh[b, j]
                d_gi_t[b, GO + j] = d_h * tanh_c * o * (1.0 - o)
                dc[b, j] += d_h * o * (1.0 - tanh_c * tanh_c)
            for unit in range(stop - start):
                j = start + unit
                i = np.float64(saved_t[b, SAVED_I * H + j])
                f = np.float64(saved_t[b, SAVED_F * H + j])
                g = np.float64(saved_t[b, SAVED_G * H + j])
                d_c = dc[b, j]
                d_gi_t[b, GI + j] = d_c * g * i * (1.0 - i)
                d_gi_t[b, GF + j] = d_c * np.float64(c_prev[b, c_col + j]) * f * (1.0 - f)
                d_gi_t[b, GG + j] = d_c * i * (1.0 - g * g)
            for unit in range(stop - start):
                j = start + unit
                dc[b, j] *= np.float64(saved_t[b, SAVED_F * H + j])

    @cached_njit(**JIT)
    def lstm_backward_kernel(team, x, h0, c0, w_ih_t, w_hh_t, lengths, y, saved, dy,
                             dh_n, dc_n, dx, dh0, dc0, dw_ih, dw_hh, db, d_gi, dh, dc, dh_rec):
        """LSTM backpropagation through time.

        Inputs as :func:`lstm_forward_kernel`, except the weights: w_ih.T and w_hh.T laid
        out for :func:`matmul_nt` (one block of I or H rows, depth 4H); y (T,B,H) and saved of its
        training run,
        upstream dy (T,B,H), dh_n, dc_n (B,H). Outputs: dx (T,B,I), dh0, dc0 (B,H),
        dw_ih (4H,I), dw_hh (4H,H), db (4H,): the gradient of b_ih and of b_hh alike.
        Workspaces: d_gi (T,B,4H) gate pre-activation gradients; dh, dc (B,H) float64,
        the gradients carried back; dh_rec (B,H).
        """
        T, B, _ = x.shape
        H = h0.shape[1]
        C = SAVED_C * H
        seqs, start, stop, step_team = step_part(team, B, H)
        dh[seqs, start:stop] = dh_n[seqs, start:stop]
        dc[seqs, start:stop] = dc_n[seqs, start:stop]
        for t in range(T - 1, -1, -1):
            dy_t, saved_t, d_gi_t = dy[t], saved[t], d_gi[t]
            # a sequence inside step t was inside t-1: its saved c there is current
            c_prev, c_col = (c0, 0) if t == 0 else (saved[t - 1], C)
            lstm_backward_rows(dy_t, saved_t, c_prev, c_col, dh, dc, d_gi_t, lengths, t, seqs,
                               start, stop)
            barrier(step_team)
            matmul_nt(d_gi_t[seqs], 0, 4 * H, w_hh_t, 0, start, stop - start, dh_rec[seqs],
                      start)
            add_rows(dh[seqs], dh_rec[seqs], lengths[seqs], t, True, start, stop)
        dh0[seqs, start:stop] = dh[seqs, start:stop]
        dc0[seqs, start:stop] = dc[seqs, start:stop]
        barrier(team)              # the gradients below read every worker's sequences
        input_gradients(team, d_gi, x, w_ih_t, dx, dw_ih, db)
        weight_gradient_from_states(team, d_gi.reshape((T * B, 4 * H)), y, h0, dw_hh)


# ----------------------------------------------------------------------------- backend

#: a run shares its steps among numba's threads only where one step's recurrent product
#: has at least this many FLOPs: below it the barrier per step costs more than half a
#: step saves (measured at threads = 2)
TEAM_MIN_STEP_FLOPS = 2e5


def team_size(args: RNNArgs) -> int:
    """Threads a run of ``args`` uses: numba's thread count (``numba.set_num_threads``,
    NUMBA_NUM_THREADS), or 1 where a step is too small to share."""
    step_flops = 2.0 * args.B * args.H * args.gates * args.H
    if step_flops < TEAM_MIN_STEP_FLOPS:
        return 1
    return numba.get_num_threads()


@functools.cache
def _helper_threads(count: int) -> concurrent.futures.ThreadPoolExecutor:
    """The threads that run workers 1.. of a team (worker 0 is the calling thread)."""
    return concurrent.futures.ThreadPoolExecutor(count, thread_name_prefix="numba-cpu")


def run_team(workers: int, kernel, *arguments) -> None:
    """``kernel(team, *arguments)`` on ``workers`` threads at once, each with its team;
    returns when all are done, raising the error of a worker that failed."""
    sync = aligned_empty(8, np.int64)       # 64 bytes: the counters have their cache line
    sync[:] = 0
    if workers == 1:
        kernel((0, 1, sync), *arguments)
        return
    helpers = [_helper_threads(workers - 1).submit(_run_worker, kernel,
                                                   (worker, workers, sync), arguments)
               for worker in range(1, workers)]
    try:
        _run_worker(kernel, (0, workers, sync), arguments)
    finally:
        concurrent.futures.wait(helpers)    # no worker writes anything after this returns
    for helper in helpers:
        helper.result()


def _run_worker(kernel, team, arguments) -> None:
    try:
        kernel(team, *arguments)
    except BaseException:
        team[2][ABORTED] = 1                # the other workers stop waiting at barriers
        raise


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
    """The OpenBLAS numba calls' own openblas_get_num_threads, as a ctypes function (0.3 us;
    threadpoolctl's getter costs 13 us, a tenth of a run at 100,1,64,64), or None."""
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
    own threads, which then spin beside the team for a while (measured at threads = 2:
    medians up to 2.5x slower, varying 2x run to run). NumPy's BLAS is another library
    and keeps its threads; SciPy's linear algebra in this process runs on one thread."""
    thread_count = _numba_blas_thread_count()
    if thread_count is not None and thread_count() != 1:
        _numba_blas().set_num_threads(1)


#: bytes of a cache line (x86-64 and most ARM cores)
CACHE_LINE = 64


def aligned_empty(shape, dtype=np.float64) -> np.ndarray:
    """np.empty whose data starts on a cache line (NumPy's start at 16 bytes, a multiple
    of the item size). Workers write slices of UNIT_ALIGN units, so in arrays aligned like
    this (and rows of a multiple of 16 floats) no two workers write one line. It costs
    2 us (np.empty: 0.4), so it stays out of the loops."""
    dtype = np.dtype(dtype)
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    count = math.prod(shape)
    raw = np.empty(count + CACHE_LINE // dtype.itemsize, dtype)
    offset = -raw.ctypes.data % CACHE_LINE // dtype.itemsize
    return raw[offset:offset + count].reshape(shape)


def pack_panels(blocks):
    """W (blocks, R, depth) as :func:`matmul_nt`'s panels: (blocks, ceil(R/PANEL_COLS),
    depth, PANEL_COLS), rows past R zero."""
    count, R, depth = blocks.shape
    panels = -(-R // PANEL_COLS)
    padded = np.zeros((count, panels * PANEL_COLS, depth), blocks.dtype)
    padded[:, :R] = blocks
    return np.ascontiguousarray(
        padded.reshape(count, panels, PANEL_COLS, depth).transpose(0, 1, 3, 2))


def saved_width(args: RNNArgs) -> int:
    """Activations saved per (step, sequence), in units of H (see the SAVED_* slots)."""
    if args.cell == "lstm":
        return 5
    return 4 if args.reset_after else 3


class NumbaPrepared(Prepared):
    """Weights laid out once (packed for the products, biases folded: summed in float64)
    and the workspaces every run reuses; each run allocates only what it returns
    (outputs, saved, gradients).
    One Prepared runs one call at a time (its workspaces are shared)."""

    def __init__(self, args: RNNArgs):
        super().__init__(args)
        T, B, H, G = args.T, args.B, args.H, args.gates
        dtype = args.dtype
        self.lengths = (np.full(B, T, np.int64) if args.lengths is None else args.lengths)
        self.w_ih = pack_panels(args.w_ih.reshape(G, H, args.I))
        self.w_hh = pack_panels(args.w_hh.reshape(G, H, H))
        self.saved_width = saved_width(args) * H
        b_ih, b_hh = args.b_ih.astype(np.float64), args.b_hh.astype(np.float64)
        if args.cell == "lstm":
            self.bias = b_ih + b_hh
        else:
            n_rows = slice(GRU_N * H, (GRU_N + 1) * H)
            self.bias = b_ih.copy()
            self.bias[:GRU_N * H] += b_hh[:GRU_N * H]
            if args.reset_after:
                self.b_hn = b_hh[n_rows].copy()
            else:
                self.bias[n_rows] += b_hh[n_rows]
                self.b_hn = np.zeros(H)
            self.b_hn = self.b_hn.astype(dtype)
        self.bias = self.bias.astype(dtype)     # summed in float64, rounded once
        self.gi = aligned_empty((T, B, G * H), dtype)
        self.gh = aligned_empty((B, G * H), dtype)
        self.states = aligned_empty((2, B, H), dtype)
        self.scratch = aligned_empty((1, B, self.saved_width), dtype)
        self.reset_state = aligned_empty((B, H) if not args.reset_after else (0, 0), dtype)
        self._backward_workspace = None

    def _run(self, saved):
        a = self.args
        y = aligned_empty((a.T, a.B, a.H), a.dtype)
        h = aligned_empty((a.B, a.H), a.dtype)
        keep_blas_on_one_thread()
        if a.cell == "gru":
            run_team(team_size(a), gru_forward_kernel, a.x, a.h0, self.w_ih, self.w_hh,
                     self.bias, self.b_hn, self.lengths, a.reset_after, y, h, saved, self.gi,
                     self.gh, self.reset_state, self.states)
            return y, h
        c = aligned_empty((a.B, a.H), a.dtype)
        run_team(team_size(a), lstm_forward_kernel, a.x, a.h0, a.c0, self.w_ih, self.w_hh,
                 self.bias, self.lengths, y, h, c, saved, self.gi, self.gh,
                 self.states)
        return y, h, c

    def forward(self):
        return self._run(self.scratch)

    def forward_train(self):
        """Outputs and saved = (y, activations): backward reads the previous states from y,
        so only the activations count as saved state."""
        a = self.args
        activations = aligned_empty((a.T, a.B, self.saved_width), a.dtype)
        outputs = self._run(activations)
        self.saved_bytes = activations.nbytes
        return outputs, (outputs[0], activations)

    def _workspace(self):
        """Backward's buffers, made on the first backward (inference never needs them)."""
        if self._backward_workspace is None:
            a = self.args
            T, B, H, G, dtype = a.T, a.B, a.H, a.gates, a.dtype
            empty3 = aligned_empty((0, 0, 0), dtype)
            self._backward_workspace = dict(
                w_ih_t=pack_panels(a.w_ih.T.reshape(1, a.I, G * H)),
                w_hh_t=pack_panels(a.w_hh.T.reshape(1, H, G * H)),
                d_gi=aligned_empty((T, B, G * H), dtype),
                d_gh=(aligned_empty((T, B, G * H), dtype)
                      if a.cell == "gru" and a.reset_after else empty3),
                reset_states=(aligned_empty((T, B, H), dtype)
                              if a.cell == "gru" and not a.reset_after else empty3),
                dh=aligned_empty((B, H)), dc=aligned_empty((B, H)),
                dh_rec=aligned_empty((B, H), dtype), d_reset=aligned_empty((B, H), dtype))
        return self._backward_workspace

    def backward(self, saved, upstream):
        a = self.args
        y, activations = saved
        w = self._workspace()
        grads = {name: aligned_empty(value.shape, value.dtype)
                 for name, value in a.inputs().items()}
        keep_blas_on_one_thread()
        if a.cell == "gru":
            dy, dh_n = upstream
            run_team(team_size(a), gru_backward_kernel, a.x, a.h0, w["w_ih_t"], w["w_hh_t"],
                     self.lengths, a.reset_after, y, activations, dy, dh_n, grads["x"],
                     grads["h0"], grads["w_ih"], grads["w_hh"], grads["b_ih"], grads["b_hh"],
                     w["d_gi"], w["d_gh"], w["reset_states"], w["dh"], w["dh_rec"],
                     w["d_reset"])
        else:
            dy, dh_n, dc_n = upstream
            run_team(team_size(a), lstm_backward_kernel, a.x, a.h0, a.c0, w["w_ih_t"], w["w_hh_t"],
                     self.lengths, y, activations, dy, dh_n, dc_n, grads["x"],
                     grads["h0"], grads["c0"], grads["w_ih"], grads["w_hh"], grads["b_ih"],
                     w["d_gi"], w["dh"], w["dc"], w["dh_rec"])
            grads["b_hh"][:] = grads["b_ih"]      # both biases enter the gates as one sum
        return grads


def prepare(args: RNNArgs) -> NumbaPrepared:
    ok, why = availability()
    if not ok:
        raise BackendUnavailable(why)
    return NumbaPrepared(args)


gru_forward, gru_backward, lstm_forward, lstm_backward = convenience_api(prepare)
