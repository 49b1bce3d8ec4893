"""`dfocus simulate`: render a simulated burst with its ground truth into a folder that the
`folder` camera backend (and `dfocus depth/refocus`) read back."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

from dfocus_capture.burst import FOCUS_BRACKET, FOCUS_FIXED
from dfocus_capture.calibration import CalibrationError, load_array_calibration
from dfocus_capture.drivers.base import DriverError
from dfocus_capture.drivers.folder import write_burst_folder
from dfocus_capture.shift_patterns import PATTERN_NAMES, ShotPlanError
from dfocus_capture.sim.motion import MotionError
from dfocus_capture.sim.render import RenderError
from dfocus_capture.sim.simulate import simulate_burst


def simulate_command(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="dfocus simulate", description="Render a simulated burst with ground truth.")
    p.add_argument("--out", required=True, help="output folder (created)")
    p.add_argument("--calibration", default="", help="array calibration (default: config/camera_array.yaml)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--shots", type=int, default=5)
    p.add_argument("--width", type=int, default=0, help="resolution (default: the calibration's)")
    p.add_argument("--height", type=int, default=0)
    p.add_argument("--pattern", choices=sorted(PATTERN_NAMES.values()), default="circle", help="actuator shifts")
    p.add_argument("--amplitude-mm", type=float, default=0.5)
    p.add_argument("--hand-held", action="store_true", help="add hand tremor")
    p.add_argument("--bracket", nargs=2, type=float, metavar=("NEAR_M", "FAR_M"),
                   help="focus bracketing between these distances (default: each camera at its own focus)")
    p.add_argument("--no-noise", action="store_true", help="noise-free sensor")
    a = p.parse_args(argv)
    if (a.width == 0) != (a.height == 0) or a.width < 0 or a.height < 0:
        p.error("--width and --height go together and must be positive")
    try:
        cal = load_array_calibration(a.calibration)
        if a.width:
            cal = cal.scaled(a.width, a.height)
        sb = simulate_burst(cal, a.seed, num_shots=a.shots, shift_pattern=a.pattern,
                            shift_amplitude_mm=a.amplitude_mm, hand_held=a.hand_held,
                            focus_mode=FOCUS_BRACKET if a.bracket else FOCUS_FIXED,
                            bracket_m=tuple(a.bracket) if a.bracket else None, noise=not a.no_noise)
        out = Path(a.out)
        paths = write_burst_folder(sb.burst, out)
        np.save(out / "gt_depth.npy", sb.gt_depth)
        cv2.imwrite(str(out / "gt_all_in_focus.png"), np.ascontiguousarray(sb.gt_all_in_focus[:, :, ::-1]))
        np.save(out / "specular_mask.npy", sb.specular_mask)
        np.save(out / "textureless_mask.npy", sb.textureless_mask)
    except (CalibrationError, DriverError, MotionError, RenderError, ShotPlanError, OSError) as exc:
        sys.stderr.write(f"dfocus simulate: {exc}\n")
        return 1
    sys.stdout.write(f"{len(paths)} images ({sb.burst.num_shots} shots x {sb.burst.num_cameras} cameras), "
                     f"ground truth and poses written to {out}\n")
    return 0
