"""`dfocus launch FILE [name:=value ...]`: runs a ROS 2 YAML launch file, one OS process per node.

Like `ros2 launch`: each node gets `--ros-args -r __node:=NAME -r __ns:=NS --params-file F -p k:=v
-r from:=to`, its output is prefixed `[name-N]` (coloured on a terminal), `respawn` restarts it after
`respawn_delay`, and gives up after RESPAWN_GIVE_UP fast failures in a row (each within FAST_EXIT_S
of its start: a node that cannot start is not restarted forever). SIGINT/SIGTERM/SIGHUP (a closed
terminal) stop everything within 5 s (SIGINT, then SIGTERM, then SIGKILL to each process group) and
the Fast DDS shared-memory files those processes left are removed; if the runner itself is killed
(SIGKILL), the kernel sends each node SIGTERM (parent-death signal), so none is orphaned.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import IO, cast

from dfocus_bringup.launch_file import (
    LaunchFileError,
    LaunchPlan,
    NodeLaunch,
    join_namespace,
    key_matches,
    load_launch,
    package_share,
    params_file_keys,
    parse_cli_args,
)
from dfocus_bringup.shm_tracker import ShmTracker

SIGINT_GRACE_S = 2.5  # then SIGTERM
FAST_EXIT_S = 10.0  # a node that exits this soon after starting failed to start ...
RESPAWN_GIVE_UP = 5  # ... and after this many such exits in a row it is not respawned again
SIGTERM_GRACE_S = 1.5  # then SIGKILL; total stays under 5 s
COLOURS = (32, 33, 34, 35, 36, 92, 93, 94, 95, 96)


class ExecutableNotFoundError(LaunchFileError):
    """A node's package/executable is neither an installed console script nor in lib/<pkg>/."""


def _normalise(name: str) -> str:
    return name.replace("-", "_").lower()


def find_executable(package: str, executable: str) -> list[str]:
    """The command that starts `executable` of `package`: lib/<pkg>/<exe> of an AMENT_PREFIX_PATH
    entry (colcon install), else the console-script entry point of the installed distribution."""
    for prefix in filter(None, os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)):
        path = Path(prefix) / "lib" / package / executable
        if path.is_file() and os.access(path, os.X_OK):
            return [str(path)]
    for ep in entry_points(group="console_scripts", name=executable):
        if ep.dist is not None and _normalise(ep.dist.name) == _normalise(package):
            module, _, func = ep.value.partition(":")
            return [sys.executable, "-c", f"import sys; from {module} import {func}; sys.exit({func}())"]
    raise ExecutableNotFoundError(f"executable {executable!r} of package {package!r} not found "
                             "(not a console script of that package, nor in lib/<pkg>/ of AMENT_PREFIX_PATH)")


def check_plan(plan: LaunchPlan) -> list[str]:
    """Problems that would stop nodes from starting: missing executables and params files."""
    problems = []
    for node in plan.nodes:
        try:
            find_executable(node.package, node.executable)
        except ExecutableNotFoundError as exc:
            problems.append(f"{node.label}: {exc}")
        problems += [f"{node.label}: params file {f} does not exist" for f in node.params_files
                     if not Path(f).is_file()]
    return problems


def params_warnings(plan: LaunchPlan) -> list[str]:
    """Params files with no section for the node they are given to: rcl would apply nothing (a bare
    `name:` key only matches a node in `/`; namespaced nodes need `/**/name:` or `/ns/name:`)."""
    warnings = []
    for node in plan.nodes:
        if not node.name:
            continue
        fqn = join_namespace(node.namespace, node.name)
        for f in node.params_files:
            keys = params_file_keys(f) if Path(f).is_file() else []
            if keys and not any(key_matches(k, fqn) for k in keys):
                warnings.append(f"{node.label}: params file {f} has no section for {fqn} "
                                f"(keys {keys}; use /**/{node.name}:)")
    return warnings


@dataclass
class _Child:
    node: NodeLaunch
    label: str
    colour: int
    proc: subprocess.Popen[bytes] | None = None
    restart_at: float | None = None
    started_at: float = 0.0
    fast_exits: int = 0  # exits in a row within FAST_EXIT_S of starting


_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _die_with_parent() -> None:
    """In the child between fork and exec: SIGTERM when the runner dies (Linux prctl)."""
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


class Runner:
    def __init__(self, plan: LaunchPlan, out: IO[str], colour: bool) -> None:
        self.plan = plan
        self.out = out
        self.colour = colour
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.shm = ShmTracker()
        labels: dict[str, int] = {}
        self.children = []
        for i, node in enumerate(plan.nodes):
            labels[node.label] = labels.get(node.label, 0) + 1
            self.children.append(_Child(node, f"{node.label}-{labels[node.label]}", COLOURS[i % len(COLOURS)]))
        self.failed = False

    def say(self, label: str, colour: int, line: str) -> None:
        prefix = f"\033[{colour}m[{label}]\033[0m" if self.colour else f"[{label}]"
        with self.lock:
            self.out.write(f"{prefix} {line}\n")
            self.out.flush()

    def info(self, line: str) -> None:
        self.say("INFO", 0 if not self.colour else 1, line)

    def start(self, child: _Child) -> None:
        node = child.node
        cmd = find_executable(node.package, node.executable) + node.args + node.ros_arguments()
        env = {**os.environ, **self.plan.env, **node.env, "PYTHONUNBUFFERED": "1"}
        # The parent-death signal is tied to the forking thread: children are only ever started
        # from the runner's main thread (run() and its _check()).
        child.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                                      start_new_session=True, preexec_fn=_die_with_parent)
        child.restart_at, child.started_at = None, time.monotonic()
        self.info(f"{child.label}: started, pid {child.proc.pid}")
        threading.Thread(target=self._pump, args=(child, child.proc), daemon=True).start()

    def _pump(self, child: _Child, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            self.say(child.label, child.colour, raw.decode(errors="replace").rstrip("\n"))

    def alive(self) -> list[subprocess.Popen[bytes]]:
        return [c.proc for c in self.children if c.proc is not None and c.proc.poll() is None]

    def run(self) -> int:
        for child in self.children:
            self.start(child)
        last_observe = 0.0
        while not self.stopping.is_set():
            now = time.monotonic()
            if now - last_observe > 0.5:
                self.shm.observe(p.pid for p in self.alive())
                last_observe = now
            pending = False
            for child in self.children:
                pending |= self._check(child, now)
            if not pending:
                break
            self.stopping.wait(0.05)
        self.shutdown()
        return 1 if self.failed else 0

    def _check(self, child: _Child, now: float) -> bool:
        """Reap/respawn one child; True while it is running or due to restart."""
        proc = child.proc
        if proc is not None and proc.poll() is None:
            return True
        if child.restart_at is not None:
            if now >= child.restart_at:
                self.start(child)
            return True
        if proc is None:
            return False
        code = proc.returncode
        how = "finished cleanly" if code == 0 else f"died (exit code {code})"
        self.info(f"{child.label}: process {how}, pid {proc.pid}")
        child.proc = None
        child.fast_exits = child.fast_exits + 1 if now - child.started_at < FAST_EXIT_S else 0
        if child.node.respawn and child.fast_exits >= RESPAWN_GIVE_UP:
            self.info(f"{child.label}: not respawning: it exited {child.fast_exits} times in a row within "
                      f"{FAST_EXIT_S:g} s of starting")
            self.failed = True
            return False
        if child.node.respawn and not self.stopping.is_set():
            child.restart_at = now + child.node.respawn_delay
            self.info(f"{child.label}: respawning in {child.node.respawn_delay:.1f} s")
            return True
        self.failed |= code != 0
        return False

    def request_stop(self, *_: object) -> None:
        self.stopping.set()

    def shutdown(self) -> None:
        """SIGINT every process group, then SIGTERM, then SIGKILL, within 5 s; then clean /dev/shm."""
        self.stopping.set()
        running = {c.label: c.proc for c in self.children if c.proc is not None and c.proc.poll() is None}
        self.shm.observe(p.pid for p in running.values())
        for sig, grace in ((signal.SIGINT, SIGINT_GRACE_S), (signal.SIGTERM, SIGTERM_GRACE_S), (signal.SIGKILL, 1.0)):
            running = {label: p for label, p in running.items() if p.poll() is None}
            if not running:
                break
            if sig != signal.SIGINT:
                self.info(f"sending {sig.name} to {len(running)} process(es) still running: {', '.join(running)}")
            procs = list(running.values())
            for p in procs:
                try:
                    os.killpg(p.pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + grace
            for p in procs:
                try:
                    p.wait(timeout=max(0.01, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass
        removed = self.shm.cleanup()
        if removed:
            self.info(f"removed {len(removed)} shared-memory file(s) left in /dev/shm")


def show_args(plan: LaunchPlan) -> str:
    lines = ["Arguments (pass arguments as '<name>:=<value>'):", ""]
    for a in plan.args.values():
        default = "(required)" if a.default is None else f"(default: '{a.default}')"
        choices = f" one of {list(a.choices)}" if a.choices else ""
        lines += [f"    '{a.name}':", f"        {a.description}{choices}", f"        {default}", ""]
    return "\n".join(lines)


def _ros2_launch() -> Callable[..., int] | None:
    """`ros2 launch`'s entry point (ros2launch.api.launch_a_launch_file) where ROS 2's launch is
    installed; None in the wheel-based venv, which lacks it."""
    try:
        from ros2launch.api import launch_a_launch_file  # type: ignore[import-not-found]
    except ImportError:
        return None
    return cast(Callable[..., int], launch_a_launch_file)


def launch_command(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="dfocus launch", description="Run a ROS 2 YAML launch file, one process per node.")
    p.add_argument("file", help="launch file (.launch.yaml); a bare name is looked up in launch/")
    p.add_argument("args", nargs="*", help="launch arguments name:=value")
    p.add_argument("-s", "--show-args", action="store_true", help="list the launch arguments and exit")
    p.add_argument("-p", "--print", action="store_true", dest="print_only", help="print the commands and exit")
    p.add_argument("--color", choices=("auto", "always", "never"), default="auto")
    p.add_argument("--builtin", action="store_true",
                   help="use this runner even where ROS 2's own launch (ros2launch) is importable")
    a = p.parse_intermixed_args(argv)  # options may follow the name:=value arguments
    from dfocus_capture.dds import apply_default_profile, profile_note

    path = Path(a.file)
    if not path.exists() and not path.is_absolute():
        path = package_share("dfocus_bringup") / "launch" / a.file
    ros2_launch = None if a.builtin or a.show_args or a.print_only else _ros2_launch()
    if ros2_launch is not None:  # a full ROS 2 install: `ros2 launch` itself runs the file
        return int(ros2_launch(launch_file_path=str(path), launch_file_arguments=list(a.args), noninteractive=True))
    try:
        plan = load_launch(path, parse_cli_args(a.args))
    except LaunchFileError as exc:
        sys.stderr.write(f"dfocus launch: {exc}\n")
        return 2
    if a.show_args:
        sys.stdout.write(show_args(plan) + "\n")
        return 0
    problems = check_plan(plan)
    if problems:
        sys.stderr.write("dfocus launch: cannot start:\n" + "".join(f"  {x}\n" for x in problems))
        return 2
    if plan.ignored_args:
        sys.stderr.write(f"dfocus launch: warning: no launch file declares {plan.ignored_args} (ignored, as ros2 "
                         f"launch does); declared: {sorted(plan.args)}\n")
    for w in params_warnings(plan):
        sys.stderr.write(f"dfocus launch: warning: {w}\n")
    if a.print_only:
        for node in plan.nodes:
            cmd = find_executable(node.package, node.executable) + node.args + node.ros_arguments()
            sys.stdout.write(shlex.join(cmd) + "\n")
        return 0
    note = profile_note(apply_default_profile())  # the children inherit FASTDDS_DEFAULT_PROFILES_FILE
    if note:
        sys.stderr.write(f"dfocus launch: warning: {note}\n")
    colour = a.color == "always" or (a.color == "auto" and sys.stdout.isatty())
    runner = Runner(plan, sys.stdout, colour)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, runner.request_stop)
    return runner.run()
