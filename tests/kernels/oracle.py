"""The check every backend's kernel tests share: a training step's outputs and gradients
against the float64 NumPy reference on the same inputs, with the tolerances of
grubench.tolerances for the backend's dtype."""
from grubench import tolerances
from grubench.accuracy import as_float64
from grubench.kernels import reference

OUTPUT_NAMES = ("y", "h_n", "c_n")


def reference_step(args):
    """(outputs, grads) of the float64 reference on ``args`` cast to float64."""
    return reference.prepare(as_float64(args)).training_step()


def assert_matches_reference(outputs, grads, args, expected=None):
    """Outputs (y, h_n[, c_n]) and, unless ``grads`` is None, every gradient: dtype, shape
    and values within the dtype's tolerance. ``expected`` saves recomputing the reference."""
    want_outputs, want_grads = expected or reference_step(args)
    forward = tolerances.forward_tolerance(args.dtype)
    for name, got, want in zip(OUTPUT_NAMES, outputs, want_outputs, strict=False):
        assert got.dtype == args.dtype, name
        forward.assert_close(got, want, name)
    assert len(outputs) == len(want_outputs)
    if grads is None:
        return
    assert list(grads) == list(args.inputs())
    gradient = tolerances.gradient_tolerance(args.dtype)
    for name, want in want_grads.items():
        assert grads[name].dtype == args.dtype, name
        gradient.assert_close(grads[name], want, f"gradient of {name}")
