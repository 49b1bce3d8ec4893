"""Frame names and the array's transform tree (REP 103 / REP 105), pure numpy.

The tree, parent first (each edge: the child's pose in its parent):

    <parent_frame>                 the robot's frame the array is mounted on (base_link by default)
    └ dfocus_array_mount           static: the mounting transform (body axes: x forward, y left, z up)
      └ dfocus_array_link          on /tf: the actuator stage's displacement from its zero
        └ <ref>_optical_frame      static: body -> optical axes (x right, y down, z forward)
          ├ <cam>_optical_frame    static: the calibration's T_ref_cam of every other camera
          └ imu_link               static: identity (the IMU sits at the array origin, optical axes)

The array frame of the calibration and of `pose_estimation` is the reference camera's optical
frame; the stage moves it along its own x/y (mm in `actuators/state`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dfocus_capture.calibration import ArrayCalibration

MOUNT_FRAME = "dfocus_array_mount"
ARRAY_FRAME = "dfocus_array_link"
IMU_FRAME = "imu_link"
DEFAULT_PARENT_FRAME = "base_link"

# Body (REP 103: x forward, y left, z up) -> optical (x right, y down, z forward) axes: the columns
# are the optical axes written in body coordinates (the usual camera_link -> optical rotation).
BODY_FROM_OPTICAL = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


class FrameError(ValueError):
    """A frame name or mounting transform that tf2 cannot take."""


def optical_frame(camera_name: str) -> str:
    """The optical frame of a camera (header.frame_id of its images and camera_info)."""
    return f"{camera_name}_optical_frame"


@dataclass(frozen=True)
class Edge:
    """One transform: the child's pose in the parent (4x4, metres)."""

    parent: str
    child: str
    matrix: np.ndarray


def check_frame_id(name: str, what: str) -> None:
    """tf2 frame ids are non-empty and carry no leading slash (tf2 rejects or strips it)."""
    if not name or name.startswith("/") or any(c.isspace() for c in name):
        raise FrameError(f"{what} must be a non-empty frame id without a leading '/' or spaces, got {name!r}")


def mount_matrix(xyz: Sequence[float], rpy: Sequence[float]) -> np.ndarray:
    """The mounting pose from a translation (m) and roll, pitch, yaw (rad; fixed axes x, y, z as in
    URDF and static_transform_publisher)."""
    if len(xyz) != 3 or len(rpy) != 3:
        raise FrameError(f"mount_xyz and mount_rpy take 3 numbers each, got {list(xyz)} and {list(rpy)}")
    if not np.all(np.isfinite([*xyz, *rpy])):
        raise FrameError(f"mount_xyz and mount_rpy must be finite, got {list(xyz)} and {list(rpy)}")
    roll, pitch, yaw = (float(v) for v in rpy)
    cr, sr, cp, sp, cy, sy = np.cos(roll), np.sin(roll), np.cos(pitch), np.sin(pitch), np.cos(yaw), np.sin(yaw)
    m = np.eye(4)
    # R = Rz(yaw) Ry(pitch) Rx(roll)
    m[:3, :3] = [[cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
                 [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
                 [-sp, cp * sr, cp * cr]]
    m[:3, 3] = [float(v) for v in xyz]
    return m


def static_edges(cal: ArrayCalibration, parent_frame: str, mount: np.ndarray) -> list[Edge]:
    """Every edge of the tree but the stage's (published once, on /tf_static)."""
    check_frame_id(parent_frame, "parent_frame")
    to_optical = np.eye(4)
    to_optical[:3, :3] = BODY_FROM_OPTICAL
    ref = optical_frame(cal.reference_camera)
    edges = [Edge(parent_frame, MOUNT_FRAME, mount), Edge(ARRAY_FRAME, ref, to_optical),
             Edge(ref, IMU_FRAME, np.eye(4))]
    edges += [Edge(ref, optical_frame(c.name), np.asarray(c.T_ref_cam, dtype=float))
              for c in cal.cameras if c.name != cal.reference_camera]
    return edges


def stage_edge(position_mm: Sequence[float]) -> Edge:
    """The stage's displacement (mm along the array frame's x, y and z, as `actuators/state`
    reports it; missing axes are 0) as the pose of the array link in the mount frame."""
    shift = np.zeros(3)
    values = [float(v) for v in position_mm][:3]
    shift[: len(values)] = values
    if not np.all(np.isfinite(shift)):
        raise FrameError(f"stage position must be finite, got {list(position_mm)}")
    m = np.eye(4)
    m[:3, 3] = BODY_FROM_OPTICAL @ (shift * 1e-3)
    return Edge(MOUNT_FRAME, ARRAY_FRAME, m)


def compose(edges: Sequence[Edge], target: str, source: str) -> np.ndarray:
    """The 4x4 that maps points in `source` into `target` through the tree `edges` (what
    tf2's lookupTransform(target, source) gives)."""
    parent_of = {e.child: e for e in edges}

    def to_root(frame: str) -> list[str]:
        chain = [frame]
        while chain[-1] in parent_of:
            chain.append(parent_of[chain[-1]].parent)
            if len(chain) > len(edges) + 1:
                raise FrameError(f"the tree has a cycle through {frame!r}")
        return chain

    up_s, up_t = to_root(source), to_root(target)
    common = next((f for f in up_s if f in up_t), None)
    if common is None:
        raise FrameError(f"{source!r} and {target!r} are not connected")

    def root_from(frame: str) -> np.ndarray:  # maps `frame` points into `common`
        m = np.eye(4)
        while frame != common:
            e = parent_of[frame]
            m = e.matrix @ m
            frame = e.parent
        return m

    return np.asarray(np.linalg.inv(root_from(target)) @ root_from(source))
