"""`dfocus depth`, `dfocus train` and `dfocus eval-depth`.

Exit status: 0 done, 2 bad input (files, calibration, images that do not match it), 1 other failures.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

from dfocus_capture.burst import BurstError, burst_from_images
from dfocus_capture.calibration import CalibrationError, load_calibration
from dfocus_capture.drivers.base import DriverError
from dfocus_depth.background_fill import FILL_BELOW_CONFIDENCE
from dfocus_depth.estimator import (
    CENSUS_REFINE_MODES,
    CROSS_CHECK_MODES,
    REFINE_MODES,
    WEIGHTS,
    DepthEstimator,
    WeightsError,
    colourise,
)
from dfocus_depth.geometry import DepthInputError, DepthRange, middlebury_range


def _err(msg: str) -> int:
    sys.stderr.write(f"dfocus depth: error: {msg}\n")
    return 2


def set_threads(count: int) -> None:
    """On a CPU shared with other jobs, fewer threads than cores are often faster (no spinning at barriers)."""
    if count > 0:
        import torch

        torch.set_num_threads(count)


def read_image(path: str) -> np.ndarray:
    """RGB uint8/uint16 (or mono) as the camera wrote it."""
    img = cv2.imread(path, cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR)
    if img is None:
        raise BurstError(f"cannot read image {path!r}")
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGB if img.shape[2] == 4 else cv2.COLOR_BGR2RGB)
    return np.asarray(img)


def depth_command(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="dfocus depth", description=(
        "Depth map (float32 metres, NaN invalid) of the first image's camera from a burst of images: one image "
        "per calibrated camera (calibration order, reference first), or several shots of all cameras."))
    p.add_argument("--calibration", required=True, help="camera array YAML or Middlebury calib.txt")
    p.add_argument("--out", required=True, help="depth .npy (float32 metres, NaN invalid)")
    p.add_argument("--confidence", help="also write the confidence (0..1) as .npy")
    p.add_argument("--png", help="also write an inverse-depth colour map")
    _range_arguments(p)
    p.add_argument("--confidence-threshold", type=float, default=0.0, help="below it, depth is NaN")
    p.add_argument("--max-width", type=int, default=768, help="working width of the network; wider images are "
                   "downscaled for it and the outputs upsampled to the image size")
    p.add_argument("--cross-check", default="auto", choices=CROSS_CHECK_MODES,
                   help="second pass with the widest-baseline camera as the reference and a two-way consistency "
                   "check, about 2x the time (auto: for two images of two cameras, a stereo pair)")
    p.add_argument("--fill-below", type=float, default=FILL_BELOW_CONFIDENCE,
                   help="depth below this confidence takes the background of its reliable neighbours (0 = off)")
    p.add_argument("--edge-median", action=argparse.BooleanOptionalAction, default=True,
                   help="edge-aware weighted median guided by the image: depth edges on image edges, isolated "
                   "mismatches dropped")
    p.add_argument("--census-refine", default="auto", choices=CENSUS_REFINE_MODES,
                   help="census matching against the second camera at full resolution, in a band around the "
                   "network's estimate: sub-pixel precision on real pairs (auto: for a stereo pair)")
    p.add_argument("--refine", default="on", choices=REFINE_MODES,
                   help="photometric refinement against every view at the images' resolution (up to 1280 px "
                   "wide): sub-pixel precision for small baselines and far surfaces, about 0.1 s at 640x480")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--weights", default=str(WEIGHTS))
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    p.add_argument("images", nargs="+")
    a = p.parse_args(argv)
    set_threads(a.threads)
    try:
        cal = load_calibration(a.calibration)
        burst = burst_from_images([read_image(x) for x in a.images], cal)
        rng = _range(a)
        if rng is None and cal.source and Path(cal.source).is_file():
            rng = middlebury_range(Path(cal.source).read_text()) if len(cal) == 2 else None
        est = DepthEstimator(a.weights, a.device, a.max_width, cross_check=a.cross_check, fill_below=a.fill_below,
                             edge_median=a.edge_median, census_refine=a.census_refine, refine=a.refine)
        res = est.estimate(burst, rng, a.confidence_threshold)
    except (CalibrationError, BurstError, DepthInputError, WeightsError, ValueError) as exc:
        return _err(str(exc))
    np.save(a.out, res.depth)
    if a.confidence:
        np.save(a.confidence, res.confidence)
    if a.png and not cv2.imwrite(a.png, colourise(res.depth)):
        return _err(f"cannot write {a.png}")
    valid = float(np.isfinite(res.depth).mean())
    checked = "" if res.cross_checked is None else f", {100 * res.cross_checked:.1f} % rejected by the two-way check"
    sys.stdout.write(f"{a.out}: {res.depth.shape[1]}x{res.depth.shape[0]} from {res.num_views} views, "
                     f"{100 * valid:.1f} % valid, {res.seconds:.2f} s, {100 * res.filled:.1f} % background-filled"
                     f"{checked}\n")
    return 0


def train_command(argv: list[str]) -> int:
    from dfocus_depth.training import TrainConfig, train

    d = TrainConfig()
    p = argparse.ArgumentParser(prog="dfocus train", description="Train the depth CNN on simulator data.")
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--scenes", type=int, default=d.scenes, help="scenes rendered (8 cameras each)")
    p.add_argument("--batch", type=int, default=d.batch)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--width", type=int, default=d.width)
    p.add_argument("--height", type=int, default=d.height)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--threads", type=int, default=d.threads, help="torch CPU threads")
    p.add_argument("--device", default=d.device, choices=["auto", "cpu", "cuda"])
    p.add_argument("--out", default=d.out, help="weights file (a JSON record is written next to it)")
    p.add_argument("--no-photo-textures", dest="photo_textures", action="store_false",
                   help="procedural textures only (by default half the surfaces are cut from sample photographs)")
    a = p.parse_args(argv)
    cfg = TrainConfig(seed=a.seed, scenes=a.scenes, steps=a.steps, batch=a.batch, width=a.width, height=a.height,
                      lr=a.lr, threads=a.threads, device=a.device, out=a.out, photo_textures=a.photo_textures)

    train(cfg, _log, command="dfocus train " + shlex.join(argv))
    return 0


def _range_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--near-m", type=float, help="nearest depth to consider (default: from the calibration)")
    p.add_argument("--far-m", type=float, help="farthest depth (default: infinity)")


def _range(a: argparse.Namespace) -> DepthRange | None:
    """The swept range the user gave with --near-m / --far-m, or None for the default."""
    if a.near_m is None and a.far_m is None:
        return None
    return DepthRange(a.near_m or 0.1, a.far_m if a.far_m is not None else float("inf"))


def _log(msg: str) -> None:
    sys.stdout.write(msg + "\n")
    sys.stdout.flush()


def adapt_command(argv: list[str]) -> int:
    from dfocus_depth.adapt import AdaptConfig, AdaptError, adapt, read_bursts

    d = AdaptConfig()
    p = argparse.ArgumentParser(
        prog="dfocus adapt",
        description="Fine-tune the depth CNN on your own unlabelled bursts (photometric consistency across the "
                    "array's views); the depth node loads the result through its `weights` parameter.")
    p.add_argument("inputs", nargs="+", metavar="BAG_OR_FOLDER",
                   help="rosbag2 folders (every FocusSequence in them) or burst folders (images + calibration)")
    p.add_argument("--out", required=True, help="adapted weights file (a JSON record is written next to it)")
    p.add_argument("--calibration", help="calibration for burst folders without their own")
    p.add_argument("--weights", default=str(WEIGHTS), help="weights to start from")
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--max-width", type=int, default=d.max_width, help="working width (the depth node's default)")
    _range_arguments(p)
    p.add_argument("--threads", type=int, default=d.threads)
    p.add_argument("--device", default=d.device, choices=["auto", "cpu", "cuda"])
    p.add_argument("--seed", type=int, default=d.seed)
    a = p.parse_args(argv)
    cfg = AdaptConfig(steps=a.steps, lr=a.lr, max_width=a.max_width, threads=a.threads, seed=a.seed,
                      device=a.device)
    try:
        rng = _range(a)
        calibration = Path(a.calibration) if a.calibration else None
        bursts = [b for path in a.inputs for b in read_bursts(Path(path), calibration)]
        record = adapt(bursts, Path(a.out), _log, cfg, Path(a.weights), rng)
    except (AdaptError, WeightsError, DepthInputError, ValueError) as exc:
        return _err(str(exc))
    except OSError as exc:
        return _err(f"cannot write {a.out}: {exc}")
    sys.stdout.write(f"{a.out}: photometric error {record['photometric_error_before']:.4f} -> "
                     f"{record['photometric_error_after']:.4f} over {record['bursts']} bursts\n")
    return 0


def eval_command(argv: list[str]) -> int:
    from dfocus_depth.eval_plots import error_maps, error_vs_depth
    from dfocus_depth.eval_suite import (
        ADAPT_BURSTS,
        NETWORK,
        SGBM_FILLED,
        SGBM_RAW,
        adaptation_rows,
        build_dev_split,
        build_test_split,
        summary_rows,
        test_split_methods,
        with_sgbm_region,
    )
    from dfocus_depth.evaluate import (
        classical_methods,
        default_methods,
        evaluate,
        markdown_table,
        middlebury_folder_case,
        motorcycle_case,
        network_method,
        perturbed_cases,
    )

    p = argparse.ArgumentParser(
        prog="dfocus eval-depth",
        description="Depth accuracy against StereoSGBM (raw, hole-filled, + WLS): a development split for tuning "
                    "(held-out simulator scenes) and a test split for reporting (scenes of another generator and "
                    "renderer with photographs training never sees, and the real Middlebury Motorcycle pair).")
    p.add_argument("--split", choices=["dev", "test", "all"], default="all")
    p.add_argument("--synthetic", type=int, default=8, help="development split: held-out simulator scenes per rig")
    p.add_argument("--width", type=int, default=320, help="resolution of the simulated 5-camera development scenes")
    p.add_argument("--max-width", type=int, default=384, help="working resolution of the network on the development "
                   "split (real pairs: this and 741 px, Motorcycle's full width, or 768 px for --middlebury "
                   "folders, as `dfocus depth`)")
    p.add_argument("--test-scenes", type=int, default=3, help="test split: scenes per family")
    p.add_argument("--families", nargs="+", default=[], metavar="WORD",
                   help="test split: only the families whose name contains one of these words")
    p.add_argument("--adapt-steps", type=int, default=0,
                   help="also score `dfocus adapt` with this many steps: per rig, adapted on unlabelled bursts of "
                   "other scenes, then scored before and after (0 = off; minutes per rig)")
    p.add_argument("--test-max-width", type=int, default=768,
                   help="working resolution of the network on the test split (768: as `dfocus depth`)")
    p.add_argument("--middlebury", nargs="+", default=[], metavar="DIR",
                   help="also your own rectified pairs with ground truth, one folder each in the Middlebury "
                   "2014 layout: im0.png, im1.png, calib.txt (with ndisp), disp0.pfm or disp0GT.pfm")
    p.add_argument("--motorcycle", action=argparse.BooleanOptionalAction, default=True,
                   help="the Middlebury Motorcycle pair shipped with scikit-image (test split)")
    p.add_argument("--weights", default=str(WEIGHTS))
    p.add_argument("--out", default="bench/depth_eval.md")
    p.add_argument("--plots", default="bench", help="folder for the test split's PNG plots")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    a = p.parse_args(argv)
    set_threads(a.threads)
    try:
        est = DepthEstimator(a.weights, "auto", a.max_width)
        folders = [middlebury_folder_case(Path(d)) for d in a.middlebury]
    except (WeightsError, DepthInputError, CalibrationError, BurstError, DriverError, ValueError) as exc:
        return _err(str(exc))
    sections = []
    if a.split in ("test", "all") and a.test_scenes > 0:
        try:
            families = build_test_split(a.test_scenes, a.families)
        except ValueError as exc:
            return _err(str(exc))
        test_est = DepthEstimator(a.weights, "auto", a.test_max_width)
        predictions: dict[tuple[str, str], np.ndarray] = {}
        family_rows = {name: evaluate(cases, test_split_methods(test_est), predictions)
                       for name, cases in families.items()}
        sections.append(markdown_table(
            f"Test split summary ({a.test_scenes} scenes per family; the network as `dfocus depth` runs it, "
            f"working width {a.test_max_width}; SGBM on the reference and its right neighbour)",
            summary_rows(family_rows)))
        sections += [markdown_table(f"Test split: {name}", rows) for name, rows in family_rows.items()]
        if a.adapt_steps > 0:
            with tempfile.TemporaryDirectory() as tmp:
                rows = adaptation_rows(families, test_est, a.adapt_steps, Path(tmp), _log)
            sections.append(markdown_table(f"Test split: self-adaptation ({a.adapt_steps} steps on "
                                           f"{ADAPT_BURSTS} unlabelled bursts of other scenes per rig)", rows))
        plots = Path(a.plots)
        shown = (NETWORK, SGBM_RAW, SGBM_FILLED)
        error_maps([cases[0] for cases in families.values()], predictions, shown, plots / "depth_eval_maps.png")
        error_vs_depth(families, predictions, shown, plots / "depth_eval_vs_depth.png")
    if a.split in ("dev", "all") and a.synthetic > 0:
        dev = build_dev_split(a.synthetic, a.width)
        for i, (name, cases) in enumerate(dev.items()):
            # The project's array gets every network variant; the other rigs the test split's methods.
            methods = default_methods(est, multi_view=True) if i == 0 else test_split_methods(est)
            sections.append(markdown_table(f"Development split: {name} ({a.synthetic} scenes; disparity of the "
                                           "reference and its right neighbour)", evaluate(cases, methods)))
        if a.adapt_steps > 0:
            with tempfile.TemporaryDirectory() as tmp:
                rows = adaptation_rows(dev, DepthEstimator(a.weights, "auto", a.test_max_width), a.adapt_steps,
                                       Path(tmp), _log, dev=True)
            sections.append(markdown_table(f"Development split: self-adaptation ({a.adapt_steps} steps on "
                                           f"{ADAPT_BURSTS} unlabelled bursts of other scenes per rig)", rows))
    if a.split in ("test", "all") and a.motorcycle:
        with tempfile.TemporaryDirectory() as tmp:
            motorcycle = with_sgbm_region(motorcycle_case(Path(tmp)))
            rows = evaluate([motorcycle], default_methods(est, False, (a.max_width, 741)))
        sections.append(markdown_table(
            "Test split: Middlebury 2014 Motorcycle (real, scikit-image quarter scale, 741x500)", rows))
        robust = {"dfocus CNN (the stereo pair, two-way checked, working width 741)": network_method(est, True, 741),
                  **classical_methods()}
        rows = [{**r, "method": f"{variant}: {r['method']}"}
                for variant, case in perturbed_cases(motorcycle).items() for r in evaluate([case], robust)]
        sections.append(markdown_table("Test split: Middlebury 2014 Motorcycle as other rigs would deliver it", rows))
    for case in folders:  # the CLI's working width for `dfocus depth` next to --max-width
        rows = evaluate([with_sgbm_region(case)], default_methods(est, False, (a.max_width, 768)))
        sections.append(markdown_table(case.name, rows))
    text = "\n".join(sections)
    sys.stdout.write(text)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        "# Depth evaluation (`dfocus eval-depth " + shlex.join(argv) + "`)\n\n"
        "EPE: mean absolute disparity error over the pixels a method covers; > 2 px: share of those pixels;\n"
        "coverage: share of ground-truth pixels with an estimate; abs rel: mean |Z - Z*| / Z*; depth > 5 % off:\n"
        "share of pixels with |Z - Z*| > 0.05 Z*; BadPix0.07 and MSE x100: the light-field benchmarks' figures\n"
        "(share > 0.07 px, 100 x mean squared error, per view step); columns named after SGBM's valid pixels\n"
        "score every method on the pixels raw SGBM answers; s / map: wall time per depth map on this machine.\n"
        "SGBM + WLS uses this package's implementation of OpenCV's DisparityWLSFilter (opencv-contrib is not\n"
        "installable next to opencv-python-headless). The development split is for tuning; the test split\n"
        "(another scene generator and renderer, photographs training never uses, a real Middlebury pair) is\n"
        "for reporting only. Plots: depth_eval_maps.png, depth_eval_vs_depth.png.\n\n" + text)
    return 0
