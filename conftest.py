"""Session-wide test isolation for every package: a random ROS_DOMAIN_ID, logs under a temp dir,
the project's Fast DDS profile, one rclpy context per test, and cleanup of the processes and
/dev/shm segments the tests created."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent
SHM = Path("/dev/shm")

# Set before anything imports rclpy: every process the tests start inherits these.
os.environ["ROS_DOMAIN_ID"] = str(random.SystemRandom().randint(1, 100))
os.environ["ROS_LOG_DIR"] = tempfile.mkdtemp(prefix="dfocus-roslog-")
os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(REPO / "config" / "fastdds_profile.xml"))
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ["RCUTILS_COLORIZED_OUTPUT"] = "0"
os.environ["PYTHONUNBUFFERED"] = "1"


def _shm_entries() -> set[str]:
    try:
        return {p.name for p in SHM.iterdir() if "fastrtps" in p.name or "fastdds" in p.name}
    except OSError:
        return set()


_SHM_BEFORE = _shm_entries()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # Fast DDS leaves its segments and port locks behind when a process dies; remove the ones
    # that appeared during this session (no test process is alive any more).
    for name in _shm_entries() - _SHM_BEFORE:
        try:
            (SHM / name).unlink()
        except OSError:
            pass


@pytest.fixture
def rclpy_context() -> Iterator[object]:
    """A fresh rclpy context for one test, shut down afterwards."""
    import rclpy
    from rclpy.context import Context

    ctx = Context()
    rclpy.init(context=ctx)
    try:
        yield ctx
    finally:
        if ctx.ok():
            rclpy.shutdown(context=ctx)


@pytest.fixture
def spin(rclpy_context: object) -> Iterator[Callable[..., object]]:
    """spin(node, ...) runs the nodes in a MultiThreadedExecutor on a thread joined at teardown."""
    from rclpy.executors import MultiThreadedExecutor

    executor = MultiThreadedExecutor(context=rclpy_context)  # type: ignore[arg-type]
    thread: threading.Thread | None = None
    nodes: list[object] = []

    def _spin(*new_nodes: object) -> object:
        nonlocal thread
        for n in new_nodes:
            executor.add_node(n)  # type: ignore[arg-type]
            nodes.append(n)
        if thread is None:
            thread = threading.Thread(target=executor.spin, daemon=True)
            thread.start()
        return executor

    yield _spin
    executor.shutdown(timeout_sec=5.0)
    if thread is not None:
        thread.join(timeout=10.0)
        assert not thread.is_alive(), "executor thread did not stop"
    from dfocus_capture.node_main import destroy_with_actions

    for n in nodes:
        # As node_main.run_node does: close() stops a node's own threads, which hold it (and with it
        # this process's DDS participant, which would discover later tests' processes).
        close = getattr(n, "close", None)
        if callable(close):
            close()
        destroy_with_actions(n)  # type: ignore[arg-type]


def _participant_locks() -> set[str]:
    """The Fast DDS lock files this process holds: a live participant holds one per segment and port."""
    from dfocus_bringup.shm_tracker import shm_files_of

    return {name for name in shm_files_of(os.getpid(), SHM, deleted=False) if name.endswith("_el")}


@pytest.fixture(autouse=True)
def _nothing_outlives_its_test() -> Iterator[None]:
    """Threads and DDS participants a test started are gone after it: a participant left running
    discovers later tests' processes and recreates their /dev/shm ports after they exit."""
    threads, locks = set(threading.enumerate()), _participant_locks()
    yield
    deadline = time.monotonic() + 5.0
    while True:
        left = sorted(t.name for t in threading.enumerate() if t not in threads and t.is_alive())
        held = sorted(_participant_locks() - locks)
        if not left and not held:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"left running by this test: threads {left}, DDS participant segments {held}")
        time.sleep(0.05)


class NodeProcesses:
    """Start ROS 2 node executables (or python modules) as separate OS processes."""

    def __init__(self, tmp: Path) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self.tmp = tmp

    def start(self, argv: list[str], name: str = "proc") -> subprocess.Popen[bytes]:
        log = open(self.tmp / f"{name}-{len(self.procs)}.log", "wb")
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        proc.log_path = log.name  # type: ignore[attr-defined]
        self.procs.append(proc)
        return proc

    def python(
        self, code_or_module: str, *args: str, name: str = "proc", module: bool = True
    ) -> subprocess.Popen[bytes]:
        head = ["-m", code_or_module] if module else ["-c", code_or_module]
        return self.start([sys.executable, *head, *args], name=name)

    def output(self, proc: subprocess.Popen[bytes]) -> str:
        return Path(proc.log_path).read_text(errors="replace")  # type: ignore[attr-defined]

    def stop_all(self, timeout: float = 10.0) -> None:
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGINT)
        deadline = time.monotonic() + timeout
        for p in self.procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


@pytest.fixture
def node_processes(tmp_path: Path) -> Iterator[NodeProcesses]:
    procs = NodeProcesses(tmp_path)
    yield procs
    procs.stop_all()


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, poll: float = 0.05) -> None:
    """Poll until predicate() is true; fail with `what` on timeout (never sleep-and-hope)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.1f} s waiting for {what}")


@pytest.fixture
def wait() -> Callable[..., None]:
    return wait_for
