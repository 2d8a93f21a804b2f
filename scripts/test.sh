#!/usr/bin/env bash
# Install pspnet with its test and optional extras (CPU torch pinned), then run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet "torch==2.13.0" -e ".[dev,all]"
# Temporary files (pytest's folders, the subprocesses' files) in memory where /dev/shm has room for the run's peak
# (4.3 GB measured; 8 GiB asked): checkpoints written and fsynced on a VM's disk are slow. On a 2-core EPYC the
# checkpoint-heavy files (tests/train/test_{trainer,checkpoint_readback,stop,out_dir}.py) took 163 s instead of 203;
# the whole suite's 940 s moved less than its run-to-run spread. A failed run keeps its files for a look; the
# compiled-kernel cache stays where torch keeps it.
if [ -z "${TMPDIR:-}" ] && [ -d /dev/shm ] && [ -w /dev/shm ] &&
   [ "$(df -Pk /dev/shm | awk 'NR == 2 {print $4}')" -gt $((8 * 1024 * 1024)) ]; then
  export TORCHINDUCTOR_CACHE_DIR="${TORCHINDUCTOR_CACHE_DIR:-/tmp/torchinductor_$(id -un)}"
  scratch="$(mktemp -d /dev/shm/pspnet-tests.XXXXXX)"
  export TMPDIR="$scratch"
  trap 'rm -rf "$scratch"; exit 130' INT TERM  # interrupted: nothing left holding memory
fi
# Two test processes (pytest-xdist; a test file each at a time, so a file's shared fixtures are made once; the cores
# split between them by tests/conftest.py): 10.5 to 13 minutes instead of 16-17 in one on a 2-core EPYC. A test
# that hangs fails after 10 minutes (pytest-timeout, pyproject.toml) and the run goes on. A test process that dies
# (a signal, the kernel's out-of-memory killer) is replaced; its test runs once more in the new process and fails if
# that one dies too, and the summary says how each process ended (tests/xdist_scheduler.py: pytest-xdist 3.8.0
# alone then waited for ever, as a CI run did for 90 minutes). (Session 21 saw a DataLoader's forked workers die or
# read garbage late in a long test process, in one process as in two; it has not come back, and that test's
# evaluations read with --workers 0 since.) Plain `python -m pytest` runs one process.
# The slowest tests are named at the end.
status=0
python -m pytest -q -n 2 --dist loadfile --durations=15 "$@" || status=$?
if [ -n "${scratch:-}" ]; then
  if [ "$status" -eq 0 ]; then rm -rf "$scratch"; else echo "the failed tests' temporary files: $scratch" >&2; fi
fi
exit "$status"
