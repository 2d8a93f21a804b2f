"""A plugin (registered by tests/conftest.py): pytest-xdist's file scheduler (`--dist loadfile`, scripts/test.sh)
with its crash recovery mended: a test whose process dies runs once more in a new process, and the run ends whatever
the second run does, saying how the process ended.

When a test process dies (a signal, the kernel's out-of-memory killer), pytest-xdist 3.8.0 reports the test it was
running as failed and starts a new process, but puts back in the queue every file the dead process was ever given,
the finished files included (`LoadScopeScheduling.remove_node`): a finished file is then sent as an empty list of
tests whose end never comes, so the run waits until something kills it (pytest-xdist#1323; a CI run of this suite
hung so for its 90 minutes, after a process died with nothing printed, and its test passed when run again). Here only
the tests the dead process had not run go back, the crashing one first, once: it fails if its process dies again.
Either way the report names the test, its process's exit status, the memory then available and what the kernel's log
says of the process, and the summary lists every test process that died (after its last test too: that fails
nothing)."""

import signal
import subprocess
from pathlib import Path

import pytest
from xdist.scheduler import LoadFileScheduling
from xdist.workermanage import WorkerController

# In the controller: (the test whose process died, or None after its last test; how the process ended; whether the
# test runs again), and the processes that went down with an error (a crash, not a stop).
CRASHES: list[tuple[str | None, str, bool]] = []
DIED: set[WorkerController] = set()


class CrashSafeLoadFileScheduling(LoadFileScheduling):
    def remove_node(self, node: WorkerController) -> str | None:
        workload = self.assigned_work.pop(node)
        unfinished = [nodeid for unit in workload.values() for nodeid, done in unit.items() if not done]
        if not unfinished:  # a stop, or a death after the process's last test (in its session's end)
            if node in DIED:
                CRASHES.append((None, how_it_ended(node), False))
            return None
        crashed = unfinished[0]  # a file's tests run in order: the first not finished was running
        again = not any(test == crashed for test, _, _ in CRASHES)
        CRASHES.append((crashed, how_it_ended(node), again))
        for scope, unit in workload.items():
            unit = {**unit, crashed: True} if crashed in unit and not again else unit
            if not all(unit.values()):
                self.workqueue[scope] = unit
                if crashed in unit:
                    self.workqueue.move_to_end(scope, last=False)  # next, in the new process
        for other in self.assigned_work:
            self._reschedule(other)
        return crashed

    def _assign_work_unit(self, node: WorkerController) -> None:
        try:
            super()._assign_work_unit(node)  # the file is the node's before it is sent
        except OSError:  # the process has just died (a broken pipe): `remove_node` puts the file back
            pass

    def _reschedule(self, node: WorkerController) -> None:
        """Work for `node` once it has collected the tests (pytest-xdist 3.8.0 also gives work to a new process still
        collecting, and fails on the collection it does not have yet), and at least two tests of it: a process runs
        its last test only once it has another or is told to stop (its fixtures' teardown needs the next test), so a
        new process given one file of one test left would wait for ever, and the run with it."""
        if node not in self.registered_collections:
            return
        super()._reschedule(node)
        while not node.shutting_down and self._pending_of(self.assigned_work[node]) < 2:
            super()._reschedule(node)  # another file, or, with none left, the stop


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
def pytest_testnodedown(node: WorkerController, error: object | None) -> None:
    if error is not None:
        DIED.add(node)


@pytest.hookimpl(optionalhook=True)
def pytest_handlecrashitem(crashitem: str, report: pytest.TestReport, sched) -> None:  # noqa: ANN001
    if isinstance(sched, CrashSafeLoadFileScheduling) and CRASHES and CRASHES[-1][0] == crashitem:
        _, ending, again = CRASHES[-1]
        report.longrepr = f"{report.longrepr}{ending}" + ("; it runs once more, in a new process" if again else "")
        if again:
            report.outcome = "rerun"  # type: ignore[assignment]  (neither passed nor failed: reported as R)


def pytest_report_teststatus(report: pytest.TestReport) -> tuple[str, str, str] | None:
    return ("rerun", "R", "RERUN") if report.outcome == "rerun" else None


def pytest_terminal_summary(terminalreporter) -> None:  # noqa: ANN001
    if CRASHES:
        terminalreporter.write_sep("=", "test processes that died")
    for test, ending, again in CRASHES:
        if test is None:
            terminalreporter.write_line(f"a test process died after its last test{ending}")
        else:
            verdict = "ran once more" if again else "failed"
            terminalreporter.write_line(f"a test process died while running {test}{ending}: the test {verdict}")
