"""A toy inference-only backend: its prepared call has a forward and no training step (as
a peer library without gradients), and its registry entry says so, so the harness never
asks it to train and reports those cases as unsupported, with this reason. Loaded with
``GRUBENCH_PLUGINS=tests.plugins.toy_inference_backend``."""
from grubench import backends
from grubench.kernels import reference
from grubench.kernels.contract import Prepared

WHY = "toy: forward only, no gradients"


def availability():
    return True, None


def version():
    return "toy-inference 1.0"


class ForwardOnly(Prepared):
    def forward(self):
        return reference.prepare(self.args).forward()


def prepare(args):
    return ForwardOnly(args)


def register():
    backends.REGISTRY["toy-inference"] = backends.Entry(
        __name__, "toy inference-only backend: the NumPy reference's forward",
        unsupported={"training": WHY})
