"""PointCloud2 packing round trip, grid mesh triangulation, binary PLY and output-path refusal."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from std_msgs.msg import Header

from dfocus_depth.mesh import ExportError, export_model, grid_mesh, read_ply, safe_output_path
from dfocus_depth.pointcloud import pointcloud2_msg, read_points, unpack_rgb

K = np.array([[100.0, 0, 15.5], [0, 100.0, 11.5], [0, 0, 1]])


def _scene() -> tuple[np.ndarray, np.ndarray]:
    """A 24x32 step: left half at 1 m, right half at 3 m, one invalid pixel."""
    depth = np.ones((24, 32), np.float32)
    depth[:, 16:] = 3.0
    depth[5, 5] = np.nan
    rgb = np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    return depth, rgb


def test_pointcloud2_round_trip_is_exact_and_organized() -> None:
    depth, rgb = _scene()
    msg = pointcloud2_msg(depth, K, rgb, Header(frame_id="cam0_optical_frame"))
    assert (msg.height, msg.width, msg.point_step, msg.row_step) == (24, 32, 16, 16 * 32)
    assert [f.name for f in msg.fields] == ["x", "y", "z", "rgb"] and not msg.is_dense
    pts = read_points(msg)
    assert np.array_equal(unpack_rgb(pts["rgb"]), rgb)
    ok = np.isfinite(depth)
    assert np.allclose(pts["z"][ok], depth[ok]) and np.isnan(pts["z"][5, 5]) and np.isnan(pts["x"][5, 5])
    # REP 103: x right, y down; a pixel right of / below the principal point has positive x / y
    v, u = 20, 30
    assert pts["x"][v, u] == pytest.approx((u - K[0, 2]) / K[0, 0] * depth[v, u], rel=1e-6)
    assert pts["y"][v, u] == pytest.approx((v - K[1, 2]) / K[1, 1] * depth[v, u], rel=1e-6)
    # PCL's packing: red in bits 16..23
    assert int(np.float32(pts["rgb"][0, 0]).view(np.uint32)) >> 16 == rgb[0, 0, 0]


def test_mesh_skips_depth_discontinuities_and_faces_the_camera() -> None:
    depth, rgb = _scene()
    mesh = grid_mesh(depth, K, rgb)
    # 2 triangles per 2x2 block inside each half; none across the step; the NaN pixel removes 6
    expected = 2 * (23 * 15) * 2 - 6
    assert len(mesh.faces) == expected
    tri = mesh.vertices[mesh.faces]
    z = tri[:, :, 2]
    assert np.all(z.max(axis=1) / z.min(axis=1) < 1.05)
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    assert np.all(normals[:, 2] < 0)  # towards the camera at the origin


def test_ply_written_and_read_back(tmp_path: Path) -> None:
    depth, rgb = _scene()
    path, mesh = export_model(tmp_path, "scene/model", depth, K, rgb, as_mesh=True)
    assert path == (tmp_path / "scene" / "model.ply").resolve() and path.read_bytes().startswith(b"ply\n")
    back = read_ply(path)
    assert np.array_equal(back.faces, mesh.faces) and np.allclose(back.vertices, mesh.vertices)
    assert np.array_equal(back.colors, mesh.colors)
    path, cloud = export_model(tmp_path, "points.ply", depth, K, rgb, as_mesh=False)
    assert len(read_ply(path).vertices) == np.isfinite(depth).sum() and len(cloud.faces) == 0


@pytest.mark.parametrize("name", ["/etc/passwd", "../escape.ply", "a/../../b.ply", "", "  "])
def test_paths_leaving_the_output_folder_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ExportError):
        safe_output_path(tmp_path / "out", name)


def test_symlink_escape_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "link").symlink_to(tmp_path)
    with pytest.raises(ExportError):
        safe_output_path(out, "link/x.ply")


def test_export_of_an_all_invalid_map_is_refused(tmp_path: Path) -> None:
    depth = np.full((4, 4), np.nan, np.float32)
    with pytest.raises(ExportError):
        export_model(tmp_path, "x.ply", depth, K, np.zeros((4, 4, 3), np.uint8), as_mesh=True)
