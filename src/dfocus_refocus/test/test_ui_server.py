"""The ui web server without ROS or a browser: access control, the page's requests over HTTP and the
WebSocket against an in-process graph double, error wording, and the files it serves."""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import cv2
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dfocus_capture.calibration import load_calibration
from dfocus_refocus.focal_plane import MASK_PERCENTILES, FocalPlaneError
from dfocus_refocus.ui import auth
from dfocus_refocus.ui.controls import parse_capture, parse_controls
from dfocus_refocus.ui.errors import UiError, plain_message
from dfocus_refocus.ui.graph import (
    CaptureRequest,
    CaptureResult,
    GoalAbortedError,
    GoalCanceledError,
    GoalRejectedError,
    GraphTimeoutError,
    NodeUnavailableError,
    PlaneRequest,
    Progress,
    ProgressCallback,
    RenderRequest,
    RenderResult,
    SequenceInfo,
)
from dfocus_refocus.ui.scene import (
    Scene,
    colorize_depth,
    colormap_stops,
    decode_mask,
    depth_png16,
    depth_range,
    encode_png,
    point_cloud_ply,
    resolve_plane,
)
from dfocus_refocus.ui.server import UiServer, UiSettings
from dfocus_refocus.ui.session import FRAME_PREVIEW

CONFIG = Path(__file__).resolve().parents[3] / "config"
W, H = 160, 120


def make_scene(sequence_id: int = 5) -> Scene:
    cam = load_calibration(CONFIG / "camera_array.yaml").reference.scaled(W, H)
    image = np.zeros((H, W, 3), np.uint8)
    image[:, :, 0] = np.arange(W, dtype=np.uint8)[None, :]
    depth = np.full((H, W), 3.0, np.float32)
    depth[20:60, 30:90] = 0.8
    depth[100:, :10] = np.nan
    return Scene(sequence_id, 1_000_000_000 * sequence_id, image, cam, depth)


class FakeGraph:
    """A graph double: records what the server asked for and answers as scripted."""

    def __init__(self) -> None:
        self.planes: list[PlaneRequest] = []
        self.renders: list[RenderRequest] = []
        self.render_error: Exception | None = None
        self.render_delay_s = 0.0
        self.cancelled = False
        self.sequences_error: Exception | None = None

    async def render(self, request: RenderRequest, progress: ProgressCallback) -> RenderResult:
        self.renders.append(request)
        progress(Progress("rendering", 0.5))
        try:
            await asyncio.sleep(self.render_delay_s)
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        if self.render_error is not None:
            raise self.render_error
        w = request.output_width or W
        return RenderResult(np.full((w * H // W, w, 3), 77, np.uint8), 5, 0.8, 0.8, 0.8, "ok")

    async def capture(self, request: CaptureRequest, progress: ProgressCallback) -> CaptureResult:
        for i in range(request.num_shots):
            progress(Progress("exposing", (i + 1) / request.num_shots, i, request.num_shots))
        return CaptureResult(6, "captured")

    async def list_sequences(self) -> list[SequenceInfo]:
        if self.sequences_error is not None:
            raise self.sequences_error
        return [SequenceInfo(4, 4_000_000_000, True), SequenceInfo(5, 5_000_000_000, True)]

    def publish_focal_plane(self, plane: PlaneRequest) -> None:
        self.planes.append(plane)


@pytest.fixture
def served() -> Iterator[tuple[UiServer, FakeGraph]]:
    graph = FakeGraph()
    server = UiServer(graph, UiSettings(port=0, preview_width=80), logging.getLogger("ui-test"))
    server.start()
    server.post_scene(make_scene())
    yield server, graph
    server.stop()


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 20.0))


async def next_of(ws: aiohttp.ClientWebSocketResponse, kind: str) -> dict[str, Any]:
    """The next JSON message of this type (others, like progress, are skipped)."""
    while True:
        msg = await ws.receive(timeout=10.0)
        if msg.type == aiohttp.WSMsgType.TEXT:
            data = json.loads(msg.data)
            if data["type"] == kind:
                return data
        elif msg.type != aiohttp.WSMsgType.BINARY:
            raise AssertionError(f"socket ended while waiting for {kind}: {msg}")


# --- access control -----------------------------------------------------------------------------
def test_non_loopback_needs_a_long_enough_token() -> None:
    auth.check_bind("127.0.0.1", "")
    auth.check_bind("::1", "")
    with pytest.raises(auth.UiConfigError, match="needs the 'token'"):
        UiServer(FakeGraph(), UiSettings(host="0.0.0.0"), logging.getLogger("ui-test"))
    with pytest.raises(auth.UiConfigError, match="at least 8"):
        auth.check_bind("192.168.1.2", "short")
    auth.check_bind("0.0.0.0", "a-long-secret")


def test_token_on_http_cookie_and_websocket() -> None:
    server = UiServer(FakeGraph(), UiSettings(port=0, token="s3cret-token"), logging.getLogger("ui-test"))
    url = server.start()

    async def go() -> None:
        # unsafe: aiohttp's client keeps no cookies from IP-address hosts unless told to (browsers do).
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            async with http.get(url) as r:
                assert r.status == 401 and "token" in await r.text()
            async with http.get(url + "?token=wrong-token") as r:
                assert r.status == 401
            async with http.get(url + "api/state", headers={"Authorization": "Bearer s3cret-token"}) as r:
                assert r.status == 200
            async with http.get(url + "?token=s3cret-token") as r:
                assert r.status == 200 and "dfocus" in await r.text()
            # The cookie from the page load now carries the token for the page's own requests.
            async with http.get(url + "static/app.js") as r:
                assert r.status == 200
            async with http.ws_connect(url + "ws") as ws:
                assert (await next_of(ws, "hello"))["scene"] is None
        async with aiohttp.ClientSession() as stranger:
            with pytest.raises(aiohttp.WSServerHandshakeError) as exc:
                await stranger.ws_connect(url + "ws")
            assert exc.value.status == 401

    try:
        run(go())
    finally:
        server.stop()


def test_websocket_from_another_origin_is_refused(served: tuple[UiServer, FakeGraph]) -> None:
    server, _ = served

    async def go() -> None:
        async with aiohttp.ClientSession() as http:
            with pytest.raises(aiohttp.WSServerHandshakeError) as exc:
                await http.ws_connect(server.url + "ws", headers={"Origin": "http://evil.example"})
            assert exc.value.status == 403
            host = server.url.split("/")[2]
            async with http.ws_connect(server.url + "ws", headers={"Origin": f"http://{host}"}) as ws:
                assert (await next_of(ws, "hello"))["scene"]["sequence_id"] == 5

    run(go())


def test_a_foreign_host_name_is_refused_dns_rebinding(served: tuple[UiServer, FakeGraph]) -> None:
    # evil.example resolving to 127.0.0.1: Origin and Host agree, so only the Host check stops it.
    server, _ = served
    port = server.url.split("/")[2].rsplit(":", 1)[1]
    foreign = {"Host": f"evil.example:{port}", "Origin": f"http://evil.example:{port}"}

    async def go() -> None:
        async with aiohttp.ClientSession() as http:
            with pytest.raises(aiohttp.WSServerHandshakeError) as exc:
                await http.ws_connect(server.url + "ws", headers=foreign)
            assert exc.value.status == 421
            async with http.get(server.url + "api/state", headers=foreign) as r:
                assert r.status == 421 and "DNS rebinding" in await r.text()
            for name in ("localhost", "127.0.0.1", "[::1]"):
                async with http.get(server.url + "api/state", headers={"Host": f"{name}:{port}"}) as r:
                    assert r.status == 200, name

    run(go())


@given(st.one_of(st.text(max_size=40), st.sampled_from(["localhost", "LOCALHOST:80", "[::1]:8080", "127.0.0.9:1",
                                                        "evil.example:8080", "[", "[::1", "::1]", "localhost.evil"])))
def test_host_and_origin_checks_never_raise_and_allow_only_loopback_names(host: str) -> None:
    auth.same_origin(f"http://{host}", host)
    if auth.host_allowed(host, "127.0.0.1"):
        name = host[1:host.index("]")] if host.startswith("[") else host.rsplit(":", 1)[0]
        assert auth.is_loopback(name.lower()), host


# --- plain words ----------------------------------------------------------------------------------
def test_graph_errors_in_plain_words() -> None:
    down = plain_message("render", NodeUnavailableError("refocus", "refocus", 2.0))
    assert down.startswith("Rendering failed: the refocus node is not running") and "2 s" in down
    assert "took longer than 120 s" in plain_message("render", GraphTimeoutError("the 'refocus' goal", 120.0))
    assert plain_message("render", GoalCanceledError("canceled")) == "Rendering was cancelled."
    assert "refused" in plain_message("capture", GoalRejectedError("busy"))
    assert "Press Capture first" in plain_message("render", GoalAbortedError("no sequence in the cache yet"))
    assert plain_message("preview", GoalAbortedError("near_m 3 m is beyond far_m 1 m")) == (
        "The preview failed: near_m 3 m is beyond far_m 1 m")


# --- control values -------------------------------------------------------------------------------
def test_controls_are_checked() -> None:
    c = parse_controls({"focus_m": 1.2, "near_m": 1.0, "far_m": 2.0, "f_number": 2.8, "tone": {"exposure_ev": 1}})
    assert (c.focus_m, c.near_m, c.far_m, c.f_number, c.tone.exposure_ev) == (1.2, 1.0, 2.0, 2.8, 1.0)
    for bad in ({"focus_m": math.nan}, {"focus_m": -1}, {"bokeh_strength": 9}, {"f_number": 0.2},
                {"focus_m": "1"}, {"focus_m": True}, {"tone": {"contrast": 7}}, {"tone": 3}, {"sequence_id": 1.5}):
        with pytest.raises(UiError):
            parse_controls(bad)
    assert parse_capture({"num_shots": 7, "focus_mode": 1}).num_shots == 7
    with pytest.raises(UiError, match="num_shots"):
        parse_capture({"num_shots": 11})


# --- scene products -------------------------------------------------------------------------------
def test_overlay_colours_range_and_invalid_pixels() -> None:
    scene = make_scene()
    assert scene.depth is not None
    lo, hi = depth_range(scene.depth)
    assert (lo, hi) == pytest.approx((0.8, 3.0))
    rgba = colorize_depth(scene.depth, lo, hi)
    stops = colormap_stops()
    assert rgba[30, 40, :3].tolist() == stops[0]  # near end of the colour bar
    assert rgba[5, 5, :3].tolist() == stops[-1]  # far end
    assert rgba[110, 5, 3] == 0 and rgba[5, 5, 3] == 255  # invalid depth is transparent
    with pytest.raises(UiError, match="no valid"):
        depth_range(np.full((4, 4), np.nan, np.float32))


def test_depth_png16_and_point_cloud() -> None:
    scene = make_scene()
    assert scene.depth is not None
    mm = cv2.imdecode(np.frombuffer(depth_png16(scene.depth), np.uint8), cv2.IMREAD_UNCHANGED)
    assert mm.dtype == np.uint16 and mm[30, 40] == 800 and mm[5, 5] == 3000 and mm[110, 5] == 0
    ply = point_cloud_ply(scene.depth, scene.image, scene.camera)
    header, body = ply.split(b"end_header\n", 1)
    n = int(header.split(b"element vertex ")[1].split(b"\n")[0])
    assert n == int(np.isfinite(scene.depth).sum())
    v = np.frombuffer(body, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("r", "u1"), ("g", "u1"), ("b", "u1")])
    assert v.size == n
    # The first vertex is pixel (0, 0): back-project it with the camera's intrinsics.
    cam = scene.camera
    assert (v["x"][0], v["y"][0], v["z"][0]) == pytest.approx(((0 - cam.cx) / cam.fx * 3, (0 - cam.cy) / cam.fy * 3,
                                                                3.0), rel=1e-5)
    # Pixel (u=40, v=30) lies at 0.8 m and re-projects onto itself.
    i = 30 * W + 40
    u_back = v["x"][i] / v["z"][i] * cam.fx + cam.cx
    assert v["z"][i] == pytest.approx(0.8) and u_back == pytest.approx(40, abs=1e-3) and v["r"][i] == 40


def test_mask_decoding_and_the_plane_it_sets() -> None:
    scene = make_scene()
    rgba = np.zeros((H, W, 4), np.uint8)
    rgba[25:50, 35:80, 3] = 255  # painted inside the 0.8 m box
    rgba[25:50, 100:104, 3] = 255  # a few strokes over the 3 m background
    mask = decode_mask(encode_png(rgba), W, H)
    assert mask is not None and mask.dtype == np.uint8 and int((mask > 0).sum()) == 25 * 45 + 25 * 4
    sharp = resolve_plane(scene, PlaneRequest(0.0, mask=mask), 0.0)
    assert scene.depth is not None
    lo, hi = np.percentile(scene.depth[mask > 0], MASK_PERCENTILES)
    assert (sharp.near_m, sharp.far_m) == pytest.approx((lo, hi))
    assert sharp.hard and sharp.near_m == pytest.approx(0.8)
    assert decode_mask(encode_png(np.zeros((H, W, 4), np.uint8)), W, H) is None
    with pytest.raises(UiError, match="160x120"):
        decode_mask(encode_png(rgba[:60]), W, H)
    with pytest.raises(UiError, match="PNG"):
        decode_mask(b"not a png", W, H)
    # A PNG whose header claims 12000x12000 (a few hundred bytes that would decode to 576 MB of RGBA)
    # is refused on its header, before any decoding.
    bomb = bytearray(encode_png(rgba))
    bomb[16:24] = (12000).to_bytes(4, "big") * 2
    with pytest.raises(UiError, match="12000x12000, the image is 160x120"):
        decode_mask(bytes(bomb), W, H)
    nan_mask = np.zeros((H, W), np.uint8)
    nan_mask[105:, :5] = 255
    with pytest.raises(FocalPlaneError, match="no valid depth"):
        resolve_plane(scene, PlaneRequest(0.0, mask=nan_mask), 0.0)


# --- the page's session over the WebSocket ---------------------------------------------------------
def test_controls_publish_the_plane_and_report_the_range(
    served: tuple[UiServer, FakeGraph], wait: Callable[..., None]
) -> None:
    server, graph = served

    async def go() -> None:
        async with aiohttp.ClientSession() as http, http.ws_connect(server.url + "ws") as ws:
            await next_of(ws, "hello")
            await ws.send_str(json.dumps({"op": "controls", "focus_m": 1.5, "near_m": 1.0, "far_m": 2.0}))
            plane = await next_of(ws, "plane")
            assert plane["ok"] and (plane["near_m"], plane["far_m"]) == pytest.approx((1.0, 2.0))
            await ws.send_str(json.dumps({"op": "controls", "focus_m": 3.0, "near_m": 1.0, "far_m": 2.0}))
            bad = await next_of(ws, "plane")
            assert not bad["ok"] and "not possible" in bad["message"]
            # Paint: a mask PNG, then the plane comes from the painted depth.
            rgba = np.zeros((H, W, 4), np.uint8)
            rgba[25:50, 35:80, 3] = 255
            await ws.send_bytes(encode_png(rgba))
            widened = await next_of(ws, "plane")  # mask + explicit plane: the range covers both
            assert widened["from_mask"] and (widened["near_m"], widened["far_m"]) == pytest.approx((0.8, 3.0))
            await ws.send_str(json.dumps({"op": "controls", "focus_m": 0}))
            painted = await next_of(ws, "plane")
            assert painted["from_mask"] and painted["focus_m"] == pytest.approx(0.8)
            # Garbage keeps the session alive with a reason.
            await ws.send_str("{not json")
            assert "malformed" in (await next_of(ws, "error"))["message"]
            await ws.send_str(json.dumps({"op": "controls", "focus_m": -2}))
            assert "focus_m" in (await next_of(ws, "error"))["message"]
            # Deep nesting, a 5000-digit number and an integer beyond any float: an error frame each.
            for text, reason in [("[" * 100_000, "malformed"), ('{"op": "controls", "focus_m": 1' + "0" * 5000 + "}",
                                 "malformed"), (json.dumps({"op": "controls", "focus_m": 10**400}), "focus_m")]:
                await ws.send_str(text)
                assert reason in (await next_of(ws, "error"))["message"]
            await ws.send_str(json.dumps({"op": "controls", "focus_m": 0}))
            assert (await next_of(ws, "plane"))["from_mask"]  # and the session still serves

    run(go())
    # Publishing is rate-limited but always ends with the newest plane: the painted one.
    wait(lambda: bool(graph.planes) and graph.planes[-1].mask is not None, 5.0, "the painted plane")
    assert graph.planes[-1].focus_m == 0.0
    # A refocus node that subscribes late gets the current plane again.
    published = len(graph.planes)
    server.post_plane_subscriber()
    wait(lambda: len(graph.planes) == published + 1, 5.0, "the plane re-published for a new subscriber")
    assert graph.planes[-1] is graph.planes[-2]
    assert graph.planes[0].focus_m == 1.5


def test_render_download_cancel_and_node_down(served: tuple[UiServer, FakeGraph]) -> None:
    server, graph = served

    async def go() -> None:
        async with aiohttp.ClientSession() as http, http.ws_connect(server.url + "ws") as ws:
            await next_of(ws, "hello")
            await ws.send_str(json.dumps({"op": "render", "focus_m": 0.8}))
            done = await next_of(ws, "render_done")
            assert (done["width"], done["height"]) == (W, H)
            async with http.get(server.url + done["url"]) as r:
                assert r.status == 200 and "attachment" in r.headers["Content-Disposition"]
                png = cv2.imdecode(np.frombuffer(await r.read(), np.uint8), cv2.IMREAD_COLOR)
                assert png.shape == (H, W, 3) and int(png[0, 0, 0]) == 77

            graph.render_delay_s = 30.0
            await ws.send_str(json.dumps({"op": "render", "focus_m": 0.8}))
            await next_of(ws, "render_progress")
            await ws.send_str(json.dumps({"op": "render", "focus_m": 0.8}))
            assert "already running" in (await next_of(ws, "error"))["message"]
            await ws.send_str(json.dumps({"op": "cancel"}))
            failed = await next_of(ws, "render_failed")
            assert failed["cancelled"] and "cancelled" in failed["message"]

            graph.render_delay_s = 0.0
            graph.render_error = NodeUnavailableError("refocus", "refocus", 2.0)
            await ws.send_str(json.dumps({"op": "render", "focus_m": 0.8}))
            failed = await next_of(ws, "render_failed")
            assert "refocus node is not running" in failed["message"] and not failed["cancelled"]

    run(go())
    assert graph.cancelled, "cancel did not reach the graph call"


def test_looks_the_topic_cannot_carry_are_previewed_with_small_goals(served: tuple[UiServer, FakeGraph]) -> None:
    server, graph = served

    async def go() -> None:
        async with aiohttp.ClientSession() as http, http.ws_connect(server.url + "ws") as ws:
            await next_of(ws, "hello")
            await ws.send_str(json.dumps({"op": "controls", "focus_m": 1.0, "f_number": 4.0}))
            while True:
                msg = await ws.receive(timeout=10.0)
                if msg.type == aiohttp.WSMsgType.BINARY:
                    break
            assert msg.data[0] == FRAME_PREVIEW
            jpeg = cv2.imdecode(np.frombuffer(msg.data[1:], np.uint8), cv2.IMREAD_COLOR)
            assert jpeg.shape == (60, 80, 3)

    run(go())
    assert graph.renders[-1].output_width == 80 and graph.renders[-1].f_number == 4.0
    assert not graph.planes


def test_topic_previews_reach_the_page_and_files_download(served: tuple[UiServer, FakeGraph]) -> None:
    server, graph = served

    async def go() -> None:
        async with aiohttp.ClientSession() as http, http.ws_connect(server.url + "ws") as ws:
            await next_of(ws, "hello")
            server.post_preview(np.full((60, 80, 3), 200, np.uint8))  # as from the refocus/preview callback
            msg = await ws.receive(timeout=10.0)
            assert msg.type == aiohttp.WSMsgType.BINARY and msg.data[0] == FRAME_PREVIEW
            async with http.get(server.url + "api/scene/5/depth.npy") as r:
                assert r.status == 200 and "dfocus_seq5_depth.npy" in r.headers["Content-Disposition"]
                import io

                depth = np.load(io.BytesIO(await r.read()))
                assert depth.shape == (H, W) and depth[30, 40] == pytest.approx(0.8)
            async with http.get(server.url + "api/scene/99/points.ply") as r:
                assert r.status == 404 and "no longer held" in await r.text()
            graph.sequences_error = NodeUnavailableError("refocus", "refocus/list_sequences", 2.0)
            await ws.send_str(json.dumps({"op": "sequences"}))
            listing = await next_of(ws, "sequences")
            assert "not running" in listing["warning"] and [i["sequence_id"] for i in listing["items"]] == [5]
            graph.sequences_error = None
            await ws.send_str(json.dumps({"op": "capture", "num_shots": 3}))
            progress = await next_of(ws, "capture_progress")
            assert progress["num_shots"] == 3
            assert (await next_of(ws, "capture_done"))["sequence_id"] == 6

    run(go())
