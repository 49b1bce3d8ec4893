"""Benchmarks for `dfocus bench`: depth-map latency (5 views at 640x480, against StereoSGBM on the
same reference pair) and peak memory for 8 views at 1280x960 (measured in a fresh process)."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time

import numpy as np
import torch

from dfocus_capture.burst import Burst
from dfocus_capture.calibration import ArrayCalibration, load_calibration
from dfocus_capture.dds import find_config
from dfocus_depth.estimator import DepthEstimator
from dfocus_depth.stereo_baselines import sgbm

LATENCY_TARGET_MS = 300.0
MEMORY_TARGET_MB = 4096.0


def _array(width: int, height: int, cameras: int) -> ArrayCalibration:
    from dataclasses import replace

    path = find_config("camera_array.yaml")
    if path is None:
        raise FileNotFoundError("config/camera_array.yaml not found")
    cal = load_calibration(path).scaled(width, height)
    cams = list(cal.cameras)
    while len(cams) < cameras:  # more cameras further out along the diagonals
        k = len(cams)
        T = np.eye(4)
        T[:2, 3] = [0.03 * (1 if k % 2 else -1), 0.03 * (1 if k % 4 < 2 else -1)]
        cams.append(replace(cams[0], name=f"cam{k}", T_ref_cam=T))
    return replace(cal, cameras=tuple(cams[:cameras]))


def simulated_burst(width: int, height: int, cameras: int, seed: int = 7_000_000) -> Burst:
    from dfocus_capture.sim import simulate_burst

    return simulate_burst(_array(width, height, cameras), seed, num_shots=1, noise=True).burst


def _median_seconds(fn: object, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def latency_rows(quick: bool, device: str) -> list[dict[str, object]]:
    """The depth node's defaults (the budgeted configuration), and the same with the edge median."""
    burst = simulated_burst(640, 480, 5)
    repeats = 3 if quick else 10
    left, right = burst.reference.image, burst.frame(0, 2).image  # cam2: +30 mm along x
    base = _median_seconds(lambda: sgbm(left, right, 64), repeats)
    rows: list[dict[str, object]] = []
    for edge_median, label, target in ((False, "node defaults", LATENCY_TARGET_MS), (True, "with edge_median", "")):
        est = DepthEstimator(device=device, max_width=320, edge_median=edge_median)
        est.estimate(burst)  # warm-up (allocator, kernels)
        ours = _median_seconds(lambda est=est: est.estimate(burst), repeats)
        rows.append({
            "name": f"depth CNN 5 views 640x480, {label} ({est.device}, {torch.get_num_threads()} threads)",
            "value": round(ours * 1e3, 1), "unit": "ms", "target": target,
            "baseline": round(base * 1e3, 1), "baseline_name": "StereoSGBM 640x480 pair",
            "ratio": round(ours / base, 2),
        })
    return rows


def peak_memory_mb(width: int, height: int, cameras: int, device: str) -> float:
    """Peak resident memory (MB) of a fresh process that estimates one depth map."""
    code = (
        "import json, resource\n"
        "from dfocus_depth.bench import simulated_burst\n"
        "from dfocus_depth.estimator import DepthEstimator\n"
        f"b = simulated_burst({width}, {height}, {cameras})\n"
        f"DepthEstimator(device={device!r}, edge_median=False).estimate(b)\n"
        "print(json.dumps(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=600)
    return float(json.loads(out.stdout.strip().splitlines()[-1])) / 1024.0


def run_benchmarks(quick: bool) -> list[dict[str, object]]:
    rows = latency_rows(quick, "cpu")
    if torch.cuda.is_available():
        rows += latency_rows(quick, "cuda")
    rows.append({
        "name": "depth CNN peak memory, 8 views 1280x960 (whole process, CPU)",
        "value": round(peak_memory_mb(1280, 960, 8, "cpu"), 0), "unit": "MB", "target": MEMORY_TARGET_MB,
        "ratio": None,
    })
    return rows
