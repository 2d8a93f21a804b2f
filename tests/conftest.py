import importlib.util
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from local_server import serve  # noqa: E402, F401  (a fixture for every test folder)

SHARED = Path(__file__).resolve().parents[2] / "shared"
FIXTURES = SHARED / "fixtures"


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture
def fake_cpu(monkeypatch):
    """`fake_cpu(vendor, *flags)`: pspnet reads a CPU of that vendor_id and those flags, as /proc/cpuinfo lists them
    (the `auto` choices and warnings that depend on the CPU)."""
    import pspnet.device

    def fake(vendor: str, *flags: str) -> None:
        monkeypatch.setattr(pspnet.device, "_cpuinfo", lambda: (vendor, set(flags)))

    return fake


@pytest.fixture(autouse=True)
def _no_stale_dataloader_sigchld_handler():
    """torch's DataLoader installs a SIGCHLD handler at its first worker and never removes it. In one long pytest
    process it outlives its loader, and it crashed the process (SIGSEGV in the handler, while a later test waited for
    a subprocess: reproduced with tests/data's 1-worker loader, two OpenVINO models, then test_quantize_openvino's
    subprocess; resetting the handler after the loader's test made it pass). Each test ends with the default handler
    again; torch installs its own anew when a later test starts workers."""
    yield
    if hasattr(signal, "SIGCHLD"):
        handler = signal.getsignal(signal.SIGCHLD)
        if getattr(handler, "__qualname__", "").startswith("_set_SIGCHLD_handler"):
            from torch.utils.data._utils import signal_handling

            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            signal_handling._SIGCHLD_handler_set = False


def pytest_configure(config: pytest.Config) -> None:
    if importlib.util.find_spec("xdist"):  # a run that ends when a test process dies (scripts/test.sh runs two)
        import xdist_scheduler

        config.pluginmanager.register(xdist_scheduler, "xdist_scheduler")


# Under pytest-xdist (scripts/test.sh: `-n 2`), the workers share the cores (and so do the processes they start)
# rather than each running a thread per core: on 2 cores, four threads contending for two.
if workers := int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0")):
    threads = max(1, (os.cpu_count() or 1) // workers)
    torch.set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)

# A DataLoader's workers in a test's own process come from a fork server (a clean process started once), not from a
# fork of the test process, which late in a run holds OpenVINO's, ONNX Runtime's and the compiler's threads: a fork's
# children hung there (tests/train/test_stop.py), and a test process died of SIGSEGV, nothing printed, in an
# in-process `pspnet eval` with its two default workers (a CI replica; the cause is not proven, and the test passed
# when run again). This is also what a user gets on macOS and Windows (spawn): all a worker is sent must pickle.
# Tests that start `pspnet` in a subprocess keep Linux's fork there.
multiprocessing.set_start_method("forkserver", force=True)
multiprocessing.set_forkserver_preload(["torch", "pspnet.data.datasets"])

# A folder of this test process, removed when it ends (`pytest_unconfigure`, which pytest-xdist's controller runs
# too): converted OpenVINO graphs go there, not to the user's cache, and so do the temporary files of the processes
# the tests start (TMPDIR: torchrun leaves a torchelastic_* log folder behind at every launch, in the system's /tmp
# otherwise). Set when this file is imported, before any test module copies os.environ for its subprocesses; this
# process's own temporary files (pytest's tmp_path among them) stay where they were.
# The folders sit side by side in the temporary folder the run started with (xdist's workers inherit the
# controller's TMPDIR: nested in it, a CI run's paths grew past what a Unix socket's address holds, 107 bytes, and a
# DataLoader worker of a subprocess could not send its batch: "AF_UNIX path too long", the run hung). Where even
# that is too long for multiprocessing's socket paths (TMPDIR/pymp-XXXXXXXX/listener-XXXXXXXX), TMPDIR stays.
ROOT = os.environ.setdefault("PSPNET_TESTS_TMPDIR", tempfile.gettempdir())
SCRATCH = Path(tempfile.mkdtemp(prefix="pspnet_test_", dir=ROOT))
os.environ["PSPNET_CACHE"] = str(SCRATCH / "cache")
if len(str(SCRATCH)) + len("/pymp-XXXXXXXX/listener-XXXXXXXX") <= 107:
    os.environ["TMPDIR"] = str(SCRATCH)


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(SCRATCH, ignore_errors=True)


@pytest.fixture(autouse=True, scope="module")
def _module_folders_removed(tmp_path_factory, request):
    """The folders a test file's fixtures made (`tmp_path_factory.mktemp`) go when the file ends without a failure,
    not when the session ends: in /dev/shm (scripts/test.sh) they are memory, and they reached ~5 GB by the end of a
    run. (Each test's own `tmp_path` goes when it passes: pyproject's retention policy.)"""
    base = tmp_path_factory.getbasetemp()
    before, failed = set(base.iterdir()), request.session.testsfailed
    yield
    if request.session.testsfailed == failed:
        for path in set(base.iterdir()) - before:
            shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def official_fixture() -> dict:
    """The official model's outputs for reproducible weights (../shared/fixtures), with the weights rebuilt."""
    path = FIXTURES / "semseg_pspnet50_c19.pt"
    if not path.is_file():
        pytest.fail(f"missing {path}: the official fixtures must sit beside the repository in ../shared")
    sys.path.insert(0, str(FIXTURES))
    from official_weights import fill

    fx = torch.load(path, weights_only=True)
    fx["state"] = fill(fx["shapes"], fx["seed"])
    return fx
