"""Fixtures for the independent GRU/LSTM implementations the weight converters are checked
against: ONNX Runtime (with onnx to build its graphs) and Keras 3 on its torch backend.
Each skips with the reason and the install command when its package is missing."""
import os

import pytest


@pytest.fixture(scope="session")
def onnxruntime():
    pytest.importorskip("onnx", reason="onnx is not installed (pip install .[test])")
    return pytest.importorskip("onnxruntime",
                               reason="onnxruntime is not installed (pip install .[test])")


@pytest.fixture(scope="session")
def keras():
    # Keras reads its backend once, at import: torch is the backend this project ships.
    os.environ["KERAS_BACKEND"] = "torch"
    keras = pytest.importorskip("keras", reason="keras is not installed (pip install .[test])")
    if keras.backend.backend() != "torch":
        pytest.skip(f"keras was imported earlier with the {keras.backend.backend()} backend")
    return keras
