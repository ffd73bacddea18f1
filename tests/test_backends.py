"""The registry: names, lookup, availability, and the convenience API over prepare."""
import re
import subprocess
import sys

import numpy as np
import pytest

from grubench import backends, tolerances
from grubench.kernels import reference
from grubench.kernels.contract import BackendUnavailable
from grubench.case import Case


def test_names_include_the_foundation_backends():
    assert {"numpy", "torch-cpu", "torch-cuda"} <= set(backends.names())


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError) as error:
        backends.get("numpy-gpu")
    message = str(error.value)
    assert "unknown backend 'numpy-gpu'" in message
    for name in backends.names():
        assert name in message


def test_numpy_is_always_available():
    be = backends.get("numpy")
    assert be.available and be.why_unavailable is None
    assert be.version.startswith("numpy ")


def test_a_backend_whose_module_fails_to_import_is_unavailable_with_the_reason(monkeypatch):
    monkeypatch.setitem(backends.REGISTRY, "broken",
                        backends.Entry("no_such_module", "a module that is missing"))
    be = backends.Backend("broken", backends.REGISTRY["broken"])
    assert not be.available
    assert "No module named" in be.why_unavailable
    args = Case("gru", 2, 1, 2, 2).make_args()
    with pytest.raises(BackendUnavailable, match="backend 'broken' is unavailable"):
        be.prepare(args)
    with pytest.raises(BackendUnavailable):
        be.gru_forward(args.x, args.h0, args.w_ih, args.w_hh, args.b_ih, args.b_hh)


def test_an_entry_declares_what_its_backend_cannot_run():
    entry = backends.Entry("reference", "test", unsupported={"training": "no gradients",
                                                             "float64": "no doubles"})
    assert entry.why_unsupported("training", "float32") == "no gradients"
    assert entry.why_unsupported("inference", "float64") == "no doubles"
    assert entry.why_unsupported("inference", "float32") is None
    assert backends.get("numpy").entry.why_unsupported("training", "float64") is None


def test_an_entry_that_declares_nothing_gets_the_defaults():
    entry = backends.Entry("my_plugin", "a plugin's backend")
    assert (entry.device, entry.memory) == ("cpu", "tracemalloc")
    assert entry.modes == ("inference", "training")
    assert entry.dtypes == ("float32", "float64")
    inference_only = backends.Entry("my_plugin", "test", unsupported={"training": "no"})
    assert inference_only.modes == ("inference",) and inference_only.dtypes == entry.dtypes


def test_an_entry_declares_how_it_runs_networks_and_lengths():
    entry = backends.Entry("my_plugin", "test", unsupported={"networks": "one layer only"})
    assert entry.why_unsupported("inference", "float32", network=True) == "one layer only"
    assert entry.why_unsupported("inference", "float32") is None
    assert (entry.networks, entry.ignores_lengths) == ("layered", False)
    torch_cpu, padded = backends.REGISTRY["torch-cpu"], backends.REGISTRY["torch-cpu-padded"]
    assert torch_cpu.networks == padded.networks == "native"
    assert padded.ignores_lengths and not torch_cpu.ignores_lengths
    assert padded.module == torch_cpu.module and padded.options == torch_cpu.options
    assert "without lengths" in padded.description
    assert backends.REGISTRY["numba-cpu"].networks == "layered"


@pytest.mark.parametrize("fields, message", [
    (dict(unsupported={"trainig": "typo"}), "unsupported names trainig"),
    (dict(memory="psutil"), "unknown memory counter 'psutil'"),
    (dict(networks="fused"), "networks must be 'layered' or 'native', got 'fused'"),
])
def test_an_entry_with_an_unknown_capability_is_refused(fields, message):
    with pytest.raises(ValueError, match=message):
        backends.Entry("my_plugin", "test", **fields)


COUNTER_SEES_OUTPUT = """
import sys
from grubench import backends, memory
from grubench.case import Case
be = backends.get(sys.argv[1])
case = Case("gru", 64, 64, 16, 64)                # y: 1 MiB of float32
prepared = be.prepare(case.make_args())
prepared.forward()                                 # compiled and warm
print(memory.peak_bytes(lambda: (prepared.forward(), prepared.synchronize()),
                        be.entry.memory))
"""


def test_each_available_cpu_backend_is_measured_by_a_counter_that_sees_its_output():
    """The declared counter sees at least the output a forward call allocates (torch's
    arrays are invisible to tracemalloc, ONNX Runtime's to both). Each backend
    in a fresh process, as a worker measures it: after the other tests, an allocator
    can hold freed pages that a later output reuses unseen by the resident set. The
    resident set counts only pages a call newly touches, and an allocator may place part
    of the output in pages it already holds, so ``rss`` must see at least half of the
    output; a counter that sees nothing reads 0."""
    output_bytes = 64 * 64 * 64 * 4
    seen_share = {"rss": 0.5}
    for be in backends.available():
        if be.device != "cpu" or be.entry.memory == "none":   # declares no counter
            continue
        run = subprocess.run([sys.executable, "-c", COUNTER_SEES_OUTPUT, be.name],
                             capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, (be.name, run.stderr[-2000:])
        peak = int(run.stdout.split()[-1])
        assert peak >= seen_share.get(be.entry.memory, 1) * output_bytes, (
            be.name, be.entry.memory, peak)


def test_backend_api_equals_the_module_api():
    args = Case("lstm", 4, 2, 3, 5, dtype="float64", mode="training").make_args(seed=2)
    be = backends.get("numpy")
    call = (args.x, args.h0, args.c0, args.w_ih, args.w_hh, args.b_ih, args.b_hh)
    for got, want in zip(be.lstm_forward(*call), reference.lstm_forward(*call)):
        np.testing.assert_array_equal(got, want)
    grads = be.lstm_backward(*call, args.dy, args.dh_n, args.dc_n)
    assert set(grads) == {"x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh"}


def test_every_available_backend_runs_the_convenience_api():
    args = Case("gru", 3, 2, 3, 4, dtype="float64").make_args(seed=4)
    want, _ = reference.gru_forward(args.x, args.h0, args.w_ih, args.w_hh, args.b_ih,
                                    args.b_hh)
    call = (args.x, args.h0, args.w_ih, args.w_hh, args.b_ih, args.b_hh)
    for be in backends.available():
        why = be.entry.why_unsupported("inference", "float64")
        if why:   # what its entry declares, its API refuses with the same reason
            with pytest.raises(NotImplementedError, match=re.escape(why)):
                be.gru_forward(*call)
            continue
        y, h_n = be.gru_forward(*call)
        assert isinstance(y, np.ndarray) and y.dtype == np.float64, be.name
        assert tolerances.forward_tolerance(y.dtype).allclose(y, want), be.name


def test_a_backend_whose_setup_raises_anything_is_unavailable_with_the_reason(monkeypatch):
    """Not only ImportError: numba raises RuntimeError when it has nowhere to cache."""
    import types

    def availability():
        raise RuntimeError("cannot cache function 'f': no locator available")

    module = types.SimpleNamespace(availability=availability)
    monkeypatch.setitem(backends.REGISTRY, "broken",
                        backends.Entry("broken_module", "a module whose setup fails"))
    be = backends.Backend("broken", backends.REGISTRY["broken"])
    monkeypatch.setitem(be.__dict__, "_module", module)
    assert not be.available
    assert be.why_unavailable == ("RuntimeError: cannot cache function 'f': "
                                  "no locator available")
