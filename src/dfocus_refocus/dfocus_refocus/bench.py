"""Refocus benchmarks: fusion and refocus quality against the simulator's ground truth (side by side
with enfuse and a max-Laplacian pick), and refocus / preview speed from cached registration.

`run_benchmarks(quick)` returns rows for `dfocus bench` and writes bench/refocus_quality.md.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from dfocus_capture.bench_timing import peak_rss_mb, time_runs
from dfocus_capture.calibration import ArrayCalibration, load_array_calibration
from dfocus_refocus.baselines import (
    BaselineError,
    depth_edge_band,
    enfuse_available,
    enfuse_focus_stack,
    psnr,
    ssim,
)
from dfocus_refocus.bokeh import BokehParams, render_bokeh
from dfocus_refocus.focal_plane import resolve_focal_plane, signed_coc_px
from dfocus_refocus.fusion import max_laplacian_pick
from dfocus_refocus.photo_bench import photo_rows, write_photo_report
from dfocus_refocus.pipeline import PreparedSequence, RefocusRequest, prepare_sequence
from dfocus_refocus.registration import WORKERS
from dfocus_refocus.srgb import to_srgb8

Row = dict[str, Any]
REPORT = Path("bench") / "refocus_quality.md"
NAIVE = BokehParams(near_band_px=0.5, max_kernel_px=None)  # every layer layered, at full resolution
# (focus m, f-number) of the refocus quality rows: a near and a far plane, wide open and stopped down.
REFOCUS_PLANES = ((0.6, 1.8), (2.5, 2.8))


def calibration(width: int, height: int, cameras: int = 5) -> ArrayCalibration:
    return load_array_calibration().subset(cameras).scaled(width, height)


def _timed(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median wall and CPU (this process, all threads) seconds of `repeats` runs after a warm-up.
    On a shared machine the CPU time shows what the code costs when the wall time is inflated by
    other processes."""
    wall, cpu = time_runs(fn, repeats)
    return statistics.median(wall), statistics.median(cpu)


def _fusion_scores(name: str, image: np.ndarray, gt: np.ndarray, band: np.ndarray) -> dict[str, Any]:
    return {
        "method": name,
        "psnr": psnr(image, gt),
        "ssim": ssim(image, gt),
        "psnr_edges": psnr(image, gt, band),
        "ssim_edges": ssim(image, gt, band),
    }


def fusion_quality(seed: int, width: int, height: int, num_shots: int) -> tuple[list[dict[str, Any]], list[Row]]:
    """All-in-focus quality on one simulated scene: per-method scores and the refocus rows."""
    from dfocus_capture.sim import simulate_burst

    sb = simulate_burst(calibration(width, height), seed, num_shots=num_shots, noise=True)
    gt = sb.gt_all_in_focus
    band = depth_edge_band(sb.gt_depth)
    prepared = prepare_sequence(sb.burst, sb.gt_depth)
    reg = prepared.registration
    scores = [
        _fusion_scores("dfocus (true depth)", prepared.all_in_focus_srgb(), gt, band),
        _fusion_scores("max-Laplacian pick (registered)", max_laplacian_pick(reg), gt, band),
        _fusion_scores("reference frame alone", sb.burst.reference.image, gt, band),
    ]
    if enfuse_available():
        try:
            registered = enfuse_focus_stack([f.image for f in reg.frames], [f.valid for f in reg.frames])
            scores.append(_fusion_scores("enfuse focus stack (registered)", registered, gt, band))
            raw = enfuse_focus_stack([f.image for f in sb.burst.frames])
            scores.append(_fusion_scores("enfuse focus stack (raw frames)", raw, gt, band))
        except BaselineError as exc:
            sys.stderr.write(f"refocus bench: {exc}\n")
    estimated = _estimated_depth(sb.burst)
    if estimated is not None:
        ours_cnn = prepare_sequence(sb.burst, estimated)
        scores.insert(1, _fusion_scores("dfocus (CNN depth)", ours_cnn.all_in_focus_srgb(), gt, band))
    for s in scores:
        s["scene"] = f"seed {seed}, {width}x{height}, {len(sb.burst.frames)} frames"
    return scores, _refocus_rows(sb, prepared, band)


def _estimated_depth(burst: Any) -> np.ndarray | None:
    try:
        from dfocus_capture.sim.scene import DEFAULT_NEAR_M
        from dfocus_depth.estimator import DepthEstimator
        from dfocus_depth.geometry import DepthRange

        # As the simulated graph runs the depth node: its defaults (DepthEstimator's own), sweeping
        # from the scenes' near limit.
        est = DepthEstimator(device="cpu")
        return est.estimate(burst, DepthRange(DEFAULT_NEAR_M, math.inf)).depth
    except (ImportError, RuntimeError, ValueError, OSError) as exc:
        sys.stderr.write(f"refocus bench: no CNN depth row ({exc})\n")
        return None


def _refocus_rows(sb: Any, prepared: PreparedSequence, band: np.ndarray) -> list[Row]:
    rows: list[Row] = []
    ref = prepared.reference
    for focus, f_number in REFOCUS_PLANES:
        truth = sb.renderer.render(ref.with_focus(focus), f_number=f_number).image
        req = RefocusRequest(focus_m=focus, near_m=focus, far_m=focus, f_number=f_number)
        ours = prepared.render(req).image
        sharp = resolve_focal_plane(ref, focus_m=focus, near_m=focus, far_m=focus)
        coc = signed_coc_px(prepared.registration.depth, sharp, ref, f_number)
        naive = to_srgb8(render_bokeh(prepared.all_in_focus, coc, NAIVE))
        rows.append({
            "name": f"refocus PSNR vs true thin-lens render, {ref.width}x{ref.height}, focus {focus} m f/{f_number}",
            "value": round(psnr(ours, truth), 2), "unit": "dB", "target": "",
            "baseline": round(psnr(prepared.all_in_focus_srgb(), truth), 2),
            "baseline_name": "all-in-focus without bokeh", "ratio": "",
            "edges_db": round(psnr(ours, truth, band), 2),
            "full_res_layers_db": round(psnr(naive, truth), 2),
        })
    return rows


def _render_child(aif_path: str, depth_path: str, cam_args: dict[str, Any], queue: Any) -> None:
    """Child process: time the 12 MP render from cached arrays and report its own peak RSS (with the
    allocator set up as in the node)."""
    from dfocus_capture.allocator import keep_freed_memory
    from dfocus_capture.calibration import CameraModel

    keep_freed_memory()

    aif = np.load(aif_path)
    depth = np.load(depth_path)
    cam = CameraModel(**cam_args)
    sharp = resolve_focal_plane(cam, focus_m=0.8, near_m=0.8, far_m=0.8)

    def render() -> np.ndarray:
        return to_srgb8(render_bokeh(aif, signed_coc_px(depth, sharp, cam, cam.f_number)))

    wall, cpu = _timed(render, 2)
    queue.put((wall, cpu, peak_rss_mb()))


def speed_rows(quick: bool) -> list[Row]:
    from dfocus_capture.sim import simulate_burst

    rows: list[Row] = []
    repeats = 3 if quick else 7
    sb = simulate_burst(calibration(1280, 960), 11, num_shots=1, noise=True)
    prepared = prepare_sequence(sb.burst, sb.gt_depth)
    full = _plane(0.8, 0)
    ours = _timed(lambda: prepared.render(full), repeats)
    naive = _timed(lambda: prepared.render(full, NAIVE), max(1, repeats // 2))
    rows.append(_speed_row("refocus 5 views 1280x960 from cached registration", ours, naive, 150.0))
    # The preview moves the plane every frame: each render is a new plane.
    planes = iter(np.geomspace(0.4, 5.0, repeats * 3 + 1).tolist() * 2)
    ours_p = _timed(lambda: prepared.render(_plane(next(planes), 640)), repeats * 3)
    naive_p = _timed(lambda: prepared.render(_plane(next(planes), 640), NAIVE), repeats)
    rows.append({
        "name": "live preview 640x480 (focal plane moving)", "value": round(1.0 / ours_p[0], 1), "unit": "frames/s",
        "target": ">= 30", "baseline": round(1.0 / naive_p[0], 1), "baseline_name": "full-resolution layers",
        "ratio": round(naive_p[0] / ours_p[0], 2), "cpu": f"{1.0 / ours_p[1]:.1f} frames per CPU-second",
    })
    rows.append(_prepare_row(quick))
    rows += _twelve_mp_rows(prepared)
    return rows


def _prepare_row(quick: bool) -> Row:
    """What the refocus node does once per burst before its first render: register and fuse a
    5-shot burst of the 5-camera array (25 frames) at 1280x960, against one frame at a time."""
    from dfocus_capture.sim import simulate_burst

    sb = simulate_burst(calibration(1280, 960), 12, num_shots=5, noise=True)
    repeats = 2 if quick else 3
    ours = _timed(lambda: prepare_sequence(sb.burst, sb.gt_depth), repeats)
    one = _timed(lambda: prepare_sequence(sb.burst, sb.gt_depth, workers=1), repeats)
    return {
        "name": f"prepare a 5-shot burst, 5 cameras 1280x960 (register + fuse 25 frames, {WORKERS} at a time)",
        "value": round(ours[0], 2), "unit": "s", "target": "", "baseline": round(one[0], 2),
        "baseline_name": "one frame at a time", "ratio": round(one[0] / ours[0], 2),
        "cpu": f"{ours[1]:.1f} s CPU",
    }


def _plane(focus: float, width: int) -> RefocusRequest:
    return RefocusRequest(focus_m=focus, near_m=focus, far_m=focus, output_width=width)


def _speed_row(name: str, ours: tuple[float, float], baseline: tuple[float, float], target_ms: float) -> Row:
    return {
        "name": name, "value": round(ours[0] * 1e3, 1), "unit": "ms", "target": f"<= {target_ms:g}",
        "baseline": round(baseline[0] * 1e3, 1), "baseline_name": "full-resolution layers",
        "ratio": round(baseline[0] / ours[0], 2), "cpu": f"{ours[1] * 1e3:.0f} ms CPU",
    }


def _twelve_mp_rows(prepared: PreparedSequence) -> list[Row]:
    """12 MP: the 1280x960 scene's all-in-focus image and depth upscaled to 4000x3000 (the render
    only sees those two arrays), rendered in a fresh process so that its peak memory is its own."""
    w, h = 4000, 3000
    lvl = prepared.level(w, h)
    cam = lvl.camera
    cam_args = {k: getattr(cam, k) for k in ("name", "width", "height", "K", "D", "T_ref_cam", "focus_distance_m",
                                              "focal_length_mm", "f_number", "pixel_size_um")}
    with tempfile.TemporaryDirectory(prefix="dfocus-bench-") as tmp:
        aif_path, depth_path = str(Path(tmp) / "aif.npy"), str(Path(tmp) / "depth.npy")
        np.save(aif_path, lvl.linear)
        np.save(depth_path, cv2.resize(prepared.registration.depth, (w, h), interpolation=cv2.INTER_NEAREST))
        ctx = mp.get_context("spawn")
        queue = ctx.Queue()
        proc = ctx.Process(target=_render_child, args=(aif_path, depth_path, cam_args, queue))
        proc.start()
        seconds, cpu, peak_mb = queue.get(timeout=600)
        proc.join()
    return [
        {"name": "refocus 5 views 12 MP (4000x3000) from cached registration", "value": round(seconds, 2),
         "unit": "s", "target": "<= 2", "baseline": "", "baseline_name": "", "ratio": "", "cpu": f"{cpu:.2f} s CPU"},
        {"name": "refocus 12 MP peak memory (whole process)", "value": round(peak_mb, 0), "unit": "MB",
         "target": "<= 3072", "baseline": "", "baseline_name": "", "ratio": ""},
    ]


def _markdown(scores: list[dict[str, Any]], refocus: list[Row], speed: list[Row]) -> str:
    lines = [
        "# Refocus quality and speed",
        "",
        "Generated by `dfocus bench` (`dfocus_refocus.bench`). Ground truth: the simulator's pinhole all-in-focus",
        "image and depth; noisy bursts; edges = pixels within 10 px of a depth discontinuity.",
        "",
        "## All-in-focus fusion",
        "",
        "| scene | method | PSNR dB | SSIM | PSNR edges dB | SSIM edges |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {s['scene']} | {s['method']} | {s['psnr']:.2f} | {s['ssim']:.4f} | {s['psnr_edges']:.2f} | "
        f"{s['ssim_edges']:.4f} |"
        for s in scores
    ]
    lines += ["", "## Refocused vs a true thin-lens render (noise off)", "",
              "| plane | dfocus dB | dfocus edges dB | full-res layers dB | no bokeh dB |", "|---|---|---|---|---|"]
    lines += [
        f"| {r['name'].split(', ', 1)[1]} | {r['value']} | {r['edges_db']} | {r['full_res_layers_db']} | "
        f"{r['baseline']} |"
        for r in refocus
    ]
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    lines += ["", f"## Speed (this machine: {os.cpu_count()} cores, load average {load} at the end)", "",
              "| measure | wall | CPU | target | baseline | ratio |", "|---|---|---|---|---|---|"]
    lines += [
        f"| {r['name']} | {r['value']} {r['unit']} | {r.get('cpu', '')} | {r['target']} | {r['baseline']} "
        f"{r.get('baseline_name', '')} | {r['ratio']} |"
        for r in speed
    ]
    return "\n".join(lines) + "\n"


def run_benchmarks(quick: bool) -> list[Row]:
    seeds = (3,) if quick else (3, 7, 21)
    width, height = (320, 240) if quick else (640, 480)
    scores: list[dict[str, Any]] = []
    refocus: list[Row] = []
    for seed in seeds:
        s, r = fusion_quality(seed, width, height, num_shots=1 if quick else 2)
        scores += s
        refocus += r
    photo = photo_rows(1 if quick else 3, width)
    write_photo_report(photo, REPORT.parent)
    speed = speed_rows(quick)
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(_markdown(scores, refocus, speed))
    rows: list[Row] = []
    for method in dict.fromkeys(s["method"] for s in scores):
        mine = [s for s in scores if s["method"] == method]
        for key, unit in (("psnr", "dB"), ("psnr_edges", "dB"), ("ssim", ""), ("ssim_edges", "")):
            rows.append({
                "name": f"all-in-focus {key} ({method}, mean of {len(mine)} scenes)",
                "value": round(float(np.mean([s[key] for s in mine])), 4), "unit": unit, "target": "",
                "baseline": "", "baseline_name": "", "ratio": "",
            })
    for key, name in (("cnn_db", "dfocus (CNN depth)"), ("true_depth_db", "dfocus (true depth)"),
                      ("nothing_db", "best do-nothing")):
        rows.append({"name": f"photograph-textured refocus PSNR, {name}, mean of {len(photo)} requests",
                     "value": round(float(np.mean([getattr(p, key) for p in photo])), 2), "unit": "dB",
                     "target": "", "baseline": "", "baseline_name": "", "ratio": ""})
    return rows + refocus + speed


if __name__ == "__main__":
    for row in run_benchmarks(quick="--quick" in sys.argv):
        sys.stdout.write(f"{row}\n")
