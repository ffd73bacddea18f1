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


def test_every_variable_a_restriction_sets_is_in_the_fingerprint():
    for chosen in isa.RESTRICTIONS.values():
        assert set(chosen.env) <= set(machine.ISA_ENV_VARS), chosen.name


def test_a_restricted_run_records_its_isa(monkeypatch):
    env = isa.worker_env("avx2", {}) if {"avx2", "fma"} <= machine.cpu_flags() else None
    if env is None:
        pytest.skip("needs an AVX2 x86 CPU")
    assert env[isa.ISA_ENV] == "avx2"
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    context = machine.context()
    assert context["isa_restriction"] == "avx2"
    assert machine.short_name(context).endswith("cores, avx2 code paths)")
    assert machine.fingerprint()["isa_env"]["NUMBA_CPU_NAME"] == "haswell"


@pytest.mark.skipif(not {"avx2", "fma"} <= machine.cpu_flags(), reason="needs an AVX2 x86 CPU")
def test_run_isa_avx2_reaches_the_workers(tmp_path, monkeypatch):
    from grubench import cli

    out = tmp_path / "out"
    for name in isa.RESTRICTIONS["avx2"].env:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv(isa.ISA_ENV, raising=False)
    status = cli.main(["run", "--suite", "quick", "--backends", "numba-cpu", "--mode",
                       "inference", "--size", "3,2,4,8", "--isa", "avx2", "--out", str(out),
                       "--no-progress", "--min-runs", "1", "--min-time", "0.001"])
    assert status == 0
    # the restriction was the workers': this process's environment is as it was
    assert isa.ISA_ENV not in os.environ and "NUMBA_CPU_NAME" not in os.environ
    document = json.loads((out / "results.json").read_text())
    assert document["machine"]["isa_restriction"] == "avx2"
    assert all(row["machine"].endswith("avx2 code paths)") for row in document["results"])
    # what the worker really ran, in its backend version
    assert all(row["backend_version"].endswith(
        "[avx2 code paths: numba haswell, OpenBLAS Haswell]") for row in document["results"])


def test_isa_with_cluster_is_refused():
    from grubench import cli

    assert cli.main(["run", "--isa", "avx2", "--cluster", "local:2", "--no-progress"]) == 2
