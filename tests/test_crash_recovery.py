"""The suite's runner (scripts/test.sh: pytest-xdist, two processes, `--dist loadfile`): a test process that dies
fails the test it was running, every other test runs once, and the run ends (tests/xdist_scheduler.py)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("xdist")

SUITE = {
    "conftest.py": "from xdist_scheduler import pytest_handlecrashitem, pytest_xdist_make_scheduler\n",
    "test_a.py": "def test_a1(): pass\ndef test_a2(): pass\n",
    # SIGKILL: as the kernel's out-of-memory killer ends a process, with nothing printed
    "test_b.py": "import os, signal, time\ndef test_b1(): time.sleep(0.5)\n"
                 "def test_b2(): os.kill(os.getpid(), signal.SIGKILL)\ndef test_b3(): pass\n",
    "test_c.py": "import time\ndef test_c1(): time.sleep(0.5)\ndef test_c2(): pass\n",
    "test_d.py": "def test_d1(): pass\ndef test_d2(): pass\n",
}


def test_a_test_process_that_dies_fails_its_test_and_the_run_still_ends(tmp_path):
    for name, text in SUITE.items():
        (tmp_path / name).write_text(text)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "PYTHONPATH"))}
    try:
        done = subprocess.run([sys.executable, "-m", "pytest", "-v", "-n", "2", "--dist", "loadfile", "-p",
                               "no:cacheprovider", "--rootdir", str(tmp_path), str(tmp_path)], cwd=tmp_path,
                              capture_output=True, text=True, timeout=90,
                              env={**env, "PYTHONPATH": str(Path(__file__).parent)})
    except subprocess.TimeoutExpired:
        pytest.fail("the run did not end after its test process died (pytest-xdist#1323)")
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    assert "crashed while running 'test_b.py::test_b2'; its process " in done.stdout
    assert " was ended by SIGKILL; MemAvailable now " in done.stdout
    assert "1 failed, 8 passed" in done.stdout, done.stdout[-3000:]
    for test in ("a1", "a2", "b1", "b3", "c1", "c2", "d1", "d2"):
        name = f"test_{test[0]}.py::test_{test}"
        assert done.stdout.count(f"PASSED {name}") == 1, name
