"""Instruction-set restriction: run a backend's code paths as an older x86 core would.

``--isa avx2`` on an AVX-512 machine makes every worker generate and call AVX2 code: numba
compiles for Haswell, OpenBLAS, MKL, oneDNN, ATen and XLA take their AVX2 kernels. That tests
what an AVX2 machine runs. Its timings are not a real AVX2 core's (this core's caches, clock
and FMA units stay), so a report made under a restriction says so, and tuning is never done
under one alone.

Each library reads its variable once, when it loads: the restriction is set in a worker's
environment before it starts, never changed in a running process.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from grubench import machine

NATIVE = "native"

#: The variable a restricted run sets beside the libraries' own, naming its restriction
#: (grubench.machine records it in every result's machine context).
ISA_ENV = machine.ISA_RESTRICTION_VAR


@dataclass(frozen=True)
class Restriction:
    """The environment one ISA level sets, and the CPU flags it needs."""

    name: str
    env: dict = field(default_factory=dict)
    needs: tuple[str, ...] = ()
    #: numba's CPU name under this restriction (None: the host's)
    numba_cpu: str | None = None


RESTRICTIONS = {
    NATIVE: Restriction(NATIVE),
    "avx2": Restriction("avx2", needs=("avx2", "fma"), numba_cpu="haswell", env={
        # An empty feature list makes LLVM take the named CPU's features; left unset, numba
        # would add the host's (AVX-512 included) to the Haswell name.
        "NUMBA_CPU_NAME": "haswell", "NUMBA_CPU_FEATURES": "",
        "OPENBLAS_CORETYPE": "Haswell",
        "MKL_ENABLE_INSTRUCTIONS": "AVX2",
        "ONEDNN_MAX_CPU_ISA": "AVX2",
        "ATEN_CPU_CAPABILITY": "avx2",
        "XLA_FLAGS": "--xla_cpu_max_isa=AVX2",
    }),
    "avx512": Restriction("avx512", needs=("avx512f", "avx512bw", "avx512vl", "avx512dq"),
                          numba_cpu="skylake-avx512", env={
        "NUMBA_CPU_NAME": "skylake-avx512", "NUMBA_CPU_FEATURES": "",
        "OPENBLAS_CORETYPE": "SkylakeX",
        "MKL_ENABLE_INSTRUCTIONS": "AVX512",
        "ONEDNN_MAX_CPU_ISA": "AVX512_CORE",
        "ATEN_CPU_CAPABILITY": "avx512",
        "XLA_FLAGS": "--xla_cpu_max_isa=AVX512",
    }),
}

ISAS = tuple(RESTRICTIONS)


def restriction(name: str, flags: set[str] | None = None) -> Restriction:
    """The restriction called ``name``, checked against this CPU's flags (or ``flags``):
    ValueError for an unknown name or an ISA this CPU lacks."""
    if name not in RESTRICTIONS:
        raise ValueError(f"unknown ISA {name!r}; expected one of {', '.join(ISAS)}")
    chosen = RESTRICTIONS[name]
    present = machine.cpu_flags() if flags is None else flags
    missing = [flag for flag in chosen.needs if flag not in present]
    if missing:
        raise ValueError(f"--isa {name} needs CPU flags this machine lacks: "
                         f"{', '.join(missing)}")
    return chosen


def worker_env(name: str, base: dict | None = None) -> dict:
    """``base`` (a worker's environment) with the restriction's variables set; ``native``
    leaves it as it is (variables this machine's set-up put there stay)."""
    env = dict(base or {})
    chosen = restriction(name)
    env.update(chosen.env)
    if chosen.name != NATIVE:
        env[ISA_ENV] = chosen.name
    return env


def code_paths() -> str:
    """:func:`what_ran` in a few words, for a results row's backend version."""
    ran = what_ran()
    words = [f"numba {ran['numba_cpu']}" + ("" if ran["numba_features"] == "" else "+host"),
             f"OpenBLAS {'/'.join(ran['openblas']) or 'none'}"]
    if "aten" in ran:
        words.append(f"ATen {ran['aten']}")
    return f"{os.environ.get(ISA_ENV, NATIVE)} code paths: {', '.join(words)}"


def what_ran() -> dict:
    """What this process's libraries run under its environment, for results and tests:
    numba's target CPU and feature list ("" means the named CPU's own features), OpenBLAS's
    core types, and ATen's CPU capability where torch is already imported (loading it here
    would cost seconds and start its thread pool)."""
    import sys

    import threadpoolctl
    from numba.core.registry import cpu_target

    codegen = cpu_target.target_context.codegen()
    ran = {"numba_cpu": codegen._get_host_cpu_name(),
           "numba_features": codegen._get_host_cpu_features(),
           "openblas": sorted({info.get("architecture") for info in
                               threadpoolctl.threadpool_info()
                               if info.get("internal_api") == "openblas"})}
    if "torch" in sys.modules:
        ran["aten"] = sys.modules["torch"].backends.cpu.get_cpu_capability()
    return ran
