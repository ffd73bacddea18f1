"""What a worker process (grubench.worker) does, by a request's "kind": the function
that answers it, named by module path so that the worker imports it only when asked, and
the worker module depends on none of the modules above it. Each function takes the
worker's backend (None for a worker started without one), the request and a dict it may
keep state in for the worker's life, and returns the reply row (JSON-serializable).

A caller with a new kind of work adds its function here.
"""

HANDLERS = {
    # a harness case: compile call, accuracy, timing, memory (grubench.runner)
    "case": "grubench.measure:run_case",
    # the float64 reference of a case into a file (grubench.accuracy's cache)
    "reference": "grubench.measure:run_reference",
    # interleaved case/calibration ratios (grubench regress and its A/B test)
    "regress": "grubench.calibrated:run_request",
    # which code path of a backend is fastest for a case (grubench tune)
    "tune": "grubench.tune:run_request",
    # one training run (grubench train)
    "train": "grubench.training.runner:run_request",
    # one version of a user's torch model, timed and its results saved (grubench model)
    "model": "grubench.modelbench:run_request",
}
