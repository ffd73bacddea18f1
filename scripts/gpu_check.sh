#!/usr/bin/env bash
# The one device call of a GPU session, run from the repository root of a checkout:
#   bash scripts/gpu_check.sh            (writes to $OUT, else ./gpu_out)
# 1. the numba-cuda tests on the real GPU (no simulator), 2. numba-cuda vs torch-cuda timings
# at the DeepBench sizes (scripts/gpu_bench.py). Each stage has its own time limit (tests 150 s,
# timings 270 s) so the call ends within 7 minutes; what a stage produced stays in $OUT even
# if it fails: machine.txt, pytest.txt, bench.log, results.json, results.md.
# Needs numba, numba-cuda, torch (CUDA) and numpy; nothing is installed, the checkout is
# used in place (an import shim maps grubench.kernels to kernels/, as the install does).
set -u
OUT=${OUT:-$PWD/gpu_out}
mkdir -p "$OUT"
unset NUMBA_ENABLE_CUDASIM

shim=$(mktemp -d)
mkdir "$shim/grubench"
ln -s "$PWD"/grubench/* "$shim/grubench/"
ln -s "$PWD/kernels" "$shim/grubench/kernels"
export PYTHONPATH="$shim:$PWD${PYTHONPATH:+:$PYTHONPATH}"

{
  date -u
  nvidia-smi || echo "nvidia-smi failed"
  python -c "import numba, torch; print('numba', numba.__version__, 'torch', torch.__version__, torch.version.cuda)"
} > "$OUT/machine.txt" 2>&1

if python -c "import pytest" 2>/dev/null; then
  timeout 150 python -m pytest tests/kernels/test_numba_cuda.py -q -rs -p no:cacheprovider \
    > "$OUT/pytest.txt" 2>&1
  echo "pytest exit status: $?" >> "$OUT/pytest.txt"
else
  echo "pytest is not installed on this machine: tests not run" > "$OUT/pytest.txt"
fi
tail -5 "$OUT/pytest.txt"

timeout 270 python scripts/gpu_bench.py --out "$OUT" --budget-s 220 "$@" > "$OUT/bench.log" 2>&1
echo "gpu_bench exit status: $?" >> "$OUT/bench.log"
tail -60 "$OUT/bench.log"
rm -rf "$shim"
