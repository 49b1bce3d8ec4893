"""Ctrl-C ends every node cleanly: started together as separate processes (as `ros2 run` or a launch
file starts them), each is seen in the graph, then gets one SIGINT and must exit with status 0
within 5 s (launch escalates to SIGTERM after that), without a traceback."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest

NS = "/shutdown"
# node name -> module, extra parameters (light settings: no free-running renders, free ports)
NODES: dict[str, tuple[str, list[str]]] = {
    "camera_array": ("dfocus_capture.camera_array_node", ["width:=160", "height:=120", "rate_hz:=0.0"]),
    "imu": ("dfocus_capture.imu_node", []),
    "actuators": ("dfocus_capture.actuators_node", []),
    "array_tf": ("dfocus_capture.array_tf_node", []),
    "sequencer": ("dfocus_capture.sequencer_node", []),
    "depth": ("dfocus_depth.depth_node", []),
    "refocus": ("dfocus_refocus.refocus_node", []),
    "ui": ("dfocus_refocus.ui.ui_node", ["port:=0"]),
    "foxglove_bridge": ("dfocus_bringup.foxglove_bridge_node", ["port:=0"]),
    "bag_recorder": ("dfocus_capture.bag_recorder_node", []),
}
EXIT_WITHIN_S = 5.0


@pytest.mark.slow
def test_every_node_exits_cleanly_on_sigint(tmp_path: Path, node_processes: Any, rclpy_context: Any, spin: Any,
                                            wait: Any) -> None:
    from rclpy.node import Node

    procs = {}
    for name, (module, params) in NODES.items():
        extra = [f"output:={tmp_path / 'bag'}"] if name == "bag_recorder" else []
        args = ["--ros-args", "-r", f"__ns:={NS}", *[x for p in [*params, *extra] for x in ("-p", p)]]
        procs[name] = node_processes.python(module, *args, name=name)
    probe = Node("shutdown_probe", context=rclpy_context)
    spin(probe)

    def up() -> set[str]:
        return {n for n, ns in probe.get_node_names_and_namespaces() if ns == NS}

    def report() -> str:
        return "\n".join(f"--- {n}\n{node_processes.output(p)[-2000:]}" for n, p in procs.items())

    try:
        wait(lambda: set(NODES) <= up() or any(p.poll() is not None for p in procs.values()), 90.0,
             f"all {len(NODES)} nodes in the graph")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; up: {sorted(up())}\n{report()}") from None
    dead = {n: p.returncode for n, p in procs.items() if p.poll() is not None}
    assert not dead, f"exited before SIGINT: {dead}\n{report()}"

    sent = time.monotonic()
    for p in procs.values():
        os.kill(p.pid, signal.SIGINT)  # the process only, as a terminal's Ctrl-C reaches a foreground node
    took: dict[str, float] = {}
    while len(took) < len(procs) and time.monotonic() - sent < 30.0:
        for n, p in procs.items():
            if n not in took and p.poll() is not None:
                took[n] = time.monotonic() - sent
        time.sleep(0.05)
    slow = {n: round(took.get(n, float("inf")), 1) for n in procs if took.get(n, float("inf")) > EXIT_WITHIN_S}
    assert not slow, f"not down within {EXIT_WITHIN_S} s of SIGINT: {slow}\n{report()}"
    failed = {n: p.returncode for n, p in procs.items() if p.returncode != 0}
    assert not failed, f"non-zero exit after SIGINT: {failed}\n{report()}"
    tracebacks = [n for n, p in procs.items() if "Traceback" in node_processes.output(p)]
    assert not tracebacks, f"traceback on SIGINT: {tracebacks}\n{report()}"
    print(f"{sys.platform}: exit after SIGINT (s): {', '.join(f'{n} {t:.2f}' for n, t in sorted(took.items()))}")
