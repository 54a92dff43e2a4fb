#!/usr/bin/env bash
# The device checks, as one script for a lent GPU machine (its own python3 has a CUDA
# build of torch): the CUDA tests, then the benchmark with the GPT-2-small bf16 table.
# Usage: OUT=/some/dir bash scripts/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD MPLBACKEND=Agg
OUT=${OUT:-runs/gpu}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, numpy; print('torch', torch.__version__, 'numpy', numpy.__version__)"
python3 -m pytest -q -p no:cacheprovider tests/models/test_cuda.py tests/store/test_runtime.py tests/train/test_generation.py \
    tests/ops/test_optim.py 2>&1 | tail -15
python3 -m minillm.cli bench --device cuda --sizes small medium --threads 4 --out "$OUT/bench" 2>&1 | tail -70
