"""--isa restrictions: the environment each sets, and what a process started with it runs."""
import json
import os
import subprocess
import sys

import pytest

from grubench import isa, machine

AVX512 = {"avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512dq"}


def test_unknown_and_unsupported():
    with pytest.raises(ValueError, match="unknown ISA 'sse'; expected one of native, avx2"):
        isa.restriction("sse")
    with pytest.raises(ValueError, match="--isa avx512 needs CPU flags this machine lacks: "
                                         "avx512f, avx512bw"):
        isa.restriction("avx512", flags={"avx2", "fma", "avx512vl", "avx512dq"})
    assert isa.restriction("avx2", flags={"avx2", "fma"}).numba_cpu == "haswell"
    assert isa.restriction("native", flags=set()).env == {}


def test_native_keeps_the_environment():
    base = {"OPENBLAS_CORETYPE": "Zen", "PATH": "/bin"}
    assert isa.worker_env("native", base) == base


def _ran(name):
    env = isa.worker_env(name, os.environ)
    code = "import json, scipy.linalg, torch; from grubench import isa; print(json.dumps(isa.what_ran()))"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=300, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not {"avx2", "fma"} <= machine.cpu_flags(), reason="needs an AVX2 x86 CPU")
def test_avx2_restricts_every_library():
    ran = _ran("avx2")
    assert ran["numba_cpu"] == "haswell" and ran["numba_features"] == ""
    assert ran["openblas"] == ["Haswell"]
    assert ran["aten"] == "AVX2"


@pytest.mark.skipif(not AVX512 <= machine.cpu_flags(), reason="needs an AVX-512 CPU")
def test_avx512_and_native_on_an_avx512_machine():
    ran = _ran("avx512")
    assert ran["numba_cpu"] == "skylake-avx512" and ran["aten"] == "AVX512"
    assert ran["openblas"] == ["SkylakeX"]
    native = _ran("native")
    assert "+avx512f" in native["numba_features"].split(",")
