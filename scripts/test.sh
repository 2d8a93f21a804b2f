#!/usr/bin/env bash
# Install pspnet with its test and optional extras (CPU torch pinned), then run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet "torch==2.13.0" -e ".[dev,all]"
python -m pytest -q --durations=15 "$@"   # the slowest tests named at the end: the suite is kept to minutes
