#!/usr/bin/env bash
# Install pspnet with its test and optional extras (CPU torch pinned), then run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet "torch==2.13.0" -e ".[dev,all]"
# Two test processes (a test file each at a time, its fixtures built once; tests/conftest.py splits the cores
# between them): 11 minutes instead of 15.5 on a 2-core Zen 1. The slowest tests are named at the end.
python -m pytest -q -n 2 --dist loadfile --durations=15 "$@"
