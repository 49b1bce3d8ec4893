"""Conversions between ROS messages and numpy / dfocus core types.

cv_bridge and sensor_msgs_py are not installable here, so this module does their job for the
encodings dfocus uses. It needs only the generated message classes, not an rclpy context.
Image payloads go through `bytes` (a numpy array assigned to `msg.data` is copied element-wise,
hundreds of times slower) and come back as zero-copy views of `msg.data`.
"""

from __future__ import annotations

import array
import math
from typing import TYPE_CHECKING

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Pose, Transform, TransformStamped
from sensor_msgs.msg import CameraInfo, Image, Imu
from std_msgs.msg import Header

from dfocus_capture.burst import Burst, BurstError, BurstFrame
from dfocus_capture.calibration import CalibrationError, CameraModel
from dfocus_capture.frames import Edge, optical_frame
from dfocus_capture.imu_model import ActuatorTrack, ImuModelError

if TYPE_CHECKING:
    from rclpy.impl.rcutils_logger import RcutilsLogger

    from dfocus_interfaces.msg import ActuatorState

# encoding -> (numpy dtype, channels)
ENCODINGS: dict[str, tuple[type[np.generic], int]] = {
    "rgb8": (np.uint8, 3),
    "bgr8": (np.uint8, 3),
    "rgba8": (np.uint8, 4),
    "bgra8": (np.uint8, 4),
    "mono8": (np.uint8, 1),
    "8UC1": (np.uint8, 1),
    "8UC3": (np.uint8, 3),
    "rgb16": (np.uint16, 3),
    "bgr16": (np.uint16, 3),
    "mono16": (np.uint16, 1),
    "16UC1": (np.uint16, 1),
    "32FC1": (np.float32, 1),
}


class ImageConversionError(ValueError):
    """A sensor_msgs/Image cannot be read: unknown encoding, wrong step or truncated data."""


def stamp_to_ns(t: Time) -> int:
    return int(t.sec) * 1_000_000_000 + int(t.nanosec)


def ns_to_stamp(ns: int) -> Time:
    return Time(sec=int(ns // 1_000_000_000), nanosec=int(ns % 1_000_000_000))


def image_to_msg(arr: np.ndarray, encoding: str, header: Header | None = None) -> Image:
    if encoding not in ENCODINGS:
        raise ImageConversionError(f"unsupported encoding {encoding!r}")
    dtype, channels = ENCODINGS[encoding]
    if arr.dtype != dtype:
        raise ImageConversionError(f"{encoding} needs {np.dtype(dtype).name} data, got {arr.dtype}")
    shape_ok = arr.ndim == 2 if channels == 1 else (arr.ndim == 3 and arr.shape[2] == channels)
    if channels == 1 and arr.ndim == 3 and arr.shape[2] == 1:
        arr, shape_ok = arr[:, :, 0], True
    if not shape_ok:
        raise ImageConversionError(f"{encoding} needs {channels} channel(s), got shape {arr.shape}")
    arr = np.ascontiguousarray(arr)
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(arr.shape[0]), int(arr.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = int(arr.strides[0])
    data = array.array("B")
    data.frombytes(arr.reshape(-1).view(np.uint8).data)  # one copy (tobytes() and the field would be two)
    msg.data = data
    return msg


def msg_to_image(msg: Image) -> np.ndarray:
    """A read-only numpy view of the image (HxW or HxWxC), validated against its header."""
    if msg.encoding not in ENCODINGS:
        raise ImageConversionError(f"unsupported encoding {msg.encoding!r}")
    dtype, channels = ENCODINGS[msg.encoding]
    itemsize = np.dtype(dtype).itemsize
    if msg.width == 0 or msg.height == 0:
        raise ImageConversionError("image is empty (0 width or height)")
    row = msg.width * channels * itemsize
    if msg.step < row:
        raise ImageConversionError(f"step {msg.step} is shorter than a row of {row} bytes")
    if len(msg.data) < msg.step * msg.height:
        raise ImageConversionError(
            f"data has {len(msg.data)} bytes, {msg.width}x{msg.height} {msg.encoding} with step "
            f"{msg.step} needs {msg.step * msg.height}"
        )
    rows = np.frombuffer(msg.data, dtype=np.uint8, count=msg.step * msg.height).reshape(msg.height, msg.step)
    buf = rows[:, :row]
    dt = np.dtype(dtype).newbyteorder(">" if msg.is_bigendian else "<")
    out = buf.view(dt) if buf.flags.c_contiguous or msg.step == row else np.ascontiguousarray(buf).view(dt)
    out = out.reshape(msg.height, msg.width, channels) if channels > 1 else out.reshape(msg.height, msg.width)
    if msg.is_bigendian and itemsize > 1:
        out = out.astype(np.dtype(dtype))
    return out


def to_rgb(arr: np.ndarray, encoding: str) -> np.ndarray:
    """Any colour or mono encoding as HxWx3 RGB of the same dtype."""
    if encoding in ("rgb8", "rgb16", "8UC3"):
        return arr
    if encoding in ("bgr8", "bgr16"):
        return arr[:, :, ::-1]
    if encoding == "rgba8":
        return arr[:, :, :3]
    if encoding == "bgra8":
        return arr[:, :, 2::-1]
    if arr.ndim == 2:
        return np.repeat(arr[:, :, None], 3, axis=2)
    raise ImageConversionError(f"cannot convert {encoding} to RGB")


def matrix_to_pose(T: np.ndarray) -> Pose:
    p = Pose()
    p.position.x, p.position.y, p.position.z = (float(v) for v in T[:3, 3])
    x, y, z, w = rotation_to_quaternion(T[:3, :3])
    p.orientation.x, p.orientation.y, p.orientation.z, p.orientation.w = x, y, z, w
    return p


def pose_to_matrix(p: Pose) -> np.ndarray:
    q = np.array([p.orientation.x, p.orientation.y, p.orientation.z, p.orientation.w], dtype=np.float64)
    t = np.array([p.position.x, p.position.y, p.position.z], dtype=np.float64)
    if not (np.all(np.isfinite(q)) and np.all(np.isfinite(t))):
        raise BurstError("pose contains NaN or infinity")
    norm = float(np.linalg.norm(q))
    if not math.isclose(norm, 1.0, abs_tol=1e-3):
        raise BurstError(f"pose quaternion is not unit length (|q| = {norm:.4f})")
    T = np.eye(4)
    T[:3, :3] = quaternion_to_rotation(q / norm)
    T[:3, 3] = t
    return T


def rotation_to_quaternion(R: np.ndarray) -> tuple[float, float, float, float]:
    """(x, y, z, w) of a rotation matrix, w >= 0."""
    m = R
    tr = float(m[0, 0] + m[1, 1] + m[2, 2])
    if tr > 0:
        s = math.sqrt(tr + 1.0) * 2
        w, x, y, z = 0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = math.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2]) * 2
        w, x, y, z = (m[2, 1] - m[1, 2]) / s, 0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s
    elif m[1, 1] > m[2, 2]:
        s = math.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2]) * 2
        w, x, y, z = (m[0, 2] - m[2, 0]) / s, (m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s
    else:
        s = math.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1]) * 2
        w, x, y, z = (m[1, 0] - m[0, 1]) / s, (m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s
    q = np.array([x, y, z, w], dtype=np.float64)
    q /= np.linalg.norm(q)
    if q[3] < 0:
        q = -q
    return float(q[0]), float(q[1]), float(q[2]), float(q[3])


def quaternion_to_rotation(q: np.ndarray) -> np.ndarray:
    x, y, z, w = (float(v) for v in q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def edge_to_transform(edge: Edge, stamp_ns: int) -> TransformStamped:
    """A tree edge as tf2 sends it: header.frame_id the parent, child_frame_id the child, the
    transform the child's pose in the parent."""
    t = TransformStamped()
    t.header = Header(stamp=ns_to_stamp(stamp_ns), frame_id=edge.parent)
    t.child_frame_id = edge.child
    tr = t.transform.translation
    tr.x, tr.y, tr.z = (float(v) for v in edge.matrix[:3, 3])
    q = t.transform.rotation
    q.x, q.y, q.z, q.w = rotation_to_quaternion(edge.matrix[:3, :3])
    return t


def transform_to_matrix(t: Transform) -> np.ndarray:
    """4x4 of a geometry_msgs/Transform (maps child points into the parent)."""
    T = np.eye(4)
    q = t.rotation
    T[:3, :3] = quaternion_to_rotation(np.array([q.x, q.y, q.z, q.w]))
    T[:3, 3] = (t.translation.x, t.translation.y, t.translation.z)
    return T


def camera_info_from_model(cam: CameraModel, header: Header | None = None) -> CameraInfo:
    info = CameraInfo()
    if header is not None:
        info.header = header
    info.width, info.height = cam.width, cam.height
    info.distortion_model = cam.distortion_model
    info.d = [float(v) for v in cam.D]
    info.k = [float(v) for v in cam.K.ravel()]
    info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    P = np.zeros((3, 4))
    P[:, :3] = cam.K
    info.p = [float(v) for v in P.ravel()]
    return info


def model_from_camera_info(
    info: CameraInfo,
    name: str,
    T_ref_cam: np.ndarray,
    focus_distance_m: float,
    focal_length_mm: float,
    f_number: float,
    pixel_size_um: float,
) -> CameraModel:
    if info.width == 0 or info.height == 0:
        raise CalibrationError(f"{name}: camera_info is empty (0x0)")
    K = np.asarray(info.k, dtype=np.float64).reshape(3, 3)
    return CameraModel(
        name=name,
        width=int(info.width),
        height=int(info.height),
        K=K,
        D=np.asarray(info.d, dtype=np.float64),
        T_ref_cam=T_ref_cam,
        focus_distance_m=float(focus_distance_m),
        focal_length_mm=float(focal_length_mm),
        f_number=float(f_number),
        pixel_size_um=float(pixel_size_um),
        distortion_model=info.distortion_model or "none",
    )


def add_actuator_state(track: ActuatorTrack, msg: ActuatorState, logger: RcutilsLogger) -> None:
    """One actuators/state sample into a stage track (how camera_array, the sequencer and the IMU
    follow the stage); a malformed one is logged, throttled, and dropped."""
    try:
        track.add(stamp_to_ns(msg.header.stamp) * 1e-9, np.asarray(msg.position_mm, np.float64))
    except ImuModelError as exc:
        logger.warning(f"ignoring actuators/state: {exc}", throttle_duration_sec=5.0)


def imu_to_array(samples: list[Imu]) -> np.ndarray:
    """Rows of t_s, wx, wy, wz, ax, ay, az."""
    rows = [
        (
            stamp_to_ns(s.header.stamp) * 1e-9,
            s.angular_velocity.x,
            s.angular_velocity.y,
            s.angular_velocity.z,
            s.linear_acceleration.x,
            s.linear_acceleration.y,
            s.linear_acceleration.z,
        )
        for s in samples
    ]
    return np.asarray(rows, dtype=np.float64).reshape(-1, 7)


def burst_from_msg(msg: object) -> Burst:
    """dfocus_interfaces/FocusSequence -> Burst, raising BurstError / ImageConversionError /
    CalibrationError with a reason on anything malformed."""
    frames: list[BurstFrame] = []
    for i, f in enumerate(msg.frames):  # type: ignore[attr-defined]
        try:
            image = to_rgb(msg_to_image(f.image), f.image.encoding)
            cam = model_from_camera_info(
                f.camera_info,
                f.camera_name or f"cam{f.camera_index}",
                pose_to_matrix(f.pose),
                f.focus_distance_m,
                f.focal_length_mm,
                f.f_number,
                f.pixel_size_um,
            )
        except (ImageConversionError, CalibrationError, BurstError) as exc:
            raise type(exc)(f"frame {i} (shot {f.shot_index}, camera {f.camera_index}): {exc}") from exc
        frames.append(
            BurstFrame(
                camera_index=int(f.camera_index),
                shot_index=int(f.shot_index),
                camera=cam,
                image=image,
                exposure_time_s=float(f.exposure_time_s),
                stamp_ns=stamp_to_ns(f.image.header.stamp),
            )
        )
    act = [list(s.position_mm) for s in msg.actuator_states]  # type: ignore[attr-defined]
    width = max((len(a) for a in act), default=2)
    actuator = np.array([a + [0.0] * (width - len(a)) for a in act], dtype=np.float64).reshape(-1, width)
    return Burst(
        sequence_id=int(msg.sequence_id),  # type: ignore[attr-defined]
        reference_camera=str(msg.reference_camera),  # type: ignore[attr-defined]
        num_shots=int(msg.num_shots),  # type: ignore[attr-defined]
        num_cameras=int(msg.num_cameras),  # type: ignore[attr-defined]
        frames=frames,
        stamp_ns=stamp_to_ns(msg.header.stamp),  # type: ignore[attr-defined]
        focus_mode=int(msg.focus_mode),  # type: ignore[attr-defined]
        hand_held=bool(msg.hand_held),  # type: ignore[attr-defined]
        imu=imu_to_array(list(msg.imu)),  # type: ignore[attr-defined]
        actuator_mm=actuator,
    )


def burst_to_msg(burst: Burst, frame_id: str = "cam0_optical_frame") -> object:
    """Burst -> dfocus_interfaces/FocusSequence (IMU and actuator states left to the caller)."""
    from dfocus_interfaces.msg import CapturedFrame, FocusSequence

    msg = FocusSequence()
    msg.header = Header(stamp=ns_to_stamp(burst.stamp_ns), frame_id=frame_id)
    msg.sequence_id = burst.sequence_id
    msg.num_shots, msg.num_cameras = burst.num_shots, burst.num_cameras
    msg.reference_camera = burst.reference_camera
    msg.focus_mode, msg.hand_held = burst.focus_mode, burst.hand_held
    for f in burst.frames:
        cf = CapturedFrame()
        cf.camera_index, cf.shot_index, cf.camera_name = f.camera_index, f.shot_index, f.camera.name
        hdr = Header(stamp=ns_to_stamp(f.stamp_ns or burst.stamp_ns), frame_id=optical_frame(f.camera.name))
        enc = ("rgb8" if f.image.dtype == np.uint8 else "rgb16") if f.image.ndim == 3 else (
            "mono8" if f.image.dtype == np.uint8 else "mono16")
        cf.image = image_to_msg(f.image, enc, hdr)
        cf.camera_info = camera_info_from_model(f.camera, hdr)
        cf.pose = matrix_to_pose(f.camera.T_ref_cam)
        cf.focus_distance_m = f.camera.focus_distance_m
        cf.f_number = f.camera.f_number
        cf.focal_length_mm = f.camera.focal_length_mm
        cf.pixel_size_um = f.camera.pixel_size_um
        cf.exposure_time_s = f.exposure_time_s
        msg.frames.append(cf)
    return msg
