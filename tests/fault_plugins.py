"""Faults for tests/test_faults.py, injected into a CLI run through GRUBENCH_PLUGINS (the
registry's plugin hook, loaded by the runner and by every worker):

* ``GRUBENCH_FAULT_SLOW_START=1``: backend ``fault-slow-start``, whose worker never
  finishes starting (its availability check sleeps, as a long import or compile would);
* ``GRUBENCH_FAULT_SLOW_REPORT=1``: every report file takes 0.5 s to write, announced on
  stderr as ``writing <name>``, so a test can signal the runner mid-report;
* ``GRUBENCH_FAULT_NO_CACHE_LOCATOR=1``: numba finds no folder for its on-disk cache (what
  a read-only install with a read-only HOME gives), whoever runs the tests.
"""
import os
import sys
import time

from grubench import backends, report
from grubench.kernels import reference


def availability():
    time.sleep(3600)
    return True, None


def version():
    return "fault slow-start"


def prepare(args):
    return reference.ReferencePrepared(args)


def _slow_write(write):
    def slowly(path, data):
        print(f"writing {os.path.basename(path)}", file=sys.stderr, flush=True)
        time.sleep(0.5)
        return write(path, data)
    return slowly


def register():
    if os.environ.get("GRUBENCH_FAULT_SLOW_START"):
        backends.REGISTRY["fault-slow-start"] = backends.Entry(
            __name__, "test backend whose worker never finishes starting")
    if os.environ.get("GRUBENCH_FAULT_SLOW_REPORT") and not hasattr(report, "_fault_slow"):
        report._fault_slow = True
        report.write_atomic = _slow_write(report.write_atomic)
    if os.environ.get("GRUBENCH_FAULT_NO_CACHE_LOCATOR"):
        from numba.core import caching

        caching.CacheImpl._locator_classes = []
