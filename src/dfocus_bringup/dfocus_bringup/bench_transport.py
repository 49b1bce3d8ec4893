"""Transport benchmark: a 5 x 1280x960 FocusSequence between two processes at 10 Hz.

Runs the same publisher/subscriber pair twice, with Fast DDS defaults and with the project's
profile (config/fastdds_profile.xml), and reports delivery and latency (publish -> callback,
from the header stamp; both processes share the host clock).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import numpy as np


def _burst_msg(width: int, height: int) -> object:
    from dfocus_capture.burst import burst_from_images
    from dfocus_capture.calibration import load_calibration
    from dfocus_capture.dds import find_config
    from dfocus_capture.ros_convert import burst_to_msg

    path = find_config("camera_array.yaml")
    if path is None:
        raise FileNotFoundError("config/camera_array.yaml not found")
    cal = load_calibration(path).scaled(width, height)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (height, width, 3), dtype=np.uint8) for _ in cal.cameras]
    return burst_to_msg(burst_from_images(images, cal))


def publish(count: int, rate_hz: float, width: int, height: int) -> int:
    """The publisher process: waits for the subscriber, sends `count` bursts at `rate_hz`."""
    import rclpy
    from rclpy.duration import Duration

    from dfocus_capture.dds import apply_default_profile
    from dfocus_capture.qos import RELIABLE
    from dfocus_capture.ros_convert import ns_to_stamp
    from dfocus_interfaces.msg import FocusSequence

    apply_default_profile()
    rclpy.init()
    node = rclpy.create_node("bench_transport_pub")
    pub = node.create_publisher(FocusSequence, "bench/sequence", RELIABLE)
    msg = _burst_msg(width, height)
    deadline = time.monotonic() + 20.0
    while pub.get_subscription_count() == 0:
        if time.monotonic() > deadline:
            node.get_logger().error("no subscriber within 20 s")
            return 3
        time.sleep(0.05)
    time.sleep(0.5)  # let the reliable reader's matching complete on both sides
    start = time.monotonic()
    for i in range(count):
        msg.sequence_id = i + 1  # type: ignore[attr-defined]
        msg.header.stamp = ns_to_stamp(time.time_ns())  # type: ignore[attr-defined]
        pub.publish(msg)
        time.sleep(max(0.0, start + (i + 1) / rate_hz - time.monotonic()))
    pub.wait_for_all_acked(Duration(seconds=10.0))
    node.destroy_node()
    rclpy.shutdown()
    return 0


def measure(profile: bool, count: int, rate_hz: float, width: int, height: int) -> dict[str, float]:
    """One run: subscriber here (EventsExecutor), publisher in a child process."""
    env = dict(os.environ, DFOCUS_DDS_PROFILE="shm" if profile else "off")
    if not profile:
        env.pop("FASTDDS_DEFAULT_PROFILES_FILE", None)
    code = (
        "import sys, os\n"
        f"os.environ['DFOCUS_DDS_PROFILE'] = {'shm' if profile else 'off'!r}\n"
        "from dfocus_bringup.bench_transport import run_subscriber\n"
        f"run_subscriber({count}, {rate_hz}, {width}, {height})\n"
    )
    proc_sub = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
    proc_pub = subprocess.Popen(
        [sys.executable, "-m", "dfocus_bringup.bench_transport", "--publish", str(count), str(rate_hz),
         str(width), str(height)], env=env)
    out = ""
    try:
        out, _ = proc_sub.communicate(timeout=count / rate_hz + 60)
    except subprocess.TimeoutExpired:
        pass
    finally:
        for proc in (proc_sub, proc_pub):
            if proc.poll() is None:
                proc.kill()
            proc.wait()
    lat = np.array([float(x) for x in out.split()], dtype=np.float64) if out.strip() else np.zeros(0)
    return {
        "delivered": float(lat.size) / count,
        "mean_ms": float(lat.mean()) if lat.size else float("nan"),
        "p95_ms": float(np.percentile(lat, 95)) if lat.size else float("nan"),
    }


def run_subscriber(count: int, rate_hz: float, width: int, height: int) -> None:
    """The subscriber process: prints one latency (ms) per received burst on stdout."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from dfocus_capture.dds import apply_default_profile
    from dfocus_capture.qos import RELIABLE
    from dfocus_capture.ros_convert import stamp_to_ns
    from dfocus_interfaces.msg import FocusSequence

    apply_default_profile()
    rclpy.init()
    node = rclpy.create_node("bench_transport_sub")
    latencies: list[float] = []
    last_id = 0

    def on_msg(msg: FocusSequence) -> None:
        nonlocal last_id
        latencies.append((time.time_ns() - stamp_to_ns(msg.header.stamp)) / 1e6)
        last_id = msg.sequence_id

    node.create_subscription(FocusSequence, "bench/sequence", on_msg, RELIABLE)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    # Spin on this thread with a hard deadline: a run that falls behind must still end.
    deadline = time.monotonic() + count / rate_hz + 40
    while last_id < count and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.1)
    sys.stdout.write(" ".join(f"{x:.3f}" for x in latencies) + "\n")
    sys.stdout.flush()
    executor.shutdown()
    node.destroy_node()
    rclpy.shutdown()


def run_benchmarks(quick: bool) -> list[dict[str, object]]:
    count = 30 if quick else 100
    base = measure(False, count, 10.0, 1280, 960)
    tuned = measure(True, count, 10.0, 1280, 960)
    rows: list[dict[str, object]] = []
    for key, unit, target in (("delivered", "fraction", ">= 1.0"), ("mean_ms", "ms", ""), ("p95_ms", "ms", "<= 50")):
        ratio = base[key] / tuned[key] if tuned[key] else float("nan")
        rows.append({
            "name": f"transport 5x1280x960 FocusSequence @10 Hz: {key}",
            "value": round(tuned[key], 3), "unit": unit, "target": target,
            "baseline": round(base[key], 3), "baseline_name": "Fast DDS defaults",
            "ratio": round(ratio, 2),
        })
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--publish", nargs=4, metavar=("COUNT", "RATE", "W", "H"))
    args = parser.parse_args(argv)
    if args.publish:
        c, r, w, h = args.publish
        return publish(int(c), float(r), int(w), int(h))
    for row in run_benchmarks(quick=True):
        sys.stdout.write(f"{row}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
