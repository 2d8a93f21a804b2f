#!/usr/bin/env bash
# Install pspnet with its test and optional extras (CPU torch pinned), then run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet "torch==2.13.0" -e ".[dev,all]"
# One test process: with two (pytest-xdist, `-n 2 --dist loadfile`, 11 minutes instead of 15.5 on a 2-core Zen 1)
# a worker that crashed left the run hung (2026-11-28: a DataLoader forking its workers late in a long-lived process;
# notes: session 21); one process fails instead. `-n 2` still works for a quick local run.
# The slowest tests are named at the end.
python -m pytest -q --durations=15 "$@"
