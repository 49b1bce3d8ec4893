"""refocus: the `refocus` action, `refocus/list_sequences`, and the live preview.

Bursts (capture/sequence) and their depth (depth/image, depth/confidence, matched by header stamp)
are cached; each burst is registered and fused once in the background, after which a goal or a
preview request only renders bokeh + tone. A newer goal preempts the running one (aborted with a
message); cancel is honoured between stages. Preview requests (refocus/focal_plane) are rendered by
one worker that always takes the newest pending plane, so a moving slider never builds a backlog.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.action.server import ServerGoalHandle
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from dfocus_capture import qos
from dfocus_capture.allocator import release_freed_memory
from dfocus_capture.burst import Burst, BurstError
from dfocus_capture.calibration import CalibrationError
from dfocus_capture.frames import optical_frame
from dfocus_capture.node_main import run_node
from dfocus_capture.params import ParamSpec, declare_params
from dfocus_capture.ros_convert import (
    ImageConversionError,
    burst_from_msg,
    image_to_msg,
    msg_to_image,
    ns_to_stamp,
    stamp_to_ns,
)
from dfocus_interfaces.action import Refocus
from dfocus_interfaces.msg import FocalPlane, FocusSequence, SequenceAnnouncement
from dfocus_interfaces.srv import ListSequences
from dfocus_refocus.bokeh import NODE_MAX_KERNEL_PX, BokehParams
from dfocus_refocus.focal_plane import FocalPlaneError
from dfocus_refocus.fusion import FusionError
from dfocus_refocus.pipeline import PreparedSequence, RefocusRequest, StageProgress, prepare_sequence
from dfocus_refocus.registration import RegistrationError
from dfocus_refocus.sequence_cache import SequenceCache, SequenceNotFoundError
from dfocus_refocus.srgb import to_srgb8
from dfocus_refocus.tone import ToneError, ToneParams

PARAMS = [
    ParamSpec("cache_size", 3, "sequences kept (with depth, registration, all-in-focus)", min=1, max=20,
              read_only=True),
    ParamSpec("cache_megabytes", 3000, "bursts kept at most this many megabytes of frames (older ones are evicted "
              "first; the newest is always kept): 5 x 1280x960 x 7 shots is 129 MB, 5 x 12 MP x 10 shots 1.8 GB",
              min=1, max=1_000_000, read_only=True),
    ParamSpec("preview_width", 640, "width of refocus/preview images (height follows the aspect)", min=32,
              max=4096),
    ParamSpec("refine", "auto", "residual image alignment after depth warping: auto = hand-held bursts or "
              "frames failing the alignment check", choices=("auto", "always", "never"), read_only=True),
    ParamSpec("sequence_timeout_s", 10.0, "how long a goal waits for a sequence not received yet (a goal can "
              "overtake its burst; the 130 MB burst takes longer to arrive)", min=0.0, max=600.0),
    ParamSpec("depth_timeout_s", 60.0, "how long a goal waits for the depth of its sequence (the depth node "
              "takes 2 s per burst on a quiet 2-core machine, several times that under load)", min=0.0, max=600.0),
    ParamSpec("min_confidence", 0.0, "depth pixels below this confidence are treated as holes", min=0.0,
              max=1.0, read_only=True),
    ParamSpec("max_kernel_px", NODE_MAX_KERNEL_PX, "bokeh: widest disc rendered at full resolution (larger blur is "
              "rendered downsampled)", min=3.0, max=64.0),
    ParamSpec("layer_ratio", 1.5, "bokeh: blur ratio between depth layers", min=1.1, max=3.0),
]

POLL_S = 0.05


class GoalStoppedError(Exception):
    """A goal was canceled or preempted; the message says which."""

    def __init__(self, message: str, canceled: bool) -> None:
        super().__init__(message)
        self.canceled = canceled


def request_from_plane(plane: Any, **kwargs: Any) -> RefocusRequest:
    mask = None
    if plane.mask.width > 0 and plane.mask.height > 0:
        arr = msg_to_image(plane.mask)
        mask = arr if arr.ndim == 2 else arr.max(axis=2)
    return RefocusRequest(
        focus_m=float(plane.focus_distance_m), near_m=float(plane.near_m), far_m=float(plane.far_m), mask=mask,
        **kwargs,
    )


class RefocusNode(Node):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__("refocus", **kwargs)
        self.params = declare_params(self, PARAMS)
        self.group = ReentrantCallbackGroup()
        self.cache = SequenceCache(self.params["cache_size"], self._prepare, self.params["min_confidence"],
                                   max_bytes=self.params["cache_megabytes"] * 1_000_000)
        self._goal_lock = threading.Lock()
        self._active_goal: ServerGoalHandle | None = None

        self.image_pub = self.create_publisher(Image, "refocus/image", qos.RELIABLE)
        self.aif_pub = self.create_publisher(Image, "refocus/all_in_focus", qos.RELIABLE)
        self.preview_pub = self.create_publisher(Image, "refocus/preview", qos.LATEST)
        self.create_subscription(SequenceAnnouncement, "capture/announced", self._on_announced, qos.LATCHED,
                                 callback_group=self.group)
        self.create_subscription(FocusSequence, "capture/sequence", self._on_sequence, qos.LATCHED,
                                 callback_group=self.group)
        self.create_subscription(Image, "depth/image", self._on_depth, qos.LATCHED, callback_group=self.group)
        self.create_subscription(Image, "depth/confidence", self._on_confidence, qos.LATCHED,
                                 callback_group=self.group)
        self.create_subscription(FocalPlane, "refocus/focal_plane", self._on_focal_plane, qos.LATEST,
                                 callback_group=self.group)
        self.create_service(ListSequences, "refocus/list_sequences", self._on_list, callback_group=self.group)
        self.action = ActionServer(
            self, Refocus, "refocus", execute_callback=self._execute, goal_callback=lambda _: GoalResponse.ACCEPT,
            handle_accepted_callback=self._on_accepted, cancel_callback=lambda _: CancelResponse.ACCEPT,
            callback_group=self.group,
        )

        self._preview_cv = threading.Condition()
        self._preview_pending: Any = None
        self._last_plane: Any = None
        self._stopping = False
        self._preview_thread = threading.Thread(target=self._preview_loop, name="refocus-preview", daemon=True)
        self._preview_thread.start()
        self.get_logger().info(f"refocus ready (cache {self.params['cache_size']} sequences)")

    def _bokeh(self) -> BokehParams:
        return BokehParams(layer_ratio=self.params["layer_ratio"], max_kernel_px=self.params["max_kernel_px"])

    # ---- inputs --------------------------------------------------------------------------------
    def _prepare(self, burst: Burst, depth: np.ndarray, progress: StageProgress) -> PreparedSequence:
        start = time.monotonic()
        try:
            prepared = prepare_sequence(burst, depth, refine=self.params["refine"], progress=progress)
        except (RegistrationError, FusionError, ValueError) as exc:
            self.get_logger().error(f"sequence {burst.sequence_id}: cannot prepare: {exc}")
            raise
        finally:
            # The preparation's per-frame stacks (about half a gigabyte at 1280x960) are free now;
            # the allocator would keep them for the renders, which need far less (allocator.py).
            release_freed_memory()
        reg = prepared.registration
        self.get_logger().info(
            f"sequence {burst.sequence_id} prepared in {time.monotonic() - start:.2f} s: {reg.summary()}"
        )
        self.aif_pub.publish(image_to_msg(prepared.all_in_focus_srgb(), "rgb8", self._header(burst)))
        with self._preview_cv:  # show the newest burst at the plane the user last asked for
            if self._preview_pending is None and self._last_plane is not None:
                self._preview_pending = self._last_plane
                self._preview_cv.notify()
        return prepared

    def _on_announced(self, msg: SequenceAnnouncement) -> None:
        self.cache.announce(int(msg.sequence_id))
        self.get_logger().info(f"sequence {msg.sequence_id} announced: {msg.num_shots} shots x {msg.num_cameras} "
                               "cameras on their way")

    def _on_sequence(self, msg: Any) -> None:
        try:
            burst = burst_from_msg(msg)
        except (BurstError, ImageConversionError, CalibrationError) as exc:
            self.get_logger().error(f"ignoring malformed capture/sequence {msg.sequence_id}: {exc}")
            return
        entry = self.cache.add_burst(burst)
        self.get_logger().info(
            f"sequence {burst.sequence_id}: {burst.num_shots} shots x {burst.num_cameras} cameras"
            + (" (depth already here)" if entry.depth is not None else "")
        )

    def _depth_array(self, msg: Image, what: str) -> np.ndarray | None:
        if msg.encoding != "32FC1":
            self.get_logger().error(f"ignoring {what}: encoding {msg.encoding!r}, expected 32FC1")
            return None
        try:
            return np.array(msg_to_image(msg), dtype=np.float32)
        except ImageConversionError as exc:
            self.get_logger().error(f"ignoring {what}: {exc}")
            return None

    def _on_depth(self, msg: Image) -> None:
        depth = self._depth_array(msg, "depth/image")
        if depth is not None:
            self.cache.add_depth(stamp_to_ns(msg.header.stamp), depth)

    def _on_confidence(self, msg: Image) -> None:
        conf = self._depth_array(msg, "depth/confidence")
        if conf is not None:
            self.cache.add_confidence(stamp_to_ns(msg.header.stamp), conf)

    def _on_list(self, _req: Any, resp: Any) -> Any:
        for seq_id, stamp_ns, has_depth in self.cache.listing():
            resp.sequence_ids.append(seq_id)
            resp.stamps.append(ns_to_stamp(stamp_ns))
            resp.has_depth.append(has_depth)
        return resp

    @staticmethod
    def _header(burst: Burst) -> Header:
        return Header(stamp=ns_to_stamp(burst.stamp_ns), frame_id=optical_frame(burst.reference_camera))

    # ---- action --------------------------------------------------------------------------------
    def _on_accepted(self, goal: ServerGoalHandle) -> None:
        with self._goal_lock:
            self._active_goal = goal  # the running goal sees this and stops as preempted
        goal.execute()

    def _check(self, goal: ServerGoalHandle) -> None:
        if goal.is_cancel_requested:
            raise GoalStoppedError("canceled", canceled=True)
        with self._goal_lock:
            if self._active_goal is not goal:
                raise GoalStoppedError("preempted by a newer goal", canceled=False)

    def _feedback(self, goal: ServerGoalHandle, stage: str, progress: float) -> None:
        fb = Refocus.Feedback()
        fb.stage, fb.progress = stage, float(progress)
        goal.publish_feedback(fb)

    def _execute(self, goal: ServerGoalHandle) -> Any:
        req = goal.request
        result = Refocus.Result()
        result.sequence_id = int(req.sequence_id)
        try:
            prepared = self._await_prepared(goal, int(req.sequence_id))
            result.sequence_id = prepared.burst.sequence_id
            tone = ToneParams(
                exposure_ev=req.tone.exposure_ev, contrast=req.tone.contrast, saturation=req.tone.saturation,
                temperature=req.tone.temperature, tint=req.tone.tint, relight=req.tone.relight,
            )
            request = request_from_plane(
                req.focal_plane, f_number=float(req.f_number), bokeh_strength=float(req.bokeh_strength), tone=tone,
                output_width=int(req.output_width), output_height=int(req.output_height),
            )
            prepared.resolve(request)  # a bad plane aborts before any work
            self._feedback(goal, "rendering", 0.0)
            rendered = prepared.render(request, self._bokeh())
            self._check(goal)
        except GoalStoppedError as stop:
            result.message = str(stop)
            self.get_logger().info(f"refocus goal {_short(goal)} {stop}")
            if stop.canceled:
                goal.canceled()
            else:
                goal.abort()
            return result
        except (FocalPlaneError, ToneError, SequenceNotFoundError, ImageConversionError, RegistrationError,
                FusionError, ValueError) as exc:
            result.message = str(exc)
            self.get_logger().warning(f"refocus goal {_short(goal)} aborted: {exc}")
            goal.abort()
            return result
        header = self._header(prepared.burst)
        result.image = image_to_msg(rendered.image, "rgb8", header)
        used = FocalPlane()
        used.focus_distance_m, used.near_m, used.far_m = rendered.sharp.focus_m, rendered.sharp.near_m, \
            rendered.sharp.far_m
        result.focal_plane_used = used
        result.message = (
            f"refocused sequence {prepared.burst.sequence_id} at {rendered.sharp.focus_m:.3g} m "
            f"(sharp {rendered.sharp.near_m:.3g}..{rendered.sharp.far_m:.3g} m), {rendered.width}x{rendered.height}"
        )
        self.image_pub.publish(result.image)
        aif = prepared.level(rendered.width, rendered.height).linear
        self.aif_pub.publish(image_to_msg(to_srgb8(aif), "rgb8", header))
        self._feedback(goal, "done", 1.0)
        with self._goal_lock:
            if self._active_goal is goal:
                self._active_goal = None
        goal.succeed()
        return result

    def _await_prepared(self, goal: ServerGoalHandle, sequence_id: int) -> PreparedSequence:
        self._feedback(goal, "waiting for the sequence", 0.0)
        entry = self.cache.get(sequence_id, self.params["sequence_timeout_s"], lambda: self._check(goal), POLL_S)
        deadline = time.monotonic() + self.params["depth_timeout_s"]
        self._feedback(goal, "waiting for depth", 0.0)
        while not entry.depth_arrived.wait(POLL_S):
            self._check(goal)
            if time.monotonic() > deadline:
                raise SequenceNotFoundError(
                    f"no depth map for sequence {entry.sequence_id} (depth/image with stamp "
                    f"{entry.stamp_ns} ns) within {self.params['depth_timeout_s']:g} s"
                )
        future = entry.prepared
        assert future is not None
        while not future.done():
            self._check(goal)
            self._feedback(goal, entry.stage, entry.progress)
            time.sleep(POLL_S)
        self._check(goal)
        if future.cancelled():
            raise SequenceNotFoundError(f"sequence {entry.sequence_id} left the cache while being prepared")
        exc = future.exception()
        if exc is not None:
            raise RegistrationError(f"sequence {entry.sequence_id} cannot be refocused: {exc}")
        return future.result()

    # ---- live preview --------------------------------------------------------------------------
    def _on_focal_plane(self, msg: Any) -> None:
        with self._preview_cv:
            self._preview_pending = self._last_plane = msg  # replaces any plane not rendered yet
            self._preview_cv.notify()

    def _preview_loop(self) -> None:
        while True:
            with self._preview_cv:
                while self._preview_pending is None and not self._stopping:
                    self._preview_cv.wait()
                if self._stopping:
                    return
                plane, self._preview_pending = self._preview_pending, None
            prepared = self.cache.latest_ready()
            if prepared is None:
                self.get_logger().warning("preview: no prepared sequence yet", throttle_duration_sec=5.0)
                continue
            try:
                rendered = prepared.render(
                    request_from_plane(plane, output_width=self.params["preview_width"]), self._bokeh()
                )
            except (FocalPlaneError, ImageConversionError, ValueError) as exc:
                self.get_logger().warning(f"preview: {exc}", throttle_duration_sec=2.0)
                continue
            self.preview_pub.publish(image_to_msg(rendered.image, "rgb8", self._header(prepared.burst)))

    def close(self) -> None:
        """Stop the preview thread and the preparation worker (run_node calls this before
        destroying the node)."""
        with self._preview_cv:
            self._stopping = True
            self._preview_cv.notify()
        self._preview_thread.join(timeout=5.0)
        self.cache.shutdown()


def _short(goal: ServerGoalHandle) -> str:
    return bytes(goal.goal_id.uuid).hex()[:8]


def main(args: list[str] | None = None) -> int:
    return run_node("refocus", RefocusNode, args, num_threads=4)


if __name__ == "__main__":
    raise SystemExit(main())
