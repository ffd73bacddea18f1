"""The "numba-cpu" backend: GRU (both variants) and LSTM, forward and exact BPTT, in @njit code.

Structure of every pass (haste's and cuDNN's, on the CPU):

* forward: one GEMM projects the inputs of all T steps, ``gi = x @ w_ih.T``; then per step
  one recurrent product for all gates, ``gh = h @ w_hh.T``, and one fused pointwise loop that
  adds the biases, applies the gates and updates the state (reset-before GRUs need a second,
  (B,H)x(H,H) product per step, because r multiplies h before W_hn).
* backward: per step a fused pointwise loop writes the gate pre-activation gradients of all
  T steps into one buffer, then one recurrent product carries dh back a step; the weight and
  input gradients are then single large GEMMs over all T*B rows.

Design choices, each measured (the backend's report in the issue holds the figures):

* Gate math runs in float64 inside the pointwise loops. For float32 problems tanh and sigmoid
  are an arithmetic-only rational approximation (:func:`tanh_rational`, relative error
  3.7e-11 over [-9.02, 9.02], so float32 results are correctly rounded to within 1e-10 of a
  half ulp); with ``error_model='numpy'`` and fastmath flags the loops vectorize (libm's
  scalar ``tanh`` does not). float64 problems use ``math.tanh`` itself, so float64 results
  match the reference to its rounding.
* fastmath without ``nnan``/``ninf``: NaN and Inf inputs propagate like in the reference.
* The per-step recurrent product is :func:`matmul_nt`, register-blocked dot products over
  the weights in place: OpenBLAS repacks the weights on every call, which at recurrent
  shapes costs it up to 4x. The large GEMMs (input projection, dx, weight gradients) call
  the BLAS numba already links (SciPy's OpenBLAS, via numba's ``numba_xxgemm`` helper)
  through :func:`gemm`, which takes transposed views and column blocks and accumulates
  (beta = 1), so no pass copies or allocates.
* Threads: a run shares its work among numba's thread count (``numba.set_num_threads``)
  of threads, each running the same kernel on its slice of the hidden units and of the
  large GEMMs' outputs, meeting at a barrier of atomics once per step (see the "threads"
  section). The threads are the module's own (a ``parallel=True`` kernel cannot be cached
  by numba, and every process would recompile for 40 s), BLAS runs on one thread inside
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
import functools
import math

import numpy as np

from .contract import (GRU_N, GRU_R, GRU_Z, LSTM_F, LSTM_G, LSTM_I, LSTM_O,
                       BackendUnavailable, Prepared, RNNArgs, convenience_api)

try:
    import numba
    from llvmlite import ir
    from numba import njit, types
    from numba.core import cgutils
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
    JIT = dict(cache=True, nogil=True, error_model="numpy", fastmath=FASTMATH)

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

    @njit(**JIT)
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

    @njit(**JIT)
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

    @njit(**JIT)
    def _dot_4x4(a, a_col, w, w_row, w_col, K, b, j, out, o):
        """out[b:b+4, o+j:o+j+4] of :func:`matmul_nt`: 16 dot products in one pass over k, so
        each loaded value feeds four multiply-adds; nothing is stored inside the k loop, so
        LLVM vectorizes it without aliasing checks."""
        zero = out.dtype.type(0)
        s00 = s01 = s02 = s03 = s10 = s11 = s12 = s13 = zero
        s20 = s21 = s22 = s23 = s30 = s31 = s32 = s33 = zero
        # 1-D row views: an index k >= 0 needs no negative-index wraparound, which with
        # runtime offsets (w_col + k) would keep the loop scalar (6x slower).
        wr0, wr1 = w[w_row + j, w_col:w_col + K], w[w_row + j + 1, w_col:w_col + K]
        wr2, wr3 = w[w_row + j + 2, w_col:w_col + K], w[w_row + j + 3, w_col:w_col + K]
        ar0, ar1 = a[b, a_col:a_col + K], a[b + 1, a_col:a_col + K]
        ar2, ar3 = a[b + 2, a_col:a_col + K], a[b + 3, a_col:a_col + K]
        for k in range(K):
            w0, w1, w2, w3 = wr0[k], wr1[k], wr2[k], wr3[k]
            x0, x1, x2, x3 = ar0[k], ar1[k], ar2[k], ar3[k]
            s00 += x0 * w0; s01 += x0 * w1; s02 += x0 * w2; s03 += x0 * w3  # noqa: E702
            s10 += x1 * w0; s11 += x1 * w1; s12 += x1 * w2; s13 += x1 * w3  # noqa: E702
            s20 += x2 * w0; s21 += x2 * w1; s22 += x2 * w2; s23 += x2 * w3  # noqa: E702
            s30 += x3 * w0; s31 += x3 * w1; s32 += x3 * w2; s33 += x3 * w3  # noqa: E702
        o += j
        out[b, o], out[b, o + 1], out[b, o + 2], out[b, o + 3] = s00, s01, s02, s03
        out[b + 1, o], out[b + 1, o + 1], out[b + 1, o + 2], out[b + 1, o + 3] = \
            s10, s11, s12, s13
        out[b + 2, o], out[b + 2, o + 1], out[b + 2, o + 2], out[b + 2, o + 3] = \
            s20, s21, s22, s23
        out[b + 3, o], out[b + 3, o + 1], out[b + 3, o + 2], out[b + 3, o + 3] = \
            s30, s31, s32, s33

    @njit(**JIT)
    def _dot_1x4(a, a_col, w, w_row, w_col, K, b, j, out, o):
        """out[b, o+j:o+j+4] of :func:`matmul_nt` (batch rows left over from 4x4 blocks)."""
        zero = out.dtype.type(0)
        s0 = s1 = s2 = s3 = zero
        wr0, wr1 = w[w_row + j, w_col:w_col + K], w[w_row + j + 1, w_col:w_col + K]
        wr2, wr3 = w[w_row + j + 2, w_col:w_col + K], w[w_row + j + 3, w_col:w_col + K]
        ar = a[b, a_col:a_col + K]
        for k in range(K):
            x = ar[k]
            s0 += x * wr0[k]
            s1 += x * wr1[k]
            s2 += x * wr2[k]
            s3 += x * wr3[k]
        o += j
        out[b, o], out[b, o + 1], out[b, o + 2], out[b, o + 3] = s0, s1, s2, s3

    @njit(**JIT)
    def _dot_1x1(a, a_col, w, w_row, w_col, K, b, j, out, o):
        """out[b, o+j] of :func:`matmul_nt` (columns left over from blocks of 4)."""
        total = out.dtype.type(0)
        ar, wr = a[b, a_col:a_col + K], w[w_row + j, w_col:w_col + K]
        for k in range(K):
            total += ar[k] * wr[k]
        out[b, o + j] = total

    #: rows of w_t one pass of :func:`_axpy_rows` adds into out's row
    AXPY_ROWS = 8

    @njit(**JIT)
    def _axpy_rows(a, a_col, w_t, w_row, w_col, K, out, out_col, N):
        """:func:`matmul_nt` for fewer than 4 batch rows: out[b] accumulates rows of w_t
        scaled by a[b, k], AXPY_ROWS rows per pass over out[b] (which stays in L1). The
        rows are offsets into one flat view of w_t: a view per row costs more than a
        pass over a short row (the N of one worker's gate block)."""
        ld = nonnegative(w_t.shape[1])
        flat = w_t.reshape(w_t.size)
        K8 = K - K % AXPY_ROWS
        for b in range(a.shape[0]):
            row = out[b, out_col:out_col + N]
            row[:] = 0
            for k in range(0, K8, AXPY_ROWS):
                a0, a1, a2, a3 = a[b, a_col + k], a[b, a_col + k + 1], \
                    a[b, a_col + k + 2], a[b, a_col + k + 3]
                a4, a5, a6, a7 = a[b, a_col + k + 4], a[b, a_col + k + 5], \
                    a[b, a_col + k + 6], a[b, a_col + k + 7]
                base = nonnegative((w_col + k) * ld + w_row)
                for j in range(N):
                    at = base + j
                    row[j] += (a0 * flat[at] + a1 * flat[at + ld]
                               + a2 * flat[at + 2 * ld] + a3 * flat[at + 3 * ld]
                               + a4 * flat[at + 4 * ld] + a5 * flat[at + 5 * ld]
                               + a6 * flat[at + 6 * ld] + a7 * flat[at + 7 * ld])
            for k in range(K8, K):
                a0 = a[b, a_col + k]
                base = nonnegative((w_col + k) * ld + w_row)
                for j in range(N):
                    row[j] += a0 * flat[base + j]

    #: below this depth the dot products are too short to amortize their horizontal sums,
    #: and at batches of 4 and more BLAS wins (measured at 32x64x192)
    DOT_MIN_DEPTH = 128

    @njit(**JIT)
    def matmul_nt(a, a_col, w, w_t, w_row, w_col, K, out, out_col, N):
        """out[:, out_col:out_col+N] = a[:, a_col:a_col+K] @ w[w_row:w_row+N, w_col:w_col+K].T:
        the per-step recurrent product (forward: w = w_hh; backward: w = w_hh.T copy).
        a (B,*), w (*,*), w_t = w.T (a copy: BLAS's faster orientation) and out (B,*), all
        C-contiguous: blocks are offsets, so every inner loop runs over contiguous rows.

        Batches of 4 and more: dot products register-blocked 4 batch rows x 4 weight rows,
        over the weights in place, which at recurrent shapes beats OpenBLAS (it repacks the
        weights on every call: 91 vs 55 GFLOP/s at 16x256x768, 92 vs 22 at 4x512x1536,
        one core); short dot products (K < DOT_MIN_DEPTH) go to BLAS. Smaller batches:
        scaled rows of w_t streamed once (:func:`_axpy_rows`)."""
        B = a.shape[0]
        if B < 4:
            _axpy_rows(a, a_col, w_t, w_row, w_col, K, out, out_col, N)
            return
        if K < DOT_MIN_DEPTH:
            gemm(a[:, a_col:a_col + K], w_t[w_col:w_col + K, w_row:w_row + N],
                 out[:, out_col:out_col + N], 0.0)
            return
        B4, N4 = B - B % 4, N - N % 4
        for j in range(0, N4, 4):
            for b in range(0, B4, 4):
                _dot_4x4(a, a_col, w, w_row, w_col, K, b, j, out, out_col)
            for b in range(B4, B):
                _dot_1x4(a, a_col, w, w_row, w_col, K, b, j, out, out_col)
        for j in range(N4, N):
            for b in range(B):
                _dot_1x1(a, a_col, w, w_row, w_col, K, b, j, out, out_col)

    # ----------------------------------------------------------------------- threads
    # A run on n threads is n calls of the same kernel, one per thread (the kernels release
    # the GIL), each with a team = (worker, workers, sync). Each worker owns a slice of the
    # hidden units, so the per-step products and gate math split with no shared writes, and
    # a slice of the large GEMMs' outputs; the workers meet at a barrier once per step
    # (twice for reset-before GRUs, whose r*h feeds a second product). BLAS runs on one
    # thread inside every worker, so no other pool spins against the team.

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

    @njit(**JIT)
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

    #: hidden-unit slices start at multiples of 16 floats (one 64-byte cache line), so no
    #: two workers write one line, and of 4, so the 4x4 product blocks are those of one thread
    UNIT_ALIGN = 16

    @njit(**JIT)
    def share(team, n, align):
        """This worker's part [start, stop) of range(n): equal chunks, multiples of align."""
        worker, workers, _sync = team
        chunk = (n + workers - 1) // workers
        chunk = (chunk + align - 1) // align * align
        start = min(worker * chunk, n)
        return start, min(start + chunk, n)

    @njit(**JIT)
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

    @njit(**JIT)
    def gate_products(a, w, w_t, gates, H, start, stop, out):
        """out[:, g*H + start : g*H + stop] = a @ w[g*H + start : g*H + stop].T for the
        first ``gates`` gate blocks: a worker's units of every gate (one call when they
        are all units). a (B,H), w (G*H,H), w_t = w.T, out (B,G*H)."""
        if start == 0 and stop == H:
            matmul_nt(a, 0, w, w_t, 0, 0, H, out, 0, gates * H)
            return
        for gate in range(gates):
            matmul_nt(a, 0, w, w_t, gate * H + start, 0, H, out, gate * H + start,
                      stop - start)

    # ------------------------------------------------------------------- gate math

    # tanh(x) / x = P(x^2) / Q(x^2) on |x| <= TANH_CLAMP, a (5,5) rational fitted for minimal
    # relative error (3.7e-11, measured against mpmath). Past 9.02, tanh rounds to +-1 in
    # float32, so clamping there is exact for float32 results.
    TANH_CLAMP = 9.02
    P0, P1, P2, P3, P4, P5 = (0.9999999999637129, 0.14099201552840093, 0.004425938176347085,
                              4.22734483852933e-05, 1.111743183316326e-07,
                              3.6743213984355954e-11)
    Q1, Q2, Q3, Q4, Q5 = (0.4743253484623032, 0.029201055058884588, 0.0005008320564599259,
                          2.6038270394379413e-06, 2.9511099047907904e-09)

    @njit(**JIT)
    def tanh_rational(x):
        """tanh of a float64 in arithmetic only (vectorizes); accurate to 3.7e-11 relative,
        enough for float32 results. NaN stays NaN: the clamp compares, never min/max."""
        x = TANH_CLAMP if x > TANH_CLAMP else x
        x = -TANH_CLAMP if x < -TANH_CLAMP else x
        s = x * x
        p = P0 + s * (P1 + s * (P2 + s * (P3 + s * (P4 + s * P5))))
        q = 1.0 + s * (Q1 + s * (Q2 + s * (Q3 + s * (Q4 + s * Q5))))
        return x * p / q

    def gate_tanh(x, dtype):
        """tanh of a float64 pre-activation, as accurate as results of ``dtype`` need."""
        raise NotImplementedError("gate_tanh is for compiled code")

    def gate_sigmoid(x, dtype):
        """The logistic function as 0.5 + 0.5 tanh(x/2), like the reference."""
        raise NotImplementedError("gate_sigmoid is for compiled code")

    def _is_float32(dtype):
        return getattr(dtype, "dtype", dtype) == types.float32

    @overload(gate_tanh, jit_options=dict(fastmath=FASTMATH, error_model="numpy"))
    def _gate_tanh(x, dtype):
        if _is_float32(dtype):
            return lambda x, dtype: tanh_rational(x)
        return lambda x, dtype: math.tanh(x)

    @overload(gate_sigmoid, jit_options=dict(fastmath=FASTMATH, error_model="numpy"))
    def _gate_sigmoid(x, dtype):
        if _is_float32(dtype):
            return lambda x, dtype: 0.5 + 0.5 * tanh_rational(0.5 * x)
        return lambda x, dtype: 0.5 * (1.0 + math.tanh(0.5 * x))

    @njit(**JIT)
    def tanh_for(values, out):
        """out = gate_tanh(values) elementwise over 1-D arrays; the test and timing hook."""
        for i in range(values.size):
            out[i] = gate_tanh(np.float64(values[i]), out.dtype)

    @njit(**JIT)
    def sigmoid_for(values, out):
        """out = gate_sigmoid(values) elementwise over 1-D arrays."""
        for i in range(values.size):
            out[i] = gate_sigmoid(np.float64(values[i]), out.dtype)

    # ----------------------------------------------------------------- shared parts
    # Every kernel takes the team first; ``start, stop`` are the worker's hidden units
    # (:func:`share`), and pointwise functions work on those units of 1-D rows (one
    # sequence, one step): on rows LLVM vectorizes the loops (4x faster than indexing the
    # 3-D arrays in place). Their loops run ``for unit in range(stop - start)`` with
    # ``j = start + unit`` and start marked :func:`nonnegative`: LLVM proves j >= 0 only
    # in that form, and a possibly negative index keeps a loop scalar.

    @njit(**JIT)
    def previous_states(y, h0, t):
        """The state each sequence entered step t with, where step t is inside it: h0 at
        t = 0, else y[t-1] (a sequence inside step t was inside step t-1, so y is unmasked
        there). y (T,B,H), h0 (B,H); returns (B,H)."""
        return h0 if t == 0 else y[t - 1]

    @njit(**JIT)
    def zero_units(row, gates, H, start, stop):
        """row[g*H + start : g*H + stop] = 0 for the first ``gates`` blocks of a (G*H,) row."""
        for gate in range(gates):
            row[gate * H + start:gate * H + stop] = 0

    @njit(**JIT)
    def column_sums(team, rows, out):
        """out = rows.sum(axis=0) with float64 accumulation, this worker's columns.
        rows (M,N), out (N,)."""
        start, stop = share(team, out.shape[0], UNIT_ALIGN)
        total = np.zeros(stop - start, np.float64)
        for i in range(rows.shape[0]):
            row = rows[i, start:stop]
            for j in range(stop - start):
                total[j] += row[j]
        for j in range(stop - start):
            out[start + j] = total[j]

    @njit(**JIT)
    def weight_gradient_from_states(team, d_rows, y, h0, out):
        """out = sum over steps t of d_t.T @ h_{t-1} (h_{-1} = h0), as two GEMMs over the
        rows of y, with no copy of the state sequence. d_rows (T*B,N) holds d_t in rows
        t*B..t*B+B-1 (a column block is fine); y (T,B,H), h0 (B,H), out (N,H). Rows past
        a sequence's length must be zero: y is zero there, not the carried state."""
        T, B, H = y.shape
        team_gemm(team, d_rows[:B].T, h0, out, 0.0)
        if T > 1:        # the same split of out as above: each worker adds to its own part
            team_gemm(team, d_rows[B:].T, y.reshape((T * B, H))[:(T - 1) * B], out, 1.0)

    @njit(**JIT)
    def input_gradients(team, d_gates, x, w_ih, dx, dw_ih, db_ih):
        """dx = d_gates @ w_ih, dw_ih = d_gates.T @ x, db_ih = column sums, each one pass over
        all T*B rows. d_gates (T,B,G*H), x (T,B,I), w_ih (G*H,I)."""
        T, B, I = x.shape
        rows = d_gates.reshape((T * B, d_gates.shape[2]))
        team_gemm(team, rows, w_ih, dx.reshape((T * B, I)), 0.0)
        team_gemm(team, rows.T, x.reshape((T * B, I)), dw_ih, 0.0)
        column_sums(team, rows, db_ih)

    @njit(**JIT)
    def project_inputs(team, x, w_ih, gi):
        """gi = x @ w_ih.T for all steps at once, then a barrier (every worker reads all of
        gi's rows). x (T,B,I), w_ih (G*H,I), gi (T,B,G*H)."""
        T, B, I = x.shape
        team_gemm(team, x.reshape((T * B, I)), w_ih.T, gi.reshape((T * B, gi.shape[2])), 0.0)
        barrier(team)

    @njit(**JIT)
    def add_rows(into, rows, lengths, t, replace, start, stop):
        """into[b, start:stop] (+)= rows[b, start:stop] for the sequences inside step t.
        into (B,H) float64, rows (B,H)."""
        start, stop = nonnegative(start), nonnegative(stop)
        for b in range(into.shape[0]):
            if t < lengths[b]:
                into_row, row = into[b], rows[b]
                for unit in range(stop - start):
                    j = start + unit
                    into_row[j] = row[j] if replace else into_row[j] + row[j]

    # -------------------------------------------------------------------------- GRU

    # Slots of the GRU's saved activations, each H wide: r, z, n and (reset-after only) the
    # recurrent part of the candidate, W_hn h + b_hn, that dr needs.
    SAVED_R, SAVED_Z, SAVED_N, SAVED_GH_N = 0, 1, 2, 3

    @njit(**JIT)
    def gru_reset_row(gi_row, gh_row, bias_gi, h_row, reset_row, saved_row, start, stop):
        """Reset-before pre-pass: r into saved_row's r slot and reset_row = r * h.
        gi_row, gh_row (3H,) (gh's r part filled), bias_gi (3H,), h_row, reset_row (H,)."""
        H = nonnegative(h_row.shape[0])
        start, stop = nonnegative(start), nonnegative(stop)
        R = GRU_R * H
        for unit in range(stop - start):
            j = start + unit
            r = gate_sigmoid(np.float64(gi_row[R + j]) + bias_gi[R + j] + gh_row[R + j],
                             h_row.dtype)
            saved_row[SAVED_R * H + j] = r
            reset_row[j] = r * h_row[j]

    @njit(**JIT)
    def gru_step_row(gi_row, gh_row, bias_gi, b_hn, reset_after, h_row, new_row, y_row,
                     saved_row, start, stop):
        """One sequence's GRU step: gates from gi_row, gh_row (3H,) and the biases (see
        :func:`gru_forward_kernel`); from the state h_row (H,) writes the new state to
        new_row and y_row (H,) and the activations to saved_row (4H or 3H,; reset-before:
        r is there already, from :func:`gru_reset_row`)."""
        H = nonnegative(h_row.shape[0])
        start, stop = nonnegative(start), nonnegative(stop)
        R, Z, N = GRU_R * H, GRU_Z * H, GRU_N * H
        dtype = h_row.dtype
        for unit in range(stop - start):
            j = start + unit
            z = gate_sigmoid(np.float64(gi_row[Z + j]) + bias_gi[Z + j] + gh_row[Z + j], dtype)
            gh_n = np.float64(gh_row[N + j]) + b_hn[j]
            a_n = np.float64(gi_row[N + j]) + bias_gi[N + j]
            if reset_after:
                r = gate_sigmoid(np.float64(gi_row[R + j]) + bias_gi[R + j] + gh_row[R + j],
                                 dtype)
                n = gate_tanh(a_n + r * gh_n, dtype)
                saved_row[SAVED_R * H + j] = r
                saved_row[SAVED_GH_N * H + j] = gh_n
            else:
                n = gate_tanh(a_n + gh_n, dtype)
            h_new = n + z * (np.float64(h_row[j]) - n)
            saved_row[SAVED_Z * H + j] = z
            saved_row[SAVED_N * H + j] = n
            new_row[j] = h_new
            y_row[j] = h_new

    @njit(**JIT)
    def gru_forward_kernel(team, x, h0, w_ih, w_hh, w_hh_t, bias_gi, b_hn, lengths,
                           reset_after, y, h, saved, gi, gh, reset_state, states):
        """GRU forward over all T steps.

        x (T,B,I); h0 (B,H); w_ih (3H,I); w_hh (3H,H) and w_hh_t (H,3H), its transpose;
        bias_gi (3H,) float64: the biases added to the input part (b_ih, plus b_hh for r
        and z, plus b_hn when reset-before); b_hn (H,) float64: the candidate's recurrent
        bias when reset-after (r multiplies it; zero when reset-before); lengths (B,) int64.
        Outputs: y (T,B,H); h (B,H) = h_n. saved (T,B,4H) (reset-after) or (T,B,3H)
        receives r, z, n [, W_hn h + b_hn] for backward; inference passes a (1,B,4H)
        scratch that each step overwrites.
        Workspaces: gi (T,B,3H), gh (B,3H), reset_state (B,H) (r*h, reset-before only),
        states (2,B,H): the state before and after a step (other workers still read the
        one before while this worker writes its units of the next).
        """
        T, B, _ = x.shape
        H = h0.shape[1]
        N = GRU_N * H
        start, stop = share(team, H, UNIT_ALIGN)
        states[0, :, start:stop] = h0[:, start:stop]
        project_inputs(team, x, w_ih, gi)           # its barrier also publishes states[0]
        for t in range(T):
            prev, new = states[t % 2], states[(t + 1) % 2]
            slot = t if saved.shape[0] == T else 0
            if reset_after:
                gate_products(prev, w_hh, w_hh_t, 3, H, start, stop, gh)
            else:
                # r is needed before the candidate's product: W_hn (r*h).
                gate_products(prev, w_hh, w_hh_t, 2, H, start, stop, gh)
                for b in range(B):
                    gru_reset_row(gi[t, b], gh[b], bias_gi, prev[b], reset_state[b],
                                  saved[slot, b], start, stop)
                barrier(team)
                matmul_nt(reset_state, 0, w_hh, w_hh_t, N + start, 0, H, gh, N + start,
                          stop - start)
            for b in range(B):
                if t < lengths[b]:
                    gru_step_row(gi[t, b], gh[b], bias_gi, b_hn, reset_after, prev[b], new[b],
                                 y[t, b], saved[slot, b], start, stop)
                else:
                    new[b, start:stop] = prev[b, start:stop]
                    y[t, b, start:stop] = 0
            barrier(team)
        h[:, start:stop] = states[T % 2, :, start:stop]

    @njit(**JIT)
    def gru_backward_row(dy_row, saved_row, prev_row, reset_after, dh_row, d_gi_row,
                         d_gh_row, reset_row, start, stop):
        """One sequence's GRU step backward. dy_row (H,), saved_row (4H or 3H,), prev_row
        (H,) the state before the step; dh_row (H,) float64 holds dL/dh after the step and
        leaves with its direct part (d * z). Writes d_gi_row (3H,) and, reset-after,
        d_gh_row (3H,) (the recurrent parts' gradients: r*da_n in n) or, reset-before,
        reset_row (H,) = r*h_prev, the input of W_hn (dr waits for d(r*h)).

        Several short loops, each with few arrays: one fused loop over all of them is too
        many possible aliases for LLVM's vectorizer, which then leaves it scalar (4x)."""
        H = nonnegative(dy_row.shape[0])
        start, stop = nonnegative(start), nonnegative(stop)
        R, Z, N = GRU_R * H, GRU_Z * H, GRU_N * H
        for unit in range(stop - start):
            j = start + unit
            dh_row[j] += dy_row[j]
        for unit in range(stop - start):
            j = start + unit
            d = dh_row[j]
            z = np.float64(saved_row[SAVED_Z * H + j])
            n = np.float64(saved_row[SAVED_N * H + j])
            d_gi_row[Z + j] = d * (np.float64(prev_row[j]) - n) * z * (1.0 - z)
            d_gi_row[N + j] = d * (1.0 - z) * (1.0 - n * n)
        if reset_after:
            for unit in range(stop - start):
                j = start + unit
                r = np.float64(saved_row[SAVED_R * H + j])
                gh_n = np.float64(saved_row[SAVED_GH_N * H + j])
                d_gi_row[R + j] = np.float64(d_gi_row[N + j]) * gh_n * r * (1.0 - r)
            for unit in range(stop - start):
                j = start + unit
                r = np.float64(saved_row[SAVED_R * H + j])
                d_gh_row[R + j] = d_gi_row[R + j]
                d_gh_row[Z + j] = d_gi_row[Z + j]
                d_gh_row[N + j] = d_gi_row[N + j] * r
        else:
            for unit in range(stop - start):
                j = start + unit
                reset_row[j] = saved_row[SAVED_R * H + j] * prev_row[j]
        for unit in range(stop - start):
            j = start + unit
            dh_row[j] *= np.float64(saved_row[SAVED_Z * H + j])

    @njit(**JIT)
    def gru_reset_backward_row(d_reset_row, saved_row, prev_row, dh_row, d_gi_row, start,
                               stop):
        """Reset-before: from d(r*h) (H,), the r gradient into d_gi_row (3H,) and the
        r-path into dh_row (H,) float64."""
        H = nonnegative(d_reset_row.shape[0])
        start, stop = nonnegative(start), nonnegative(stop)
        R = GRU_R * H
        for unit in range(stop - start):
            j = start + unit
            r = np.float64(saved_row[SAVED_R * H + j])
            d_reset = np.float64(d_reset_row[j])
            d_gi_row[R + j] = d_reset * np.float64(prev_row[j]) * r * (1.0 - r)
            dh_row[j] += d_reset * r

    @njit(**JIT)
    def gru_backward_kernel(team, x, h0, w_ih, w_hh, w_hh_t, lengths, reset_after, y, saved,
                            dy, dh_n, dx, dh0, dw_ih, dw_hh, db_ih, db_hh,
                            d_gi, d_gh, reset_states, dh, dh_rec, d_reset):
        """GRU backpropagation through time.

        Inputs as :func:`gru_forward_kernel`, y (T,B,H) and saved of its training run,
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
        start, stop = share(team, H, UNIT_ALIGN)
        dh[:, start:stop] = dh_n[:, start:stop]
        for t in range(T - 1, -1, -1):
            prev = previous_states(y, h0, t)
            for b in range(B):
                if t < lengths[b]:
                    # the workspace a variant does not use is empty: pass a valid row
                    gru_backward_row(dy[t, b], saved[t, b], prev[b], reset_after, dh[b],
                                     d_gi[t, b], d_gh[t, b] if reset_after else dh_rec[b],
                                     dh_rec[b] if reset_after else reset_states[t, b],
                                     start, stop)
                    continue
                zero_units(d_gi[t, b], 3, H, start, stop)
                if reset_after:
                    zero_units(d_gh[t, b], 3, H, start, stop)
                else:
                    reset_states[t, b, start:stop] = 0
            barrier(team)          # the products below read every worker's gate gradients
            if reset_after:
                matmul_nt(d_gh[t], 0, w_hh_t, w_hh, start, 0, 3 * H, dh_rec, start,
                          stop - start)
            else:
                matmul_nt(d_gi[t], N, w_hh_t, w_hh, start, N, H, d_reset, start,
                          stop - start)                                         # d(r*h)
                for b in range(B):
                    if t < lengths[b]:
                        gru_reset_backward_row(d_reset[b], saved[t, b], prev[b], dh[b],
                                               d_gi[t, b], start, stop)
                barrier(team)
                matmul_nt(d_gi[t], 0, w_hh_t, w_hh, start, 0, N, dh_rec, start,
                          stop - start)
            add_rows(dh, dh_rec, lengths, t, False, start, stop)
        dh0[:, start:stop] = dh[:, start:stop]
        input_gradients(team, d_gi, x, w_ih, dx, dw_ih, db_ih)
        if reset_after:
            d_rows = d_gh.reshape((T * B, 3 * H))
            weight_gradient_from_states(team, d_rows, y, h0, dw_hh)
            column_sums(team, d_rows, db_hh)
        else:
            d_rows = d_gi.reshape((T * B, 3 * H))
            weight_gradient_from_states(team, d_rows[:, :N], y, h0, dw_hh[:N])
            team_gemm(team, d_rows[:, N:].T, reset_states.reshape((T * B, H)), dw_hh[N:], 0.0)
            column_sums(team, d_rows, db_hh)

    # ------------------------------------------------------------------------- LSTM

    # Slots of the LSTM's saved activations, each H wide: the gates and the new cell state.
    SAVED_I, SAVED_F, SAVED_G, SAVED_O, SAVED_C = 0, 1, 2, 3, 4

    @njit(**JIT)
    def lstm_step_row(gi_row, gh_row, bias, h_row, new_row, c_row, y_row, saved_row, start,
                      stop):
        """One sequence's LSTM step: gates from gi_row, gh_row (4H,) and bias (4H,); from the
        state h_row (H,) writes the new one to new_row and y_row (H,), updates c_row (H,)
        and writes saved_row (5H,)."""
        H = nonnegative(h_row.shape[0])
        start, stop = nonnegative(start), nonnegative(stop)
        GI, GF, GG, GO = LSTM_I * H, LSTM_F * H, LSTM_G * H, LSTM_O * H
        dtype = h_row.dtype
        for unit in range(stop - start):
            j = start + unit
            i = gate_sigmoid(np.float64(gi_row[GI + j]) + bias[GI + j] + gh_row[GI + j], dtype)
            f = gate_sigmoid(np.float64(gi_row[GF + j]) + bias[GF + j] + gh_row[GF + j], dtype)
            g = gate_tanh(np.float64(gi_row[GG + j]) + bias[GG + j] + gh_row[GG + j], dtype)
            o = gate_sigmoid(np.float64(gi_row[GO + j]) + bias[GO + j] + gh_row[GO + j], dtype)
            c_new = f * c_row[j] + i * g
            h_new = o * gate_tanh(c_new, dtype)
            saved_row[SAVED_I * H + j] = i
            saved_row[SAVED_F * H + j] = f
            saved_row[SAVED_G * H + j] = g
            saved_row[SAVED_O * H + j] = o
            saved_row[SAVED_C * H + j] = c_new
            c_row[j] = c_new
            new_row[j] = h_new
            y_row[j] = h_new

    @njit(**JIT)
    def lstm_forward_kernel(team, x, h0, c0, w_ih, w_hh, w_hh_t, bias, lengths, y, h, c,
                            saved, gi, gh, states):
        """LSTM forward over all T steps.

        x (T,B,I); h0, c0 (B,H); w_ih (4H,I); w_hh (4H,H) and w_hh_t (H,4H), its transpose;
        bias (4H,) float64 = b_ih + b_hh; lengths (B,) int64. Outputs: y (T,B,H); h = h_n
        and c, the running cell state, = c_n (B,H). saved (T,B,5H) receives i, f, g, o and
        the new c for backward; inference passes a (1,B,5H) scratch.
        Workspaces: gi (T,B,4H), gh (B,4H), states (2,B,H) (see :func:`gru_forward_kernel`).
        """
        T, B, _ = x.shape
        H = h0.shape[1]
        start, stop = share(team, H, UNIT_ALIGN)
        states[0, :, start:stop] = h0[:, start:stop]
        c[:, start:stop] = c0[:, start:stop]      # c[j] is read by unit j's worker only
        project_inputs(team, x, w_ih, gi)
        for t in range(T):
            prev, new = states[t % 2], states[(t + 1) % 2]
            slot = t if saved.shape[0] == T else 0
            gate_products(prev, w_hh, w_hh_t, 4, H, start, stop, gh)
            for b in range(B):
                if t < lengths[b]:
                    lstm_step_row(gi[t, b], gh[b], bias, prev[b], new[b], c[b], y[t, b],
                                  saved[slot, b], start, stop)
                else:
                    new[b, start:stop] = prev[b, start:stop]
                    y[t, b, start:stop] = 0
            barrier(team)
        h[:, start:stop] = states[T % 2, :, start:stop]

    @njit(**JIT)
    def lstm_backward_row(dy_row, saved_row, c_prev_row, dh_row, dc_row, d_gi_row, start,
                          stop):
        """One sequence's LSTM step backward. dy_row (H,), saved_row (5H,), c_prev_row (H,)
        the cell state before the step; dh_row, dc_row (H,) float64 hold the gradients
        after the step (dh_row is clobbered), dc_row leaves with the one before it.
        Writes d_gi_row (4H,). Short loops over few arrays, so each one vectorizes (see
        :func:`gru_backward_row`)."""
        H = nonnegative(dy_row.shape[0])
        start, stop = nonnegative(start), nonnegative(stop)
        GI, GF, GG, GO = LSTM_I * H, LSTM_F * H, LSTM_G * H, LSTM_O * H
        for unit in range(stop - start):
            j = start + unit
            dh_row[j] += dy_row[j]
        for unit in range(stop - start):
            j = start + unit
            o = np.float64(saved_row[SAVED_O * H + j])
            tanh_c = gate_tanh(np.float64(saved_row[SAVED_C * H + j]), dy_row.dtype)
            d_h = dh_row[j]
            d_gi_row[GO + j] = d_h * tanh_c * o * (1.0 - o)
            dc_row[j] += d_h * o * (1.0 - tanh_c * tanh_c)
        for unit in range(stop - start):
            j = start + unit
            i = np.float64(saved_row[SAVED_I * H + j])
            f = np.float64(saved_row[SAVED_F * H + j])
            g = np.float64(saved_row[SAVED_G * H + j])
            d_c = dc_row[j]
            d_gi_row[GI + j] = d_c * g * i * (1.0 - i)
            d_gi_row[GF + j] = d_c * np.float64(c_prev_row[j]) * f * (1.0 - f)
            d_gi_row[GG + j] = d_c * i * (1.0 - g * g)
        for unit in range(stop - start):
            j = start + unit
            dc_row[j] *= np.float64(saved_row[SAVED_F * H + j])

    @njit(**JIT)
    def lstm_backward_kernel(team, x, h0, c0, w_ih, w_hh, w_hh_t, lengths, y, saved, dy,
                             dh_n, dc_n, dx, dh0, dc0, dw_ih, dw_hh, db, d_gi, dh, dc, dh_rec):
        """LSTM backpropagation through time.

        Inputs as :func:`lstm_forward_kernel`, y (T,B,H) and saved of its training run,
        upstream dy (T,B,H), dh_n, dc_n (B,H). Outputs: dx (T,B,I), dh0, dc0 (B,H),
        dw_ih (4H,I), dw_hh (4H,H), db (4H,): the gradient of b_ih and of b_hh alike.
        Workspaces: d_gi (T,B,4H) gate pre-activation gradients; dh, dc (B,H) float64,
        the gradients carried back; dh_rec (B,H).
        """
        T, B, _ = x.shape
        H = h0.shape[1]
        C = SAVED_C * H
        start, stop = share(team, H, UNIT_ALIGN)
        dh[:, start:stop] = dh_n[:, start:stop]
        dc[:, start:stop] = dc_n[:, start:stop]
        for t in range(T - 1, -1, -1):
            for b in range(B):
                if t < lengths[b]:
                    # a sequence inside step t was inside t-1: its saved c there is current
                    c_prev = c0[b] if t == 0 else saved[t - 1, b, C:C + H]
                    lstm_backward_row(dy[t, b], saved[t, b], c_prev, dh[b], dc[b], d_gi[t, b],
                                      start, stop)
                else:
                    zero_units(d_gi[t, b], 4, H, start, stop)
            barrier(team)
            matmul_nt(d_gi[t], 0, w_hh_t, w_hh, start, 0, 4 * H, dh_rec, start, stop - start)
            add_rows(dh, dh_rec, lengths, t, True, start, stop)
        dh0[:, start:stop] = dh[:, start:stop]
        dc0[:, start:stop] = dc[:, start:stop]
        input_gradients(team, d_gi, x, w_ih, dx, dw_ih, db)
        weight_gradient_from_states(team, d_gi.reshape((T * B, 4 * H)), y, h0, dw_hh)


# ----------------------------------------------------------------------------- backend

#: a run shares its steps among numba's threads only where one step's recurrent product
#: has at least this many FLOPs: below it the barrier per step costs more than half a
#: step saves (measured at threads = 2: see the backend's report in issue 3)
TEAM_MIN_STEP_FLOPS = 2e5


def team_size(args: RNNArgs) -> int:
    """Threads a run of ``args`` uses: numba's thread count (``numba.set_num_threads``,
    NUMBA_NUM_THREADS), or 1 where a step is too small to share, and where the step's
    products go to BLAS (batches of 4 and more with H < DOT_MIN_DEPTH): split per worker
    and gate, those calls are too short to pay for themselves (measured at 64,32,32,64:
    reset-before GRU training 1.65x slower on two threads than on one, 8.49 vs 5.13 ms)."""
    step_flops = 2.0 * args.B * args.H * args.gates * args.H
    blas_steps = args.B >= 4 and args.H < DOT_MIN_DEPTH
    if step_flops < TEAM_MIN_STEP_FLOPS or blas_steps:
        return 1
    return numba.get_num_threads()


@functools.cache
def _helper_threads(count: int) -> concurrent.futures.ThreadPoolExecutor:
    """The threads that run workers 1.. of a team (worker 0 is the calling thread)."""
    return concurrent.futures.ThreadPoolExecutor(count, thread_name_prefix="numba-cpu")


def run_team(workers: int, kernel, *arguments) -> None:
    """``kernel(team, *arguments)`` on ``workers`` threads at once, each with its team;
    returns when all are done, raising the error of a worker that failed."""
    sync = np.zeros(8, np.int64)            # 64 bytes: the counters have their cache line
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


def keep_blas_on_one_thread() -> None:
    """Set the OpenBLAS numba calls (SciPy's) to one thread, and leave it there: the
    team's workers are the threads. Setting it back after each run would wake OpenBLAS's
    own threads, which then spin beside the team for a while (measured at threads = 2:
    medians up to 2.5x slower, varying 2x run to run). NumPy's BLAS is another library
    and keeps its threads; SciPy's linear algebra in this process runs on one thread."""
    blas = _numba_blas()
    if blas is not None and blas.get_num_threads() != 1:
        blas.set_num_threads(1)


def saved_width(args: RNNArgs) -> int:
    """Activations saved per (step, sequence), in units of H (see the SAVED_* slots)."""
    if args.cell == "lstm":
        return 5
    return 4 if args.reset_after else 3


class NumbaPrepared(Prepared):
    """Weights laid out once (w_hh transposed, biases folded in float64) and the workspaces
    every run reuses; each run allocates only what it returns (outputs, saved, gradients).
    One Prepared runs one call at a time (its workspaces are shared)."""

    def __init__(self, args: RNNArgs):
        super().__init__(args)
        T, B, H, G = args.T, args.B, args.H, args.gates
        dtype = args.dtype
        self.lengths = (np.full(B, T, np.int64) if args.lengths is None else args.lengths)
        self.w_hh_t = np.ascontiguousarray(args.w_hh.T)
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
        self.gi = np.empty((T, B, G * H), dtype)
        self.gh = np.empty((B, G * H), dtype)
        self.states = np.empty((2, B, H), dtype)
        self.scratch = np.empty((1, B, self.saved_width), dtype)
        self.reset_state = np.empty((B, H) if not args.reset_after else (0, 0), dtype)
        self._backward_workspace = None

    def _run(self, saved):
        a = self.args
        y = np.empty((a.T, a.B, a.H), a.dtype)
        h = np.empty((a.B, a.H), a.dtype)
        keep_blas_on_one_thread()
        if a.cell == "gru":
            run_team(team_size(a), gru_forward_kernel, a.x, a.h0, a.w_ih, a.w_hh, self.w_hh_t,
                     self.bias, self.b_hn, self.lengths, a.reset_after, y, h, saved, self.gi,
                     self.gh, self.reset_state, self.states)
            return y, h
        c = np.empty((a.B, a.H), a.dtype)
        run_team(team_size(a), lstm_forward_kernel, a.x, a.h0, a.c0, a.w_ih, a.w_hh,
                 self.w_hh_t, self.bias, self.lengths, y, h, c, saved, self.gi, self.gh,
                 self.states)
        return y, h, c

    def forward(self):
        return self._run(self.scratch)

    def forward_train(self):
        """Outputs and saved = (y, activations): backward reads the previous states from y,
        so only the activations count as saved state."""
        a = self.args
        activations = np.empty((a.T, a.B, self.saved_width), a.dtype)
        outputs = self._run(activations)
        self.saved_bytes = activations.nbytes
        return outputs, (outputs[0], activations)

    def _workspace(self):
        """Backward's buffers, made on the first backward (inference never needs them)."""
        if self._backward_workspace is None:
            a = self.args
            T, B, H, G, dtype = a.T, a.B, a.H, a.gates, a.dtype
            empty3 = np.empty((0, 0, 0), dtype)
            self._backward_workspace = dict(
                d_gi=np.empty((T, B, G * H), dtype),
                d_gh=(np.empty((T, B, G * H), dtype)
                      if a.cell == "gru" and a.reset_after else empty3),
                reset_states=(np.empty((T, B, H), dtype)
                              if a.cell == "gru" and not a.reset_after else empty3),
                dh=np.empty((B, H)), dc=np.empty((B, H)),
                dh_rec=np.empty((B, H), dtype), d_reset=np.empty((B, H), dtype))
        return self._backward_workspace

    def backward(self, saved, upstream):
        a = self.args
        y, activations = saved
        w = self._workspace()
        grads = {name: np.empty_like(value) for name, value in a.inputs().items()}
        keep_blas_on_one_thread()
        if a.cell == "gru":
            dy, dh_n = upstream
            run_team(team_size(a), gru_backward_kernel, a.x, a.h0, a.w_ih, a.w_hh, self.w_hh_t,
                     self.lengths, a.reset_after, y, activations, dy, dh_n, grads["x"],
                     grads["h0"], grads["w_ih"], grads["w_hh"], grads["b_ih"], grads["b_hh"],
                     w["d_gi"], w["d_gh"], w["reset_states"], w["dh"], w["dh_rec"],
                     w["d_reset"])
        else:
            dy, dh_n, dc_n = upstream
            run_team(team_size(a), lstm_backward_kernel, a.x, a.h0, a.c0, a.w_ih, a.w_hh,
                     self.w_hh_t, self.lengths, y, activations, dy, dh_n, dc_n, grads["x"],
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
