"""grubench.measure: one case measured inside a worker (run in this process here)."""
import pytest

from grubench import accuracy, backends, measure
from grubench.case import Case

NETWORK = Case("gru", 4, 3, 2, 3, layers=2, directions=2, lengths="uniform", mode="training",
               dtype="float64")


def request(case, path, **fields):
    return dict(case=case.as_row(), seed=1, reference=str(path), min_runs=2, min_time=0.0,
                **fields)


def test_a_network_case_is_timed_and_checked_against_its_reference(tmp_path):
    path = tmp_path / "reference.npz"
    measure.run_reference(None, dict(case=NETWORK.as_row(), seed=1, path=str(path)), {})
    assert set(accuracy.load(path)) >= {"y", "h_n", "grad_x", "grad_weight_hh_l1_reverse"}
    row = measure.run_case(backends.get("numpy"), request(NETWORK, path), {})
    assert row["status"] == "ok" and row["runs"] >= 2
    assert row["rel_err"] == 0.0            # the reference's own kernels, in a Network
    assert row["saved_bytes"] > 0 and row["peak_bytes"] > 0


def test_the_reference_of_a_backend_that_ignores_lengths_runs_to_T(tmp_path):
    pytest.importorskip("torch")
    to_t, with_lengths = tmp_path / "to-t.npz", tmp_path / "lengths.npz"
    measure.run_reference(None, dict(case=NETWORK.as_row(), seed=1, path=str(to_t),
                                     ignore_lengths=True), {})
    measure.run_reference(None, dict(case=NETWORK.as_row(), seed=1, path=str(with_lengths)),
                          {})
    padded = backends.get("torch-cpu-padded")
    row = measure.run_case(padded, request(NETWORK, to_t), {})
    assert row["rel_err"] < 1e-12
    assert measure.run_case(padded, request(NETWORK, with_lengths), {})["rel_err"] > 1e-3
