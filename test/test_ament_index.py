"""The pip (editable) install is found the way launch_ros and `ros2 run` look for packages: every
package in the ament index of the venv, its share folder, and each node in lib/<package>/; each
node started from there with a parameter of the wrong type stops with one fatal line, exit 1,
and no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

VENV = Path(sys.prefix)
ENV = dict(os.environ, AMENT_PREFIX_PATH=str(VENV))
# package -> (executable, an integer or float parameter it declares)
NODES = {
    "dfocus_capture": [("camera_array", "width"), ("imu", "rate_hz"), ("actuators", "state_rate_hz"),
                       ("array_tf", "rate_hz"), ("sequencer", "max_retakes")],
    "dfocus_depth": [("depth", "max_width")],
    "dfocus_refocus": [("refocus", "preview_width")],
}


def _ament(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_every_package_is_in_the_ament_index_with_its_share_folder() -> None:
    code = ("from ament_index_python.packages import get_package_share_directory as share, get_packages_with_prefixes\n"
            "names = sorted(p for p in get_packages_with_prefixes() if p.startswith('dfocus'))\n"
            "print(names); print(share('dfocus_bringup'))")
    names, share = _ament(code).splitlines()
    assert names == str(["dfocus_bringup", "dfocus_capture", "dfocus_depth", "dfocus_interfaces", "dfocus_refocus"])
    assert (Path(share) / "launch" / "dfocus.launch.yaml").is_file()
    assert (Path(share) / "config" / "depth.yaml").is_file()


@pytest.mark.parametrize(("package", "executable", "param"),
                         [(pkg, exe, param) for pkg, nodes in NODES.items() for exe, param in nodes])
def test_nodes_start_from_lib_and_refuse_a_bad_parameter_in_one_line(package: str, executable: str,
                                                                     param: str) -> None:
    exe = VENV / "lib" / package / executable
    assert exe.is_file() and os.access(exe, os.X_OK), f"{exe} missing (make setup registers it)"
    out = subprocess.run([str(exe), "--ros-args", "-p", f"{param}:=not_a_number"], env=ENV,
                         capture_output=True, text=True, timeout=120)
    text = out.stdout + out.stderr
    assert out.returncode == 1, text
    assert "cannot start" in text and param in text, text
    assert "Traceback" not in text, text
