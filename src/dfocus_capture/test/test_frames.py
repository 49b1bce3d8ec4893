"""The array's transform tree (`frames`) and its messages (`ros_convert.edge_to_transform`), without
rclpy: where a point of each camera lands in the robot's frame."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dfocus_capture.calibration import load_calibration
from dfocus_capture.frames import (
    ARRAY_FRAME,
    IMU_FRAME,
    MOUNT_FRAME,
    FrameError,
    compose,
    mount_matrix,
    optical_frame,
    stage_edge,
    static_edges,
)
from dfocus_capture.ros_convert import edge_to_transform, transform_to_matrix

CAL = load_calibration(Path(__file__).resolve().parents[3] / "config" / "camera_array.yaml")


def _tree(xyz=(0.0, 0.0, 0.0), rpy=(0.0, 0.0, 0.0), stage_mm=(0.0, 0.0)):
    return [*static_edges(CAL, "base_link", mount_matrix(xyz, rpy)), stage_edge(stage_mm)]


def _apply(m: np.ndarray, p: tuple[float, float, float]) -> np.ndarray:
    return (m @ np.array([*p, 1.0]))[:3]


def test_a_point_ahead_of_the_reference_camera_is_ahead_of_the_robot() -> None:
    tree = _tree()
    ref = optical_frame(CAL.reference_camera)
    # REP 103: optical z forward, x right, y down; base_link x forward, y left, z up.
    np.testing.assert_allclose(_apply(compose(tree, "base_link", ref), (0.0, 0.0, 2.0)), [2.0, 0, 0], atol=1e-12)
    np.testing.assert_allclose(_apply(compose(tree, "base_link", ref), (0.1, 0.2, 0.0)), [0, -0.1, -0.2], atol=1e-12)
    np.testing.assert_allclose(compose(tree, IMU_FRAME, ref), np.eye(4), atol=1e-12)


def test_every_camera_sits_where_the_calibration_puts_it() -> None:
    tree = _tree()
    ref = optical_frame(CAL.reference_camera)
    p = (0.05, -0.02, 1.5)
    for cam in CAL.cameras:
        in_ref = _apply(compose(tree, ref, optical_frame(cam.name)), p)
        np.testing.assert_allclose(in_ref, _apply(np.asarray(cam.T_ref_cam), p), atol=1e-12)
    # and the inverse lookup: the reference's point seen from cam1
    cam1 = CAL.cameras[1]
    np.testing.assert_allclose(_apply(compose(tree, optical_frame(cam1.name), ref), p),
                               _apply(np.linalg.inv(cam1.T_ref_cam), p), atol=1e-12)


def test_mount_and_stage_move_the_array_in_the_robot_frame() -> None:
    # Mounted 0.1 m forward and 0.5 m up, turned 90 degrees left: the cameras look along +y.
    tree = _tree((0.1, 0.0, 0.5), (0.0, 0.0, math.pi / 2), stage_mm=(1.0, -2.0))
    ref = optical_frame(CAL.reference_camera)
    # stage +1 mm along optical x (right) and -2 mm along optical y (down, so up): in the mount's
    # body axes -1 mm y (left) and +2 mm z; the mount turns body -y into the robot's +x.
    origin = _apply(compose(tree, "base_link", ref), (0.0, 0.0, 0.0))
    np.testing.assert_allclose(origin, [0.1 + 0.001, 0.0, 0.5 + 0.002], atol=1e-12)
    ahead = _apply(compose(tree, "base_link", ref), (0.0, 0.0, 1.0))
    np.testing.assert_allclose(ahead - origin, [0.0, 1.0, 0.0], atol=1e-12)
    cameras = {optical_frame(c.name) for c in CAL.cameras}
    assert {e.child for e in tree} >= {MOUNT_FRAME, ARRAY_FRAME, IMU_FRAME, *cameras}


@pytest.mark.parametrize("name", ["", "/base_link", "base link"])
def test_frame_ids_tf2_would_refuse_are_refused(name: str) -> None:
    with pytest.raises(FrameError, match="parent_frame"):
        static_edges(CAL, name, np.eye(4))


@pytest.mark.parametrize("xyz,rpy", [((0, 0), (0, 0, 0)), ((0, 0, 0), (0, 0, float("nan"))),
                                     ((float("inf"), 0, 0), (0, 0, 0))])
def test_bad_mounts_are_refused(xyz, rpy) -> None:
    with pytest.raises(FrameError, match="mount"):
        mount_matrix(xyz, rpy)


def test_a_non_finite_stage_position_is_refused() -> None:
    with pytest.raises(FrameError, match="finite"):
        stage_edge([float("nan"), 0.0])


def test_disconnected_frames_are_reported() -> None:
    with pytest.raises(FrameError, match="not connected"):
        compose(_tree(), "base_link", "map")


angles = st.floats(-math.pi, math.pi, allow_nan=False)
metres = st.floats(-10, 10, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(st.tuples(metres, metres, metres), st.tuples(angles, angles, angles))
def test_mount_rotation_follows_urdf_rpy_and_survives_the_message(xyz, rpy) -> None:
    m = mount_matrix(xyz, rpy)
    R = m[:3, :3]
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(R) == pytest.approx(1.0)
    roll, pitch, yaw = rpy

    def axis(k: int, a: float) -> np.ndarray:  # rotation about one fixed axis
        c, s = math.cos(a), math.sin(a)
        i, j = [(1, 2), (2, 0), (0, 1)][k]
        r = np.eye(3)
        r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
        return r

    np.testing.assert_allclose(R, axis(2, yaw) @ axis(1, pitch) @ axis(0, roll), atol=1e-12)
    edge = static_edges(CAL, "base_link", m)[0]
    msg = edge_to_transform(edge, 1_700_000_000_123_456_789)
    assert (msg.header.frame_id, msg.child_frame_id) == ("base_link", MOUNT_FRAME)
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (1_700_000_000, 123_456_789)
    np.testing.assert_allclose(transform_to_matrix(msg.transform), m, atol=1e-9)
