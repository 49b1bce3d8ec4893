"""The `ui` node: serves the focal-plane web page and bridges it to the graph.

It subscribes to the latest burst, its depth and the live preview, and acts as a client of the
`refocus` and `capture_sequence` actions and the `refocus/list_sequences` service. The web server
runs on its own asyncio thread (server.UiServer); rclpy futures and callbacks cross into it with
loop.call_soon_threadsafe, so the executor never waits on the web side and vice versa.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np
from action_msgs.msg import GoalStatus
from rclpy.action import ActionClient
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.event_handler import PublisherEventCallbacks
from rclpy.node import Node
from sensor_msgs.msg import Image

from dfocus_capture import qos
from dfocus_capture.burst import BurstError
from dfocus_capture.calibration import CalibrationError
from dfocus_capture.node_main import run_node
from dfocus_capture.params import ParamSpec, declare_params
from dfocus_capture.ros_convert import (
    ImageConversionError,
    image_to_msg,
    model_from_camera_info,
    msg_to_image,
    pose_to_matrix,
    stamp_to_ns,
    to_rgb,
)
from dfocus_interfaces.action import CaptureSequence, Refocus
from dfocus_interfaces.msg import FocalPlane, FocusSequence
from dfocus_interfaces.srv import ListSequences
from dfocus_refocus.ui.errors import UiError
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
from dfocus_refocus.ui.scene import Scene, display_rgb8
from dfocus_refocus.ui.server import UiServer, UiSettings

PARAMS = [
    ParamSpec("host", "127.0.0.1", "address to serve on; anything but loopback needs 'token'", read_only=True),
    ParamSpec("port", 8080, "TCP port (0 = any free port, logged at start)", 0, 65535, read_only=True),
    ParamSpec("token", "", "access token (>= 8 characters) required on HTTP and WebSocket when set", read_only=True),
    ParamSpec("preview_rate_hz", 30.0, "most focal planes published per second while controls move", 1.0, 120.0,
              read_only=True),
    ParamSpec("preview_width", 640, "width of previews rendered through the refocus action", 64, 4096,
              read_only=True),
    ParamSpec("jpeg_quality", 90, "JPEG quality of the reference image and previews", 50, 100, read_only=True),
    ParamSpec("max_sequences", 8, "bursts kept for the sequence picker (reference image + depth each)", 1, 64,
              read_only=True),
    ParamSpec("server_wait_s", 2.0, "how long to wait for an action/service server before 'node down'", 0.1, 30.0),
    ParamSpec("service_timeout_s", 3.0, "deadline of a service call or a goal's acceptance", 0.5, 60.0),
    ParamSpec("render_timeout_s", 120.0, "deadline of a full-resolution render", 1.0, 3600.0),
    ParamSpec("capture_timeout_s", 60.0, "deadline of a capture burst", 1.0, 600.0),
]

POLL_S = 0.05


class UiNode(Node):
    def __init__(self) -> None:
        super().__init__("ui")
        self.params = declare_params(self, PARAMS)
        group = ReentrantCallbackGroup()
        self.refocus_client = ActionClient(self, Refocus, "refocus", callback_group=group)
        self.capture_client = ActionClient(self, CaptureSequence, "capture_sequence", callback_group=group)
        self.list_client = self.create_client(ListSequences, "refocus/list_sequences", callback_group=group)
        self.plane_pub = self.create_publisher(
            FocalPlane, "refocus/focal_plane", qos.LATEST,
            event_callbacks=PublisherEventCallbacks(matched=self._on_plane_matched),
        )
        p = self.params
        settings = UiSettings(
            host=p["host"], port=p["port"], token=p["token"], preview_rate_hz=p["preview_rate_hz"],
            preview_width=p["preview_width"], jpeg_quality=p["jpeg_quality"], max_sequences=p["max_sequences"],
        )
        self.server = UiServer(self, settings, self.get_logger())
        self.create_subscription(
            FocusSequence, "capture/sequence", self._on_sequence, qos.LATCHED, callback_group=group
        )
        self.create_subscription(Image, "depth/image", self._on_depth, qos.LATCHED, callback_group=group)
        self.create_subscription(Image, "refocus/preview", self._on_preview, qos.LATEST, callback_group=group)
        url = self.server.start()
        hint = "" if not settings.token else " (append ?token=<token> once; the page remembers it)"
        self.get_logger().info(f"serving the focal-plane UI on {url}{hint}")

    def close(self) -> None:
        """Stop the web server (run_node calls this before destroying the node)."""
        self.server.stop()

    # --- subscriptions (executor threads) -> server loop ---------------------------------------------
    def _on_plane_matched(self, info: Any) -> None:
        if info.current_count_change > 0 and hasattr(self, "server"):
            self.server.post_plane_subscriber()

    def _on_sequence(self, msg: Any) -> None:
        try:
            self.server.post_scene(reference_scene(msg))
        except (ImageConversionError, CalibrationError, BurstError, UiError) as exc:
            self.get_logger().warning(f"sequence {msg.sequence_id} not shown: {exc}")

    def _on_depth(self, msg: Image) -> None:
        try:
            raw = msg_to_image(msg)
            if msg.encoding == "32FC1":
                depth = np.array(raw, dtype=np.float32)
            elif msg.encoding in ("16UC1", "mono16"):  # REP 118 also allows millimetres
                depth = np.where(raw > 0, raw.astype(np.float32) / 1000.0, np.nan).astype(np.float32)
            else:
                raise ImageConversionError(f"depth must be 32FC1 (metres) or 16UC1 (mm), got {msg.encoding}")
        except ImageConversionError as exc:
            self.get_logger().warning(f"depth image ignored: {exc}")
            return
        self.server.post_depth(stamp_to_ns(msg.header.stamp), depth)

    def _on_preview(self, msg: Image) -> None:
        try:
            rgb = display_rgb8(np.array(to_rgb(msg_to_image(msg), msg.encoding)))
        except (ImageConversionError, UiError) as exc:
            self.get_logger().warning(f"preview frame ignored: {exc}")
            return
        self.server.post_preview(rgb)

    # --- GraphPort (called on the server's loop) -----------------------------------------------------
    async def _wait_ready(self, ready: Any, node: str, interface: str) -> None:
        wait_s = float(self.params["server_wait_s"])
        deadline = time.monotonic() + wait_s
        while not ready():
            if time.monotonic() > deadline:
                raise NodeUnavailableError(node, interface, wait_s)
            await asyncio.sleep(POLL_S)

    async def _bridge(self, future: Any, timeout_s: float, what: str, alive: Any = None, node: str = "") -> Any:
        """Await an rclpy future from the server loop, with a deadline; with `alive`, also give up
        as soon as the server has been gone for server_wait_s (a node that died mid-goal)."""
        loop = asyncio.get_running_loop()
        result: asyncio.Future[Any] = loop.create_future()

        def transfer(done: Any) -> None:
            if result.done():
                return
            exc = done.exception()
            if exc is not None:
                result.set_exception(exc)
            else:
                result.set_result(done.result())

        future.add_done_callback(lambda f: loop.call_soon_threadsafe(transfer, f))
        deadline = time.monotonic() + timeout_s
        gone_since: float | None = None
        while True:
            try:
                return await asyncio.wait_for(asyncio.shield(result), 0.25)
            except TimeoutError:
                pass
            now = time.monotonic()
            if now > deadline:
                raise GraphTimeoutError(what, timeout_s)
            if alive is not None:
                gone_since = None if alive() else (gone_since or now)
                wait_s = float(self.params["server_wait_s"])
                if gone_since is not None and now - gone_since > wait_s:
                    raise NodeUnavailableError(node, what, wait_s)

    async def _run_goal(
        self, client: ActionClient, node: str, name: str, goal: Any, feedback: Any, timeout_s: float
    ) -> Any:
        await self._wait_ready(client.server_is_ready, node, name)
        handle = await self._bridge(
            client.send_goal_async(goal, feedback_callback=feedback), float(self.params["service_timeout_s"]),
            f"the '{name}' goal being accepted",
        )
        if not handle.accepted:
            raise GoalRejectedError(f"the {node} node rejected the goal")
        try:
            response = await self._bridge(
                handle.get_result_async(), timeout_s, f"the '{name}' goal", client.server_is_ready, node
            )
        except (asyncio.CancelledError, GraphTimeoutError):
            # Tell the server to stop (bounded: it may be the thing that is stuck).
            try:
                await self._bridge(handle.cancel_goal_async(), float(self.params["server_wait_s"]), "cancel")
            except (GraphTimeoutError, NodeUnavailableError):
                self.get_logger().warning(f"{name}: the cancel request was not answered")
            raise
        result = response.result
        if response.status == GoalStatus.STATUS_SUCCEEDED:
            return result
        if response.status == GoalStatus.STATUS_CANCELED:
            raise GoalCanceledError(result.message or "cancelled")
        raise GoalAbortedError(result.message or f"the {node} node gave up (status {response.status})")

    async def render(self, request: RenderRequest, progress: ProgressCallback) -> RenderResult:
        loop = asyncio.get_running_loop()
        goal = Refocus.Goal()
        goal.focal_plane = focal_plane_msg(request.plane)
        goal.f_number = request.f_number
        goal.bokeh_strength = request.bokeh_strength
        t = request.tone
        goal.tone.exposure_ev, goal.tone.contrast, goal.tone.saturation = t.exposure_ev, t.contrast, t.saturation
        goal.tone.temperature, goal.tone.tint, goal.tone.relight = t.temperature, t.tint, t.relight
        goal.sequence_id = request.sequence_id
        goal.output_width, goal.output_height = request.output_width, request.output_height

        def feedback(msg: Any) -> None:
            p = Progress(msg.feedback.stage, float(msg.feedback.progress))
            loop.call_soon_threadsafe(progress, p)

        result = await self._run_goal(
            self.refocus_client, "refocus", "refocus", goal, feedback, float(self.params["render_timeout_s"])
        )
        try:
            image = display_rgb8(np.array(to_rgb(msg_to_image(result.image), result.image.encoding)))
        except (ImageConversionError, UiError) as exc:
            raise GoalAbortedError(f"the refocus node returned an unreadable image: {exc}") from exc
        used = result.focal_plane_used
        return RenderResult(image, int(result.sequence_id), float(used.focus_distance_m), float(used.near_m),
                            float(used.far_m), result.message)

    async def capture(self, request: CaptureRequest, progress: ProgressCallback) -> CaptureResult:
        loop = asyncio.get_running_loop()
        goal = CaptureSequence.Goal()
        goal.num_shots, goal.shift_pattern = request.num_shots, request.pattern
        goal.shift_amplitude_mm, goal.hand_held, goal.focus_mode = (
            request.amplitude_mm, request.hand_held, request.focus_mode)

        def feedback(msg: Any) -> None:
            f = msg.feedback
            loop.call_soon_threadsafe(progress, Progress(f.stage, float(f.progress), int(f.shot_index),
                                                         int(f.num_shots)))

        result = await self._run_goal(
            self.capture_client, "sequencer", "capture_sequence", goal, feedback,
            float(self.params["capture_timeout_s"]),
        )
        return CaptureResult(int(result.sequence_id), result.message)

    async def list_sequences(self) -> list[SequenceInfo]:
        await self._wait_ready(self.list_client.service_is_ready, "refocus", "refocus/list_sequences")
        response = await self._bridge(
            self.list_client.call_async(ListSequences.Request()), float(self.params["service_timeout_s"]),
            "refocus/list_sequences",
        )
        return [
            SequenceInfo(int(i), stamp_to_ns(s), bool(d))
            for i, s, d in zip(response.sequence_ids, response.stamps, response.has_depth, strict=False)
        ]

    def publish_focal_plane(self, plane: PlaneRequest) -> None:
        self.plane_pub.publish(focal_plane_msg(plane))


def focal_plane_msg(plane: PlaneRequest) -> FocalPlane:
    msg = FocalPlane()
    msg.focus_distance_m, msg.near_m, msg.far_m = plane.focus_m, plane.near_m, plane.far_m
    if plane.mask is not None:
        msg.mask = image_to_msg(plane.mask, "mono8")
    return msg


def reference_scene(msg: Any) -> Scene:
    """The reference camera's frame at shot 0 of a FocusSequence, copied out of the message."""
    n = int(msg.num_cameras)
    if n == 0 or len(msg.frames) < n:
        raise BurstError(f"sequence has {len(msg.frames)} frames for {n} cameras")
    heads = list(msg.frames[:n])
    names = [f.camera_name or f"cam{f.camera_index}" for f in heads]
    frame = heads[names.index(msg.reference_camera)] if msg.reference_camera in names else heads[0]
    image = display_rgb8(np.array(to_rgb(msg_to_image(frame.image), frame.image.encoding)))
    camera = model_from_camera_info(
        frame.camera_info, frame.camera_name or "reference", pose_to_matrix(frame.pose), frame.focus_distance_m,
        frame.focal_length_mm, frame.f_number, frame.pixel_size_um,
    )
    if image.shape[:2] != (camera.height, camera.width):
        raise BurstError(f"reference image {image.shape[1]}x{image.shape[0]} does not match its camera_info")
    return Scene(int(msg.sequence_id), stamp_to_ns(msg.header.stamp), image, camera)


def main(args: list[str] | None = None) -> int:
    return run_node("ui", UiNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
