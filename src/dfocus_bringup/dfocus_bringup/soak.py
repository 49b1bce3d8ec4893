"""`dfocus soak`: the whole graph under continuous use, as a robotics team runs it.

Starts `dfocus.launch.yaml` (web UI off) in its own namespace, then runs capture -> refocus cycles
back to back for `--duration` seconds or `--cycles` cycles: a 5-shot burst, then at once a refocus of
the latest sequence (`sequence_id` 0, the one just announced), as a client following the README
does, with no retry. Each cycle checks that the depth map of the captured sequence arrived and
that the refocus rendered that sequence. The resident memory (VmRSS) of every node process is
sampled once a second. Writes `soak.md` (cycle time percentiles, failures, lost results, re-sent
goals, memory at start and end per node, growth per hour from a straight-line fit after the
first cycle) and `soak_memory.png` (RSS over time per node), and prints the summary.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dfocus_bringup.run_demo import LAUNCH_FILE, DemoClient, DemoError, find_launch_file, stop_graph
from dfocus_bringup.shm_tracker import ShmTracker
from dfocus_capture.bench_timing import status_mb
from dfocus_capture.dds import apply_default_profile


@dataclass
class Cycle:
    started_s: float  # since the soak started
    capture_s: float
    refocus_s: float
    error: str = ""
    depth_arrived: bool = False


@dataclass
class SoakLog:
    cycles: list[Cycle] = field(default_factory=list)
    memory: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # node -> (t s, RSS MB)
    resent_goals: int = 0


def node_processes(namespace: str) -> dict[str, int]:
    """pid of every ROS node process started in `namespace` (its `__ns:=` and `__node:=` rules)."""
    found: dict[str, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        words = [a.decode(errors="replace") for a in args]
        if f"__ns:={namespace}" in words:
            name = next((w.split(":=", 1)[1] for w in words if w.startswith("__node:=")), None)
            if name:
                found[name] = int(entry.name)
    return found


def sample_memory(namespace: str, log: SoakLog, t0: float, stop: threading.Event) -> None:
    while not stop.wait(1.0):
        now = time.monotonic() - t0
        for name, pid in node_processes(namespace).items():
            mb = status_mb("VmRSS", pid)
            if mb is not None:
                log.memory.setdefault(name, []).append((now, mb))


def run_cycle(client: DemoClient, t0: float) -> Cycle:
    from action_msgs.msg import GoalStatus

    from dfocus_capture.ros_convert import stamp_to_ns
    from dfocus_interfaces.action import CaptureSequence, Refocus

    start = time.monotonic()
    cycle = Cycle(start - t0, math.nan, math.nan)
    goal = CaptureSequence.Goal(num_shots=5, shift_pattern=CaptureSequence.Goal.PATTERN_CIRCLE,
                                shift_amplitude_mm=0.5)
    try:
        captured = client.run_goal(client.capture, goal, "capture_sequence", lambda _fb: None)
        cycle.capture_s = time.monotonic() - start
        refocus_start = time.monotonic()
        goal_r = Refocus.Goal(sequence_id=0, f_number=2.0, bokeh_strength=1.0)  # 0: the latest announced
        goal_r.focal_plane.focus_distance_m = 1.0
        handle = client.wait_future(client.refocus.send_goal_async(goal_r), "refocus goal acceptance")
        if not handle.accepted:
            raise DemoError("refocus goal rejected")
        result = client.wait_future(handle.get_result_async(), "the refocus result")
        cycle.refocus_s = time.monotonic() - refocus_start
        if result.status != GoalStatus.STATUS_SUCCEEDED:
            raise DemoError(f"refocus failed: {result.result.message}")
        if int(result.result.sequence_id) != int(captured.sequence_id):
            raise DemoError(f"refocus rendered sequence {result.result.sequence_id}, not the one just captured "
                            f"({captured.sequence_id})")
        sequence = client.wait_topic("capture/sequence", None, f"sequence {captured.sequence_id}",
                                     sequence_id=int(captured.sequence_id))
        client.wait_topic("depth/image", stamp_to_ns(sequence.header.stamp), "depth map of the sequence")
        cycle.depth_arrived = True
    except DemoError as exc:
        cycle.error = str(exc)
    return cycle


def growth_mb_per_hour(samples: list[tuple[float, float]], after_s: float) -> float:
    """Slope of a straight line through the samples after `after_s`, MB per hour."""
    pts = np.array([s for s in samples if s[0] >= after_s])
    if len(pts) < 3 or np.ptp(pts[:, 0]) < 1.0:
        return math.nan
    slope = np.polyfit(pts[:, 0], pts[:, 1], 1)[0]
    return float(slope * 3600.0)


def report(log: SoakLog, load: tuple[float, float, float], out: Path) -> str:
    ok = [c for c in log.cycles if not c.error]
    totals = np.array([c.capture_s + c.refocus_s for c in ok]) if ok else np.array([math.nan])
    first_end = log.cycles[0].started_s + (totals[0] if ok else 0.0) if log.cycles else 0.0
    lines = [
        "# Soak (`dfocus soak`)",
        "",
        f"{len(log.cycles)} capture -> refocus cycles (5-shot burst at 1280x960, then a refocus of sequence 0, the "
        f"latest announced), load average at the end {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} on "
        f"{os.cpu_count()} cores.",
        "",
        "| cycles | failed | depth maps lost | goals re-sent | cycle p50 s | p90 s | max s | capture p50 s "
        "| refocus p50 s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {len(log.cycles)} | {len(log.cycles) - len(ok)} | {sum(not c.depth_arrived for c in log.cycles)} | "
        f"{log.resent_goals} | {np.percentile(totals, 50):.1f} | {np.percentile(totals, 90):.1f} | "
        f"{np.max(totals):.1f} | {np.median([c.capture_s for c in ok]) if ok else math.nan:.1f} | "
        f"{np.median([c.refocus_s for c in ok]) if ok else math.nan:.1f} |",
        "",
        "| node | RSS after cycle 1 MB | RSS at end MB | peak MB | growth MB/h (fit after cycle 1) |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, samples in sorted(log.memory.items()):
        after = [mb for t, mb in samples if t >= first_end] or [samples[-1][1]]
        lines.append(f"| {name} | {after[0]:.0f} | {samples[-1][1]:.0f} | {max(mb for _, mb in samples):.0f} | "
                     f"{growth_mb_per_hour(samples, first_end):+.0f} |")
    errors = [f"- cycle {i + 1}: {c.error}" for i, c in enumerate(log.cycles) if c.error]
    if errors:
        lines += ["", "Failures:", *errors]
    text = "\n".join(lines) + "\n"
    out.mkdir(parents=True, exist_ok=True)
    (out / "soak.md").write_text(text)
    plot_memory(log, out / "soak_memory.png")
    return text


def plot_memory(log: SoakLog, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.5))
    for name, samples in sorted(log.memory.items()):
        t, mb = zip(*samples, strict=True)
        ax.plot(np.array(t) / 60.0, mb, label=name)
    for c in log.cycles:
        ax.axvline(c.started_s / 60.0, color="0.85", linewidth=0.5, zorder=0)
    ax.set_xlabel("minutes (grey lines: cycle starts)")
    ax.set_ylabel("resident memory, MB")
    ax.set_title("dfocus soak: memory per node")
    ax.legend(fontsize=7, ncol=3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def soak_command(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="dfocus soak", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=1800.0, help="seconds of cycles (default 1800)")
    p.add_argument("--cycles", type=int, default=0, help="stop after this many cycles instead (0: by --duration)")
    p.add_argument("--out", default="bench/soak", help="report folder (default bench/soak)")
    p.add_argument("--namespace", default="/soak", help="namespace of the graph (default /soak)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for each step")
    a = p.parse_args(argv)
    if not (a.duration > 0 and a.cycles >= 0 and a.namespace.startswith("/")):
        p.error("--duration must be positive, --cycles >= 0, --namespace absolute")
    out = Path(a.out).resolve()
    apply_default_profile()
    launch = [sys.executable, "-m", "dfocus_bringup.cli", "launch", str(find_launch_file(LAUNCH_FILE)),
              f"namespace:={a.namespace.strip('/')}", "ui:=false", f"output_dir:={out / 'exports'}"]
    graph = subprocess.Popen(launch, start_new_session=True, stdout=subprocess.DEVNULL)
    import rclpy

    shm = ShmTracker()
    rclpy.init()
    log = SoakLog()
    stop = threading.Event()
    t0 = time.monotonic()
    sampler = threading.Thread(target=sample_memory, args=(a.namespace, log, t0, stop), daemon=True)
    client: DemoClient | None = None
    status = 0
    try:
        client = DemoClient(a.namespace, a.timeout)
        if not client.export.wait_for_service(timeout_sec=a.timeout):
            raise DemoError("depth/export_model service is not available: is the depth node up?")
        sampler.start()
        while (len(log.cycles) < a.cycles) if a.cycles else (time.monotonic() - t0 < a.duration):
            cycle = run_cycle(client, t0)
            log.cycles.append(cycle)
            state = f"failed: {cycle.error}" if cycle.error else (
                f"capture {cycle.capture_s:.1f} s, refocus {cycle.refocus_s:.1f} s")
            sys.stderr.write(f"[dfocus soak] cycle {len(log.cycles)}: {state}\n")
            if graph.poll() is not None:
                raise DemoError(f"the graph exited (status {graph.returncode})")
    except DemoError as exc:
        sys.stderr.write(f"[dfocus soak] error: {exc}\n")
        status = 1
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        log.resent_goals = client.resent_goals if client is not None else 0
        if sampler.is_alive():
            sampler.join(timeout=5)
        stop_graph(graph, client, shm)
    if log.cycles:
        sys.stdout.write(report(log, os.getloadavg(), out))
    failed = any(c.error or not c.depth_arrived for c in log.cycles) or log.resent_goals > 0
    return 1 if status or failed or not log.cycles else 0
