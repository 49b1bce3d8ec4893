"""Camera simulator benchmarks for `dfocus bench`: rendering speed of the array's views (the
issue's target: 5 x 1280x960 well under a second), small views for training data, scene
generation, and one 12 MP view. The pinhole render (ray casting + texturing, no defocus, no
noise) of the same views is the in-run baseline the full pipeline is compared with."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from dfocus_capture.bench_timing import time_runs
from dfocus_capture.calibration import CameraModel, load_calibration
from dfocus_capture.dds import find_config
from dfocus_capture.sim.render import ThinLensRenderer
from dfocus_capture.sim.scene import random_scene
from dfocus_capture.sim.sensor import SensorNoise


def _best_ms(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Best wall time and best CPU time of `repeats` runs (ms). The machine is shared: the best
    run is the least disturbed, and CPU time shows the cost without the neighbours' load."""
    wall, cpu = time_runs(fn, repeats)
    return min(wall) * 1e3, min(cpu) * 1e3


def run_benchmarks(quick: bool) -> list[dict[str, object]]:
    path = find_config("camera_array.yaml")
    assert path is not None, "config/camera_array.yaml not found"
    cal = load_calibration(path)
    repeats = 2 if quick else 5
    renderer = ThinLensRenderer(random_scene(1))
    noise = SensorNoise()
    rng = np.random.default_rng(0)
    rows: list[dict[str, object]] = []
    for w, h, target in ((1280, 960, 1000.0), (320, 240, None)):
        cams = cal.scaled(w, h).cameras

        def views(cams: tuple[CameraModel, ...] = cams) -> object:
            return [renderer.render(c, noise=noise, rng=rng) for c in cams]

        def pinholes(cams: tuple[CameraModel, ...] = cams) -> object:
            return [renderer.pinhole(c) for c in cams]

        full, full_cpu = _best_ms(views, repeats)
        pinhole, _ = _best_ms(pinholes, repeats)
        rows.append({"name": f"sim: {len(cams)} views {w}x{h} (ray cast, thin-lens defocus, sensor noise)",
                     "value": round(full, 1), "unit": "ms", "target": f"< {target:g}" if target else "",
                     "cpu_ms": round(full_cpu, 1), "baseline": round(pinhole, 1),
                     "baseline_name": "pinhole render only", "ratio": round(full / pinhole, 2)})
    scene_ms, _ = _best_ms(lambda: random_scene(7), repeats)
    rows.append({"name": "sim: random_scene generation (textures, mip maps)", "value": round(scene_ms, 1),
                 "unit": "ms", "target": ""})
    if not quick:
        cam = cal.reference.scaled(4000, 3000)
        big, big_cpu = _best_ms(lambda: renderer.render(cam, noise=noise, rng=rng), 1)
        rows.append({"name": "sim: one 12 MP view (4000x3000)", "value": round(big, 0), "unit": "ms", "target": "",
                     "cpu_ms": round(big_cpu, 0)})
    return rows


if __name__ == "__main__":
    import sys

    for row in run_benchmarks(quick="--quick" in sys.argv):
        sys.stdout.write(f"{row}\n")
