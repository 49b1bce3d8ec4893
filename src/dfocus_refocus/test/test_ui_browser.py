"""The focal-plane page in headless Chromium against a running graph: the ui node and the refocus
node as separate processes, fed a burst of a layered scene with known depth from this process.

Screenshots go to out/test-artifacts/ui/.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

pytestmark = [pytest.mark.ros, pytest.mark.browser]

REPO = Path(__file__).resolve().parents[3]
ARTIFACTS = REPO / "out" / "test-artifacts" / "ui"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync", "--disable-quic"]
WIDTH, HEIGHT = 480, 360
# Fronto-parallel layers, back to front: depth (m) and the reference-image box they cover (x0, y0, x1, y1).
LAYERS = [(4.0, (0, 0, WIDTH, HEIGHT)), (1.5, (40, 60, 220, 300)), (0.6, (280, 150, 440, 330))]


def layered_burst(sequence_id: int, seed: int) -> tuple[Any, np.ndarray]:
    """A burst of 3 cameras x 2 shots seeing textured fronto-parallel layers, each frame defocused with
    its camera's thin-lens circle of confusion and parallax-shifted by its baseline, plus the
    reference depth. Exact for pinhole cameras translated parallel to the layers."""
    from dfocus_capture.burst import Burst, BurstFrame
    from dfocus_capture.calibration import load_calibration

    rng = np.random.default_rng(seed)
    cal = load_calibration(REPO / "config" / "camera_array.yaml").subset(3).scaled(WIDTH, HEIGHT)
    textures = []
    for i in range(len(LAYERS)):
        noise = cv2.resize(rng.random((HEIGHT // 6, WIDTH // 6, 3)).astype(np.float32), (WIDTH, HEIGHT),
                           interpolation=cv2.INTER_CUBIC)
        stripes = (np.indices((HEIGHT, WIDTH)).sum(axis=0) // (6 + 5 * i) % 2).astype(np.float32)[:, :, None]
        tint = np.array([[0.9, 0.5, 0.3], [0.3, 0.8, 0.4], [0.4, 0.5, 0.95]][i], np.float32)
        textures.append(np.clip((0.35 + 0.4 * noise + 0.25 * stripes) * tint, 0, 1))
    depth = np.zeros((HEIGHT, WIDTH), np.float32)
    for z, (x0, y0, x1, y1) in LAYERS:
        depth[y0:y1, x0:x1] = z
    frames = []
    for shot in range(2):
        wobble = np.array([0.0004 * shot, -0.0003 * shot])  # actuator shift between shots, metres
        for c, cam0 in enumerate(cal.cameras):
            T = cam0.T_ref_cam.copy()
            T[:2, 3] += wobble
            cam = replace(cam0, T_ref_cam=T)
            out = np.zeros((HEIGHT, WIDTH, 3), np.float32)
            for (z, (x0, y0, x1, y1)), tex in zip(LAYERS, textures, strict=True):
                shift = np.float32([[1, 0, -cam.fx * T[0, 3] / z], [0, 1, -cam.fy * T[1, 3] / z]])
                alpha = np.zeros((HEIGHT, WIDTH), np.float32)
                alpha[y0:y1, x0:x1] = 1.0
                layer = cv2.warpAffine(tex * alpha[:, :, None], shift, (WIDTH, HEIGHT), borderMode=cv2.BORDER_REFLECT)
                alpha = cv2.warpAffine(alpha, shift, (WIDTH, HEIGHT), borderMode=cv2.BORDER_REPLICATE)
                coc = float(cam.coc_px(z))
                if coc > 1.0:
                    k = int(2 * round(coc / 2) + 1)
                    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)).astype(np.float32)
                    layer = cv2.filter2D(layer, -1, disc / disc.sum())
                    alpha = cv2.filter2D(alpha, -1, disc / disc.sum())
                out = out * (1 - alpha[:, :, None]) + layer
            noisy = out * 255 + rng.normal(0, 1.5, out.shape)
            image = np.clip(noisy, 0, 255).astype(np.uint8)
            frames.append(BurstFrame(camera_index=c, shot_index=shot, camera=cam, image=image, stamp_ns=0))
    burst = Burst(sequence_id=sequence_id, reference_camera=cal.reference_camera, num_shots=2,
                  num_cameras=len(cal.cameras), frames=frames, stamp_ns=time.time_ns())
    return burst, depth


@pytest.fixture
def graph(rclpy_context: Any, spin: Callable[..., Any], node_processes: Any, wait: Callable[..., None],
          tmp_path: Path) -> Iterator[dict[str, Any]]:
    """ui + refocus node processes in /test, a latched burst and depth published from here."""
    import rclpy
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header

    from dfocus_capture import qos
    from dfocus_capture.ros_convert import burst_to_msg, image_to_msg, ns_to_stamp
    from dfocus_interfaces.msg import FocusSequence

    node = rclpy.create_node("ui_test_feed", namespace="/test", context=rclpy_context)
    seq_pub = node.create_publisher(FocusSequence, "capture/sequence", qos.LATCHED)
    depth_pub = node.create_publisher(Image, "depth/image", qos.LATCHED)

    def publish_sequence(burst: Any) -> None:
        seq_pub.publish(burst_to_msg(burst))

    def publish_depth(burst: Any, depth: np.ndarray) -> None:
        header = Header(stamp=ns_to_stamp(burst.stamp_ns), frame_id="cam0_optical_frame")
        depth_pub.publish(image_to_msg(depth, "32FC1", header))

    burst, depth = layered_burst(41, seed=7)
    publish_sequence(burst)
    publish_depth(burst, depth)
    spin(node)
    ros = ["--ros-args", "-r", "__ns:=/test"]
    # depth_timeout_s: a render of a burst whose depth is still on the way waits long enough to be cancelled.
    refocus = node_processes.python("dfocus_refocus.refocus_node", *ros, "-p", "preview_width:=320",
                                    "-p", "depth_timeout_s:=30.0", name="refocus")
    ui = node_processes.python("dfocus_refocus.ui.ui_node", *ros, "-p", "port:=0", "-p", "server_wait_s:=1.0",
                               name="ui")
    url: list[str] = []

    def served() -> bool:
        assert ui.poll() is None, node_processes.output(ui)
        found = re.search(r"serving the focal-plane UI on (http://\S+)", node_processes.output(ui))
        if found:
            url.append(found.group(1))
        return bool(found)

    wait(served, 20.0, "the ui node to serve")
    yield {"url": url[0], "burst": burst, "depth": depth, "refocus": refocus, "ui": ui, "procs": node_processes,
           "publish_sequence": publish_sequence, "publish_depth": publish_depth}


@pytest.fixture
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


def image_pixels(page: Any, selector: str) -> np.ndarray:
    """The decoded pixels of an <img> as the browser shows them (drawn into a canvas)."""
    page.wait_for_function("(s) => { const i = document.querySelector(s); return i.complete && i.naturalWidth > 0; }",
                           arg=selector)
    flat = page.evaluate(
        """(sel) => { const img = document.querySelector(sel); const c = document.createElement('canvas');
        c.width = img.naturalWidth; c.height = img.naturalHeight; const ctx = c.getContext('2d');
        ctx.drawImage(img, 0, 0); return [c.width, c.height, Array.from(ctx.getImageData(0, 0, c.width,
        c.height).data)]; }""",
        selector,
    )
    w, h, data = flat
    return np.asarray(data, np.uint8).reshape(h, w, 4)[:, :, :3]


def preview_frames(page: Any) -> int:
    return int(page.eval_on_selector("#base", "el => Number(el.dataset.previewFrames || 0)"))


def open_page(browser: Any, url: str) -> Any:
    page = browser.new_page(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page.set_default_timeout(15000)
    page.goto(url)
    page.wait_for_selector("#link.up")
    page.wait_for_function("() => !document.querySelector('#stage').classList.contains('empty')")
    page.wait_for_selector('#stage[data-depth-loaded="1"]')
    return page


def set_slider(page: Any, selector: str, value: float) -> None:
    page.eval_on_selector(
        selector, "(el, v) => { el.value = String(v); el.dispatchEvent(new Event('input', {bubbles: true})); }", value
    )


def test_page_preview_paint_render_cancel_and_node_down(graph: dict[str, Any], browser: Any,
                                                        wait: Callable[..., None]) -> None:
    page = open_page(browser, graph["url"])
    assert page.inner_text("#ticks")  # colour bar labelled in metres
    page.mouse.move(*_screen_point(page, 100, 150))  # over the 1.5 m layer
    assert "1.500 m" in page.inner_text("#readout")
    # The overlay colours depth with the colour bar's map: near end at 0.6 m, far end at 4 m.
    overlay = image_pixels(page, "#overlay").astype(int)
    stops = np.asarray(page.evaluate("() => fetch('api/state').then(r => r.json()).then(s => s.scene.colormap)"))
    assert np.abs(overlay[250, 350] - stops[0]).max() <= 2 and np.abs(overlay[20, 20] - stops[-1]).max() <= 2
    page.screenshot(path=str(ARTIFACTS / "01_loaded.png"))

    # Live preview: the refocus node renders refocus/preview for each plane; a move changes the pixels.
    set_slider(page, "#focus", 20)  # near the front of the scene
    page.wait_for_function("() => Number(document.querySelector('#base').dataset.previewFrames || 0) > 0",
                           timeout=60000)  # the first preview waits for registration + fusion
    page.wait_for_timeout(300)
    near_focus = image_pixels(page, "#base")
    frames = preview_frames(page)
    set_slider(page, "#focus", 980)  # the background
    page.wait_for_function(f"() => Number(document.querySelector('#base').dataset.previewFrames) > {frames}")
    page.wait_for_timeout(300)
    far_focus = image_pixels(page, "#base")
    assert near_focus.shape == far_focus.shape == (HEIGHT * 320 // WIDTH, 320, 3)
    diff = np.abs(near_focus.astype(int) - far_focus.astype(int)).mean()
    assert diff > 2.0, f"preview did not change with the focus (mean abs diff {diff:.2f})"
    page.screenshot(path=str(ARTIFACTS / "02_preview_far.png"))

    # Paint over the near layer: the displayed range is derived from the depth under the paint.
    page.check("input[name=tool][value=brush]")
    x0, y0 = _screen_point(page, 300, 180)
    x1, y1 = _screen_point(page, 420, 300)
    page.mouse.move(x0, y0)
    page.mouse.down()
    for t in np.linspace(0, 1, 8):
        page.mouse.move(x0 + (x1 - x0) * t, y0 + (y1 - y0) * t)
    page.mouse.up()
    page.wait_for_function("() => document.querySelector('#range').dataset.fromMask === '1'")
    rng = page.eval_on_selector("#range", "el => [Number(el.dataset.near), Number(el.dataset.far)]")
    mask = page.evaluate("""() => { const c = document.querySelector('#paint');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        const out = []; for (let i = 3; i < d.length; i += 4) out.push(d[i] >= 128 ? 1 : 0); return out; }""")
    painted = np.asarray(mask, bool).reshape(HEIGHT, WIDTH)
    lo, hi = np.percentile(graph["depth"][painted], (5, 95))
    assert rng == pytest.approx([lo, hi], abs=1e-3)
    assert rng == pytest.approx([0.6, 0.6], abs=0.01)  # all paint is on the 0.6 m layer
    assert "0.60 m – 0.60 m" in page.inner_text("#range")
    page.screenshot(path=str(ARTIFACTS / "03_painted.png"))

    # Render at full resolution and download the PNG.
    page.click("#render")
    page.wait_for_function("() => !document.querySelector('#dl-result').classList.contains('disabled')",
                           timeout=60000)
    assert "Rendered 480×360" in page.inner_text("#render-status")
    with page.expect_download() as dl:
        page.click("#dl-result")
    saved = ARTIFACTS / "render.png"
    dl.value.save_as(saved)
    result = cv2.imread(str(saved), cv2.IMREAD_UNCHANGED)
    assert result is not None and result.shape == (HEIGHT, WIDTH, 3)
    page.screenshot(path=str(ARTIFACTS / "04_rendered.png"))
    with page.expect_download() as dl:
        page.click("#dl-npy")
    dl.value.save_as(ARTIFACTS / "depth.npy")
    np.testing.assert_array_equal(np.load(ARTIFACTS / "depth.npy"), graph["depth"])

    # A new burst arrives without its depth: the page switches to it; a render waits for the depth and is
    # cancelled from the page; then the depth arrives and the overlay appears.
    burst2, depth2 = layered_burst(42, seed=8)
    graph["publish_sequence"](burst2)
    page.wait_for_selector('#base[data-sequence="42"]')
    page.wait_for_function("() => document.querySelector('#colorbar-box').hidden")
    assert "no depth map yet" in page.inner_text("#banner-text")
    page.click("#render")
    page.wait_for_function("() => document.querySelector('#render-status').textContent.includes('waiting for depth')")
    page.screenshot(path=str(ARTIFACTS / "05_waiting_for_depth.png"))
    page.click("#cancel")
    page.wait_for_function("() => !document.querySelector('#render').disabled")
    assert "cancelled" in page.inner_text("#render-status").lower()
    page.screenshot(path=str(ARTIFACTS / "06_cancelled.png"))
    graph["publish_depth"](burst2, depth2)
    page.wait_for_selector('#stage[data-depth-loaded="1"]')
    page.mouse.move(*_screen_point(page, 350, 250))
    assert "0.600 m" in page.inner_text("#readout")
    assert page.is_hidden("#banner")  # the "no depth yet" note went away with the depth

    # Stop the refocus node: a render ends with a plain-words error, quickly, and the page stays usable.
    procs = graph["procs"]
    refocus = graph["refocus"]
    import os
    import signal

    os.killpg(refocus.pid, signal.SIGINT)
    refocus.wait(timeout=15)
    page.click("#render")
    page.wait_for_function("() => document.querySelector('#banner-text').textContent.includes('not running')",
                           timeout=20000)
    text = page.inner_text("#banner-text")
    assert "refocus node is not running" in text, text
    assert not page.is_disabled("#render")
    page.screenshot(path=str(ARTIFACTS / "07_node_down.png"))
    assert graph["ui"].poll() is None, procs.output(graph["ui"])


def _screen_point(page: Any, x: float, y: float) -> tuple[float, float]:
    """Reference-image pixel (x, y) -> page coordinates over the viewer."""
    box = page.locator("#paint").bounding_box()
    return box["x"] + (x + 0.5) * box["width"] / WIDTH, box["y"] + (y + 0.5) * box["height"] / HEIGHT
