"""Capture sequencer benchmarks for `dfocus bench`.

- Synchronizer overhead per message: 5 cameras x (image_raw + camera_info) with stamp jitter and
  shuffled arrival, against an exact-stamp dictionary grouping (the least any matcher must do) as
  the in-run baseline. Target < 0.1 ms per message.
- A 7-shot, 5-camera 1280x960 burst in sim: camera_array, actuators, imu and sequencer each in its
  own process (as launched), the goal sent from this process; wall time from the goal to its
  FocusSequence arriving here, and the CPU time the four node processes spent meanwhile. Target
  <= 1.5 s. The in-run baseline is the same graph with the exact renderer (`render:=exact`, every
  view ray cast and defocused per shot, the simulator before the keyframe warp). The sequencer's
  own breakdown of the last burst (stage moves, trigger calls = exposure + readout, waiting for
  the images, IMU, message, publish) is quoted in the row's name.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from typing import Any

import numpy as np

from dfocus_capture.sync import ApproximateTimeSynchronizer

CAMERAS = 5


def _arrivals(num_sets: int, seed: int) -> list[tuple[int, int, object]]:
    """(input, stamp, msg) for num_sets triggers 100 ms apart, each input jittered by up to
    0.5 ms, arriving shuffled within a window of two triggers (late messages included)."""
    rng = random.Random(seed)
    out: list[tuple[int, int, object]] = []
    for k in range(num_sets):
        stamp = 1_700_000_000_000_000_000 + k * 100_000_000
        batch = [(i, stamp + rng.randrange(0, 500_000), (i, k)) for i in range(2 * CAMERAS)]
        rng.shuffle(batch)
        out.extend(batch)
    for j in range(0, len(out) - 2 * CAMERAS, 2 * CAMERAS):  # some arrive after the next set started
        a, b = j + rng.randrange(2 * CAMERAS), j + 2 * CAMERAS + rng.randrange(2 * CAMERAS)
        out[a], out[b] = out[b], out[a]
    return out


def _exact_grouping(arrivals: list[tuple[int, int, object]]) -> int:
    pending: dict[int, list[object]] = {}
    done = 0
    for i, stamp, msg in arrivals:
        key = stamp // 1_000_000  # the baseline cheats on jitter: millisecond buckets
        slot = pending.setdefault(key, [None] * (2 * CAMERAS))
        slot[i] = msg
        if all(m is not None for m in slot):
            del pending[key]
            done += 1
    return done


def sync_rows(quick: bool) -> list[dict[str, Any]]:
    arrivals = _arrivals(300 if quick else 2000, seed=1)
    best_sync = best_base = float("inf")
    emitted = 0
    for _ in range(3 if quick else 5):
        sync = ApproximateTimeSynchronizer(2 * CAMERAS, queue_size=10, slop_s=0.005)
        t0 = time.perf_counter()
        for i, stamp, msg in arrivals:
            sync.add(i, stamp, msg)
        best_sync = min(best_sync, time.perf_counter() - t0)
        emitted = sync.stats.emitted_sets
        t0 = time.perf_counter()
        _exact_grouping(arrivals)
        best_base = min(best_base, time.perf_counter() - t0)
    per_msg_ms = best_sync / len(arrivals) * 1e3
    base_ms = best_base / len(arrivals) * 1e3
    return [{
        "name": f"synchronizer: 10 inputs (5 cameras x image + info), jitter + late arrivals "
                f"({emitted}/{len(arrivals) // (2 * CAMERAS)} sets)",
        "value": round(per_msg_ms, 4), "unit": "ms/message", "target": "< 0.1",
        "baseline": round(base_ms, 4), "baseline_name": "exact-stamp dict grouping",
        "ratio": round(per_msg_ms / base_ms, 2),
    }]


class _Graph:
    """The capture nodes as separate processes in a namespace and domain of their own."""

    def __init__(self, width: int, height: int, render: str) -> None:
        self.ns = f"/bench_{uuid.uuid4().hex[:8]}"
        self.env = dict(os.environ, ROS_DOMAIN_ID=str(random.SystemRandom().randint(101, 200)),
                        ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
                        ROS_LOG_DIR=tempfile.mkdtemp(prefix="dfocus-bench-log-"))
        # This process joins the same domain (rclpy reads it at init); restored by close().
        self._saved = {k: os.environ.get(k) for k in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_LOG_DIR")}
        os.environ.update({k: self.env[k] for k in self._saved})
        args = ["--ros-args", "-r", f"__ns:={self.ns}"]
        nodes = {
            "camera_array_node": ["-p", f"width:={width}", "-p", f"height:={height}", "-p", "rate_hz:=0.0",
                                  "-p", f"render:={render}"],
            "actuators_node": [], "imu_node": [],
            "sequencer_node": ["-p", "service_wait_s:=10.0", "-p", "trigger_timeout_s:=60.0"],
        }
        self.procs = [subprocess.Popen([sys.executable, "-m", f"dfocus_capture.{mod}", *args, *extra], env=self.env,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
                      for mod, extra in nodes.items()]
        try:
            from dfocus_bringup.shm_tracker import ShmTracker

            self.shm: Any = ShmTracker()
        except ImportError:  # dfocus_capture installed alone: nothing to track with
            self.shm = None

    def cpu_s(self) -> float:
        """CPU seconds (user + system) the node processes have used so far."""
        ticks = 0
        for p in self.procs:
            try:
                with open(f"/proc/{p.pid}/stat") as f:
                    fields = f.read().rpartition(")")[2].split()
            except OSError:
                continue
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
        return ticks / os.sysconf("SC_CLK_TCK")

    def observe(self) -> None:
        if self.shm is not None:
            self.shm.observe(p.pid for p in self.procs)

    def close(self) -> None:
        self.observe()
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGINT)
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        if self.shm is not None:
            self.shm.cleanup()
        for k, v in self._saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _wait(pred: Any, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.005)
    return False


def burst_rows(quick: bool, shots: int = 7, width: int = 1280, height: int = 960) -> list[dict[str, Any]]:
    runs = {}
    for render, repeats in (("warp", 2 if quick else 5), ("exact", 1)):
        graph = _Graph(width, height, render)
        try:
            runs[render] = _measure_bursts(graph, repeats, shots)
        finally:
            graph.close()
    (wall, cpu, breakdown), (base_wall, base_cpu, _) = runs["warp"], runs["exact"]
    best = int(np.argmin(wall))
    what = f"{shots}-shot {CAMERAS}-camera {width}x{height} burst in sim (4 node processes)"
    return [{
        "name": f"sequencer: {what}, goal -> FocusSequence received (best of {len(wall)}, node CPU {cpu[best]:.1f} s; "
                f"last: {breakdown})",
        "value": round(wall[best], 3), "unit": "s", "target": "<= 1.5", "median": round(float(np.median(wall)), 3),
        "cpu_s": round(cpu[best], 2), "baseline": round(min(base_wall), 3),
        "baseline_name": f"exact renderer per shot (CPU {min(base_cpu):.1f} s)",
        "ratio": round(min(base_wall) / wall[best], 2),
    }]


def _measure_bursts(graph: _Graph, repeats: int, shots: int) -> tuple[list[float], list[float], str]:
    """Wall seconds goal -> FocusSequence and node CPU seconds of each burst, and the sequencer's
    breakdown of the last one."""
    import rclpy
    from rclpy.action import ActionClient
    from rclpy.executors import SingleThreadedExecutor

    from dfocus_capture.dds import apply_default_profile
    from dfocus_capture.node_main import destroy_with_actions
    from dfocus_capture.qos import LATCHED
    from dfocus_interfaces.action import CaptureSequence
    from dfocus_interfaces.msg import FocusSequence

    apply_default_profile()
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("bench_sequencer", namespace=graph.ns, context=context)
    received: list[float] = []
    node.create_subscription(FocusSequence, "capture/sequence", lambda m: received.append(time.perf_counter()),
                             LATCHED)
    client: Any = ActionClient(node, CaptureSequence, "capture_sequence")
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()

    def send(goal: Any, timeout: float) -> tuple[Any, float] | None:
        """(result future, send time), or None when the goal got no answer within `timeout`."""
        t0 = time.perf_counter()
        sent = client.send_goal_async(goal)
        if not _wait(sent.done, timeout):
            return None
        handle = sent.result()
        if handle is None or not handle.accepted:
            return None
        return handle.get_result_async(), t0

    try:
        if not _wait(lambda: client.wait_for_server(timeout_sec=0.1), 60.0):
            raise RuntimeError("the sequencer's capture_sequence server did not appear")
        # Requests sent before DDS matched the endpoints are lost: probe until a round trip succeeds.
        for _ in range(20):
            probe = send(CaptureSequence.Goal(num_shots=0), 3.0)
            if probe is not None and _wait(probe[0].done, 3.0):
                break
        else:
            raise RuntimeError("the sequencer never answered")
        graph.observe()
        goal = CaptureSequence.Goal(num_shots=shots, shift_pattern=1, shift_amplitude_mm=0.5)
        delivered: list[float] = []
        cpu: list[float] = []
        breakdown = ""
        for _ in range(repeats):
            received.clear()
            cpu0 = graph.cpu_s()
            sent = send(goal, 10.0)
            if sent is None:
                raise RuntimeError("the burst goal was not accepted")
            result, sent_at = sent
            # The user-visible time: goal sent -> complete FocusSequence delivered here.
            if not _wait(lambda: bool(received), 600.0):
                message = result.result().result.message if result.done() else "no result"
                raise RuntimeError(f"no FocusSequence arrived: {message}")
            delivered.append(received[0] - sent_at)
            cpu.append(graph.cpu_s() - cpu0)
            if _wait(result.done, 30.0):
                breakdown = result.result().result.message
            graph.observe()
    finally:
        executor.shutdown()
        destroy_with_actions(node)
        rclpy.shutdown(context=context)
    return delivered, cpu, breakdown


def run_benchmarks(quick: bool) -> list[dict[str, Any]]:
    return sync_rows(quick) + burst_rows(quick)


if __name__ == "__main__":
    for row in run_benchmarks(quick="--quick" in sys.argv):
        sys.stdout.write(f"{row}\n")
