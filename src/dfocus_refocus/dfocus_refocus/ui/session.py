"""One browser tab's WebSocket session: its controls and painted mask, the live preview it asks
for, and its render and capture goals.

Runs entirely on the server's event loop. Slow work (mask decoding, plane resolution, PNG encoding)
goes to worker threads; graph calls are awaited with the timeouts the GraphPort enforces, so a dead
node ends in an error message, never in a hung page.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

import numpy as np
from aiohttp import web

from dfocus_refocus.focal_plane import FocalPlaneError
from dfocus_refocus.ui.controls import Controls, parse_capture, parse_controls
from dfocus_refocus.ui.errors import UiError, plain_message
from dfocus_refocus.ui.graph import GoalCanceledError, GraphError, Progress, Tone
from dfocus_refocus.ui.scene import Scene, decode_mask, encode_jpeg, encode_png, resolve_plane

if TYPE_CHECKING:
    from dfocus_refocus.ui.server import UiServer

FRAME_PREVIEW = 1  # binary message kinds (first byte) sent to the page
NEUTRAL_LOOK = (0.0, 1.0, Tone())


class Session:
    def __init__(self, server: UiServer, ws: web.WebSocketResponse) -> None:
        self.server = server
        self.ws = ws
        self.controls = Controls()
        self.mask: np.ndarray | None = None
        self.mask_sequence_id = 0  # the scene the mask was painted on
        # Echoed in every plane message so that the page knows when it shows the answer to its latest
        # controls and mask (replies to older ones may still be in flight).
        self.req = 0
        self.masks = 0
        self.render_task: asyncio.Task[None] | None = None
        self.capture_task: asyncio.Task[None] | None = None
        self.preview_task: asyncio.Task[None] | None = None
        self.preview_wanted = False

    # --- sending -------------------------------------------------------------------------------
    async def send(self, kind: str, **payload: Any) -> None:
        if self.ws.closed:
            return
        try:
            await self.ws.send_str(json.dumps({"type": kind, **payload}))
        except (ConnectionError, RuntimeError):
            pass  # the tab went away; close() cleans up

    async def send_frame(self, kind: int, data: bytes) -> None:
        if self.ws.closed:
            return
        try:
            await self.ws.send_bytes(bytes([kind]) + data)
        except (ConnectionError, RuntimeError):
            pass

    # --- incoming --------------------------------------------------------------------------------
    async def on_text(self, text: str) -> None:
        try:
            msg = json.loads(text)
        # JSONDecodeError and integers of 4300+ digits are ValueErrors; deep nesting is a RecursionError.
        except (ValueError, RecursionError) as exc:
            await self.send("error", message=f"The page sent a malformed request ({str(exc)[:200]}).")
            return
        try:
            if not isinstance(msg, dict):
                raise UiError("a request must be a JSON object")
            op = msg.get("op")
            if op == "controls":
                self.controls = parse_controls(msg)
                req = msg.get("req", 0)
                self.req = req if isinstance(req, int) else 0
                await self.update_plane()
            elif op == "render":
                self.controls = parse_controls(msg)
                self.start_render()
            elif op == "cancel":
                await self.cancel_render()
            elif op == "capture":
                self.start_capture(msg)
            elif op == "sequences":
                await self.send_sequences()
            else:
                raise UiError(f"unknown request {op!r}")
        except UiError as exc:
            await self.send("error", message=f"Request refused: {exc}")

    async def on_mask(self, data: bytes) -> None:
        """A binary message is the painted mask as PNG; an empty one clears it."""
        self.masks += 1
        scene = self.server.scene(self.controls.sequence_id)
        try:
            if not data:
                self.mask = None
            elif scene is None:
                raise UiError("there is no image to paint on yet")
            else:
                w, h = scene.size
                self.mask = await asyncio.to_thread(decode_mask, data, w, h)
                self.mask_sequence_id = scene.sequence_id
        except UiError as exc:
            self.mask = None
            await self.send("error", message=f"Painting ignored: {exc}")
        await self.update_plane()

    # --- focal plane and live preview --------------------------------------------------------------
    def scene_mask(self, scene: Scene | None) -> np.ndarray | None:
        """The mask if it was painted on this scene's image (a mask from another burst is dropped)."""
        if self.mask is None or scene is None or self.mask_sequence_id != scene.sequence_id:
            return None
        return self.mask

    async def update_plane(self) -> None:
        scene = self.server.scene(self.controls.sequence_id)
        if scene is None:
            await self.send("plane", ok=False, message="No sequence yet: press Capture (or play a recording).",
                            req=self.req, masks=self.masks)
            return
        plane = self.controls.plane(self.scene_mask(scene))
        try:
            sharp = await asyncio.to_thread(resolve_plane, scene, plane, self.controls.f_number)
        except FocalPlaneError as exc:
            await self.send("plane", ok=False, message=f"This focal plane is not possible: {exc}.", req=self.req,
                            masks=self.masks)
            return
        await self.send(
            "plane", ok=True, focus_m=sharp.focus_m, near_m=sharp.near_m,
            far_m=sharp.far_m if np.isfinite(sharp.far_m) else None, hard=sharp.hard,
            from_mask=plane.mask is not None, sequence_id=scene.sequence_id, req=self.req, masks=self.masks,
        )
        if self.live_via_topic(scene):
            self.server.publish_plane(plane)
        else:
            self.preview_wanted = True
            self.kick_preview()

    def live_via_topic(self, scene: Scene) -> bool:
        """`refocus/focal_plane` carries only the plane and always means the latest sequence: other
        looks or older sequences are previewed with small refocus goals instead."""
        latest = self.server.scene(0)
        return latest is not None and scene.sequence_id == latest.sequence_id and self.controls.look == NEUTRAL_LOOK

    def kick_preview(self) -> None:
        # One preview goal at a time, always for the newest controls; never while a full render runs
        # (a newer goal would preempt the user's render).
        if self.preview_task is None and self.render_task is None and self.preview_wanted:
            self.preview_task = asyncio.create_task(self.preview_loop())

    async def preview_loop(self) -> None:
        try:
            while self.preview_wanted and self.render_task is None:
                self.preview_wanted = False
                scene = self.server.scene(self.controls.sequence_id)
                if scene is None:
                    return
                request = self.controls.render_request(
                    self.scene_mask(scene), scene.sequence_id, self.server.settings.preview_width
                )
                try:
                    result = await self.server.graph.render(request, lambda _p: None)
                except GoalCanceledError:
                    continue
                except GraphError as exc:
                    await self.send("preview_failed", message=plain_message("preview", exc))
                    return
                jpeg = await asyncio.to_thread(encode_jpeg, result.image, self.server.settings.jpeg_quality)
                await self.send_frame(FRAME_PREVIEW, jpeg)
        finally:
            self.preview_task = None

    # --- render ----------------------------------------------------------------------------------
    def start_render(self) -> None:
        if self.render_task is not None:
            raise UiError("a render is already running (cancel it first)")
        scene = self.server.scene(self.controls.sequence_id)
        request = self.controls.render_request(
            self.scene_mask(scene), scene.sequence_id if scene else self.controls.sequence_id
        )
        self.render_task = asyncio.create_task(self.render(request))

    async def render(self, request: Any) -> None:
        def progress(p: Progress) -> None:
            asyncio.ensure_future(self.send("render_progress", stage=p.stage, progress=p.progress))

        try:
            await self.send("render_progress", stage="sending goal", progress=0.0)
            result = await self.server.graph.render(request, progress)
            png = await asyncio.to_thread(encode_png, result.image)
            url = self.server.store_result(png, f"dfocus_seq{result.sequence_id}_{result.focus_m:.2f}m.png")
            await self.send(
                "render_done", url=url, width=int(result.image.shape[1]), height=int(result.image.shape[0]),
                sequence_id=result.sequence_id, focus_m=result.focus_m, near_m=result.near_m,
                far_m=result.far_m, message=result.message,
            )
        except asyncio.CancelledError:
            await self.send("render_failed", message="Rendering was cancelled.", cancelled=True)
        except GraphError as exc:
            await self.send(
                "render_failed", message=plain_message("render", exc), cancelled=isinstance(exc, GoalCanceledError)
            )
        finally:
            self.render_task = None
            self.kick_preview()

    async def cancel_render(self) -> None:
        if self.render_task is None:
            await self.send("error", message="There is no render to cancel.")
            return
        self.render_task.cancel()

    # --- capture ---------------------------------------------------------------------------------
    def start_capture(self, msg: dict[str, Any]) -> None:
        request = parse_capture(msg)
        if self.capture_task is not None:
            raise UiError("a capture is already running")
        self.capture_task = asyncio.create_task(self.capture(request))

    async def capture(self, request: Any) -> None:
        def progress(p: Progress) -> None:
            asyncio.ensure_future(
                self.send("capture_progress", stage=p.stage, progress=p.progress,
                          shot_index=p.shot_index, num_shots=p.num_shots)
            )

        try:
            await self.send("capture_progress", stage="sending goal", progress=0.0, shot_index=-1,
                            num_shots=request.num_shots)
            result = await self.server.graph.capture(request, progress)
            await self.send("capture_done", sequence_id=result.sequence_id, message=result.message)
        except GraphError as exc:
            await self.send("capture_failed", message=plain_message("capture", exc))
        finally:
            self.capture_task = None

    # --- sequences -------------------------------------------------------------------------------
    async def send_sequences(self) -> None:
        items, warning = await self.server.sequences()
        await self.send("sequences", items=items, warning=warning)

    async def close(self) -> None:
        """The tab closed: stop what it started (a render it no longer waits for is wasted work)."""
        # A capture runs on: the burst it takes is useful to every other client.
        for task in (self.render_task, self.preview_task):
            if task is not None:
                task.cancel()
