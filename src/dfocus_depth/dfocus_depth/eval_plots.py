"""Plots of `dfocus eval-depth`: error maps of one scene per family and error-against-depth curves,
the network next to SGBM (PNG, matplotlib's Agg backend, no display needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dfocus_depth.evaluate import Case


def _depth(case: Case, disp: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(disp + case.doffs > 0, case.f_px * case.baseline_m / (disp + case.doffs), np.inf)


def error_maps(cases: list[Case], predictions: dict[tuple[str, str], np.ndarray], methods: tuple[str, ...],
               path: Path) -> None:
    """One row per case: the reference image, the true disparity, and each method's absolute error
    (0-4 px; grey where a method gives no estimate)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = 2 + len(methods)
    fig, axes = plt.subplots(len(cases), cols, figsize=(3.2 * cols, 2.6 * len(cases)), squeeze=False)
    cmap = matplotlib.colormaps["inferno"].with_extremes(bad="0.6")
    for row, case in zip(axes, cases, strict=True):
        row[0].imshow(case.left)
        row[0].set_ylabel(case.name.split(",")[0][:38], fontsize=7)
        row[1].imshow(case.gt_disp, cmap="viridis")
        row[1].set_title("true disparity", fontsize=8)
        for ax, method in zip(row[2:], methods, strict=True):
            err = np.abs(predictions[(method, case.name)] - case.gt_disp)
            ax.imshow(np.ma.masked_invalid(err), cmap=cmap, vmin=0, vmax=4)
            ok = np.isfinite(err)
            ax.set_title(f"{method.split(' (')[0]}: {np.nanmean(err):.2f} px, {100 * ok.mean():.0f} % covered",
                         fontsize=7)
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def error_vs_depth(families: dict[str, list[Case]], predictions: dict[tuple[str, str], np.ndarray],
                   methods: tuple[str, ...], path: Path, bins: int = 8) -> None:
    """Per family: the share of pixels more than 5 % off in depth, against the true depth (log bins),
    over the pixels each method covers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(families)
    fig, axes = plt.subplots(1, n, figsize=(3.6 * n, 3.0), squeeze=False)
    for ax, (family, cases) in zip(axes[0], families.items(), strict=True):
        z_true = np.concatenate([_depth(c, c.gt_disp).ravel() for c in cases])
        finite = np.isfinite(z_true)
        edges = np.geomspace(np.min(z_true[finite]), np.max(z_true[finite]) * 1.0001, bins + 1)
        centres = np.sqrt(edges[:-1] * edges[1:])
        for method in methods:
            z = np.concatenate([_depth(c, predictions[(method, c.name)]).ravel() for c in cases])
            ok = finite & np.isfinite(z)
            bad = np.abs(z - z_true) > 0.05 * z_true
            idx = np.digitize(z_true, edges) - 1
            share = [np.mean(bad[ok & (idx == b)]) if np.any(ok & (idx == b)) else np.nan for b in range(bins)]
            ax.plot(centres, 100 * np.asarray(share), marker="o", label=method.split(" (")[0])
        ax.set_xscale("log")
        ax.set_xlabel("true depth (m)", fontsize=8)
        ax.set_ylabel("% > 5 % off in depth", fontsize=8)
        ax.set_title(family.split(" (")[0][:40], fontsize=8)
        ax.legend(fontsize=6)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
