"""The capture graph across processes: camera_array (sim, 320x240), imu, actuators and sequencer
each in its own process, driven through the capture_sequence action from this test's node.

Poses in every published FocusSequence are scored against the simulator's truth: the same motion
the camera process rendered, i.e. the stage positions on actuators/state and (hand-held) the hand
tremor of the shared seed, evaluated at each frame's exposure stamp."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rclpy.action import ActionClient
from rclpy.parameter import Parameter
from rclpy.parameter_client import AsyncParameterClient

from dfocus_capture.calibration import load_calibration
from dfocus_capture.hand_motion import HandTremor, TremorConfig, log_so3
from dfocus_capture.imu_model import ActuatorTrack
from dfocus_capture.qos import LATCHED, TRACK
from dfocus_capture.ros_convert import burst_from_msg, stamp_to_ns
from dfocus_interfaces.action import CaptureSequence
from dfocus_interfaces.msg import ActuatorState, FocusSequence, SequenceAnnouncement
from dfocus_interfaces.srv import MoveActuators

pytestmark = pytest.mark.ros

SEED = 5
CALIBRATION = load_calibration(Path(__file__).resolve().parents[3] / "config" / "camera_array.yaml")
STATUS_SUCCEEDED, STATUS_CANCELED, STATUS_ABORTED = 4, 5, 6


class Graph:
    """The four node processes plus this test's client node."""

    def __init__(self, node_processes: Any, rclpy_context: Any, spin: Callable[..., Any], wait: Callable[..., None],
                 hand_held: bool) -> None:
        import rclpy

        # A namespace of its own per graph: endpoints of an earlier graph's stopped processes linger
        # in DDS discovery for a while and would answer for the new ones.
        self.ns = f"/seqgraph_{uuid.uuid4().hex[:8]}"
        common = ["--ros-args", "-r", f"__ns:={self.ns}"]
        held = ["-p", f"hand_held:={str(hand_held).lower()}", "-p", f"seed:={SEED}"]
        self.procs = {
            "camera_array": node_processes.python(
                "dfocus_capture.camera_array_node", *common, *held, "-p", "width:=320", "-p", "height:=240",
                "-p", "rate_hz:=0.0", name="camera_array"),
            "imu": node_processes.python("dfocus_capture.imu_node", *common, *held, name="imu"),
            "actuators": node_processes.python("dfocus_capture.actuators_node", *common, name="actuators"),
            "sequencer": node_processes.python(
                "dfocus_capture.sequencer_node", *common, "-p", "service_wait_s:=10.0", "-p", "frame_timeout_s:=5.0",
                name="sequencer"),
        }
        self.node_processes = node_processes
        self.wait = wait
        self.node = rclpy.create_node("graph_test", namespace=self.ns, context=rclpy_context)
        self.sequences: list[Any] = []
        self.feedback: list[Any] = []
        self.stage = ActuatorTrack(max_samples=100_000)
        self.tremor = HandTremor(SEED, TremorConfig()) if hand_held else None
        self._lock = threading.Lock()
        self.node.create_subscription(FocusSequence, "capture/sequence", self._on_sequence, LATCHED)
        self.announced: list[Any] = []
        self.node.create_subscription(SequenceAnnouncement, "capture/announced", self.announced.append, LATCHED)
        self.node.create_subscription(ActuatorState, "actuators/state", self._on_state, TRACK)
        self.client = ActionClient(self.node, CaptureSequence, "capture_sequence")
        # Created now, so that DDS has matched it long before it is used.
        self.move = self.node.create_client(MoveActuators, "actuators/move")
        self.params = {n: AsyncParameterClient(self.node, f"{self.ns}/{n}")
                       for n in ("camera_array", "actuators", "sequencer")}
        spin(self.node)
        try:
            wait(lambda: self.client.wait_for_server(timeout_sec=0.1), 30.0, "the capture_sequence action server")
            wait(lambda: self.stage.latest_t is not None, 30.0, "actuators/state")
            # A hand-held burst waits only imu_window_s + imu_timeout_s for the IMU's history; on a
            # loaded machine the IMU process can still be starting when the other nodes answer.
            wait(lambda: self.node.count_publishers(f"{self.ns}/imu/data") > 0, 30.0, "the imu/data publisher")
            self._round_trip()
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.logs()}") from None

    def _round_trip(self) -> None:
        """The graph reports a server before DDS has matched its endpoints, and a request sent in
        that gap is lost: an invalid goal (aborted at once, harmless) is retried until it makes the
        whole trip, goal and result."""
        for _ in range(10):
            future = self.client.send_goal_async(CaptureSequence.Goal(num_shots=0))
            try:
                self.wait(future.done, 3.0, "the probe goal's response")
                result = future.result().get_result_async()
                self.wait(result.done, 3.0, "the probe goal's result")
            except AssertionError:
                continue
            assert result.result().status == STATUS_ABORTED
            return
        raise AssertionError("the sequencer never answered a goal")

    def _on_sequence(self, msg: Any) -> None:
        with self._lock:
            self.sequences.append(msg)

    def _on_state(self, msg: Any) -> None:
        self.stage.add(stamp_to_ns(msg.header.stamp) * 1e-9, np.asarray(msg.position_mm))

    def logs(self) -> str:
        return "\n".join(f"--- {n}\n{self.node_processes.output(p)[-3000:]}" for n, p in self.procs.items())

    def send(self, **goal: Any) -> Any:
        """Send a goal; returns its handle once the server has answered."""
        future = self.client.send_goal_async(CaptureSequence.Goal(**goal), feedback_callback=self._on_feedback)
        self.wait(future.done, 10.0, "the goal response")
        return future.result()

    def _on_feedback(self, fb: Any) -> None:
        self.feedback.append(fb.feedback)

    def result(self, handle: Any, timeout: float = 30.0) -> Any:
        future = handle.get_result_async()
        try:
            self.wait(future.done, timeout, "the goal result")
        except AssertionError:
            raise AssertionError(self.logs()) from None
        return future.result()

    def run(self, **goal: Any) -> Any:
        handle = self.send(**goal)
        assert handle.accepted
        return self.result(handle)

    def set_param(self, node: str, name: str, value: Any) -> None:
        client = self.params[node]
        self.wait(lambda: client.wait_for_services(timeout_sec=0.1), 10.0, f"{node} parameter services")
        for _ in range(5):  # idempotent: retried when the first request falls in the discovery gap
            future = client.set_parameters([Parameter(name, value=value)])
            try:
                self.wait(future.done, 3.0, f"setting {node}.{name}")
                break
            except AssertionError:
                continue
        assert future.done() and future.result().results[0].successful, f"could not set {node}.{name}"

    def true_motion(self, stamps_ns: list[int]) -> list[np.ndarray]:
        """The array pose at each stamp relative to the first, as the camera process rendered it."""
        poses = []
        for ns in stamps_ns:
            t = ns * 1e-9
            stage = np.eye(4)
            stage[:3, 3] = self.stage.position_at(t)
            poses.append(stage if self.tremor is None else self.tremor.pose_at(t) @ stage)
        first_inv = np.linalg.inv(poses[0])
        return [first_inv @ p for p in poses]


@pytest.fixture
def graph_factory(node_processes: Any, rclpy_context: Any, spin: Callable[..., Any],
                  wait: Callable[..., None]) -> Iterator[Callable[[bool], Graph]]:
    # The spin fixture destroys each graph's node and action client once its executor has stopped
    # (destroyed while it spins, the client fails the executor's wait set).
    def make(hand_held: bool) -> Graph:
        return Graph(node_processes, rclpy_context, spin, wait, hand_held)

    yield make


def pose_errors(graph: Graph, msg: Any) -> tuple[float, float, float]:
    """Worst translation error (m), rotation error (rad) and largest true camera motion (m)."""
    burst = burst_from_msg(msg)
    stamps = [burst.frame(k, 0).stamp_ns for k in range(burst.num_shots)]
    truth = graph.true_motion(stamps)
    worst_t = worst_r = moved = 0.0
    for k in range(burst.num_shots):
        for c, cam in enumerate(CALIBRATION.cameras):
            est = burst.frame(k, c).camera.T_ref_cam
            true = truth[k] @ cam.T_ref_cam
            worst_t = max(worst_t, float(np.linalg.norm(est[:3, 3] - true[:3, 3])))
            worst_r = max(worst_r, float(np.linalg.norm(log_so3(est[:3, :3].T @ true[:3, :3]))))
            moved = max(moved, float(np.linalg.norm(true[:3, 3] - cam.T_ref_cam[:3, 3])))
    return worst_t, worst_r, moved


def wait_sequences(graph: Graph, count: int) -> None:
    graph.wait(lambda: len(graph.sequences) >= count, 10.0, f"{count} published sequences")


def test_actuator_bursts_cancel_and_faults(graph_factory: Callable[[bool], Graph]) -> None:
    g = graph_factory(False)

    # A 7-shot circle burst: 7 x 5 frames, poses within 0.2 mm of the rendered truth.
    res = g.run(num_shots=7, shift_pattern=1, shift_amplitude_mm=0.5, focus_mode=0)
    assert res.status == STATUS_SUCCEEDED and res.result.success, res.result.message
    wait_sequences(g, 1)
    seq = g.sequences[0]
    assert res.result.sequence_id == seq.sequence_id
    # Announced with the same id and header (just before the frames).
    g.wait(lambda: bool(g.announced), 10.0, "the capture/announced message")
    assert (g.announced[-1].sequence_id, g.announced[-1].header, g.announced[-1].num_shots) == (
        seq.sequence_id, seq.header, 7)
    assert (seq.num_shots, seq.num_cameras, len(seq.frames), len(seq.actuator_states)) == (7, 5, 35, 7)
    assert {(f.shot_index, f.camera_index) for f in seq.frames} == {(k, c) for k in range(7) for c in range(5)}
    assert all((f.image.width, f.image.height, f.image.encoding) == (320, 240, "rgb8") for f in seq.frames)
    # One trigger per shot: every camera of a shot shares its stamp, shots are distinct.
    stamps = [{stamp_to_ns(seq.frames[k * 5 + c].image.header.stamp) for c in range(5)} for k in range(7)]
    assert all(len(s) == 1 for s in stamps) and len({next(iter(s)) for s in stamps}) == 7
    own_focus = [c.focus_distance_m for c in CALIBRATION.cameras]
    assert [f.focus_distance_m for f in seq.frames[:5]] == pytest.approx(own_focus)
    t_err, _, moved = pose_errors(g, seq)
    print(f"actuators: worst camera translation error {t_err * 1e3:.4f} mm, largest true motion {moved * 1e3:.3f} mm")
    assert moved > 0.4e-3, "the stage did not shift the array"
    assert t_err < 0.2e-3, f"pose error {t_err * 1e3:.3f} mm"
    # imu/data at 400 Hz on the sensor's grid, covering the window before and during the burst.
    imu_t = np.array([stamp_to_ns(m.header.stamp) for m in seq.imu])
    shot_t = [next(iter(s)) for s in stamps]
    assert imu_t[0] < min(shot_t) and imu_t[-1] >= max(shot_t)  # the burst is fast: the window may be short
    assert len(imu_t) > 0.9 * (imu_t[-1] - imu_t[0]) / 2_500_000 and np.median(np.diff(imu_t)) == 2_500_000
    assert all(m.header.frame_id == "imu_link" for m in seq.imu[:5])
    assert [fb.shot_index for fb in g.feedback if fb.stage == "triggering"][:7] == list(range(7))

    # Focus bracketing: each shot's focus is the plan's, reported back by the cameras.
    res = g.run(num_shots=3, shift_pattern=2, shift_amplitude_mm=0.3, focus_mode=1, bracket_near_m=0.3,
                bracket_far_m=10.0)
    assert res.result.success, res.result.message
    wait_sequences(g, 2)
    focus = np.array([f.focus_distance_m for f in g.sequences[1].frames])
    np.testing.assert_allclose(np.sort(1 / focus)[::-1], np.linspace(1 / 0.3, 1 / 10.0, 15), rtol=1e-5)
    assert pose_errors(g, g.sequences[1])[0] < 0.2e-3

    # A second goal while one runs is rejected; cancel mid-burst publishes nothing.
    g.feedback.clear()
    running = g.send(num_shots=10, shift_pattern=3, shift_amplitude_mm=0.5)
    assert running.accepted
    g.wait(lambda: any(fb.shot_index >= 1 for fb in g.feedback), 20.0, "the burst to reach shot 1")
    assert not g.send(num_shots=2).accepted
    cancel = running.cancel_goal_async()
    g.wait(cancel.done, 10.0, "the cancel response")
    res = g.result(running)
    assert res.status == STATUS_CANCELED and not res.result.success
    assert "canceled" in res.result.message

    # Bad input: aborted with the reason.
    res = g.run(num_shots=11)
    assert res.status == STATUS_ABORTED and "num_shots" in res.result.message
    res = g.run(num_shots=3, shift_pattern=1, shift_amplitude_mm=2.0)
    assert res.status == STATUS_ABORTED and "travel" in res.result.message, res.result.message

    # The stage refuses an out-of-range move with its reason (called directly).
    g.wait(lambda: g.move.wait_for_service(timeout_sec=0.1), 10.0, "actuators/move")
    reply = g.move.call_async(MoveActuators.Request(target_mm=[0.0, 2.5], timeout_s=1.0))
    g.wait(reply.done, 10.0, "the move response")
    assert not reply.result().success and "axis y target 2.5000 mm is outside the travel" in reply.result().message

    # A stuck actuator axis aborts with its reason; the graph keeps serving once it is freed.
    g.set_param("actuators", "fault_stuck_axis", "y")
    res = g.run(num_shots=4, shift_pattern=1, shift_amplitude_mm=0.5)
    assert res.status == STATUS_ABORTED
    assert "actuator move" in res.result.message and "axis y" in res.result.message, res.result.message
    g.set_param("actuators", "fault_stuck_axis", "")

    # Lost images (the camera array's seeded fault injection loses each image with probability 0.05:
    # in this graph those of shots 2 and 3) are taken again at the end, and the poses still hold.
    g.set_param("camera_array", "drop_rate", 0.05)
    res = g.run(num_shots=5, shift_pattern=1, shift_amplitude_mm=0.5)
    assert res.result.success and "2 shot(s) retaken" in res.result.message, res.result.message
    wait_sequences(g, 3)
    retaken = g.sequences[2]
    assert retaken.num_shots == 5 and len(retaken.frames) == 25
    stamps = [stamp_to_ns(f.image.header.stamp) for f in retaken.frames[::5]]
    assert stamps == sorted(stamps)
    assert pose_errors(g, retaken)[0] < 0.2e-3
    # Without retakes the next loss (shot 3 of this burst) aborts, with the reason.
    g.set_param("sequencer", "max_retakes", 0)
    res = g.run(num_shots=5, shift_pattern=1, shift_amplitude_mm=0.5)
    assert res.status == STATUS_ABORTED and "images lost" in res.result.message, res.result.message
    assert "no retake left" in res.result.message, res.result.message
    g.set_param("sequencer", "max_retakes", 2)
    g.set_param("camera_array", "drop_rate", 0.0)

    # A camera that stops delivering aborts the burst, naming it.
    g.set_param("camera_array", "fail_camera", 2)
    res = g.run(num_shots=3, shift_pattern=1, shift_amplitude_mm=0.5)
    assert res.status == STATUS_ABORTED and "cam2" in res.result.message, res.result.message
    g.set_param("camera_array", "fail_camera", -1)

    # Slow is not stopped: images that take longer than frame_timeout_s (5 s here) to come, from
    # every camera alike, are waited for (silent_timeout_s), and the burst succeeds.
    g.set_param("camera_array", "delivery_delay_s", 6.0)
    res = g.run(num_shots=2, shift_pattern=1, shift_amplitude_mm=0.5)
    g.set_param("camera_array", "delivery_delay_s", 0.0)
    assert res.result.success, f"{res.result.message}\n{g.logs()}"
    assert "the cameras are slow" in g.node_processes.output(g.procs["sequencer"])
    wait_sequences(g, 4)
    assert pose_errors(g, g.sequences[3])[0] < 0.2e-3

    # Everything recovered: the next burst succeeds, and only the successful bursts were published
    # (not the probe, the canceled, the refused or the failed ones), with increasing ids.
    res = g.run(num_shots=2, shift_pattern=1, shift_amplitude_mm=0.5)
    assert res.result.success, res.result.message
    wait_sequences(g, 5)
    assert len(g.sequences) == 5
    ids = [s.sequence_id for s in g.sequences]
    assert ids == sorted(set(ids)) and ids[-1] == res.result.sequence_id
    assert pose_errors(g, g.sequences[4])[0] < 0.2e-3


def test_hand_held_burst_poses_from_the_imu(graph_factory: Callable[[bool], Graph]) -> None:
    g = graph_factory(True)
    res = g.run(num_shots=5, hand_held=True, focus_mode=0)
    assert res.status == STATUS_SUCCEEDED and res.result.success, res.result.message
    wait_sequences(g, 1)
    seq = g.sequences[0]
    assert seq.hand_held and len(seq.frames) == 25
    t_err, r_err, moved = pose_errors(g, seq)
    print(f"hand-held: worst camera translation error {t_err * 1e3:.3f} mm, rotation {r_err * 1e3:.3f} mrad, "
          f"largest true motion {moved * 1e3:.3f} mm")
    assert moved > 0.1e-3, "the hand did not move the array"
    assert t_err < 2e-3, f"translation error {t_err * 1e3:.3f} mm"
    assert r_err < 1e-3, f"rotation error {r_err * 1e3:.3f} mrad"
    # The IMU samples of the sequence reach back over the pre-burst window and cover the burst.
    imu_t = [stamp_to_ns(m.header.stamp) for m in seq.imu]
    first = stamp_to_ns(seq.frames[0].image.header.stamp)
    last = stamp_to_ns(seq.frames[-1].image.header.stamp)
    assert imu_t == sorted(imu_t) and imu_t[0] <= first - 0.9e9 and imu_t[-1] >= last
