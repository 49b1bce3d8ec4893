"""The whole graph on a host whose /dev/shm is Docker's default 64 MB: a private mount namespace
with a 64 MB tmpfs on /dev/shm, `dfocus run --once` inside it. The DDS profile must fall back to
UDP only (no shared-memory segment errors, nothing left in /dev/shm), and the burst, depth and
refocused outputs must still come out."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHM_MB = 64


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                    reason="needs root and unshare(1) for a private /dev/shm")
def test_the_graph_runs_with_dockers_default_dev_shm(tmp_path: Path) -> None:
    out = tmp_path / "out"
    dfocus = Path(sys.executable).parent / "dfocus"
    script = (f"mount -t tmpfs -o size={SHM_MB}m tmpfs /dev/shm && "
              f"{dfocus} run --once --out {out}; status=$?; "
              "echo \"left in /dev/shm: $(ls /dev/shm | grep -c fastdds)\"; exit $status")
    env = {k: v for k, v in os.environ.items() if k not in ("FASTDDS_DEFAULT_PROFILES_FILE", "DFOCUS_DDS_PROFILE")}
    run = subprocess.run(["unshare", "--mount", "--propagation", "private", "bash", "-c", script], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=400)
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-6000:]
    assert re.search(r"/dev/shm has \d+ MB free \(under 2048 MB\): DDS runs on UDP only", log), log[-3000:]
    assert "RTPS_TRANSPORT_SHM" not in log and "Traceback" not in log, log[-6000:]
    assert re.search(r"left in /dev/shm: 0\b", log), log[-2000:]
    for name in ("refocused.png", "all_in_focus.png", "depth.npy", "points.ply"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, sorted(p.name for p in out.iterdir())
