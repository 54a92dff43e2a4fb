#!/usr/bin/env bash
# Run the test suite from a fresh machine: creates .venv, installs minillm with the
# test extras, runs pytest on every core (pytest-xdist, one worker per core; each worker
# runs torch and BLAS with one thread, see tests/conftest.py). Extra arguments go to pytest
# (`-n 0` runs everything in one process).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[torch,dev]'
export MPLBACKEND=Agg
exec .venv/bin/python -m pytest -n auto --dist loadgroup "$@"
