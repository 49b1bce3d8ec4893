"""`make run ONCE=1` as a new user runs it: the whole graph on the simulated array, end to end,
writing the refocused image, all-in-focus image, depth and point cloud, and leaving nothing behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

SHM = Path("/dev/shm")


def _our_processes(marker: str) -> list[str]:
    out = subprocess.run(["pgrep", "-af", marker], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if "pgrep" not in line]


def _fastdds_files() -> set[str]:
    return {p.name for p in SHM.iterdir() if "fastdds" in p.name or "fastrtps" in p.name}


@pytest.mark.slow
def test_dfocus_run_once_writes_every_output_and_stops_cleanly(tmp_path: Path) -> None:
    out = tmp_path / "out"
    shm_before = _fastdds_files()
    run = subprocess.run(
        [sys.executable, "-m", "dfocus_bringup.cli", "run", "--once", "--out", str(out), "--timeout", "240"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path, env=dict(os.environ),
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-6000:]
    for name in ("reference.png", "depth_overlay.png", "refocused.png", "all_in_focus.png", "depth.npy",
                 "depth.png", "confidence.npy",
                 "points.ply", "mesh.ply"):
        assert (out / name).is_file(), f"{name} missing; stdout: {run.stdout}"
        assert str(out / name) in run.stdout, f"{name} not reported to the user"
    assert "http://127.0.0.1:" in run.stdout

    depth = np.load(out / "depth.npy")
    assert depth.dtype == np.float32 and depth.shape == (960, 1280)
    valid = np.isfinite(depth)  # REP 118: NaN invalid, +inf beyond the range
    assert valid.mean() > 0.7, f"only {valid.mean():.0%} of the depth map is valid"
    # The simulated scenes span 0.3-10 m.
    p5, p95 = np.percentile(depth[valid], [5, 95])
    assert 0.25 < p5 and p95 < 12.0, (p5, p95)

    refocused = cv2.imread(str(out / "refocused.png"))
    aif = cv2.imread(str(out / "all_in_focus.png"))
    assert refocused.shape == aif.shape == (960, 1280, 3)
    # Refocusing blurs what lies outside the focal plane: less high-frequency energy there.
    sharp_aif = cv2.Laplacian(cv2.cvtColor(aif, cv2.COLOR_BGR2GRAY), cv2.CV_32F).var()
    sharp_ref = cv2.Laplacian(cv2.cvtColor(refocused, cv2.COLOR_BGR2GRAY), cv2.CV_32F).var()
    assert sharp_ref < 0.9 * sharp_aif

    with open(out / "points.ply", "rb") as f:
        header = f.read(400).decode("ascii", errors="replace")
    assert header.startswith("ply") and "element vertex" in header

    # Shutdown leaves no node process and no shared-memory segment of ours behind.
    assert not _our_processes("__ns:=/dfocus"), _our_processes("__ns:=/dfocus")
    leaked = _fastdds_files() - shm_before
    assert not leaked, f"Fast DDS segments left in /dev/shm: {sorted(leaked)[:5]}"
