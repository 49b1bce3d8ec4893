"""The depth node: capture/sequence in; depth/image, depth/confidence, depth/camera_info and
depth/points out (all latched, one header: the sequence's stamp in the reference optical frame);
service depth/export_model writes a PLY point cloud or mesh under output_dir; action depth/adapt
fine-tunes the network on the rig's own unlabelled bursts and, if asked, switches to the result.

Inference runs in one worker thread. The subscription only parks the newest sequence in a
one-slot mailbox, so a burst arriving during inference replaces any waiting one (newest wins,
nothing queues up) and the executor stays free for the export service.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.action.server import ServerGoalHandle
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header

from dfocus_capture.burst import BurstError
from dfocus_capture.calibration import CalibrationError
from dfocus_capture.frames import optical_frame
from dfocus_capture.node_main import run_node
from dfocus_capture.params import ParamSpec, declare_params
from dfocus_capture.qos import LATCHED
from dfocus_capture.ros_convert import (
    ImageConversionError,
    burst_from_msg,
    camera_info_from_model,
    image_to_msg,
    ns_to_stamp,
)
from dfocus_depth.adapt import AdaptConfig, AdaptError, adapt, read_bursts
from dfocus_depth.background_fill import FILL_BELOW_CONFIDENCE
from dfocus_depth.estimator import (
    CENSUS_REFINE_MODES,
    CROSS_CHECK_MODES,
    MAX_SOURCES,
    REFINE_MODES,
    WEIGHTS,
    DepthEstimator,
    DepthResult,
    WeightsError,
)
from dfocus_depth.geometry import DepthInputError, DepthRange, check_frame_sizes
from dfocus_depth.mesh import ExportError, export_model, safe_output_path
from dfocus_depth.pointcloud import pointcloud2_msg
from dfocus_interfaces.action import AdaptDepth
from dfocus_interfaces.msg import FocusSequence
from dfocus_interfaces.srv import ExportModel

PARAMS = [
    ParamSpec("device", "auto", "inference device: cpu, cuda or auto (cuda when present)",
              choices=("auto", "cpu", "cuda"), read_only=True),
    ParamSpec("max_width", 320, "working width of the network (pixels); outputs are upsampled to the image size. "
              "Memory grows with its square and the views: 5 views at 1280x960 peaked at 1.5 GB at 640, 3.0 GB at "
              "1024 and 4.2 GB at 1280, hence the ceiling", min=64, max=1024),
    ParamSpec("cross_check", "auto", "second pass with the widest-baseline camera as the reference, and a two-way "
              "consistency check (about 2x the time): on, off, or auto (two-camera rigs only)",
              choices=CROSS_CHECK_MODES),
    ParamSpec("fill_below_confidence", FILL_BELOW_CONFIDENCE, "depth below this confidence is replaced by the "
              "background of its reliable neighbours along the epipolar direction (0 = keep the network's guess)",
              min=0.0, max=1.0),
    ParamSpec("edge_median", True, "edge-aware weighted median guided by the image (depth edges on image edges, "
              "isolated mismatches dropped): about 20-40 ms per map at 320x240"),
    ParamSpec("census_refine", "auto", "census matching against the partner view at full resolution, in a band "
              "around the network's estimate (sub-pixel precision on real pairs): on, off, or auto (two-camera "
              "rigs only)", choices=CENSUS_REFINE_MODES),
    ParamSpec("refine", "on", "photometric refinement against every view at the image resolution (sub-pixel "
              "precision for small baselines and far surfaces; about 0.1 s per map at 640x480): on or off (the "
              "fast setting, without the sub-pixel precision)", choices=REFINE_MODES),
    ParamSpec("max_frame_megapixels", 24.0, "sequences with a frame above this many megapixels are rejected on "
              "arrival, before any work (twice the 12 MP design resolution; one oversized burst must not hold the "
              "node for minutes and gigabytes)", min=0.001, max=1000.0),
    ParamSpec("max_views", MAX_SOURCES, "most source views used per depth map (shot 0 of every camera first)",
              min=1, max=159),
    ParamSpec("confidence_threshold", 0.1, "depth below this confidence is published as NaN", min=0.0, max=1.0),
    ParamSpec("near_m", 0.0, "nearest depth swept (m); 0 = a quarter-image disparity at the widest baseline",
              min=0.0, max=1000.0),
    ParamSpec("far_m", 0.0, "farthest depth swept (m); 0 = infinity", min=0.0, max=1e6),
    ParamSpec("weights", "", "weights file; empty = the shipped depth_cnn.pt (the adapt action may switch to "
              "the weights it writes)", read_only=True),
    ParamSpec("output_dir", "dfocus_exports", "folder export_model and adapt write into (relative to the working "
              "directory unless absolute); requests cannot leave it", read_only=True),
    ParamSpec("mesh_max_jump", 0.05, "mesh export: no triangle across a relative depth jump above this",
              min=0.001, max=1.0),
]
KEEP_RESULTS = 4  # exportable sequences kept in memory
MAX_ADAPT_STEPS = 100_000


class AdaptStoppedError(Exception):
    """The adapt goal was canceled or preempted by a newer one."""


@dataclass
class _Stored:
    result: DepthResult
    rgb: np.ndarray
    header: Header


class DepthNode(Node):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__("depth", **kwargs)
        self.params = declare_params(self, PARAMS, self._on_params)
        self.estimator = DepthEstimator(
            self.params["weights"] or WEIGHTS, self.params["device"], self.params["max_width"],
            self.params["max_views"], self.params["cross_check"], self.params["fill_below_confidence"],
            self.params["edge_median"], self.params["census_refine"], self.params["refine"],
        )
        self.get_logger().info(f"depth network loaded on {self.estimator.device}")
        self._pub_depth = self.create_publisher(Image, "depth/image", LATCHED)
        self._pub_conf = self.create_publisher(Image, "depth/confidence", LATCHED)
        self._pub_info = self.create_publisher(CameraInfo, "depth/camera_info", LATCHED)
        self._pub_points = self.create_publisher(PointCloud2, "depth/points", LATCHED)
        self._results: OrderedDict[int, _Stored] = OrderedDict()
        self._results_lock = threading.Lock()
        self._mailbox: FocusSequence | None = None
        self._mail_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = False
        self._worker = threading.Thread(target=self._work, name="depth-inference", daemon=True)
        self._worker.start()
        self.create_subscription(FocusSequence, "capture/sequence", self._on_sequence, LATCHED,
                                 callback_group=MutuallyExclusiveCallbackGroup())
        self.create_service(ExportModel, "depth/export_model", self._on_export,
                            callback_group=MutuallyExclusiveCallbackGroup())
        self._adapt_lock = threading.Lock()
        self._adapt_goal: ServerGoalHandle | None = None
        self._adapt_server = ActionServer(
            self, AdaptDepth, "depth/adapt", execute_callback=self._execute_adapt,
            goal_callback=lambda _: GoalResponse.ACCEPT, handle_accepted_callback=self._on_adapt_accepted,
            cancel_callback=lambda _: CancelResponse.ACCEPT, callback_group=MutuallyExclusiveCallbackGroup())

    def _on_params(self, changes: dict[str, Any]) -> str | None:
        near = changes.get("near_m", self.params["near_m"])
        far = changes.get("far_m", self.params["far_m"])
        if near > 0 and far > 0 and far <= near:
            return f"far_m ({far}) must exceed near_m ({near})"
        new = {**self.params, **changes}  # self.params takes the changes once this accepts them
        self.estimator.max_width = int(new["max_width"])
        self.estimator.max_sources = int(new["max_views"])
        self.estimator.cross_check = str(new["cross_check"])
        self.estimator.fill_below = float(new["fill_below_confidence"])
        self.estimator.edge_median = bool(new["edge_median"])
        self.estimator.census_refine = str(new["census_refine"])
        self.estimator.refine = str(new["refine"])
        return None

    def _on_sequence(self, msg: FocusSequence) -> None:
        try:  # before the mailbox: an oversized burst must not displace a pending good one
            check_frame_sizes(((f.image.width, f.image.height) for f in msg.frames),
                              float(self.params["max_frame_megapixels"]))
        except DepthInputError as exc:
            self.get_logger().error(f"sequence {msg.sequence_id} rejected: {exc}")
            return
        with self._mail_lock:
            if self._mailbox is not None:
                self.get_logger().info(
                    f"sequence {self._mailbox.sequence_id} superseded by {msg.sequence_id} before inference")
            self._mailbox = msg
        self._wake.set()

    def _work(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._stop:
                return
            with self._mail_lock:
                msg, self._mailbox = self._mailbox, None
            if msg is not None:
                self._process(msg)

    def _depth_range(self) -> DepthRange | None:
        near, far = float(self.params["near_m"]), float(self.params["far_m"])
        if near <= 0:
            return None
        return DepthRange(near, far if far > 0 else float("inf"))

    def _process(self, msg: FocusSequence) -> None:
        log = self.get_logger()
        try:
            burst = burst_from_msg(msg)
            result = self.estimator.estimate(burst, self._depth_range(), float(self.params["confidence_threshold"]))
        except (BurstError, CalibrationError, ImageConversionError, DepthInputError) as exc:
            log.error(f"sequence {msg.sequence_id} rejected: {exc}")
            return
        except Exception as exc:  # the node must outlive any single bad burst
            log.error(f"sequence {msg.sequence_id}: depth estimation failed: {type(exc).__name__}: {exc}")
            return
        frame_id = msg.header.frame_id or optical_frame(burst.reference_camera)
        header = Header(stamp=ns_to_stamp(burst.stamp_ns), frame_id=frame_id)
        ref = burst.reference.image
        rgb = ref if ref.dtype == np.uint8 else (ref >> 8).astype(np.uint8)
        if rgb.ndim == 2:
            rgb = np.repeat(rgb[:, :, None], 3, axis=2)
        self._pub_depth.publish(image_to_msg(result.depth, "32FC1", header))
        self._pub_conf.publish(image_to_msg(result.confidence, "32FC1", header))
        self._pub_info.publish(camera_info_from_model(result.camera, header))
        self._pub_points.publish(pointcloud2_msg(result.depth, result.camera.K, rgb, header))
        with self._results_lock:
            self._results[int(msg.sequence_id)] = _Stored(result, rgb, header)
            while len(self._results) > KEEP_RESULTS:
                self._results.popitem(last=False)
        log.info(f"sequence {msg.sequence_id}: depth from {result.num_views} views in {result.seconds:.2f} s, "
                 f"{100 * float(np.isfinite(result.depth).mean()):.1f} % valid")

    def _on_export(self, req: ExportModel.Request, resp: ExportModel.Response) -> ExportModel.Response:
        with self._results_lock:
            if not self._results:
                stored = None
            elif req.sequence_id == 0:
                stored = next(reversed(self._results.values()))
            else:
                stored = self._results.get(int(req.sequence_id))
        if stored is None:
            resp.success, resp.message = False, f"no depth map for sequence {req.sequence_id or '(latest)'} yet"
            return resp
        if req.format not in (ExportModel.Request.FORMAT_PLY_POINTS, ExportModel.Request.FORMAT_PLY_MESH):
            resp.success, resp.message = False, f"unknown format {req.format} (0 = PLY points, 1 = PLY mesh)"
            return resp
        try:
            path, mesh = export_model(
                Path(self.params["output_dir"]), req.filename, stored.result.depth, stored.result.camera.K, stored.rgb,
                as_mesh=req.format == ExportModel.Request.FORMAT_PLY_MESH,
            )
        except (ExportError, OSError) as exc:
            resp.success, resp.message = False, str(exc)
            self.get_logger().warning(f"export refused: {exc}")
            return resp
        resp.success, resp.path = True, str(path)
        resp.num_vertices, resp.num_faces = len(mesh.vertices), len(mesh.faces)
        resp.message = f"wrote {resp.num_vertices} vertices, {resp.num_faces} faces"
        self.get_logger().info(f"exported {path}: {resp.message}")
        return resp

    # ---- adapt action -----------------------------------------------------------------------------
    def _on_adapt_accepted(self, goal: ServerGoalHandle) -> None:
        with self._adapt_lock:
            self._adapt_goal = goal  # a running goal sees this and stops as preempted
        goal.execute()

    def _adapt_stopped(self, goal: ServerGoalHandle) -> Callable[[], bool]:
        def stopped() -> bool:
            with self._adapt_lock:
                return goal.is_cancel_requested or self._adapt_goal is not goal
        return stopped

    def _execute_adapt(self, goal: ServerGoalHandle) -> AdaptDepth.Result:
        req, result, log = goal.request, AdaptDepth.Result(), self.get_logger()
        try:
            if not 1 <= req.steps <= MAX_ADAPT_STEPS:
                raise AdaptError(f"steps must be 1..{MAX_ADAPT_STEPS}, got {req.steps}")
            if not list(req.inputs):
                raise AdaptError("no inputs: give rosbag2 folders or burst folders")
            out = safe_output_path(self.params["output_dir"], req.output, ".pt")
            bursts = [b for path in req.inputs for b in read_bursts(Path(path))]
            cfg = AdaptConfig(steps=int(req.steps), lr=float(req.learning_rate) or AdaptConfig.lr,
                              max_width=int(self.params["max_width"]), threads=torch.get_num_threads(),
                              device=str(self.estimator.device.type))

            def on_step(step: int, loss: float) -> None:
                fb = AdaptDepth.Feedback()
                fb.step, fb.steps, fb.loss = step, int(req.steps), float(loss)
                goal.publish_feedback(fb)

            stopped = self._adapt_stopped(goal)
            log.info(f"adapting the depth network on {len(bursts)} bursts, {req.steps} steps -> {out}")
            record = adapt(bursts, out, log.info, cfg, self.estimator.weights, self._depth_range(), stopped, on_step)
            if stopped():
                raise AdaptStoppedError("canceled" if goal.is_cancel_requested else "preempted by a newer goal")
            if req.load:
                self._use_weights(out)
        except AdaptStoppedError as stop:
            result.message = f"stopped: {stop} (weights so far kept in {req.output})"
            log.info(f"adapt goal {result.message}")
            if goal.is_cancel_requested:
                goal.canceled()
            else:
                goal.abort()
            return result
        except (AdaptError, ExportError, WeightsError, DepthInputError, OSError) as exc:
            result.message = str(exc)
            log.warning(f"adapt goal aborted: {exc}")
            goal.abort()
            return result
        except Exception as exc:  # the node must outlive any single bad goal (a malformed burst, say)
            result.message = f"adaptation failed: {type(exc).__name__}: {exc}"
            log.error(f"adapt goal aborted: {result.message}")
            goal.abort()
            return result
        result.weights_path = str(out)
        result.photometric_error_before = float(record["photometric_error_before"])  # type: ignore[arg-type]
        result.photometric_error_after = float(record["photometric_error_after"])  # type: ignore[arg-type]
        result.steps_done = int(record["steps_done"])  # type: ignore[call-overload]
        result.message = (f"photometric error {result.photometric_error_before:.4f} -> "
                          f"{result.photometric_error_after:.4f}; "
                          + ("depth maps now use these weights" if req.load else "weights not loaded"))
        with self._adapt_lock:
            if self._adapt_goal is goal:
                self._adapt_goal = None
        goal.succeed()
        return result

    def _use_weights(self, path: Path) -> None:
        """Switch inference to `path`: a new estimator with the same settings, swapped in whole so
        a depth map in progress finishes with the old one."""
        self.estimator = self.estimator.with_weights(path)
        self.get_logger().info(f"depth maps now use the weights {path}")

    def close(self) -> None:
        """Stop the inference worker (run_node calls this before destroying the node)."""
        self._stop = True
        self._wake.set()
        self._worker.join(timeout=30.0)


def main(args: list[str] | None = None) -> int:
    return run_node("depth", DepthNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
