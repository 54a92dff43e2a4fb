#!/usr/bin/env bash
# Run the demo from a fresh machine: creates .venv, installs minillm, runs `minillm demo`.
# Extra arguments go to `minillm demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[torch,pipeline]'
export MPLBACKEND=Agg
exec .venv/bin/minillm demo "$@"
