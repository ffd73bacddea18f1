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
