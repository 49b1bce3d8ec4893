"""`dfocus refocus` and `dfocus all-in-focus`: the refocus core on image files.

Images are shots x cameras in calibration camera order (the first is the reference camera); depth is
a float32 .npy in metres at the reference view (NaN = invalid), or estimated with dfocus_depth.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

from dfocus_capture.burst import Burst, BurstError, burst_from_images
from dfocus_capture.calibration import CalibrationError, load_calibration
from dfocus_refocus.focal_plane import FocalPlaneError
from dfocus_refocus.fusion import FusionError
from dfocus_refocus.pipeline import PreparedSequence, RefocusRequest, prepare_sequence
from dfocus_refocus.registration import RegistrationError


class CliError(RuntimeError):
    """A user-facing failure: bad file, bad option value."""


def _read_image(path: str) -> np.ndarray:
    img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise CliError(f"cannot read image {path}")
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGB if img.shape[2] == 4 else cv2.COLOR_BGR2RGB)
    return np.asarray(img)


def _load_depth(path: str | None, burst: Burst) -> np.ndarray:
    if path is not None:
        try:
            depth = np.load(path)
        except (OSError, ValueError) as exc:
            raise CliError(f"cannot read depth {path}: {exc}") from exc
        if depth.ndim != 2 or not np.issubdtype(depth.dtype, np.floating):
            raise CliError(f"{path}: expected a HxW float depth map in metres, got {depth.dtype} {depth.shape}")
        h, w = burst.reference.image.shape[:2]
        if depth.shape != (h, w):
            raise CliError(f"{path}: the depth map is {depth.shape[1]}x{depth.shape[0]} but the reference image is "
                           f"{w}x{h} (a depth map of another view, or transposed?)")
        return np.asarray(depth, dtype=np.float32)
    try:
        from dfocus_depth.estimator import DepthEstimator
    except ImportError as exc:
        raise CliError(f"no --depth given and the depth estimator is unavailable ({exc})") from exc
    try:
        return DepthEstimator(device="cpu").estimate(burst).depth
    except (RuntimeError, ValueError) as exc:
        raise CliError(f"depth estimation failed: {exc}") from exc


def _prepare(args: argparse.Namespace) -> PreparedSequence:
    cal = load_calibration(args.calibration)
    burst = burst_from_images([_read_image(p) for p in args.images], cal)
    prepared = prepare_sequence(burst, _load_depth(args.depth, burst))
    for r in prepared.registration.rejected:
        sys.stderr.write(f"left out shot {r.shot_index} camera {r.camera_name}: {r.reason}\n")
    return prepared


def _check_output(path: str) -> None:
    """Refuse an output the image writer cannot take, before any work is done."""
    out = Path(path)
    if out.is_dir():
        raise CliError(f"--out {path} is a directory; give an image file name (.png, .jpg, .tif)")
    if not cv2.haveImageWriter(str(out)):
        raise CliError(f"--out {path}: no image writer for {out.suffix or 'a name without extension'} "
                       "(use .png, .jpg or .tif)")


def _write(path: str, rgb: np.ndarray) -> None:
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        written = cv2.imwrite(path, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    except (OSError, cv2.error) as exc:
        raise CliError(f"cannot write {path}: {exc}") from exc
    if not written:
        raise CliError(f"cannot write {path} (unwritable)")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--calibration", required=True, help="camera array YAML or Middlebury calib.txt")
    parser.add_argument("--depth", help="reference depth .npy (float32 metres, NaN invalid); default: estimate")
    parser.add_argument("--out", required=True, help="output image (.png, .jpg, .tif)")
    parser.add_argument("images", nargs="+", help="shots x cameras in calibration order, reference first")


def _run(func: object, argv: list[str], parser: argparse.ArgumentParser) -> int:
    args = parser.parse_args(argv)
    try:
        _check_output(args.out)
        func(args)  # type: ignore[operator]
    except (CliError, CalibrationError, BurstError, RegistrationError, FusionError, FocalPlaneError) as exc:
        sys.stderr.write(f"dfocus {parser.prog.split()[-1]}: {exc}\n")
        return 1
    return 0


def refocus_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="dfocus refocus", description="Refocus a burst at a chosen focal plane.")
    _common(parser)
    parser.add_argument("--focus-m", type=float, required=True, help="focus distance (m)")
    parser.add_argument("--near-m", type=float, default=0.0, help="near limit of the sharp range (m)")
    parser.add_argument("--far-m", type=float, default=0.0, help="far limit (m); 0/0 = thin-lens depth of field")
    parser.add_argument("--f-number", type=float, default=0.0,
                        help="simulated aperture, f/0.5..f/128 (0 = the camera's)")
    parser.add_argument("--bokeh-strength", type=float, default=1.0, help="multiplier on the thin-lens blur, 0..4")
    parser.add_argument("--mask", help="image whose non-zero pixels must stay sharp (reference size)")
    parser.add_argument("--width", type=int, default=0, help="output width (0 = full resolution)")

    def run(args: argparse.Namespace) -> None:
        mask = None
        if args.mask:
            mask = cv2.imread(args.mask, cv2.IMREAD_GRAYSCALE)
            if mask is None:
                raise CliError(f"cannot read mask {args.mask}")
        prepared = _prepare(args)
        req = RefocusRequest(
            focus_m=args.focus_m, near_m=args.near_m, far_m=args.far_m, mask=mask, f_number=args.f_number,
            bokeh_strength=args.bokeh_strength, output_width=args.width,
        )
        rendered = prepared.render(req)
        _write(args.out, rendered.image)
        s = rendered.sharp
        sys.stdout.write(f"{args.out}: focus {s.focus_m:.3f} m, sharp {s.near_m:.3f}..{s.far_m:.3f} m\n")

    return _run(run, argv, parser)


def all_in_focus_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="dfocus all-in-focus", description="All-in-focus fusion of a burst.")
    _common(parser)

    def run(args: argparse.Namespace) -> None:
        prepared = _prepare(args)
        _write(args.out, prepared.all_in_focus_srgb())
        sys.stdout.write(f"{args.out}: {prepared.registration.summary()}\n")

    return _run(run, argv, parser)
