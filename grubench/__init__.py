"""grubench: how fast, how lean and how exact is a GRU (and an LSTM) on this machine."""
__version__ = "0.1.0"


def __getattr__(name):
    # grubench.run_suite without importing pandas and the runner on `import grubench`.
    if name == "run_suite":
        from grubench.runner import run_suite

        return run_suite
    raise AttributeError(f"module 'grubench' has no attribute {name!r}")
