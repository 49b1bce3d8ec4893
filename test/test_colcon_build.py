"""Every package builds the way full ROS 2 users build it: `colcon build` in a workspace, then
`source install/setup.bash` gives the interfaces, the Python packages and their share folders."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
VENV = Path(sys.prefix)
PACKAGES = ["dfocus_interfaces", "dfocus_capture", "dfocus_depth", "dfocus_refocus", "dfocus_bringup"]


@pytest.mark.slow
def test_colcon_builds_every_package(tmp_path: Path) -> None:
    colcon = VENV / "bin" / "colcon"
    assert colcon.exists(), "colcon-common-extensions is not installed in the venv (make setup)"
    ws = tmp_path / "ws"
    for pkg in PACKAGES:
        shutil.copytree(REPO / "src" / pkg, ws / "src" / pkg,
                        ignore=shutil.ignore_patterns("build", "__pycache__", "*.egg-info", "weights_cache"))
    for extra in ("launch", "config"):
        if (REPO / extra).is_dir():
            shutil.copytree(REPO / extra, ws / extra)
    env = dict(os.environ, AMENT_PREFIX_PATH=str(VENV), CMAKE_PREFIX_PATH=str(VENV),
               PATH=f"{VENV / 'bin'}{os.pathsep}{os.environ['PATH']}")
    build = subprocess.run([str(colcon), "build", "--base-paths", "src", "--event-handlers", "console_direct-"],
                           cwd=ws, env=env, capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stdout[-4000:] + build.stderr[-4000:]
    probe = (
        "import dfocus_interfaces.msg, dfocus_interfaces.action, dfocus_capture.calibration;"
        "from ament_index_python.packages import get_package_share_directory as g;"
        "print(dfocus_interfaces.msg.__file__); print(dfocus_capture.calibration.__file__);"
        f"print(*[g(p) for p in {PACKAGES!r}])"
    )
    run = subprocess.run(["bash", "-c", 'source install/setup.bash && exec "$0" -c "$1"', sys.executable, probe],
                         cwd=ws, env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith(str(ws / "install")) and lines[1].startswith(str(ws / "install")), lines
    assert all(p.startswith(str(ws / "install")) for p in lines[2].split())
