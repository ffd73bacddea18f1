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
