"""sequencer: fires a Dynamic Focus burst and publishes it, complete, as one FocusSequence.

Action `capture_sequence` (dfocus_interfaces/action/CaptureSequence). Per shot: move the stage to
the pattern's next target through `actuators/move` (hand-held: no move), call the camera array's
`trigger` service with the shot's focus distances, and collect the synchronized set of every
camera's `image_raw` + `camera_info` whose stamp is the trigger's (an approximate-time
synchronizer, `queue_size` / `slop_s`). After the last shot the IMU samples of the burst (and of
`imu_window_s` before it) are taken from a stamp-indexed buffer, each camera's pose at exposure is
estimated (stage positions, or hand-held the IMU), and the FocusSequence goes out on
`capture/sequence` (reliable, transient-local, depth 1) with a new, increasing sequence_id,
announced just before on `capture/announced` (SequenceAnnouncement, same QoS): a small message
that reaches the refocus node before the frames, so "the latest sequence" means the latest captured.

A shot whose images do not all arrive (best-effort transport loses one now and then) is taken
again at the end of the burst, same focus and stage target, up to `max_retakes` times per burst:
the loss is known as soon as a later image of the missing camera arrives, or after
`frame_timeout_s`. A camera that delivers nothing after the lost shot while the others go on has
stopped: no retake.

Feedback per shot; cancel is honoured between and during the steps (nothing is published); any
failure (refused or stuck move, trigger failure, a stopped camera, losses beyond the retakes,
missing IMU) aborts the goal with the reason and nothing is published, and the node keeps serving.
One goal at a time: a goal arriving while a burst runs is rejected (a burst is a physical sequence
that cannot be shared or resumed; cancel the running one first).
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.action.server import ServerGoalHandle
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.client import Client
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image, Imu
from std_msgs.msg import Header

from dfocus_capture.calibration import CalibrationError, load_array_calibration
from dfocus_capture.frames import optical_frame
from dfocus_capture.imu_model import STAGE_WAIT_S, ActuatorTrack
from dfocus_capture.node_main import run_node
from dfocus_capture.params import ParamSpec, declare_params
from dfocus_capture.pose_estimation import (
    PoseEstimationError,
    camera_poses,
    motion_from_actuators,
    motion_from_imu,
)
from dfocus_capture.qos import FRAMES, LATCHED, TRACK
from dfocus_capture.ros_convert import add_actuator_state, imu_to_array, matrix_to_pose, ns_to_stamp, stamp_to_ns
from dfocus_capture.shift_patterns import MAX_SHOTS, PATTERN_NAMES, ShotPlanError, focus_plan, shift_targets
from dfocus_capture.shot_wait import DeliveryHistory, ShotWait, stopped_cameras
from dfocus_capture.side_listener import SideListener
from dfocus_capture.sync import ApproximateTimeSynchronizer, ImuBuffer
from dfocus_interfaces.action import CaptureSequence
from dfocus_interfaces.msg import ActuatorState, CapturedFrame, FocusSequence, SequenceAnnouncement
from dfocus_interfaces.srv import MoveActuators, TriggerCameras

PARAMS = [
    ParamSpec("calibration", "", "camera array calibration (YAML or Middlebury calib.txt); '' = the shipped "
              "config/camera_array.yaml", read_only=True),
    ParamSpec("queue_size", 10, "synchronizer queue per camera topic", min=1, max=1000, read_only=True),
    ParamSpec("slop_s", 0.005, "synchronizer slop: the stamps of one set span less than this, s", min=1e-6,
              max=1.0, read_only=True),
    ParamSpec("trigger_service", "trigger", "the camera array's TriggerCameras service", read_only=True),
    # The stage reports a move done after settle_time_s within tolerance (its ringing already below
    # 1 um), so the dwell is a small guard for the last actuators/state sample to reach the cameras.
    ParamSpec("trigger_delay_s", 0.005, "dwell between 'in position' and the exposure (vibration, state propagation)",
              min=0.0, max=5.0),
    ParamSpec("move_timeout_s", 2.0, "timeout of one actuator move, s", min=0.05, max=60.0),
    ParamSpec("trigger_timeout_s", 10.0, "timeout of one trigger call (exposure, readout, sim rendering), s",
              min=0.05, max=600.0),
    ParamSpec("frame_timeout_s", 3.0, "once one camera's image of a shot has arrived, the others must follow "
              "within this (and never sooner than twice the slowest of the last 8 shots' deliveries), s",
              min=0.05, max=60.0),
    ParamSpec("silent_timeout_s", 30.0, "while no camera has delivered anything of a shot, the cameras are slow "
              "(a loaded machine), not stopped: wait up to this after the trigger, s", min=0.05, max=600.0),
    ParamSpec("max_retakes", 2, "shots whose images were lost are taken again, up to this many per burst", min=0,
              max=20),
    ParamSpec("service_wait_s", 10.0, "how long to wait for the trigger / move services and camera topics to "
              "appear (returns as soon as they do; discovery alone takes up to ~3 s here), s", min=0.0,
              max=60.0),
    ParamSpec("imu_window_s", 1.0, "IMU history before the first exposure (bias and gravity estimate), s",
              min=0.1, max=10.0),
    ParamSpec("imu_timeout_s", 2.0, "wait this long for IMU samples that cover the last exposure, s", min=0.0,
              max=10.0),
    ParamSpec("exposure_time_s", 0.01, "exposure time recorded in each CapturedFrame, s", min=1e-6, max=10.0),
    ParamSpec("frame_id", "", "FocusSequence header.frame_id ('' = <reference camera>_optical_frame)",
              read_only=True),
]

_IMU_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1000, reliability=ReliabilityPolicy.BEST_EFFORT)
_KEEP_SETS = 32  # synchronized sets kept for the running shot (free-running frames pass through)
# A later image of a camera means its image of the shot was lost (one publisher delivers in order),
# once it has held this long: callbacks on several executor threads may feed the synchronizer a
# few microseconds out of order.
_LOSS_GRACE_S = 0.1
# How long after start-up an IMU that no publisher offers yet may still be undiscovered (DDS
# discovery between processes takes up to ~3 s here): stage bursts in that window wait for it.
_DISCOVERY_S = 3.0


class BurstAbortError(RuntimeError):
    """A burst cannot complete: the reason goes to the client as the abort message."""


class BurstCancelError(RuntimeError):
    """The client canceled the goal."""


class ImagesLostError(BurstAbortError):
    """A shot's set of images will not complete; `stopped` names the cameras that delivered nothing
    after it although a later shot was triggered."""

    def __init__(self, message: str, stopped: list[str]) -> None:
        super().__init__(message)
        self.stopped = stopped


@dataclass
class _Shot:
    plan: int  # index into the burst's plan (focus, stage target); retakes repeat it
    stamp_ns: int
    focus_m: list[float]
    actuator: ActuatorState
    triggered_at: float = 0.0  # monotonic s when the trigger answered
    frames: tuple[Any, ...] | None = None  # image0, info0, image1, info1, ...


@dataclass
class _Sets:
    by_stamp: dict[int, tuple[Any, ...]] = field(default_factory=dict)
    cond: threading.Condition = field(default_factory=threading.Condition)


class SequencerNode(Node):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__("sequencer", **kwargs)
        self.params = declare_params(self, PARAMS)
        self.calibration = load_array_calibration(self.params["calibration"])
        names = [c.name for c in self.calibration.cameras]
        self.group = ReentrantCallbackGroup()
        # Set when a goal is accepted (not when it starts executing), so that two goals arriving
        # together cannot both be accepted; cleared when its execution ends.
        self._busy = threading.Lock()
        self._next_id = 1
        self._timing: dict[str, float] = {}
        self._retakes = 0
        self._deliveries = DeliveryHistory()  # how long shots took to arrive (sizes the waits)
        self._sets = _Sets()
        self.sync = ApproximateTimeSynchronizer(2 * len(names), self.params["queue_size"], self.params["slop_s"])
        self.sync.register_callback(self._on_set)
        for i in range(len(names)):  # topics are cam<i> by calibration order (the graph's contract)
            self.create_subscription(Image, f"cam{i}/image_raw", self._feeder(2 * i), FRAMES, callback_group=self.group)
            self.create_subscription(CameraInfo, f"cam{i}/camera_info", self._feeder(2 * i + 1), FRAMES,
                                     callback_group=self.group)
        # The 400 Hz IMU and the stage state go through a helper node on its own single-threaded
        # executor: rclpy's multi-threaded executor costs several times more CPU per message.
        self.imu: ImuBuffer[Imu] = ImuBuffer(max_age_s=30.0)
        self._stage: ActuatorState | None = None
        # Every stage sample, so that a shot's position is read where the stage was at its stamp
        # (as the cameras render it), not where the move reported itself done.
        self._track = ActuatorTrack(max_samples=6000)
        self.listener = SideListener(self, "sensors")
        self._started = time.monotonic()
        self._imu_sub = self.listener.node.create_subscription(
            Imu, "imu/data", lambda m: self.imu.add(stamp_to_ns(m.header.stamp), m), _IMU_QOS)
        self.listener.node.create_subscription(ActuatorState, "actuators/state", self._on_stage, TRACK)
        self.listener.start()
        self.move_client = self.create_client(MoveActuators, "actuators/move", callback_group=self.group)
        self.trigger_client = self.create_client(TriggerCameras, self.params["trigger_service"],
                                                 callback_group=self.group)
        self._linked: set[str] = set()  # services whose request/response path has been proven
        self.publisher = self.create_publisher(FocusSequence, "capture/sequence", LATCHED)
        self.announcer = self.create_publisher(SequenceAnnouncement, "capture/announced", LATCHED)
        self.action = ActionServer(
            self, CaptureSequence, "capture_sequence", execute_callback=self._execute,
            goal_callback=self._on_goal, cancel_callback=lambda _: CancelResponse.ACCEPT, callback_group=self.group,
        )
        self.get_logger().info(f"ready: {len(names)} cameras {names}, reference {self.calibration.reference_camera}")

    # -- inputs ------------------------------------------------------------------------------

    def _feeder(self, index: int) -> Any:
        return lambda msg: self.sync.add(index, stamp_to_ns(msg.header.stamp), msg)

    def _on_set(self, *msgs: Any) -> None:
        with self._sets.cond:
            self._sets.by_stamp[stamp_to_ns(msgs[0].header.stamp)] = msgs
            while len(self._sets.by_stamp) > _KEEP_SETS:
                del self._sets.by_stamp[min(self._sets.by_stamp)]
            self._sets.cond.notify_all()

    def _on_stage(self, msg: ActuatorState) -> None:
        self._stage = msg
        add_actuator_state(self._track, msg, self.get_logger())

    # -- action ------------------------------------------------------------------------------

    def _on_goal(self, goal: CaptureSequence.Goal) -> GoalResponse:
        if not self._busy.acquire(blocking=False):
            self.get_logger().warning("capture_sequence goal rejected: a burst is running (cancel it first)")
            return GoalResponse.REJECT
        return GoalResponse.ACCEPT

    def _execute(self, goal_handle: ServerGoalHandle) -> CaptureSequence.Result:
        result = CaptureSequence.Result()
        started = time.monotonic()
        try:
            self._timing, self._retakes = {}, 0
            msg = self._run_burst(goal_handle)
            msg.sequence_id = self._next_id
            self._next_id += 1
            with self._timed("publish"):
                # The announcement first: it is small and overtakes the frames it announces.
                self.announcer.publish(SequenceAnnouncement(header=msg.header, sequence_id=msg.sequence_id,
                                                            num_shots=msg.num_shots, num_cameras=msg.num_cameras))
                self.publisher.publish(msg)
            result.success, result.sequence_id = True, msg.sequence_id
            spent = ", ".join(f"{k} {v:.2f}" for k, v in self._timing.items())
            retaken = f"; {self._retakes} shot(s) retaken after lost images" if self._retakes else ""
            result.message = (f"sequence {msg.sequence_id}: {msg.num_shots} shots x {msg.num_cameras} cameras in "
                              f"{time.monotonic() - started:.2f} s ({spent} s){retaken}")
            self.get_logger().info(result.message)
            goal_handle.succeed()
        except BurstCancelError as exc:
            result.message = f"canceled: {exc}"
            self.get_logger().info(result.message)
            goal_handle.canceled()
        except (BurstAbortError, ShotPlanError, PoseEstimationError, CalibrationError) as exc:
            result.message = str(exc)
            self.get_logger().error(f"burst aborted: {exc}")
            goal_handle.abort()
        except Exception as exc:  # noqa: BLE001 - a bug must not take the node down; report it
            result.message = f"internal error: {type(exc).__name__}: {exc}"
            self.get_logger().error(f"burst aborted by an internal error:\n{traceback.format_exc()}")
            goal_handle.abort()
        finally:
            self._busy.release()
        return result

    def _run_burst(self, gh: ServerGoalHandle) -> FocusSequence:
        goal: CaptureSequence.Goal = gh.request
        cams = self.calibration.cameras
        n_shots = int(goal.num_shots)
        if not 1 <= n_shots <= MAX_SHOTS:
            raise ShotPlanError(f"num_shots must be 1..{MAX_SHOTS}, got {n_shots}")
        hand_held = bool(goal.hand_held)
        targets = None if hand_held else shift_targets(
            int(goal.shift_pattern), n_shots, float(goal.shift_amplitude_mm), seed=self._next_id,
            travel_mm=self._travel())
        focus = focus_plan(int(goal.focus_mode), n_shots, [c.focus_distance_m for c in cams],
                           float(goal.bracket_near_m), float(goal.bracket_far_m))
        pattern = "hand-held" if hand_held else PATTERN_NAMES[int(goal.shift_pattern)]
        self.get_logger().info(f"burst: {n_shots} shots, {pattern}, focus mode {goal.focus_mode}")
        self._wait_service(self.trigger_client, "camera array trigger")
        # A focus list of the wrong length is refused at once, without an exposure.
        self._probe(gh, self.trigger_client, TriggerCameras.Request(focus_distances_m=[1.0] * (len(cams) + 1)),
                    "camera array trigger")
        self._wait_camera_topics()
        if not hand_held:
            self._wait_service(self.move_client, "actuators/move")
            # A zero relative move: answered, moves nothing.
            self._probe(gh, self.move_client, MoveActuators.Request(target_mm=[0.0, 0.0], relative=True, timeout_s=0.2),
                        "actuators/move")
        if hand_held:
            self._wait_imu_history(gh)
        else:
            self._wait_first_imu_sample(gh)
        burst_start_ns = self.get_clock().now().nanoseconds
        with self._sets.cond:
            self._sets.by_stamp.clear()
        self.sync.clear()
        shots: list[_Shot] = []  # in time order; a lost shot leaves, its retake joins at the end
        retakes: list[int] = []  # plan indices to take again
        for k in range(n_shots):
            shots.append(self._take(gh, k, n_shots, targets, focus))
            # Collect the previous shot's set while this one's images are in flight.
            if k > 0:
                self._collect_or_retake(gh, shots, shots[-2], retakes)
        self._collect_or_retake(gh, shots, shots[-1], retakes)
        while retakes:
            k = retakes.pop(0)
            shots.append(self._take(gh, k, n_shots, targets, focus, retake=True))
            self._collect_or_retake(gh, shots, shots[-1], retakes)
        self._feedback(gh, n_shots - 1, n_shots, "estimating poses", 0.95)
        with self._timed("imu"):
            imu = self._imu_samples(burst_start_ns, shots, required=hand_held)
        if hand_held:
            rows = imu_to_array(imu)
            motion = motion_from_imu(rows, [s.stamp_ns * 1e-9 for s in shots], burst_start_ns * 1e-9)
        else:
            motion = motion_from_actuators(np.array([list(s.actuator.position_mm) for s in shots]))
        poses = camera_poses(self.calibration, motion)
        with self._timed("message"):
            return self._sequence(goal, shots, poses, imu)

    def _take(self, gh: ServerGoalHandle, k: int, n_shots: int, targets: np.ndarray | None,
              focus: np.ndarray, retake: bool = False) -> _Shot:
        """Shot k of the plan: stage to its target (hand-held, no targets: no move), dwell, trigger."""
        target = None if targets is None else targets[k]
        first = "retaking" if retake else "moving" if target is not None else "triggering"
        self._feedback(gh, k, n_shots, first, k / n_shots)
        position = None
        if target is not None:
            with self._timed("moves"):
                position = self._move(gh, k, target)
                self._dwell(gh, k)
        self._check_cancel(gh, k)
        self._feedback(gh, k, n_shots, "triggering", (k + 0.3) / n_shots)
        with self._timed("triggers"):
            stamp_ns, used = self._trigger(gh, k, [float(f) for f in focus[k]])
        triggered_at = time.monotonic()
        if position is not None:
            position = self._position_at(stamp_ns, position)
        self._feedback(gh, k, n_shots, "collecting", (k + 0.6) / n_shots)
        return _Shot(k, stamp_ns, used, self._actuator_state(position, stamp_ns), triggered_at)

    def _position_at(self, stamp_ns: int, reported: list[float]) -> list[float]:
        """The stage position (mm) at the exposure stamp from the state stream, once a sample after
        the stamp has arrived; the move's own report if none comes within STAGE_WAIT_S."""
        t = stamp_ns * 1e-9
        if not self._track.wait_past(t, STAGE_WAIT_S):
            self.get_logger().warning(f"no actuators/state after the exposure at {t:.3f} s within {STAGE_WAIT_S} s: "
                                      "using the position the move reported", throttle_duration_sec=5.0)
            return reported
        return [float(v) for v in self._track.position_at(t)[: len(reported)] * 1e3]

    def _collect_or_retake(self, gh: ServerGoalHandle, shots: list[_Shot], shot: _Shot, retakes: list[int]) -> None:
        """Collect the shot's images; a lost set sends its plan index to `retakes` (while the
        burst has retakes left and no camera has stopped)."""
        try:
            with self._timed("images"):
                self._collect(gh, shot, later_shot=shot is not shots[-1])
        except ImagesLostError as exc:
            if exc.stopped:
                raise
            if self._retakes >= self.params["max_retakes"]:
                raise BurstAbortError(f"{exc}; no retake left (max_retakes {self.params['max_retakes']})") from exc
            self._retakes += 1
            self.get_logger().warning(f"{exc}: taking shot {shot.plan} again")
            shots.remove(shot)
            retakes.append(shot.plan)

    @contextmanager
    def _timed(self, stage: str) -> Iterator[None]:
        """Accumulate the wall time of a burst stage (reported in the result message)."""
        t0 = time.monotonic()
        try:
            yield
        finally:
            self._timing[stage] = self._timing.get(stage, 0.0) + time.monotonic() - t0

    def _travel(self) -> tuple[float, float] | None:
        stage = self._stage
        if stage is None or not stage.min_mm:
            return None
        return float(max(stage.min_mm)), float(min(stage.max_mm))

    def _feedback(self, gh: ServerGoalHandle, shot: int, n: int, stage: str, progress: float) -> None:
        fb = CaptureSequence.Feedback()
        fb.shot_index, fb.num_shots, fb.stage, fb.progress = shot, n, stage, float(progress)
        gh.publish_feedback(fb)

    def _check_cancel(self, gh: ServerGoalHandle, shot: int) -> None:
        if gh.is_cancel_requested:
            raise BurstCancelError(f"at shot {shot}")

    def _wait_service(self, client: Client, what: str) -> None:
        if not client.wait_for_service(timeout_sec=self.params["service_wait_s"]):
            raise BurstAbortError(f"{what} service {client.srv_name} is not available")

    def _probe(self, gh: ServerGoalHandle, client: Client, request: Any, what: str) -> None:
        """Exchange a harmless request until one is answered. A service is listed by discovery
        before DDS has matched its request and response endpoints, and a request (or its reply)
        sent in that gap is silently lost: for a trigger that would abort the burst."""
        if client.srv_name in self._linked:
            return
        deadline = time.monotonic() + self.params["service_wait_s"] + 5.0
        while True:
            future = client.call_async(request)
            answer_by = time.monotonic() + 1.0
            while not future.done() and time.monotonic() < answer_by:
                if gh.is_cancel_requested:
                    client.remove_pending_request(future)
                    raise BurstCancelError(f"while reaching the {what}")
                time.sleep(0.005)
            if future.done():
                self._linked.add(client.srv_name)
                return
            client.remove_pending_request(future)
            if time.monotonic() > deadline:
                raise BurstAbortError(f"{what} service {client.srv_name} does not answer")

    def _wait_camera_topics(self) -> None:
        """Every camera topic must have its publisher discovered, or the first shot's set is lost."""
        n = len(self.calibration.cameras)
        topics = [f"cam{i}/{kind}" for i in range(n) for kind in ("image_raw", "camera_info")]
        deadline = time.monotonic() + self.params["service_wait_s"]
        while True:
            missing = [t for t in topics if self.count_publishers(self.resolve_topic_name(t)) == 0]
            if not missing:
                return
            if time.monotonic() > deadline:
                raise BurstAbortError(f"no publisher on {', '.join(missing)} (is the camera array running?)")
            time.sleep(0.02)

    def _call(self, gh: ServerGoalHandle, client: Client, request: Any, timeout_s: float, what: str) -> Any:
        """Call a service, waiting in short steps so that a cancel request is seen."""
        future = client.call_async(request)
        deadline = time.monotonic() + timeout_s
        while not future.done():
            time.sleep(0.002)
            if gh.is_cancel_requested:
                future.cancel()
                raise BurstCancelError(f"during {what}")
            if time.monotonic() > deadline:
                future.cancel()
                client.remove_pending_request(future)
                raise BurstAbortError(f"{what}: no response within {timeout_s:.1f} s")
        return future.result()

    def _move(self, gh: ServerGoalHandle, shot: int, target: np.ndarray) -> list[float]:
        timeout = self.params["move_timeout_s"]
        req = MoveActuators.Request(target_mm=[float(v) for v in target], relative=False, timeout_s=float(timeout))
        res = self._call(gh, self.move_client, req, timeout + 2.0, f"shot {shot} actuator move")
        if not res.success:
            where = np.round(target, 4).tolist()
            raise BurstAbortError(f"shot {shot}: actuator move to {where} mm failed: {res.message}")
        return [float(v) for v in res.position_mm]

    def _dwell(self, gh: ServerGoalHandle, shot: int) -> None:
        end = time.monotonic() + self.params["trigger_delay_s"]
        while time.monotonic() < end:
            self._check_cancel(gh, shot)
            time.sleep(min(0.005, max(end - time.monotonic(), 0.0)))

    def _trigger(self, gh: ServerGoalHandle, shot: int, focus: list[float]) -> tuple[int, list[float]]:
        req = TriggerCameras.Request(focus_distances_m=focus)
        res = self._call(gh, self.trigger_client, req, self.params["trigger_timeout_s"], f"shot {shot} trigger")
        if not res.success:
            raise BurstAbortError(f"shot {shot}: camera trigger failed: {res.message}")
        used = [float(f) for f in res.focus_distances_m] or focus
        if len(used) != len(focus):
            raise BurstAbortError(f"shot {shot}: trigger reports {len(used)} focus distances for {len(focus)} cameras")
        return stamp_to_ns(res.stamp), used

    def _actuator_state(self, position: list[float] | None, stamp_ns: int) -> ActuatorState:
        """The stage at exposure: the move's reported position, with the latest state's limits."""
        state = ActuatorState()
        latest = self._stage
        if latest is not None:
            state.min_mm, state.max_mm, state.target_mm = list(latest.min_mm), list(latest.max_mm), list(
                latest.target_mm)
            state.position_mm = list(latest.position_mm)
        if position is not None:
            state.position_mm = position
            state.target_mm = position if not state.target_mm else state.target_mm
        state.header = Header(stamp=ns_to_stamp(stamp_ns), frame_id=latest.header.frame_id if latest else "")
        return state

    def _collect(self, gh: ServerGoalHandle, shot: _Shot, later_shot: bool) -> None:
        """Wait for the shot's synchronized set (how long: `shot_wait.ShotWait`); ImagesLostError
        once a missing camera has delivered a later image (for _LOSS_GRACE_S), or at the deadline."""
        slop = self.sync.slop_ns
        wait = ShotWait(shot.triggered_at, self.params["frame_timeout_s"], self.params["silent_timeout_s"],
                        self._deliveries.expected_max())
        overtaken_since: float | None = None
        with self._sets.cond:
            while True:
                match = [s for s in self._sets.by_stamp if abs(s - shot.stamp_ns) < slop]
                if match:
                    shot.frames = self._sets.by_stamp.pop(match[0])
                    self._deliveries.add(time.monotonic() - shot.triggered_at)
                    return
                if gh.is_cancel_requested:
                    raise BurstCancelError(f"waiting for the images of shot {shot.plan}")
                now = time.monotonic()
                lacking = self._lacking(shot)
                if wait.first_image_at is None and (len(lacking) < self.sync.num_inputs or any(
                        self._delivered_after(i, shot) for i in range(self.sync.num_inputs))):
                    wait.saw_image(now)
                if lacking and all(self._delivered_after(i, shot) for i in lacking):
                    overtaken_since = overtaken_since or now
                    if now - overtaken_since >= _LOSS_GRACE_S:
                        break
                else:
                    overtaken_since = None
                if wait.slow_now(now):
                    self.get_logger().warning(
                        f"shot {shot.plan}: no image from any camera {now - shot.triggered_at:.1f} s after its "
                        f"trigger: the cameras are slow (a loaded machine?); waiting up to "
                        f"{wait.deadline() - shot.triggered_at:.0f} s")
                if now >= wait.deadline():
                    break
                self._sets.cond.wait(min(wait.deadline() - now, 0.05))
            lacking = self._lacking(shot)
            went_on = {self._input_name(i): self._delivered_after(i, shot) for i in range(self.sync.num_inputs)}
        waited = time.monotonic() - shot.triggered_at
        stopped = stopped_cameras([self._input_name(i) for i in lacking], went_on, later_shot)
        if stopped:
            raise ImagesLostError(
                f"shot {shot.plan}: nothing from {', '.join(stopped)} since its trigger (stamp "
                f"{shot.stamp_ns * 1e-9:.3f}) while the other cameras went on: camera stopped?", stopped)
        if wait.first_image_at is None:
            raise ImagesLostError(
                f"shot {shot.plan}: no image from any camera within {waited:.1f} s of its trigger (stamp "
                f"{shot.stamp_ns * 1e-9:.3f}): the cameras are too slow or not delivering", [])
        names = [self._input_name(i) for i in lacking]
        raise ImagesLostError(
            f"shot {shot.plan}: images lost (stamp {shot.stamp_ns * 1e-9:.3f}; no {', '.join(names) or '?'} "
            f"within {waited:.1f} s of the trigger or before a later one)", [])

    def _lacking(self, shot: _Shot) -> list[int]:
        """Synchronizer inputs holding nothing at the shot's stamp."""
        slop = self.sync.slop_ns
        return [i for i in range(self.sync.num_inputs)
                if not any(abs(s - shot.stamp_ns) < slop for s in self.sync.queued_stamps(i))]

    def _delivered_after(self, index: int, shot: _Shot) -> bool:
        """Whether input `index` delivered something stamped after the shot (still queued, or part
        of a later complete set); caller holds self._sets.cond."""
        after = shot.stamp_ns + self.sync.slop_ns
        return any(s >= after for s in self._sets.by_stamp) or any(s >= after for s in self.sync.queued_stamps(index))

    def _input_name(self, index: int) -> str:
        return f"cam{index // 2}/{'image_raw' if index % 2 == 0 else 'camera_info'}"

    def _wait_imu_history(self, gh: ServerGoalHandle) -> None:
        """Hand-held: the buffer must reach back over the pre-burst window before the burst starts
        (a freshly started IMU fills it meanwhile). Samples still in flight are waited for after
        the burst."""
        need_ns = int(self.params["imu_window_s"] * 1e9)
        deadline = time.monotonic() + self.params["imu_window_s"] + self.params["imu_timeout_s"]
        while True:
            now_ns = self.get_clock().now().nanoseconds
            oldest = self.imu.oldest_ns
            if oldest is not None and oldest <= now_ns - need_ns:
                return
            if gh.is_cancel_requested:
                raise BurstCancelError("waiting for IMU history")
            if time.monotonic() > deadline:
                have = (now_ns - oldest) * 1e-9 if oldest is not None else 0.0
                raise BurstAbortError(
                    f"hand-held burst needs {self.params['imu_window_s']:.1f} s of IMU samples on imu/data before "
                    f"the first shot; have {have:.2f} s (is the IMU running?)"
                )
            time.sleep(0.02)

    def _wait_first_imu_sample(self, gh: ServerGoalHandle) -> None:
        """Stage bursts: an IMU that is matched but has not delivered yet (just started) gets up to
        imu_timeout_s, so that the sequence carries its samples from before the first shot. Just
        after start-up an IMU may not be discovered yet; a rig without one waits only then."""
        while not self._imu_sub.get_publisher_count() and time.monotonic() - self._started < _DISCOVERY_S:
            if gh.is_cancel_requested:
                raise BurstCancelError("waiting for the IMU to be discovered")
            time.sleep(0.02)
        deadline = time.monotonic() + self.params["imu_timeout_s"]
        while not len(self.imu) and self._imu_sub.get_publisher_count() > 0:
            if gh.is_cancel_requested:
                raise BurstCancelError("waiting for the first IMU sample")
            if time.monotonic() > deadline:
                self.get_logger().warning("imu/data is matched but delivered nothing: the burst goes on without")
                return
            time.sleep(0.02)

    def _imu_samples(self, burst_start_ns: int, shots: list[_Shot], required: bool) -> list[Imu]:
        last = max(s.stamp_ns for s in shots)
        covered = self.imu.wait_until(last, self.params["imu_timeout_s"] if required or len(self.imu) else 0.0)
        start = min(burst_start_ns, min(s.stamp_ns for s in shots)) - int(self.params["imu_window_s"] * 1e9)
        samples = [s.value for s in self.imu.between(start, last + 20_000_000)]
        if required and not covered:
            raise BurstAbortError(f"IMU samples do not reach the last exposure ({len(samples)} samples; IMU stopped?)")
        if not samples:
            self.get_logger().warning("no IMU samples on imu/data: the sequence carries none")
        return samples

    def close(self) -> None:
        self.listener.close()

    # -- output ------------------------------------------------------------------------------

    def _sequence(self, goal: CaptureSequence.Goal, shots: list[_Shot], poses: list[list[np.ndarray]],
                  imu: list[Imu]) -> FocusSequence:
        cal = self.calibration
        msg = FocusSequence()
        ref = cal.reference_camera
        msg.header = Header(stamp=ns_to_stamp(shots[0].stamp_ns), frame_id=self.params["frame_id"] or
                            optical_frame(ref))
        msg.num_shots, msg.num_cameras = len(shots), len(cal.cameras)
        msg.reference_camera = ref
        msg.focus_mode, msg.hand_held = int(goal.focus_mode), bool(goal.hand_held)
        for k, shot in enumerate(shots):
            assert shot.frames is not None
            for c, cam in enumerate(cal.cameras):
                image, info = shot.frames[2 * c], shot.frames[2 * c + 1]
                if (image.width, image.height) != (info.width, info.height):
                    raise BurstAbortError(f"shot {k}: {cam.name} image is {image.width}x{image.height} but its "
                                       f"camera_info says {info.width}x{info.height}")
                scaled = cam.scaled(int(info.width), int(info.height)) if info.width else cam
                f = CapturedFrame()
                f.camera_index, f.shot_index, f.camera_name = c, k, cam.name
                f.image, f.camera_info = image, info
                f.pose = matrix_to_pose(poses[k][c])
                f.focus_distance_m = float(shot.focus_m[c])
                f.f_number, f.focal_length_mm = float(cam.f_number), float(cam.focal_length_mm)
                f.pixel_size_um = float(scaled.pixel_size_um)
                f.exposure_time_s = float(self.params["exposure_time_s"])
                msg.frames.append(f)
            msg.actuator_states.append(shot.actuator)
        msg.imu = imu
        return msg


def main(args: list[str] | None = None) -> int:
    return run_node("sequencer", SequencerNode, args, num_threads=4)


if __name__ == "__main__":
    raise SystemExit(main())
