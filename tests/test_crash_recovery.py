"""The suite's runner (scripts/test.sh: pytest-xdist, two processes, `--dist loadfile`): a test whose process dies
runs once more in a new process, fails if it dies again, every other test runs once, and the run ends, saying how
each process ended, one that died after its last test too (tests/xdist_scheduler.py)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("xdist")

SUITE = {
    "conftest.py": "import os, signal\nfrom pathlib import Path\n"
                   # the process that ran test_d2 dies at its session's end, once
                   "def pytest_sessionfinish(session):\n"
                   "    here = Path(__file__).parent\n"
                   "    if hasattr(session.config, 'workerinput') and (here / 'd2').exists():\n"
                   "        (here / 'd2').unlink()\n        os.kill(os.getpid(), signal.SIGKILL)\n",
    "test_a.py": "def test_a1(): pass\ndef test_a2(): pass\n",
    # SIGKILL: as the kernel's out-of-memory killer ends a process, with nothing printed; b2 every time, c1 once
    "test_b.py": "import os, signal, time\ndef test_b1(): time.sleep(0.5)\n"
                 "def test_b2(): os.kill(os.getpid(), signal.SIGKILL)\ndef test_b3(): pass\n",
    "test_c.py": "import os, signal, time\nfrom pathlib import Path\ndef test_c1():\n"
                 "    if not Path(__file__).with_name('died').exists():\n"
                 "        Path(__file__).with_name('died').touch()\n        os.kill(os.getpid(), signal.SIGKILL)\n"
                 "def test_c2(): pass\n",
    "test_d.py": "from pathlib import Path\ndef test_d1(): pass\n"
                 "def test_d2(): Path(__file__).with_name('d2').touch()\n",
}


def test_a_test_whose_process_dies_runs_once_more_and_the_run_still_ends(tmp_path):
    for name, text in SUITE.items():
        (tmp_path / name).write_text(text)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "PYTHONPATH"))}
    try:
        done = subprocess.run([sys.executable, "-m", "pytest", "-v", "-n", "2", "--dist", "loadfile", "-p",
                               "xdist_scheduler", "-p", "no:cacheprovider", "-p", "no:randomly",  # order as written
                               "--rootdir", str(tmp_path), str(tmp_path)],
                              cwd=tmp_path,
                              capture_output=True, text=True, timeout=90,
                              env={**env, "PYTHONPATH": str(Path(__file__).parent)})
    except subprocess.TimeoutExpired:
        pytest.fail("the run did not end after its test process died (pytest-xdist#1323)")
    said = done.stdout
    assert done.returncode == 1, said[-3000:] + done.stderr[-3000:]
    assert said.count("RERUN test_b.py::test_b2") == 1 and said.count("FAILED test_b.py::test_b2") >= 1, said[-3000:]
    assert said.count("RERUN test_c.py::test_c1") == 1 and said.count("PASSED test_c.py::test_c1") == 1
    for test in ("a1", "a2", "b1", "b3", "c2", "d1", "d2"):
        assert said.count(f"PASSED test_{test[0]}.py::test_{test}") == 1, test
    assert "1 failed, 8 passed, 2 rerun" in said, said[-3000:]
    died = [line for line in said.splitlines() if line.startswith("a test process died ")]
    assert len(died) == 4 and all(" was ended by SIGKILL; MemAvailable now " in line for line in died), died
    assert sorted(line.split("; its process")[0].removeprefix("a test process died ") + line.split(":")[-1]
                  for line in died if "after its last test" not in line) == [
        "while running test_b.py::test_b2 the test failed", "while running test_b.py::test_b2 the test ran once more",
        "while running test_c.py::test_c1 the test ran once more"]
    assert sum(line.startswith("a test process died after its last test; its process ") for line in died) == 1
