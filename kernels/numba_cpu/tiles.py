"""The micro-kernels of the products with a weight matrix, written in LLVM vector IR.

A product with a weight matrix W, a (B,K) @ W.T, is small per step, and at recurrent shapes
BLAS spends much of it repacking W. W is fixed for a run, so it is packed once, when a run
is prepared (:func:`pack_panels`), into panels of PANEL_COLS of its rows, each stored
depth-major: panel[k, :] holds element k of those rows, one run of PANEL_COLS values. A tile
of PANEL_ROWS batch rows x one panel then accumulates in vector registers
(:func:`_panel_tile`): per depth step it loads the panel's row once and broadcasts each
batch row's value, with no horizontal sums and no stores until the end (an outer-product
GEMM micro-kernel). :func:`_gradient_tile` is the same micro-kernel over operands read
where they lie, for the weight gradients.
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

#: a tile: PANEL_ROWS batch rows x PANEL_COLS outputs, accumulated in vectors of
#: VECTOR_LANES values (float32: one AVX-512 or two AVX2 registers per vector); smaller
#: batches take one tile of all their rows
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


def pack_panels(blocks):
    """W (blocks, R, depth) as :func:`matmul_nt`'s panels: (blocks, ceil(R/PANEL_COLS),
    depth, PANEL_COLS), rows past R zero."""
    count, R, depth = blocks.shape
    panels = -(-R // PANEL_COLS)
    padded = np.zeros((count, panels * PANEL_COLS, depth), blocks.dtype)
    padded[:, :R] = blocks
    return np.ascontiguousarray(
        padded.reshape(count, panels, PANEL_COLS, depth).transpose(0, 1, 3, 2))
