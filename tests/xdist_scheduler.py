"""pytest-xdist's file scheduler (`--dist loadfile`, scripts/test.sh) with its crash recovery mended, and a crash
report that says how the process ended.

When a test process dies (a signal, the kernel's out-of-memory killer), pytest-xdist 3.8.0 reports the test it was
running as failed and starts a new process, but puts back in the queue every file the dead process was ever given,
the crashing test and the finished files included (`LoadScopeScheduling.remove_node`): the new process runs the
crashing test again, and a finished file is then sent as an empty list of tests whose end never comes, so the run
waits until something kills it (pytest-xdist#1323; a CI run of this suite hung so for its 90 minutes, after a process
died with nothing printed). Here only the tests the dead process had not run go back, the crashing one not among
them: the run ends, naming that test, its process's exit status, the memory then available and what the kernel's log
says of the process.
"""

import signal
import subprocess
from pathlib import Path

import pytest
from xdist.scheduler import LoadFileScheduling
from xdist.workermanage import WorkerController


class CrashSafeLoadFileScheduling(LoadFileScheduling):
    def __init__(self, config: pytest.Config, log=None) -> None:  # noqa: ANN001 (xdist's Producer)
        super().__init__(config, log)
        self.endings: dict[str, str] = {}  # crashed test → how its process ended

    def remove_node(self, node: WorkerController) -> str | None:
        workload = self.assigned_work.pop(node)
        unfinished = [nodeid for unit in workload.values() for nodeid, done in unit.items() if not done]
        if not unfinished:
            return None  # the process finished its work: a shutdown, not a crash
        crashed = unfinished[0]  # a file's tests run in order: the first not finished was running
        for scope, unit in workload.items():
            unit = {**unit, crashed: True} if crashed in unit else unit
            if not all(unit.values()):
                self.workqueue[scope] = unit
        for other in self.assigned_work:
            self._reschedule(other)
        self.endings[crashed] = how_it_ended(node)
        return crashed


def how_it_ended(node: WorkerController) -> str:
    """The dead test process's exit status, the memory available now, and the kernel's lines about it (Linux)."""
    popen = getattr(getattr(node.gateway, "_io", None), "popen", None)  # execnet's subprocess.Popen of the worker
    if popen is None:
        return ""
    try:
        code = popen.wait(timeout=10)
    except subprocess.TimeoutExpired:
        return f"; its process {popen.pid} was still running 10 s later"
    said = [f"its process {popen.pid} " + (f"exited with status {code}" if code >= 0 else
                                            f"was ended by {signal.Signals(-code).name}")]
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        fields = dict(line.split(":", 1) for line in meminfo.read_text().splitlines())
        said.append(f"MemAvailable now {fields['MemAvailable'].strip()} of {fields['MemTotal'].strip()}")
    try:
        kernel = subprocess.run(["dmesg"], capture_output=True, text=True, timeout=10).stdout.splitlines()
    except (OSError, subprocess.TimeoutExpired):
        kernel = []
    said += [f"kernel: {line}" for line in kernel if f" {popen.pid} " in line or f"({popen.pid})" in line
             or "out of memory" in line.lower()][-5:]
    return "; " + "; ".join(said)


@pytest.hookimpl(optionalhook=True)  # pytest-xdist's hooks: plain `pytest -p no:xdist` has none
def pytest_xdist_make_scheduler(config: pytest.Config, log) -> LoadFileScheduling | None:  # noqa: ANN001
    """The scheduler of `--dist loadfile`, mended; the others as pytest-xdist makes them."""
    return CrashSafeLoadFileScheduling(config, log) if config.getvalue("dist") == "loadfile" else None


@pytest.hookimpl(optionalhook=True)
def pytest_handlecrashitem(crashitem: str, report: pytest.TestReport, sched) -> None:  # noqa: ANN001
    if isinstance(sched, CrashSafeLoadFileScheduling):
        report.longrepr = f"{report.longrepr}{sched.endings.pop(crashitem, '')}"
