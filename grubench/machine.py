"""The machine context every results file carries: CPU, cores, BLAS libraries, GPU,
library versions, git commit and timestamp. Importing nothing heavy: torch and numba
versions come from package metadata, the GPU from nvidia-smi when it exists."""
from __future__ import annotations

import datetime
import os
import platform
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from grubench.threads import cpu_count

PACKAGES = ("numpy", "numba", "numba-cuda", "torch", "scipy", "pandas", "threadpoolctl")


def _cpuinfo_field(*names: str) -> str | None:
    """The first /proc/cpuinfo field called one of ``names``; None without the file."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.split(":", 1)[0].strip() in names:
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_flags() -> set[str]:
    """The CPU's feature flags (x86 "flags", arm64 "Features"); empty where unknown."""
    return set((_cpuinfo_field("flags", "Features") or "").split())


def cpu_model() -> str:
    return _cpuinfo_field("model name") or platform.processor() or platform.machine()


#: Instruction-set extensions the kernels' speed depends on, as /proc/cpuinfo names them.
ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_bf16", "avx512_fp16",
             "amx_tile", "asimd", "sve")


def isa() -> list[str]:
    """The SIMD extensions of ISA_FLAGS this CPU has ([] where /proc/cpuinfo is absent)."""
    present = cpu_flags()
    return [flag for flag in ISA_FLAGS if flag in present]


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = None
    return found


def _run(command: list[str], cwd=None) -> str | None:
    if shutil.which(command[0]) is None:
        return None
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=10, cwd=cwd)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_commit() -> str | None:
    """The commit of the grubench checkout, with '+dirty' when files are modified."""
    root = Path(__file__).resolve().parent.parent
    commit = _run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root)
    if commit and _run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root):
        commit += "+dirty"
    return commit


def gpus() -> list[dict[str, str]]:
    """GPU name, driver and memory per nvidia-smi; [] without an NVIDIA driver."""
    text = _run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                 "--format=csv,noheader"])
    if not text:
        return []
    rows = [line.split(", ") for line in text.splitlines()]
    return [dict(name=r[0], driver=r[1], memory=r[2]) for r in rows if len(r) == 3]


def blas_libraries() -> list[dict[str, object]]:
    """What threadpoolctl sees loaded in this process (NumPy's BLAS at least)."""
    import numpy  # noqa: F401 - loads NumPy's BLAS so threadpoolctl can see it
    from threadpoolctl import threadpool_info

    keys = ("internal_api", "version", "num_threads", "threading_layer", "architecture")
    return [{k: info.get(k) for k in keys} for info in threadpool_info()]


def context() -> dict[str, object]:
    """The machine context of a run."""
    return {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "cpu_model": cpu_model(),
        "isa": isa(),
        "isa_restriction": isa_restriction(),
        "cores": cpu_count(),
        "logical_cpus": os.cpu_count(),
        "blas": blas_libraries(),
        "gpus": gpus(),
        "versions": versions(),
        "commit": git_commit(),
        "python_executable": sys.executable,
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def short_name(context: dict) -> str:
    """One line naming the machine, for each result row."""
    # a cluster node's context names the node (grubench.cluster): one host may run several
    name = context.get("node") or context.get("hostname")
    restricted = context.get("isa_restriction", "native")
    code_paths = "" if restricted == "native" else f", {restricted} code paths"
    return f"{name} ({context.get('cpu_model')}, {context.get('cores')} cores{code_paths})"


# ----------------------------------------------------------------------------- fingerprint

#: Highest first: the widest vector ISA a /proc/cpuinfo flag says the CPU runs.
ISA_LEVELS = ("avx512f", "avx2", "avx", "sse4_2")

#: Variables that narrow the code paths libraries take on this CPU (numba's target,
#: OpenBLAS's kernel, MKL's and oneDNN's ISA): a run under them is another machine's shape.
ISA_ENV_VARS = ("NUMBA_CPU_NAME", "NUMBA_CPU_FEATURES", "OPENBLAS_CORETYPE",
                "MKL_ENABLE_INSTRUCTIONS", "ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY",
                "XLA_FLAGS")

#: The ISA restriction a run's workers ran under (``--isa``; grubench.isa sets it).
ISA_RESTRICTION_VAR = "GRUBENCH_ISA"


def isa_restriction() -> str:
    """``native``, or the ISA level this process's workers are restricted to."""
    return os.environ.get(ISA_RESTRICTION_VAR, "native")


def isa_level(flags: str | None = None) -> str:
    """The widest vector ISA of this CPU (one of :data:`ISA_LEVELS`, or the machine name
    where /proc/cpuinfo has no flags, e.g. arm64)."""
    present = set(flags.split()) if flags is not None else cpu_flags()
    return next((level for level in ISA_LEVELS if level in present), platform.machine())


def fingerprint() -> dict[str, object]:
    """What decides how our kernels compare with a BLAS product on this machine: CPU
    vendor and model, ISA level, cores, the BLAS kernel OpenBLAS picked, and any variable
    that narrows the ISA libraries use. Equal fingerprints may share a regress baseline;
    unequal ones never do."""
    coretypes = sorted({str(b["architecture"]) for b in blas_libraries()
                        if b.get("architecture")})
    return {
        "vendor": _cpuinfo_field("vendor_id") or platform.machine(),
        "cpu_model": cpu_model(),
        "isa": isa_level(),
        "cores": cpu_count(),
        "blas_coretype": ",".join(coretypes) or None,
        "isa_env": {name: os.environ[name] for name in ISA_ENV_VARS if os.environ.get(name)},
    }


def fingerprint_id(print_: dict) -> str:
    """The fingerprint as a file-name-safe slug, e.g.
    ``genuineintel-intel-xeon-processor-avx512f-2c-skylakex``."""
    parts = [print_.get("vendor"), print_.get("cpu_model"), print_.get("isa"),
             f"{print_.get('cores')}c", print_.get("blas_coretype")]
    parts += [f"{name}={value}" for name, value in sorted((print_.get("isa_env") or {}).items())]
    slug = "-".join(str(p) for p in parts if p)
    return re.sub(r"[^a-z0-9=.]+", "-", slug.lower().replace("(r)", "").replace("(tm)", "")
                  ).strip("-")
