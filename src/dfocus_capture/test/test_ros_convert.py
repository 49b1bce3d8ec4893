"""Message conversions: images in every encoding we accept, poses, camera_info, whole bursts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sensor_msgs.msg import Image

from dfocus_capture.burst import Burst, BurstError, burst_from_images
from dfocus_capture.calibration import load_calibration
from dfocus_capture.ros_convert import (
    ImageConversionError,
    burst_from_msg,
    burst_to_msg,
    image_to_msg,
    matrix_to_pose,
    msg_to_image,
    pose_to_matrix,
    to_rgb,
)

SHIPPED = Path(__file__).resolve().parents[3] / "config" / "camera_array.yaml"
rng = np.random.default_rng(7)


@pytest.mark.parametrize(
    ("encoding", "shape", "dtype"),
    [("rgb8", (5, 7, 3), np.uint8), ("bgr8", (5, 7, 3), np.uint8), ("mono8", (5, 7), np.uint8),
     ("mono16", (5, 7), np.uint16), ("rgb16", (4, 3, 3), np.uint16), ("32FC1", (6, 5), np.float32)],
)
def test_image_round_trip(encoding: str, shape: tuple[int, ...], dtype: type) -> None:
    arr = (rng.random(shape) * 200).astype(dtype)
    msg = image_to_msg(arr, encoding)
    assert msg.step == arr.strides[0] and len(msg.data) == arr.nbytes
    np.testing.assert_array_equal(msg_to_image(msg), arr)


def test_padded_rows_and_big_endian() -> None:
    arr = rng.integers(0, 60000, (3, 4), dtype=np.uint16)
    msg = Image(height=3, width=4, encoding="mono16", is_bigendian=1, step=10)
    padded = np.zeros((3, 10), np.uint8)
    padded[:, :8] = arr.astype(">u2").view(np.uint8).reshape(3, 8)
    msg.data = padded.tobytes()
    np.testing.assert_array_equal(msg_to_image(msg), arr)


@pytest.mark.parametrize(
    ("msg", "reason"),
    [
        (Image(height=2, width=2, encoding="yuv422", step=4, data=b"\0" * 8), "unsupported encoding"),
        (Image(height=2, width=2, encoding="rgb8", step=6, data=b"\0" * 5), "needs 12"),
        (Image(height=2, width=2, encoding="rgb8", step=3, data=b"\0" * 12), "shorter than a row"),
        (Image(height=0, width=2, encoding="rgb8", step=6), "empty"),
    ],
)
def test_malformed_images_raise(msg: Image, reason: str) -> None:
    with pytest.raises(ImageConversionError, match=reason):
        msg_to_image(msg)


def test_encodings_convert_to_rgb() -> None:
    bgr = np.zeros((1, 1, 3), np.uint8)
    bgr[0, 0] = (1, 2, 3)
    assert to_rgb(bgr, "bgr8")[0, 0].tolist() == [3, 2, 1]
    assert to_rgb(np.full((2, 2), 9, np.uint8), "mono8").shape == (2, 2, 3)


def test_pose_round_trip_and_nan_refused() -> None:
    angle = 0.3
    T = np.eye(4)
    T[:3, :3] = [[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]]
    T[:3, 3] = (0.01, -0.02, 0.003)
    np.testing.assert_allclose(pose_to_matrix(matrix_to_pose(T)), T, atol=1e-12)
    p = matrix_to_pose(T)
    p.position.x = float("nan")
    with pytest.raises(BurstError, match="NaN"):
        pose_to_matrix(p)


def _burst(shots: int = 2) -> Burst:
    cal = load_calibration(SHIPPED).scaled(64, 48)
    images = [rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) for _ in range(shots * len(cal))]
    return burst_from_images(images, cal, sequence_id=42)


def test_burst_message_round_trip() -> None:
    burst = _burst()
    back = burst_from_msg(burst_to_msg(burst))
    assert (back.sequence_id, back.num_shots, back.num_cameras) == (42, 2, 5)
    for a, b in zip(burst.frames, back.frames, strict=True):
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_allclose(a.camera.K, b.camera.K)
        np.testing.assert_allclose(a.camera.T_ref_cam, b.camera.T_ref_cam, atol=1e-9)
        assert a.camera.focus_distance_m == pytest.approx(b.camera.focus_distance_m)


def test_malformed_sequences_raise_typed_errors() -> None:
    msg = burst_to_msg(_burst())
    msg.frames[3].image.data = b"\0" * 10
    with pytest.raises(ImageConversionError, match="frame 3"):
        burst_from_msg(msg)
    msg = burst_to_msg(_burst())
    msg.frames[1].camera_info.width = 0
    with pytest.raises(ValueError, match="frame 1"):
        burst_from_msg(msg)
    msg = burst_to_msg(_burst())
    msg.frames.pop()
    with pytest.raises(BurstError, match="expected 2 shots x 5 cameras"):
        burst_from_msg(msg)


def test_actuator_state_feeds_the_track_and_a_bad_one_is_logged() -> None:
    from dfocus_capture.imu_model import ActuatorTrack
    from dfocus_capture.ros_convert import add_actuator_state, ns_to_stamp
    from dfocus_interfaces.msg import ActuatorState

    class Log:
        def __init__(self) -> None:
            self.lines: list[str] = []

        def warning(self, text: str, **_: object) -> None:
            self.lines.append(text)

    track, log = ActuatorTrack(), Log()
    good = ActuatorState(position_mm=[0.5, -0.25])
    good.header.stamp = ns_to_stamp(2_000_000_000)
    add_actuator_state(track, good, log)  # type: ignore[arg-type]
    bad = ActuatorState(position_mm=[float("nan"), 0.0])
    bad.header.stamp = ns_to_stamp(3_000_000_000)
    add_actuator_state(track, bad, log)  # type: ignore[arg-type]
    assert track.latest_t == 2.0
    np.testing.assert_allclose(track.position_at(2.0), [0.5e-3, -0.25e-3, 0.0])
    assert len(log.lines) == 1 and log.lines[0].startswith("ignoring actuators/state: ")
