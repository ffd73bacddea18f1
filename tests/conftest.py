"""Session-wide test settings.

* Hypothesis profiles: ``ci`` (the default: the property suite in about two minutes on two
  cores) and ``long`` (release checks: ``python -m pytest --hypothesis-profile=long``).
  No deadline: on a shared machine one example's time says nothing.
* Tests never write to the user's real results history: runs the tests start record
  nothing unless a test names its own database (GRUBENCH_DB or --db under tmp_path).
* Without a GPU, numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1) stands in for one, so
  the numba-cuda kernels run everywhere; set here, before any test imports numba, unless
  the variable is already set or a GPU is present (then the real kernels run).
"""
import os
from pathlib import Path

from hypothesis import HealthCheck, settings

os.environ["GRUBENCH_DB"] = "off"


class _KernelsFromMutmutsCopy:
    """Under mutmut, grubench.kernels is mutmut's copy of kernels/ (mutants/kernels),
    imported as ``kernels`` (the name mutmut gives its mutants): the installed package-dir
    mapping would import the unmutated sources. grubench.kernels.X is kernels.X."""

    PREFIX = "grubench.kernels."

    @classmethod
    def install(cls) -> None:
        if os.environ.get("MUTANT_UNDER_TEST") is None:
            return
        if not (Path.cwd() / "kernels" / "__init__.py").is_file():
            return
        import sys

        import grubench
        import kernels

        sys.modules["grubench.kernels"] = grubench.kernels = kernels
        sys.meta_path.insert(0, cls())

    def find_spec(self, name, path=None, target=None):
        if not name.startswith(self.PREFIX):
            return None
        import importlib
        import importlib.util

        importlib.import_module(name.removeprefix("grubench."))
        return importlib.util.spec_from_loader(name, self)

    def create_module(self, spec):
        import sys

        return sys.modules[spec.name.removeprefix("grubench.")]

    def exec_module(self, module):
        """Already executed under its own name."""


_KernelsFromMutmutsCopy.install()
# Kernels run their default code paths: a test that tunes names its own cache folder.
os.environ["GRUBENCH_TUNING_DIR"] = "off"

settings.register_profile("ci", max_examples=100, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("long", max_examples=2000, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci")


def _gpu_present() -> bool:
    gpus = Path("/proc/driver/nvidia/gpus")
    return gpus.is_dir() and any(gpus.iterdir())


if "NUMBA_ENABLE_CUDASIM" not in os.environ and not _gpu_present():
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"

