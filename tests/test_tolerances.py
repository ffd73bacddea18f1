"""Error measures against hand-computed values."""
import numpy as np
import pytest

from grubench import tolerances
from grubench.tolerances import Tolerance


def test_errors_by_hand():
    ref = np.array([3.0, 4.0])          # norm 5
    out = np.array([3.0, 4.5])
    max_abs, rel = tolerances.errors(out, ref)
    assert max_abs == 0.5
    assert rel == pytest.approx(0.1)
    assert tolerances.errors(np.zeros(0), np.zeros(0)) == (0.0, 0.0)


def test_allclose_uses_atol_plus_rtol_times_reference():
    tol = Tolerance(rtol=0.1, atol=0.01)
    assert tol.allclose([1.10], [1.0])          # 0.10 <= 0.01 + 0.1
    assert not tol.allclose([1.12], [1.0])      # 0.12 >  0.11
    assert not tol.allclose([np.nan], [1.0])    # NaN never passes


def test_tolerance_by_dtype():
    assert tolerances.forward_tolerance("float64") is tolerances.FLOAT64
    assert tolerances.forward_tolerance(np.float32) is tolerances.FLOAT32_FORWARD
    assert tolerances.gradient_tolerance("float32") is tolerances.FLOAT32_GRADIENT


def test_assert_close_names_the_failure_and_refuses_broadcasting():
    tol = Tolerance(rtol=0.1, atol=0.01)
    tol.assert_close([1.10], [1.0])
    with pytest.raises(AssertionError, match=r"dx: max abs error 0.12, relative error 0.12"):
        tol.assert_close([1.12], [1.0], "dx")
    with pytest.raises(AssertionError, match=r"y: shape \(1,\), expected \(2,\)"):
        tol.assert_close([1.0], [1.0, 1.0], "y")
