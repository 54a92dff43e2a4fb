#!/usr/bin/env bash
# Run the test suite from a fresh machine: creates .venv, installs minillm with the
# test extras, runs pytest. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[torch,dev]'
export MPLBACKEND=Agg
exec .venv/bin/python -m pytest "$@"
