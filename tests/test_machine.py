"""Machine context: every field the results files promise is there."""
from grubench import machine


def test_context_fields():
    context = machine.context()
    for key in ("cpu_model", "cores", "blas", "gpus", "versions", "commit", "timestamp"):
        assert key in context
    assert context["cores"] >= 1
    assert context["versions"]["numpy"] and context["versions"]["python"]
    assert any(b["internal_api"] in ("openblas", "mkl", "blis") for b in context["blas"])
    assert context["timestamp"].endswith("+00:00")


def test_short_name_names_cpu_and_cores():
    name = machine.short_name({"hostname": "h", "cpu_model": "CPU X", "cores": 2})
    assert name == "h (CPU X, 2 cores)"


def test_isa_level_is_the_widest_vector_flag():
    assert machine.isa_level("fpu sse4_2 avx avx2 fma avx512f avx512bw") == "avx512f"
    assert machine.isa_level("fpu sse4_2 avx avx2 fma") == "avx2"
    assert machine.isa_level("fpu sse4_2") == "sse4_2"


def test_fingerprint_id_is_a_file_name_slug():
    fingerprint = {"vendor": "GenuineIntel", "cpu_model": "Intel(R) Xeon(R) Processor",
                   "isa": "avx512f", "cores": 2, "blas_coretype": "SkylakeX", "isa_env": {}}
    assert (machine.fingerprint_id(fingerprint)
            == "genuineintel-intel-xeon-processor-avx512f-2c-skylakex")
    narrowed = {**fingerprint, "isa_env": {"NUMBA_CPU_NAME": "haswell"}}
    assert machine.fingerprint_id(narrowed).endswith("-skylakex-numba-cpu-name=haswell")


def test_a_narrowed_isa_is_another_fingerprint(monkeypatch):
    for name in machine.ISA_ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    plain = machine.fingerprint()
    assert plain["cores"] >= 1 and plain["isa_env"] == {}
    monkeypatch.setenv("NUMBA_CPU_NAME", "haswell")
    narrowed = machine.fingerprint()
    assert narrowed["isa_env"] == {"NUMBA_CPU_NAME": "haswell"} and narrowed != plain

def test_isa_lists_the_cpus_simd_extensions(monkeypatch, tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("model name\t: CPU X\nflags\t\t: fpu sse4_2 avx avx2 fma avx512f\n")
    real_path = machine.Path
    monkeypatch.setattr(machine, "Path", lambda p: cpuinfo if p == "/proc/cpuinfo"
                        else real_path(p))
    assert machine.isa() == ["sse4_2", "avx", "avx2", "fma", "avx512f"]
    cpuinfo.unlink()
    assert machine.isa() == []


def test_short_name_of_a_cluster_node_names_the_node():
    name = machine.short_name({"hostname": "h", "node": "h-1a2b3c", "cpu_model": "CPU X",
                               "cores": 2})
    assert name == "h-1a2b3c (CPU X, 2 cores)"
