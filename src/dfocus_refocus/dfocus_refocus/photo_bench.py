"""Refocus quality on photograph-textured scenes nobody tuned on: bursts of the depth evaluation's
test-split renderer (`dfocus_depth.layered_scenes`: photograph layers at about 0.8, 1.4 and 3.0 m
and a 5 m background on the project's 5-camera array, each camera focused at its own distance),
refocused by dfocus and scored against that renderer's true thin-lens render of the reference
camera at the requested focus and f-number (noise-free).

Side by side, per request: dfocus with the depth network's map (as the simulated graph runs the
depth node; bokeh as the refocus node renders it), dfocus with the true depth (the ceiling of this
pipeline), and the best do-nothing answer (the best of: the all-in-focus image, the reference
camera's image, the camera focused nearest the request as registered into the reference view).
PSNR over the image and within 10 px of depth edges.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from dfocus_refocus.baselines import depth_edge_band, psnr
from dfocus_refocus.bokeh import NODE_MAX_KERNEL_PX, BokehParams
from dfocus_refocus.pipeline import RefocusRequest, prepare_sequence
from dfocus_refocus.srgb import to_srgb8

SEED_BASE = 8_000_000  # disjoint from the depth evaluation's test-split seeds
LAYERS_M = (5.0, 3.0, 1.4, 0.8)  # background first; each jittered +-10 % per scene
F_NUMBERS = (1.4, 2.8)
AS_THE_NODE = BokehParams(max_kernel_px=NODE_MAX_KERNEL_PX)  # rendered as the refocus node renders


@dataclass
class PhotoRow:
    scene: int
    focus_m: float
    f_number: float
    cnn_db: float
    cnn_edges_db: float
    true_depth_db: float
    true_depth_edges_db: float
    nothing_db: float
    nothing_edges_db: float
    nothing_name: str


def photo_rows(scenes: int = 3, width: int = 640, f_numbers: Sequence[float] = F_NUMBERS) -> list[PhotoRow]:
    """Every scene refocused on each of its three layers at each f-number."""
    from dfocus_depth.estimator import DepthEstimator
    from dfocus_depth.evaluate import project_array
    from dfocus_depth.geometry import DepthRange
    from dfocus_depth.layered_scenes import Capture, layered_scene, load_test_photographs, render_burst, render_view

    cal = project_array(width)
    ref = cal.reference
    photos = load_test_photographs()
    estimator = DepthEstimator(device="cpu")  # its defaults are the depth node's
    rows: list[PhotoRow] = []
    for k in range(scenes):
        seed = SEED_BASE + k
        rng = np.random.default_rng(seed)
        depths = tuple(z * float(rng.uniform(0.9, 1.1)) for z in LAYERS_M)
        scene = layered_scene(cal, depths, photos, seed)
        # No exposure spread or vignetting: the true render has neither, so PSNR measures blur and
        # noise handling, not photometry.
        burst, true_depth = render_burst(scene, cal, Capture(exposure_spread=0.0, vignetting=0.0), seed)
        # As the simulated graph runs the depth node: sweeping from the workspace's near limit 0.3 m.
        cnn_depth = estimator.estimate(burst, DepthRange(0.3, math.inf)).depth
        with_cnn, with_truth = prepare_sequence(burst, cnn_depth), prepare_sequence(burst, true_depth)
        band = depth_edge_band(true_depth)
        aif = with_cnn.all_in_focus_srgb()
        for focus in depths[1:]:
            # The frame focused nearest the request, as registered into the reference view (the
            # all-in-focus image where that camera does not see).
            frames = with_cnn.registration.frames
            nearest = min(frames, key=lambda f: abs(1 / f.camera.focus_distance_m - 1 / focus))
            registered = np.where(nearest.valid[..., None], nearest.image, aif)
            for n in f_numbers:
                truth = to_srgb8(render_view(scene, replace(ref, focus_distance_m=focus, f_number=n)))
                req = RefocusRequest(focus_m=focus, near_m=focus, far_m=focus, f_number=n)
                ours, ceiling = (p.render(req, AS_THE_NODE).image for p in (with_cnn, with_truth))
                nothing = {"all-in-focus": aif, "reference camera": burst.frames[0].image,
                           f"camera focused at {nearest.camera.focus_distance_m:g} m": registered}
                best = max(nothing, key=lambda key: psnr(nothing[key], truth))
                rows.append(PhotoRow(
                    scene=seed, focus_m=round(focus, 2), f_number=n,
                    cnn_db=psnr(ours, truth), cnn_edges_db=psnr(ours, truth, band),
                    true_depth_db=psnr(ceiling, truth), true_depth_edges_db=psnr(ceiling, truth, band),
                    nothing_db=psnr(nothing[best], truth), nothing_edges_db=psnr(nothing[best], truth, band),
                    nothing_name=best))
    return rows


REPORT_NAME = "refocus_photo.md"
PLOT_NAME = "refocus_photo_psnr.png"


def write_photo_report(rows: list[PhotoRow], folder: Path) -> None:
    """`folder`/refocus_photo.md (the table, with this module's description) and the PNG chart."""
    folder.mkdir(parents=True, exist_ok=True)
    plot(rows, folder / PLOT_NAME)
    intro = (__doc__ or "").strip()
    (folder / REPORT_NAME).write_text(f"# Refocus on photograph-textured scenes\n\nGenerated by `dfocus bench "
                                      f"--only refocus` (`dfocus_refocus.photo_bench`). {intro}\n\n"
                                      f"{markdown(rows)}\n![PSNR against focus distance]({PLOT_NAME})\n")


def markdown(rows: list[PhotoRow]) -> str:
    lines = ["## Refocused photograph-textured scenes vs a true thin-lens render (test-split renderer)", "",
             "| scene | focus m | f/ | dfocus (CNN depth) dB | edges dB | dfocus (true depth) dB | edges dB | "
             "best do-nothing dB | edges dB | margin over do-nothing dB |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.scene} | {r.focus_m} | {r.f_number} | {r.cnn_db:.2f} | {r.cnn_edges_db:.2f} | "
                     f"{r.true_depth_db:.2f} | {r.true_depth_edges_db:.2f} | {r.nothing_db:.2f} ({r.nothing_name}) | "
                     f"{r.nothing_edges_db:.2f} | {r.cnn_db - r.nothing_db:+.2f} |")
    return "\n".join(lines) + "\n"


def plot(rows: list[PhotoRow], path: Path) -> None:
    """PSNR against focus distance: dfocus with the CNN's depth, with the true depth, do-nothing."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(F_NUMBERS), figsize=(5 * len(F_NUMBERS), 3.2), squeeze=False)
    for ax, n in zip(axes[0], F_NUMBERS, strict=True):
        mine = sorted((r for r in rows if r.f_number == n), key=lambda r: r.focus_m)
        z = [r.focus_m for r in mine]
        for key, label in (("cnn_db", "dfocus (CNN depth)"), ("true_depth_db", "dfocus (true depth)"),
                           ("nothing_db", "best do-nothing")):
            ax.plot(z, [getattr(r, key) for r in mine], "o", label=label)
        ax.set_xscale("log")
        ax.set_xlabel("focus distance (m)")
        ax.set_ylabel("PSNR vs true render (dB)")
        ax.set_title(f"f/{n}")
        ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
