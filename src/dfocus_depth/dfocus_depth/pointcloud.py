"""Organized xyz+rgb point clouds from a depth map, packed the way PCL and RViz read PointCloud2.

sensor_msgs_py is not installable here, so the packing is done directly: one 16-byte point
(x, y, z float32, then rgb as a float32 whose bits are 0x00RRGGBB, PCL's convention), rows of
the image kept as rows of the cloud (height x width, is_dense false: non-finite depth -> NaN xyz).
"""

from __future__ import annotations

import numpy as np
from sensor_msgs.msg import PointCloud2, PointField
from std_msgs.msg import Header

POINT_DTYPE = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("rgb", "<f4")])


class PointCloudError(ValueError):
    """Depth, colour and intrinsics do not describe the same image, or a cloud cannot be read."""


def backproject(depth: np.ndarray, K: np.ndarray) -> np.ndarray:
    """HxWx3 float32 points in the optical frame (REP 103: x right, y down, z forward); NaN stays NaN."""
    h, w = depth.shape
    u = np.arange(w, dtype=np.float32)[None, :]
    v = np.arange(h, dtype=np.float32)[:, None]
    z = depth.astype(np.float32)
    x = (u - np.float32(K[0, 2])) / np.float32(K[0, 0]) * z
    y = (v - np.float32(K[1, 2])) / np.float32(K[1, 1]) * z
    return np.stack([x, y, z], axis=-1)


def pack_rgb(rgb: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 -> HxW float32 whose bit pattern is 0x00RRGGBB."""
    c = rgb.astype(np.uint32)
    return ((c[..., 0] << 16) | (c[..., 1] << 8) | c[..., 2]).view(np.float32)


def unpack_rgb(packed: np.ndarray) -> np.ndarray:
    bits = np.ascontiguousarray(packed, dtype=np.float32).view(np.uint32)
    return np.stack([(bits >> 16) & 255, (bits >> 8) & 255, bits & 255], axis=-1).astype(np.uint8)


def organized_points(depth: np.ndarray, K: np.ndarray, rgb: np.ndarray) -> np.ndarray:
    """HxW structured array of POINT_DTYPE."""
    if depth.ndim != 2 or rgb.shape[:2] != depth.shape or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise PointCloudError(f"depth {depth.shape} and colour {rgb.shape} must be HxW and HxWx3 of one size")
    if rgb.dtype != np.uint8:
        raise PointCloudError(f"colour must be uint8, got {rgb.dtype}")
    xyz = backproject(np.where(np.isfinite(depth), depth, np.nan), K)  # +-inf (REP 118) has no point either
    pts = np.empty(depth.shape, dtype=POINT_DTYPE)
    pts["x"], pts["y"], pts["z"] = xyz[..., 0], xyz[..., 1], xyz[..., 2]
    pts["rgb"] = pack_rgb(rgb)
    return pts


def point_fields() -> list[PointField]:
    return [
        PointField(name=n, offset=4 * i, datatype=PointField.FLOAT32, count=1)
        for i, n in enumerate(("x", "y", "z", "rgb"))
    ]


def pointcloud2_msg(depth: np.ndarray, K: np.ndarray, rgb: np.ndarray, header: Header) -> PointCloud2:
    pts = organized_points(depth, K, rgb)
    msg = PointCloud2()
    msg.header = header
    msg.height, msg.width = int(pts.shape[0]), int(pts.shape[1])
    msg.fields = point_fields()
    msg.is_bigendian = False
    msg.point_step = POINT_DTYPE.itemsize
    msg.row_step = POINT_DTYPE.itemsize * msg.width
    msg.is_dense = bool(np.all(np.isfinite(depth)))
    msg.data = pts.tobytes()  # bytes, never a numpy array (element-wise copy)
    return msg


def read_points(msg: PointCloud2) -> np.ndarray:
    """HxW structured array (x, y, z, rgb) from a PointCloud2 with float32 x/y/z/rgb fields."""
    offsets = {f.name: (f.offset, f.datatype) for f in msg.fields}
    for name in ("x", "y", "z", "rgb"):
        if name not in offsets or offsets[name][1] != PointField.FLOAT32:
            raise PointCloudError(f"cloud has no float32 field {name!r}")
    if msg.is_bigendian:
        raise PointCloudError("big-endian clouds are not supported")
    if len(msg.data) < msg.row_step * msg.height or msg.row_step < msg.point_step * msg.width:
        raise PointCloudError("cloud data is shorter than height x row_step")
    dtype = np.dtype({
        "names": ["x", "y", "z", "rgb"],
        "formats": ["<f4"] * 4,
        "offsets": [offsets[n][0] for n in ("x", "y", "z", "rgb")],
        "itemsize": msg.point_step,
    })
    rows = np.frombuffer(msg.data, np.uint8, count=msg.row_step * msg.height).reshape(msg.height, msg.row_step)
    return np.ascontiguousarray(rows[:, : msg.point_step * msg.width]).view(dtype).reshape(msg.height, msg.width)
