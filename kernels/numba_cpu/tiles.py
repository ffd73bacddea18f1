"""The micro-kernels of the products with a weight matrix, written in LLVM vector IR.

A product with a weight matrix W, a (B,K) @ W.T, is small per step, and at recurrent shapes
BLAS spends much of it repacking W. W is fixed for a run, so it is packed once, when a run
is prepared (:func:`pack_panels`), into panels of PANEL_COLS of its rows, each stored
depth-major: panel[k, :] holds element k of those rows, one run of PANEL_COLS values. A tile
of batch rows x panel columns then accumulates in vector registers (:func:`_panel_tile`):
per depth step it loads the panel's row once and broadcasts each batch row's value, with no
horizontal sums and no stores until the end (an outer-product GEMM micro-kernel).
:func:`_gradient_tile` is the same micro-kernel over operands read where they lie, for the
weight gradients. The tile's shape follows the vector registers of the CPU numba compiles
for (:data:`TILE`); the panels' width does not, so results are the same bits on any.
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic


class TileShape(NamedTuple):
    """The micro-kernel's tile of full batches: ``rows`` batch rows x ``cols`` outputs (of a
    panel's PANEL_COLS), accumulated in vectors of ``lanes`` values. Its accumulators
    (rows * cols / lanes vectors), one panel row's vectors (cols / lanes) and a broadcast
    must fit the target's vector registers, or LLVM spills them to the stack inside the
    depth loop."""

    rows: int
    cols: int
    lanes: int


#: the tile per vector register file of numba's target CPU: "zmm" (AVX-512: 32 registers
#: of 16 float32), "ymm" (AVX2: 16 of 8). zmm: 8 accumulators, room to spare; ymm: 12
#: accumulators + 2 panel vectors + 1 broadcast = 15 of 16 (BLIS's Haswell shape), where
#: 4 x 32 (16 + 4 + 1 = 21) spills. Measured: docs/PERFORMANCE.md.
TILE_SHAPES = {"zmm": TileShape(4, 32, 16), "ymm": TileShape(6, 16, 8)}

#: W's rows per panel, whatever the tile: the hidden units a worker takes and the columns
#: the weight gradients' tiles take are multiples of it, so how a product is split (and
#: so its bits) does not depend on the target's tile
PANEL_COLS = 32

_PROBE_IR = """
define void @probe(<16 x float>* %p) {
  %v = load <16 x float>, <16 x float>* %p
  %w = fadd <16 x float> %v, %v
  store <16 x float> %w, <16 x float>* %p
  ret void
}"""


@functools.cache
def target_registers() -> str:
    """The vector register file numba's target CPU gives 16-float vectors: "zmm" or "ymm"
    ("ymm" for any target without 512-bit registers). The target is numba's (its CPU name
    and features, which NUMBA_CPU_NAME / NUMBA_CPU_FEATURES set, as ``--isa`` does), not the
    host's: LLVM compiles a probe for it and the assembly says which registers it used."""
    import llvmlite.binding as llvm
    from numba.core.registry import cpu_target

    codegen = cpu_target.target_context.codegen()
    machine = llvm.Target.from_default_triple().create_target_machine(
        cpu=codegen._get_host_cpu_name(), features=codegen._get_host_cpu_features())
    return "zmm" if "zmm" in machine.emit_assembly(llvm.parse_assembly(_PROBE_IR)) else "ymm"


def target_tile() -> TileShape:
    """The tile numba-cpu's products use on numba's target CPU."""
    return TILE_SHAPES[target_registers()]


#: the tile of this process (numba reads its target once, when it loads)
TILE = target_tile()
PANEL_ROWS, VECTOR_LANES = TILE.rows, TILE.lanes
if PANEL_COLS % TILE.cols or TILE.cols % TILE.lanes:
    raise ValueError(f"tile {TILE}: cols must divide {PANEL_COLS} and be whole vectors")


def tile_cols(rows: int) -> int:
    """The columns a tile of ``rows`` rows takes at a time: the whole panel where its
    accumulators and panel vectors, (rows + 1) * cols / lanes, are no more than the full
    tile's (a small batch then keeps more independent sums in flight), else the tile's."""
    fits = (rows + 1) * PANEL_COLS <= (TILE.rows + 1) * TILE.cols
    return PANEL_COLS if fits else TILE.cols


def _emit_tile(context, builder, real, tile_rows, depth, a_element, panel_row, out_rows,
               cols, accumulate=None):
    """The micro-kernel's LLVM IR: out_rows[r][c] (+)= sum over k < depth of
    a_element(r, k) * panel_row(k)[c], for r < tile_rows (a constant) and c < cols
    (cols < PANEL_COLS only without accumulate), in column blocks of
    :func:`tile_cols` (tile_rows). a_element(r, k) and panel_row(k) return
    pointers (a scalar; PANEL_COLS contiguous values), out_rows[r] a pointer to row r's
    first output; accumulate, an i1 or None, adds the outputs' old values. Each output
    is one lane's sum over k in order, so results do not depend on the tile's shape or
    where it starts."""
    width = tile_cols(tile_rows)
    for first in range(0, PANEL_COLS, width):
        _emit_column_block(context, builder, real, tile_rows, depth, a_element, panel_row,
                           out_rows, cols, accumulate, first, width)


def _emit_column_block(context, builder, real, tile_rows, depth, a_element, panel_row,
                       out_rows, cols, accumulate, first, width):
    """:func:`_emit_tile` for columns [first, first + width) of the panel: its
    accumulators stay in registers over the depth loop."""
    vector = ir.VectorType(real, VECTOR_LANES)
    intp = cgutils.intp_t

    def vector_at(pointer, v):
        return builder.bitcast(
            builder.gep(pointer, [ir.Constant(intp, first + v * VECTOR_LANES)]),
            vector.as_pointer())

    suffix = f"v{VECTOR_LANES}f{context.get_abi_sizeof(real) * 8}"
    fmuladd = builder.module.declare_intrinsic(
        f"llvm.fmuladd.{suffix}", fnty=ir.FunctionType(vector, [vector] * 3))
    per_row = width // VECTOR_LANES
    # allocas in the entry block: LLVM promotes them to registers
    sums = [[cgutils.alloca_once_value(builder, ir.Constant(vector, None))
             for _ in range(per_row)] for _ in range(tile_rows)]
    lane0 = ir.Constant(ir.IntType(32), 0)
    broadcast = ir.Constant(ir.VectorType(ir.IntType(32), VECTOR_LANES),
                            [0] * VECTOR_LANES)
    with cgutils.for_range(builder, depth) as loop:
        k = loop.index
        panel_k = panel_row(k)
        weights = [builder.load(vector_at(panel_k, v), align=4) for v in range(per_row)]
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
                    old = builder.load(vector_at(out_rows[r], v), align=4)
                    builder.store(builder.fadd(builder.load(sums[r][v]), old), sums[r][v])
    # columns of this block that are outputs: all, some (the last panel of a block, through
    # a buffer) or none
    part = builder.sub(cols, ir.Constant(intp, first))
    whole = builder.icmp_signed(">=", part, ir.Constant(intp, width))
    with builder.if_else(whole) as (whole_block, part_block):
        with whole_block:
            for r in range(tile_rows):
                for v in range(per_row):
                    builder.store(builder.load(sums[r][v]), vector_at(out_rows[r], v),
                                  align=4)
        with part_block:
            buffer = builder.bitcast(
                cgutils.alloca_once(builder, ir.ArrayType(real, PANEL_COLS)),
                real.as_pointer())
            for r in range(tile_rows):
                for v in range(per_row):
                    builder.store(builder.load(sums[r][v]), vector_at(buffer, v), align=4)
                with cgutils.for_range(builder, part) as column:     # none where part <= 0
                    index = builder.add(column.index, ir.Constant(intp, first))
                    builder.store(builder.load(builder.gep(buffer, [index])),
                                  builder.gep(out_rows[r], [index]))


def _emit_rows(context, builder, rows_type, rows, emit):
    """emit(tile_rows) for a tile of ``rows`` rows: one tile for a literal, else a switch
    over 1..PANEL_ROWS (other counts do nothing), one tile of each."""
    if isinstance(rows_type, types.IntegerLiteral):
        emit(rows_type.literal_value)
        return
    count = context.cast(builder, rows, rows_type, types.intp)
    done = builder.append_basic_block("tile.done")
    switch = builder.switch(count, done)
    for tile_rows in range(1, PANEL_ROWS + 1):
        case = builder.append_basic_block(f"tile.rows{tile_rows}")
        switch.add_case(ir.Constant(count.type, tile_rows), case)
        builder.position_at_end(case)
        emit(tile_rows)
        builder.branch(done)
    builder.position_at_end(done)


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
    IR (:func:`_emit_tile`); rows at most PANEL_ROWS (a constant compiles one tile, a
    variable one tile per row count).
    a (B,*) and out (B,*) 2-D, panels (blocks, P, depth, PANEL_COLS): C-contiguous, one
    float dtype; the caller checks the bounds (this reads and writes through raw
    pointers, and makes no view, whose reference count two workers would contend
    for)."""
    dtype = getattr(a, "dtype", None)
    if not (_is_float_array(a, 2, dtype) and _is_float_array(panels, 4, dtype)
            and _is_float_array(out, 2, dtype) and isinstance(rows, types.Integer)):
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
        a_rows = [builder.gep(a_array.data, [builder.add(
            builder.mul(builder.add(row, constant(r)), lda), k0)])
            for r in range(PANEL_ROWS)]
        panel_rows = builder.gep(panels_array.data, [builder.add(
            panel_start, builder.mul(k0, constant(PANEL_COLS)))])
        out_rows = [builder.gep(out_array.data, [builder.add(
            builder.mul(builder.add(row, constant(r)), ldo), out_col)])
            for r in range(PANEL_ROWS)]
        _emit_rows(context, builder, signature.args[10], args[10], lambda tile_rows: _emit_tile(
            context, builder, real, tile_rows, depth,
            lambda r, k: builder.gep(a_rows[r], [k]),
            lambda k: builder.gep(panel_rows, [builder.mul(k, constant(PANEL_COLS))]),
            out_rows, cols))
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _gradient_tile(typingctx, d, m0, g, x, i0, depth, out, accumulate, rows):
    """out[g:g+rows, i0:i0+PANEL_COLS] (+)= d[m0:m0+depth, g:g+rows].T @
    x[m0:m0+depth, i0:i0+PANEL_COLS]: the micro-kernel of :func:`weight_gradient`, with
    d read through its strides (its columns are the tile's rows) and x's rows as the
    panel rows, so neither is copied. d 2-D, x and out 2-D with contiguous rows, one
    float dtype; rows at most PANEL_ROWS (as :func:`_panel_tile`); accumulate adds to out.
    The caller checks the bounds."""
    dtype = getattr(d, "dtype", None)
    if not (_is_float_array(d, 2, dtype, "A") and _is_float_array(x, 2, dtype, "A")
            and _is_float_array(out, 2, dtype, "A") and isinstance(rows, types.Integer)):
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
        d_columns = [builder.gep(d_array.data, [builder.add(
            builder.mul(m0, d_row), builder.mul(builder.add(g, ir.Constant(intp, r)),
                                                d_col))])
            for r in range(PANEL_ROWS)]
        x_rows = builder.gep(x_array.data, [builder.add(builder.mul(m0, ldx), i0)])
        out_rows = [builder.gep(out_array.data, [builder.add(builder.mul(
            builder.add(g, ir.Constant(intp, r)), ldo), i0)]) for r in range(PANEL_ROWS)]
        accumulate = context.cast(builder, args[7], argtys[7], types.boolean)
        _emit_rows(context, builder, argtys[8], args[8], lambda tile_rows: _emit_tile(
            context, builder, real, tile_rows, depth,
            lambda r, k: builder.gep(d_columns[r], [builder.mul(k, d_row)]),
            lambda k: builder.gep(x_rows, [builder.mul(k, ldx)]),
            out_rows, ir.Constant(intp, PANEL_COLS), accumulate))
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
