#!/usr/bin/env bash
# Install pspnet with its test and optional extras (CPU torch pinned), then run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet "torch==2.13.0" -e ".[dev,all]"
# One test process: two (pytest-xdist, `-n 2 --dist loadfile`, 11 minutes instead of 15.5 on a 2-core Zen 1) lost a
# worker in 3 of 5 full runs on 2026-11-28 (a crash, a hang, garbage ground truth), each in a test whose DataLoader
# forks workers late in a long-lived process (notes: session 21). `-n 2` still works for a quick local run.
# The slowest tests are named at the end.
python -m pytest -q --durations=15 "$@"
