"""The ui web server: aiohttp on its own asyncio thread inside the node process.

The node hands it scenes, depth maps and preview frames from rclpy callbacks through the `post_*`
methods (thread-safe: they only schedule work on the server's loop with call_soon_threadsafe), and
the server calls the graph through the GraphPort. Nothing here blocks the ROS executor, and nothing
in a request handler waits on the graph without a timeout.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from aiohttp import WSMsgType, web

from dfocus_refocus.ui import auth
from dfocus_refocus.ui.errors import UiError, plain_message
from dfocus_refocus.ui.graph import GraphError, GraphPort, PlaneRequest
from dfocus_refocus.ui.scene import (
    Scene,
    colorize_depth,
    colormap_stops,
    depth_npy,
    depth_png16,
    depth_range,
    encode_jpeg,
    encode_png,
    point_cloud_ply,
)
from dfocus_refocus.ui.session import FRAME_PREVIEW, Session

STATIC = Path(str(resources.files("dfocus_refocus.ui") / "static"))
KEEP_RESULTS = 8  # rendered PNGs kept for download


class Log(Protocol):
    def info(self, message: str) -> Any: ...

    def warning(self, message: str) -> Any: ...

    def error(self, message: str) -> Any: ...


@dataclass(frozen=True)
class UiSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    token: str = ""
    preview_rate_hz: float = 30.0  # most focal planes published per second
    preview_width: int = 640  # width of previews rendered through the refocus action
    jpeg_quality: int = 90
    max_sequences: int = 8  # scenes kept for the picker (reference image + depth each)


class UiServer:
    def __init__(self, graph: GraphPort, settings: UiSettings, log: Log) -> None:
        auth.check_bind(settings.host, settings.token)
        self.graph = graph
        self.settings = settings
        self.log = log
        self.scenes: OrderedDict[int, Scene] = OrderedDict()
        self.orphan_depths: OrderedDict[int, np.ndarray] = OrderedDict()  # by stamp, before their sequence
        self.sessions: set[Session] = set()
        self.assets: dict[tuple[int, str], bytes] = {}
        self.results: OrderedDict[str, tuple[str, bytes]] = OrderedDict()
        self.result_ids = itertools.count(1)
        self.url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._stopped: asyncio.Event | None = None
        self._plane_pending: PlaneRequest | None = None
        self._plane_last: PlaneRequest | None = None
        self._plane_handle: asyncio.TimerHandle | None = None
        self._last_publish = 0.0
        self._preview_pending: np.ndarray | None = None
        self._preview_busy = False

    # --- lifetime (called from the node's thread) --------------------------------------------------
    def start(self, timeout_s: float = 10.0) -> str:
        """Bind and serve on a new thread; returns the URL. Raises OSError if the port is taken."""
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._serve(ready))
            except BaseException as exc:  # reported to start(), the thread ends
                failure.append(exc)
                ready.set()
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name="ui-server", daemon=True)
        self._thread.start()
        if not ready.wait(timeout_s):
            raise RuntimeError(f"the web server did not start within {timeout_s:g} s")
        if failure:
            raise failure[0]
        return self.url

    def stop(self, timeout_s: float = 5.0) -> None:
        loop, stopped = self._loop, self._stopped
        if loop is not None and stopped is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(stopped.set)
            except RuntimeError:
                pass  # loop already closed
        if self._thread is not None:
            self._thread.join(timeout_s)

    async def _serve(self, ready: threading.Event) -> None:
        self._stopped = asyncio.Event()
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.host, self.settings.port)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{port}/"
        ready.set()
        await self._stopped.wait()
        for s in list(self.sessions):
            await s.close()
            await s.ws.close()
        await self._runner.cleanup()

    def _call(self, fn: Callable[..., Any], *args: Any) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:
            pass  # shutting down

    # --- inputs from the graph (any thread) ---------------------------------------------------------
    def post_scene(self, scene: Scene) -> None:
        self._call(self._on_scene, scene)

    def post_depth(self, stamp_ns: int, depth: np.ndarray) -> None:
        self._call(self._on_depth, stamp_ns, depth)

    def post_preview(self, rgb: np.ndarray) -> None:
        self._call(self._on_preview, rgb)

    def post_plane_subscriber(self) -> None:
        """A refocus node (re)appeared on refocus/focal_plane: planes published before it matched are lost
        (the topic is volatile), so it gets the current one again."""
        self._call(self._republish_plane)

    def _republish_plane(self) -> None:
        if self._plane_last is not None and self._plane_pending is None:
            self.publish_plane(self._plane_last)

    def _on_scene(self, scene: Scene) -> None:
        scene.depth = self.orphan_depths.pop(scene.stamp_ns, scene.depth)
        self.scenes[scene.sequence_id] = scene
        self.scenes.move_to_end(scene.sequence_id)
        while len(self.scenes) > self.settings.max_sequences:
            old, _ = self.scenes.popitem(last=False)
            self._drop_assets(old)
        self._drop_assets(scene.sequence_id)
        self.log.info(f"sequence {scene.sequence_id} ({scene.size[0]}x{scene.size[1]}) is on the page")
        self._broadcast_scene(scene)

    def _on_depth(self, stamp_ns: int, depth: np.ndarray) -> None:
        # A depth map belongs to the sequence with the same header stamp (as in the refocus node).
        try:
            depth_range(depth)
        except UiError as exc:
            self.log.warning(f"depth map ignored: {exc}")
            return
        scene = next((s for s in self.scenes.values() if s.stamp_ns == stamp_ns), None)
        if scene is None:
            self.orphan_depths[stamp_ns] = depth  # its sequence is still on the way
            while len(self.orphan_depths) > 2:
                self.orphan_depths.popitem(last=False)
            return
        scene.depth = depth
        self._drop_assets(scene.sequence_id)
        self._broadcast_scene(scene)

    def _drop_assets(self, sequence_id: int) -> None:
        for key in [k for k in self.assets if k[0] == sequence_id]:
            del self.assets[key]

    def _broadcast_scene(self, scene: Scene) -> None:
        info = self.scene_info(scene)
        for s in list(self.sessions):
            asyncio.ensure_future(s.send("scene", **info))

    def _on_preview(self, rgb: np.ndarray) -> None:
        # Keep only the newest frame while one is being encoded: stale previews are dropped.
        self._preview_pending = rgb
        if not self._preview_busy:
            self._preview_busy = True
            asyncio.ensure_future(self._encode_previews())

    async def _encode_previews(self) -> None:
        try:
            while self._preview_pending is not None:
                rgb, self._preview_pending = self._preview_pending, None
                jpeg = await asyncio.to_thread(encode_jpeg, rgb, self.settings.jpeg_quality)
                for s in list(self.sessions):
                    scene = self.scene(s.controls.sequence_id)
                    if scene is not None and s.live_via_topic(scene):
                        await s.send_frame(FRAME_PREVIEW, jpeg)
        finally:
            self._preview_busy = False

    # --- outputs to the graph ----------------------------------------------------------------------
    def publish_plane(self, plane: PlaneRequest) -> None:
        """Publish at most preview_rate_hz planes per second, always ending with the newest one."""
        self._plane_pending = plane
        if self._plane_handle is not None:
            return
        loop = asyncio.get_running_loop()
        wait = self._last_publish + 1.0 / self.settings.preview_rate_hz - time.monotonic()
        self._plane_handle = loop.call_later(max(0.0, wait), self._flush_plane)

    def _flush_plane(self) -> None:
        self._plane_handle = None
        plane, self._plane_pending = self._plane_pending, None
        if plane is None:
            return
        self._last_publish = time.monotonic()
        self._plane_last = plane
        try:
            self.graph.publish_focal_plane(plane)
        except GraphError as exc:
            self.log.warning(f"focal plane not published: {exc}")

    # --- state ------------------------------------------------------------------------------------
    def scene(self, sequence_id: int) -> Scene | None:
        """The scene with this id, or the latest for 0."""
        if sequence_id == 0:
            return next(reversed(self.scenes.values()), None)
        return self.scenes.get(sequence_id)

    def scene_info(self, scene: Scene) -> dict[str, Any]:
        base = f"api/scene/{scene.sequence_id}/"
        latest = self.scene(0)
        info: dict[str, Any] = {
            "sequence_id": scene.sequence_id,
            "stamp_ns": scene.stamp_ns,
            "width": scene.size[0],
            "height": scene.size[1],
            "latest": latest is not None and latest.sequence_id == scene.sequence_id,
            "reference_url": base + "reference.jpg",
            "has_depth": scene.depth is not None,
            "camera_f_number": scene.camera.f_number,
        }
        if scene.depth is not None:
            lo, hi = depth_range(scene.depth)
            info.update(
                depth_min_m=lo, depth_max_m=hi, colormap=colormap_stops(),
                depth_width=int(scene.depth.shape[1]), depth_height=int(scene.depth.shape[0]),
                overlay_url=base + "overlay.png", depth_raw_url=base + "depth.f32",
                depth_npy_url=base + "depth.npy", depth_png_url=base + "depth.png", ply_url=base + "points.ply",
            )
        return info

    async def sequences(self) -> tuple[list[dict[str, Any]], str]:
        """The picker's list: what the refocus node can render, marked with what this page holds."""
        local = {sid: s for sid, s in self.scenes.items()}
        warning = ""
        try:
            remote = await self.graph.list_sequences()
        except GraphError as exc:
            remote = []
            warning = plain_message("sequences", exc) + " Showing the sequences this page has received."
        items: dict[int, dict[str, Any]] = {
            r.sequence_id: {"sequence_id": r.sequence_id, "stamp_ns": r.stamp_ns, "has_depth": r.has_depth,
                            "renderable": True, "local": r.sequence_id in local}
            for r in remote
        }
        for sid, s in local.items():
            items.setdefault(sid, {"sequence_id": sid, "stamp_ns": s.stamp_ns, "has_depth": s.depth is not None,
                                   "renderable": not remote and not warning, "local": True})
        return sorted(items.values(), key=lambda i: i["stamp_ns"]), warning

    def store_result(self, png: bytes, filename: str) -> str:
        key = str(next(self.result_ids))
        self.results[key] = (filename, png)
        while len(self.results) > KEEP_RESULTS:
            self.results.popitem(last=False)
        return f"api/result/{key}.png"

    # --- HTTP -------------------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._auth_middleware], client_max_size=32 * 1024 * 1024)
        app.router.add_get("/", self._index)
        app.router.add_get("/ws", self._websocket)
        app.router.add_get("/api/state", self._state)
        app.router.add_get("/api/scene/{seq:\\d+}/info", self._scene_info)
        app.router.add_get("/api/scene/{seq:\\d+}/{asset}", self._scene_asset)
        app.router.add_get("/api/result/{key:\\d+}.png", self._result)
        app.router.add_static("/static/", STATIC, append_version=False)
        return app

    @web.middleware
    async def _auth_middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if not self.settings.token and not auth.host_allowed(request.headers.get("Host"), self.settings.host):
            return web.Response(status=421, text="Host not served here: open the UI by this machine's address "
                                "(a foreign name for it is refused, against DNS rebinding).")
        presented = auth.presented_token(request.query, request.headers, request.cookies)
        if not auth.token_ok(self.settings.token, presented):
            return web.Response(status=401, text="This dfocus UI needs its token: open the URL with ?token=<token>.")
        response = await handler(request)
        if self.settings.token and "token" in request.query and not response.prepared:
            response.set_cookie(auth.COOKIE, request.query["token"], httponly=True, samesite="Strict")
        return response

    async def _index(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    async def _state(self, request: web.Request) -> web.Response:
        latest = self.scene(0)
        return web.json_response({"scene": self.scene_info(latest) if latest else None})

    async def _scene_info(self, request: web.Request) -> web.Response:
        scene = self.scenes.get(int(request.match_info["seq"]))
        if scene is None:
            raise web.HTTPNotFound(text="This sequence is no longer held by the UI (only the newest are kept).")
        return web.json_response(self.scene_info(scene))

    async def _scene_asset(self, request: web.Request) -> web.Response:
        scene = self.scenes.get(int(request.match_info["seq"]))
        asset = request.match_info["asset"]
        if scene is None:
            raise web.HTTPNotFound(text="This sequence is no longer held by the UI (only the newest are kept).")
        makers: dict[str, tuple[str, Callable[[Scene], bytes]]] = {
            "reference.jpg": ("image/jpeg", lambda s: encode_jpeg(s.image, self.settings.jpeg_quality)),
            "overlay.png": ("image/png", lambda s: encode_png(colorize_depth(_depth(s), *depth_range(_depth(s))))),
            "depth.f32": ("application/octet-stream", lambda s: _depth(s).astype("<f4").tobytes()),
            "depth.npy": ("application/octet-stream", lambda s: depth_npy(_depth(s))),
            "depth.png": ("image/png", lambda s: depth_png16(_depth(s))),
            "points.ply": ("application/octet-stream", lambda s: point_cloud_ply(_depth(s), s.image, s.camera)),
        }
        if asset not in makers:
            raise web.HTTPNotFound(text=f"unknown asset {asset}")
        if asset != "reference.jpg" and scene.depth is None:
            raise web.HTTPNotFound(text="No depth map for this sequence yet (is the depth node running?).")
        content_type, make = makers[asset]
        key = (scene.sequence_id, asset)
        body = self.assets.get(key)
        if body is None:
            body = await asyncio.to_thread(make, scene)
            if asset in ("reference.jpg", "overlay.png", "depth.f32"):
                self.assets[key] = body  # shown on every page load; downloads are made on demand
        headers = {"Cache-Control": "no-store"}
        if asset in ("depth.npy", "depth.png", "points.ply"):
            headers["Content-Disposition"] = f'attachment; filename="dfocus_seq{scene.sequence_id}_{asset}"'
        return web.Response(body=body, content_type=content_type, headers=headers)

    async def _result(self, request: web.Request) -> web.Response:
        entry = self.results.get(request.match_info["key"])
        if entry is None:
            raise web.HTTPNotFound(text="This render is no longer available; render again.")
        filename, png = entry
        return web.Response(
            body=png, content_type="image/png", headers={"Content-Disposition": f'attachment; filename="{filename}"'}
        )

    async def _websocket(self, request: web.Request) -> web.WebSocketResponse:
        if not auth.same_origin(request.headers.get("Origin"), request.headers.get("Host")):
            raise web.HTTPForbidden(text="WebSocket from another origin refused.")
        ws = web.WebSocketResponse(heartbeat=10.0, max_msg_size=32 * 1024 * 1024)
        await ws.prepare(request)
        session = Session(self, ws)
        self.sessions.add(session)
        try:
            latest = self.scene(0)
            await session.send("hello", scene=self.scene_info(latest) if latest else None)
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    await session.on_text(msg.data)
                elif msg.type == WSMsgType.BINARY:
                    await session.on_mask(msg.data)
        finally:
            self.sessions.discard(session)
            await session.close()
        return ws


def _depth(scene: Scene) -> np.ndarray:
    assert scene.depth is not None  # checked by the handler before any maker runs
    return scene.depth
