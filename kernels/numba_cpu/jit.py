"""How numba-cpu's kernels compile: fastmath and error-model options, the on-disk cache, and
the compiler that marks the pointwise functions' arrays non-overlapping."""
from __future__ import annotations

import functools
import hashlib
import pathlib
import warnings

from llvmlite import ir
from numba import njit
from numba.core import compiler
from numba.core.caching import FunctionCache
from numba.extending import intrinsic

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


@functools.cache
def package_source_hash(folder: pathlib.Path = pathlib.Path(__file__).parent) -> bytes:
    """sha256 over the source of every module in ``folder`` (this package)."""
    digest = hashlib.sha256()
    for path in sorted(folder.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.digest()


class _RecoveringCache(FunctionCache):
    """numba's on-disk cache of one function, with two changes.

    * Its entries are stale once any module of this package changes, not only the
      function's own: a compiled kernel holds the code of the helpers it calls from the
      other modules, and numba keys an entry on the source of the function's file alone.
    * An entry that cannot be read (a truncated or corrupt index or data file: pickle
      errors, EOFError) is a miss: the index is emptied, the function compiles again and
      its entry is rewritten, with one warning. numba's own cache raises such errors at
      the first call.
    """

    def __init__(self, py_func):
        super().__init__(py_func)
        file = self._cache_file
        file._source_stamp = (file._source_stamp, package_source_hash())

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
    invalidated by an edit to any module of this package and recovering from a corrupt
    entry (:class:`_RecoveringCache`)."""
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
    flag numba sets for its parallel loops, which njit does not take). Without it, LLVM
    checks at run time before each vectorized loop that no array the loop writes overlaps
    another it touches: a fixed cost per call, which weighs where H is small. LLVM's
    noalias promises that memory the function modifies is reached through one argument
    only. numba's own use rests on its alias analysis; here it rests on the callers and
    the functions: it serves only the pointwise functions, whose callers pass outputs and
    workspaces of their own (never a view of memory another argument reads), and which
    update no reference count (views of one array share theirs; see
    :mod:`.pointwise`; a test checks their code)."""

    def define_pipelines(self):
        self.state.flags.noalias = True
        return super().define_pipelines()


DISJOINT_JIT = dict(JIT, pipeline_class=_DisjointArgumentsCompiler)


@intrinsic
def nonnegative(typingctx, value):
    """``value``, with LLVM told it is >= 0. Indexes built from it then need no
    negative-index wraparound, which would keep the loops over them scalar."""
    def codegen(context, builder, signature, args):
        assume = builder.module.declare_intrinsic(
            "llvm.assume", fnty=ir.FunctionType(ir.VoidType(), [ir.IntType(1)]))
        builder.call(assume, [builder.icmp_signed(">=", args[0],
                                                  ir.Constant(args[0].type, 0))])
        return args[0]

    return value(value), codegen
