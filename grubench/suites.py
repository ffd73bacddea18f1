"""Benchmark suites: which cases a run measures, and how long it spends on each.

A suite lists groups of cells x variants x modes x sizes (DeepBench has different sizes per
cell and mode), each a :class:`grubench.case.Case` measured on every backend at every thread
count, plus the timing settings. Built-in suites:

* ``quick``: CI smoke test, tiny sizes, < 30 s.
* ``default``: what ``python -m grubench`` runs; < 2 minutes on a 2-core machine with
  compilation. Besides single layers at full length, as extras (left out when a run
  gives its own sizes or cells), one stacked bidirectional case and one case of variable
  lengths beside its full-length twin. The ``numpy`` backend (the float64-capable oracle, slow by design) is only
  timed on cases up to ``slow_backend_max_flops`` so it cannot eat the budget.
* ``deepbench``: DeepBench's GRU and LSTM inference and training sizes (input size =
  hidden size); ``scale`` multiplies T (e.g. 0.01 on a CPU).
* ``gpu``: CUDA backends at GPU sizes, baseline torch-cuda.

User suites come from a TOML file (``--suite path/to/suite.toml``)::

    name = "mine"
    threads = [1]
    min_runs = 5
    min_time = 0.2
    [[group]]
    cells = ["gru", "lstm"]
    modes = ["inference", "training"]
    variants = ["reset_after"]
    sizes = [[100, 1, 64, 64], [100, 16, 256, 256]]

A group may also set ``layers`` (stacked layers, default 1), ``directions`` (2:
bidirectional, default 1) and ``lengths`` (how sequence lengths are drawn: one of
grubench.case.LENGTHS, default "full"). Also ``description``, ``dtype``, ``backends``,
``device``, ``baseline``, ``case_timeout`` (seconds) and ``seed``. Keys left out take the defaults of :class:`Suite` and
:class:`Group`; an unknown key (a typo) is an error, as are more threads than CPUs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path

from grubench.case import DTYPES, LENGTHS, MODES, Case
from grubench.kernels.cells import CELLS as CELL_SPECS
from grubench.kernels.cells import NO_VARIANT
from grubench.threads import cpu_count

CELLS = tuple(CELL_SPECS)
#: Every variant a group may ask for (each cell runs those it has; see Suite.cases).
VARIANTS = tuple(dict.fromkeys(variant for spec in CELL_SPECS.values()
                               for variant in spec.variants if variant != NO_VARIANT))

Size = tuple[int, int, int, int]  # T, B, I, H


@dataclass(frozen=True)
class Group:
    sizes: tuple[Size, ...]
    cells: tuple[str, ...] = CELLS
    variants: tuple[str, ...] = ("reset_after",)
    modes: tuple[str, ...] = MODES
    layers: int = 1
    directions: int = 1
    lengths: str = "full"


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    groups: tuple[Group, ...]
    dtype: str = "float32"
    threads: tuple[int, ...] = (1,)
    backends: tuple[str, ...] | None = None     # None: every backend available here
    device: str | None = "cpu"                  # default selection: backends on this device
    baseline: str = "torch-cpu"
    min_runs: int = 5
    min_time: float = 0.2
    case_timeout: float = 300.0
    seed: int = 0
    slow_backends: dict = field(default_factory=lambda: {"numpy": 2e8})
    #: Groups measured after ``groups`` at their own sizes and cells: a sample (the
    #: default suite's network and variable-length cases) that a run choosing its own
    #: sizes or cells leaves out rather than multiplies.
    extras: tuple[Group, ...] = ()

    def all_groups(self) -> tuple[Group, ...]:
        return self.groups + self.extras

    def cases(self) -> list[Case]:
        """Every case of the suite, in group order (then the extras), without duplicates.
        A cell runs the group's variants it has, or its only one (LSTM: "-")."""
        seen: dict[Case, None] = {}
        for group in self.all_groups():
            for size in group.sizes:
                for cell in group.cells:
                    for variant in cell_variants(cell, group.variants):
                        for mode in group.modes:
                            seen.setdefault(Case(
                                cell, *size, variant=variant, mode=mode, dtype=self.dtype,
                                layers=group.layers, directions=group.directions,
                                lengths=group.lengths))
        return list(seen)

    def sizes(self) -> list[Size]:
        return list(dict.fromkeys(s for g in self.all_groups() for s in g.sizes))

    def with_overrides(self, *, cells=None, variants=None, modes=None, sizes=None,
                       layers=None, directions=None, lengths=None, **settings) -> "Suite":
        """This suite with its groups' cells/variants/modes/sizes and network (layers,
        directions, lengths) replaced where given, and other settings (dtype, threads,
        min_runs, ...) replaced where not None. Sizes or cells given leave the extras
        out."""
        names = {k: tuple(v) for k, v in dict(cells=cells, variants=variants, modes=modes,
                                               sizes=sizes).items() if v is not None}
        network = {k: v for k, v in dict(layers=layers, directions=directions,
                                          lengths=lengths).items() if v is not None}
        groups, extras = ([replace(g, **names, **network) for g in part]
                          for part in (self.groups, self.extras))
        if sizes is not None or cells is not None:
            extras = ()
        settings = {k: v for k, v in settings.items() if v is not None}
        return replace(self, groups=tuple(groups), extras=tuple(extras), **settings)


def check_network(layers=None, directions=None, lengths=None) -> None:
    """ValueError naming a bad layer count, direction count or lengths name (None: not
    given)."""
    if layers is not None and (isinstance(layers, bool) or not isinstance(layers, int)
                               or layers < 1):
        raise ValueError(f"layers must be a positive integer, got {layers!r}")
    if directions is not None and (isinstance(directions, bool) or directions not in (1, 2)):
        raise ValueError(f"directions must be 1 or 2 (bidirectional), got {directions!r}")
    if lengths is not None:
        check_names("lengths", [lengths], LENGTHS)


def cell_variants(cell: str, variants) -> tuple[str, ...]:
    """The ``variants`` that ``cell`` has, or its default when it has none of them."""
    spec = CELL_SPECS[cell]
    return tuple(v for v in variants if v in spec.variants) or spec.variants[:1]


def _deepbench(scale: float) -> Suite:
    """DeepBench (Baidu) RNN sizes: (H, N, T) with I = H, T scaled (at least 1)."""
    def sizes(triples):
        return tuple((max(1, round(T * scale)), N, H, H) for H, N, T in triples)

    gru_hidden = (1536, 2048, 2560, 2816)
    gru_steps = (1500, 750, 375, 187)
    gru_train = [(H, 32, T) for H in gru_hidden for T in gru_steps]
    gru_train += [(512, 32, 1), (1024, 32, 1500), (1024, 64, 1500)]
    gru_infer = [(H, N, T) for H in gru_hidden for T in gru_steps for N in (1, 2, 4)]
    gru_infer += [(512, N, 1) for N in (1, 2, 4)] + [(1024, N, 1500) for N in (1, 2, 4)]
    lstm = [(H, N, 25) for H in (512, 1024, 2048, 4096) for N in (16, 32, 64, 128)]
    lstm += [(1536, N, 50) for N in (8, 16, 32)] + [(256, N, 150) for N in (16, 32, 64)]
    return Suite(
        "deepbench", f"DeepBench GRU/LSTM sizes, I = H, T x {scale:g}",
        groups=(Group(sizes(gru_train), cells=("gru",), modes=("training",)),
                Group(sizes(gru_infer), cells=("gru",), modes=("inference",)),
                # DeepBench lists one LSTM size set; it is used for both modes here
                Group(sizes(lstm), cells=("lstm",))),
        min_runs=3, min_time=0.0, case_timeout=1800.0, device=None)


def _builtin(scale: float) -> dict[str, Suite]:
    return {
        "quick": Suite("quick", "CI smoke test: tiny sizes, every available backend",
                       groups=(Group(((8, 2, 8, 8), (16, 4, 16, 32))),),
                       min_runs=3, min_time=0.01, case_timeout=120.0),
        "default": Suite("default", "GRU and LSTM, small to medium sizes, 1 thread; a "
                                    "2-layer bidirectional GRU and a GRU of variable lengths",
                         groups=(Group(((100, 1, 64, 64), (100, 16, 256, 256),
                                        (20, 64, 512, 512))),),
                         extras=(Group(((50, 16, 128, 128),), cells=("gru",),
                                       modes=("training",), layers=2, directions=2),
                                 # lengths uniform, and its full-length twin: what lengths
                                 # cost (or save) each backend, and torch's packing
                                 *(Group(((100, 64, 128, 128),), cells=("gru",),
                                         modes=("inference",), lengths=lengths)
                                   for lengths in ("full", "uniform"))),
                         min_runs=5, min_time=0.1),
        "deepbench": _deepbench(scale),
        "gpu": Suite("gpu", "CUDA backends at GPU sizes, baseline torch-cuda",
                     groups=(Group(((100, 64, 512, 512), (100, 64, 1024, 1024),
                                    (50, 128, 2048, 2048))),),
                     device="cuda", baseline="torch-cuda", min_runs=10, min_time=0.5),
    }


def names() -> list[str]:
    return list(_builtin(1.0))


def get(name: str, scale: float = 1.0) -> Suite:
    """A built-in suite by name, or a user suite from a ``.toml`` path. ValueError with
    the valid names for an unknown one."""
    if not 0 < scale < math.inf:
        raise ValueError(f"--scale must be a finite number > 0, got {scale}")
    if scale != 1.0 and name != "deepbench":
        raise ValueError(f"--scale shortens DeepBench's long sequences; suite {name!r} does "
                         f"not take it (give --size T,B,I,H instead)")
    if name.endswith(".toml"):
        return load_toml(name)
    suites = _builtin(scale)
    if name not in suites:
        raise ValueError(f"unknown suite {name!r}; valid names: {', '.join(suites)} "
                         f"(or a path to a .toml suite file)")
    return suites[name]


def check_names(kind: str, given, valid) -> tuple[str, ...]:
    """``given`` as a tuple, or ValueError naming the bad entries and the valid names."""
    given = tuple(given)
    bad = [g for g in given if g not in valid]
    if bad:
        raise ValueError(f"unknown {kind} {', '.join(map(repr, bad))}; "
                         f"valid names: {', '.join(valid)}")
    return given


def parse_size(text: str) -> Size:
    """'T,B,I,H' as four positive integers; ValueError naming the bad token."""
    tokens = text.split(",")
    if len(tokens) != 4:
        raise ValueError(f"size {text!r} must be four comma-separated integers T,B,I,H")
    values = []
    for name, token in zip("TBIH", tokens):
        try:
            value = int(token)
        except ValueError:
            raise ValueError(f"size {text!r}: {name}={token!r} is not an integer") from None
        if value < 1:
            raise ValueError(f"size {text!r}: {name}={token!r} must be >= 1")
        values.append(value)
    return tuple(values)


def _positive_int(value, key: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{key} must be a positive integer, got {value!r}")
    return value


def load_toml(path: str | Path) -> Suite:
    """A user suite from a TOML file (format in the module docstring)."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        try:
            import tomli as tomllib
        except ImportError:
            raise ValueError("TOML suites need Python 3.11+ or the tomli package") from None
    path = Path(path)
    try:
        table = tomllib.loads(path.read_text())
    except OSError as error:
        raise ValueError(f"cannot read suite file {path}: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"suite file {path} is not valid TOML: {error}") from None
    where = f"suite file {path}"
    try:
        return _suite_from_table(table, path)
    except (TypeError, ValueError, AttributeError) as error:
        raise ValueError(f"{where}: {error}") from None


def _names(table: dict, key: str, default, valid) -> tuple[str, ...]:
    """A list of names from the table (a bare string is one name, not its letters)."""
    value = table.get(key, default)
    return check_names(key.rstrip("s"), _string_list(list(value) if isinstance(value, tuple)
                                                     else value, key), valid)


def _string_list(value, key: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{key} must be a list of names, got {value!r}")
    return tuple(value)


#: The keys a TOML suite may hold: the suite's, and a group's (at the top level when the
#: file has no [[group]] sections).
SUITE_KEYS = ("name", "description", "dtype", "threads", "backends", "device", "baseline",
              "min_runs", "min_time", "case_timeout", "seed", "group")
GROUP_KEYS = ("sizes", "cells", "variants", "modes", "layers", "directions", "lengths")


def _check_keys(table: dict, valid, where: str) -> None:
    """A key the format does not know is a typo that would be ignored: refuse it."""
    unknown = [key for key in table if key not in valid]
    if unknown:
        raise ValueError(f"unknown key{'s' if len(unknown) > 1 else ''} "
                         f"{', '.join(map(repr, unknown))} {where}; valid keys: "
                         f"{', '.join(valid)}")


def _number(table: dict, key: str, default: float, most: float) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= most:
        raise ValueError(f"{key} must be seconds in (0, {most:g}], got {value!r}")
    return float(value)


def _suite_from_table(table: dict, path: Path) -> Suite:
    group_tables = table.get("group") or [table]
    if not isinstance(group_tables, list) or not all(isinstance(g, dict) for g in group_tables):
        raise ValueError("group must be a list of tables ([[group]] sections)")
    _check_keys(table, SUITE_KEYS if "group" in table else SUITE_KEYS + GROUP_KEYS,
                "in the suite")
    groups = []
    for g in group_tables:
        if g is not table:
            _check_keys(g, GROUP_KEYS, "in a [[group]]")
        sizes = g.get("sizes")
        if not sizes or not isinstance(sizes, list):
            raise ValueError("every group needs sizes = [[T, B, I, H], ...]")
        parsed = tuple(parse_size(",".join(str(v) for v in s)) if isinstance(s, list)
                       else parse_size(str(s)) for s in sizes)
        network = dict(layers=g.get("layers", 1), directions=g.get("directions", 1),
                       lengths=g.get("lengths", "full"))
        check_network(**network)
        groups.append(Group(
            parsed, cells=_names(g, "cells", CELLS, CELLS),
            variants=_names(g, "variants", ("reset_after",), VARIANTS),
            modes=_names(g, "modes", MODES, MODES), **network))
    dtype = table.get("dtype", "float32")
    check_names("dtype", [dtype], DTYPES)
    threads = table.get("threads", [1])
    if not isinstance(threads, list):
        raise ValueError(f"threads must be a list of positive integers, got {threads!r}")
    device = table.get("device", "cpu")
    check_names("device", [device], ("cpu", "cuda"))
    threads = tuple(_positive_int(t, "threads") for t in threads)
    too_many = [t for t in threads if t > cpu_count()]
    if too_many:
        raise ValueError(f"threads {too_many} exceed this machine's {cpu_count()} CPUs "
                         f"(more only measures oversubscription)")
    seed = table.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    return Suite(
        name=str(table.get("name", path.stem)),
        description=str(table.get("description", f"user suite from {path}")),
        groups=tuple(groups), dtype=dtype,
        threads=threads,
        backends=_string_list(table["backends"], "backends") if "backends" in table else None,
        device=device,
        baseline=str(table.get("baseline", "torch-cpu")),
        min_runs=_positive_int(table.get("min_runs", 5), "min_runs"),
        min_time=_number(table, "min_time", 0.2, 3600),
        case_timeout=_number(table, "case_timeout", Suite.case_timeout, 86400), seed=seed)
