"""A toy backend, as an out-of-tree developer adds one: this module (the kernel contract:
``availability``, ``version``, ``prepare``) and one registry line in ``register()``, loaded
with ``GRUBENCH_PLUGINS=tests.plugins.toy_backend``. It runs the NumPy reference, so it
trains and runs both dtypes."""
from grubench import backends
from grubench.kernels import reference


def availability():
    return True, None


def version():
    return "toy 1.0"


def prepare(args):
    return reference.prepare(args)


def register():
    backends.REGISTRY["toy"] = backends.Entry(__name__, "toy backend: the NumPy reference")
