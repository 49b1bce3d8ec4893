"""Benchmarks of the ui server's share of the live preview (`dfocus bench`, suite "ui").

The design's bar is a 640x480 preview at >= 30 frames/s while the focal plane moves; the refocus node
renders the frames, the ui server must pass them on (JPEG over the WebSocket) and answer each control
move (plane resolution, painted masks) without becoming the bottleneck. Measured here through the
real server thread and a WebSocket client, with an in-process graph that answers instantly.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import aiohttp
import cv2
import numpy as np

from dfocus_capture.calibration import load_array_calibration
from dfocus_refocus.ui.graph import (
    CaptureRequest,
    CaptureResult,
    PlaneRequest,
    ProgressCallback,
    RenderRequest,
    RenderResult,
    SequenceInfo,
)
from dfocus_refocus.ui.scene import (
    Scene,
    colorize_depth,
    decode_mask,
    depth_range,
    encode_jpeg,
    encode_png,
    resolve_plane,
)
from dfocus_refocus.ui.server import UiServer, UiSettings


class _InstantGraph:
    """Answers at once: what is measured is the server, not the graph."""

    def __init__(self) -> None:
        self.planes = 0

    async def render(self, request: RenderRequest, progress: ProgressCallback) -> RenderResult:
        return RenderResult(np.zeros((480, 640, 3), np.uint8), 1, 1.0, 1.0, 1.0, "")

    async def capture(self, request: CaptureRequest, progress: ProgressCallback) -> CaptureResult:
        return CaptureResult(1, "")

    async def list_sequences(self) -> list[SequenceInfo]:
        return []

    def publish_focal_plane(self, plane: PlaneRequest) -> None:
        self.planes += 1


def _scene(width: int, height: int) -> Scene:
    cam = load_array_calibration().reference.scaled(width, height)
    image = _photo(width, height)
    yy, xx = np.mgrid[0:height, 0:width]
    depth = (0.4 + 8.0 * (xx / width) ** 2 + 0.2 * np.sin(yy / 17.0)).astype(np.float32)
    return Scene(1, 1, image, cam, depth)


def _photo(width: int, height: int) -> np.ndarray:
    """A real photograph (scikit-image's astronaut): JPEG cost depends on content; noise is unrealistic."""
    from skimage import data

    return np.ascontiguousarray(cv2.resize(data.astronaut(), (width, height), interpolation=cv2.INTER_CUBIC))


def _ms(fn: Any, repeat: int) -> float:
    fn()  # warm-up (first call allocates)
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000.0 * float(np.median(times))


async def _round_trips(url: str, n: int) -> list[float]:
    """Control move -> plane reply latencies (s) through the WebSocket."""
    latencies: list[float] = []
    async with aiohttp.ClientSession() as http, http.ws_connect(url + "ws") as ws:
        await ws.receive_str(timeout=10)  # hello
        for i in range(n):
            t = time.perf_counter()
            await ws.send_str(json.dumps({"op": "controls", "focus_m": 0.5 + i * 0.01, "req": i + 1}))
            while True:
                msg = await ws.receive(timeout=10)
                if msg.type == aiohttp.WSMsgType.TEXT and json.loads(msg.data).get("type") == "plane":
                    break
            latencies.append(time.perf_counter() - t)
    return latencies


async def _preview_rate(server: UiServer, frames: int) -> float:
    rgb = _photo(640, 480)
    async with aiohttp.ClientSession() as http, http.ws_connect(server.url + "ws") as ws:
        await ws.receive_str(timeout=10)
        await ws.send_str(json.dumps({"op": "controls", "focus_m": 1.0}))  # neutral look: topic previews
        got = 0
        t = time.perf_counter()
        for _ in range(frames):
            server.post_preview(rgb)
            while True:  # one frame at a time: a renderer never runs ahead of what is shown
                msg = await ws.receive(timeout=10)
                if msg.type == aiohttp.WSMsgType.BINARY:
                    got += 1
                    break
        return got / (time.perf_counter() - t)


def run_benchmarks(quick: bool) -> list[dict[str, Any]]:
    repeat = 5 if quick else 20
    rows: list[dict[str, Any]] = []
    preview = _photo(640, 480)
    jpeg_ms = _ms(lambda: encode_jpeg(preview, 90), repeat)
    png_ms = _ms(lambda: encode_png(preview), repeat)
    # Encoding runs on a worker thread, pipelined with the refocus node's rendering: a third of the
    # 33 ms frame budget leaves the rest to the renderer.
    rows.append({"name": "preview frame encode 640x480 (JPEG q90)", "value": round(jpeg_ms, 2), "unit": "ms",
                 "target": "<= 11", "baseline": round(png_ms, 2), "baseline_name": "PNG",
                 "ratio": round(png_ms / jpeg_ms, 2)})

    scene = _scene(1280, 960)
    assert scene.depth is not None
    rgba = np.zeros((960, 1280, 4), np.uint8)
    rgba[300:600, 400:800, 3] = 255
    mask_png = encode_png(rgba)

    def painted_update() -> None:
        mask = decode_mask(mask_png, 1280, 960)
        resolve_plane(scene, PlaneRequest(0.0, mask=mask), 0.0)

    rows.append({"name": "painted mask -> focal plane, 1280x960", "value": round(_ms(painted_update, repeat), 2),
                 "unit": "ms", "target": "<= 50"})
    depth = scene.depth
    rows.append({"name": "depth overlay PNG, 1280x960",
                 "value": round(_ms(lambda: encode_png(colorize_depth(depth, *depth_range(depth))), repeat), 1),
                 "unit": "ms", "target": "<= 300"})

    server = UiServer(_InstantGraph(), UiSettings(port=0), logging.getLogger("ui-bench"))
    server.start()
    try:
        server.post_scene(_scene(1280, 960))
        latencies = asyncio.run(_round_trips(server.url, 30 if quick else 200))
        p95 = 1000.0 * float(np.percentile(latencies, 95))
        rows.append({"name": "control move -> plane reply over WebSocket (p95)", "value": round(p95, 2),
                     "unit": "ms", "target": "<= 33"})
        fps = asyncio.run(_preview_rate(server, 30 if quick else 150))
        rows.append({"name": "preview frames through the server, 640x480", "value": round(fps, 1),
                     "unit": "frames/s", "target": ">= 30"})
    finally:
        server.stop()
    return rows
