"""The results schema: one row per (backend, case, threads), the same in results.json,
results.csv and the DataFrame the runner returns. The runner writes it; the report, the
verdicts, the history and comparisons read it."""
from __future__ import annotations

from grubench.case import CASE_FIELDS

SCHEMA = "grubench.results/1"

#: The columns of a results row, in order (results.json, results.csv, the DataFrame).
COLUMNS = (
    "backend", *CASE_FIELDS, "threads",
    "status", "reason", "note",
    "median_s", "iqr_s", "min_s", "runs", "unstable", "compile_s",
    "peak_bytes", "peak_counter", "rss_bytes", "expected_bytes", "expected_alloc_bytes",
    "saved_bytes",
    "max_abs_err", "rel_err", "worst_output",
    "parameters", "flops", "gflops", "gflops_recurrent", "gemm_gflops", "gemm_fraction",
    "timesteps_per_s", "baseline", "speedup",
    "backend_version", "machine", "commit", "seed",
    "samples_s",
)

#: Columns kept in results.json but not in results.csv: the raw per-call times, which
#: comparisons test for significance and a spreadsheet has no cell shape for.
JSON_ONLY_COLUMNS = ("samples_s",)

#: The columns that name a case within one backend's rows.
CASE_KEY = (*CASE_FIELDS, "threads")
