"""3D model export from a depth map: coloured point cloud or grid mesh, as binary PLY, written only
inside a configured output folder.

The mesh joins each 2x2 block of neighbouring pixels by two triangles, except across depth
discontinuities (relative depth jump above a threshold), so foreground and background are not
glued together by long 'rubber sheet' triangles.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dfocus_depth.pointcloud import backproject

DEFAULT_MAX_JUMP = 0.05  # relative depth change between mesh neighbours


class ExportError(ValueError):
    """A model cannot be exported: refused path, nothing valid to write, or mismatched inputs."""


@dataclass
class Mesh:
    vertices: np.ndarray  # Nx3 float32
    colors: np.ndarray  # Nx3 uint8
    faces: np.ndarray  # Mx3 int32 (empty for a point cloud)


def safe_output_path(output_dir: Path | str, filename: str, suffix: str = ".ply") -> Path:
    """`filename` inside `output_dir` (with `suffix` added if it has another), refusing absolute
    paths and anything that leaves the folder."""
    if not filename or not filename.strip():
        raise ExportError("filename is empty")
    rel = Path(filename)
    if rel.is_absolute():
        raise ExportError(f"absolute paths are refused ({filename!r}); give a name relative to the output folder")
    if ".." in rel.parts:
        raise ExportError(f"'..' is refused in {filename!r}: exports stay inside the output folder")
    root = Path(output_dir).expanduser().resolve()
    target = (root / rel).resolve()
    if root != target and root not in target.parents:
        raise ExportError(f"{filename!r} resolves outside the output folder {root}")
    if target.suffix.lower() != suffix:
        target = target.with_name(target.name + suffix)
    return target


def point_cloud(depth: np.ndarray, K: np.ndarray, rgb: np.ndarray) -> Mesh:
    _check(depth, rgb)
    xyz = backproject(depth, K)
    ok = np.isfinite(depth) & (depth > 0)
    if not ok.any():
        raise ExportError("the depth map has no valid pixel")
    return Mesh(xyz[ok].astype(np.float32), rgb[ok].astype(np.uint8), np.zeros((0, 3), np.int32))


def grid_mesh(depth: np.ndarray, K: np.ndarray, rgb: np.ndarray, max_jump: float = DEFAULT_MAX_JUMP) -> Mesh:
    """Triangles over valid 2x2 pixel blocks, none across a relative depth jump above max_jump."""
    _check(depth, rgb)
    ok = np.isfinite(depth) & (depth > 0)
    if not ok.any():
        raise ExportError("the depth map has no valid pixel")
    z = np.where(ok, depth, np.nan).astype(np.float64)
    h, w = z.shape
    idx = np.arange(h * w).reshape(h, w)
    a, b, c, d = idx[:-1, :-1], idx[:-1, 1:], idx[1:, :-1], idx[1:, 1:]  # top-left, top-right, bottom-left/right
    zf = z.ravel()

    def smooth(*corners: np.ndarray) -> np.ndarray:
        zs = np.stack([zf[k] for k in corners])
        with np.errstate(invalid="ignore"):
            good = np.all(np.isfinite(zs), axis=0)
            spread = (np.nanmax(np.where(good, zs, 1), axis=0) / np.nanmin(np.where(good, zs, 1), axis=0)) - 1
        return good & (spread <= max_jump)

    # Wound so that the normals face the camera (towards -z in the optical frame).
    t1 = np.stack([a, c, b], axis=-1)[smooth(a, c, b)]
    t2 = np.stack([b, c, d], axis=-1)[smooth(b, c, d)]
    faces = np.concatenate([t1, t2]).reshape(-1, 3)
    used = np.zeros(h * w, dtype=bool)
    used[faces.ravel()] = True
    remap = np.full(h * w, -1, dtype=np.int64)
    remap[used] = np.arange(int(used.sum()))
    xyz = backproject(depth, K).reshape(-1, 3)
    return Mesh(xyz[used].astype(np.float32), rgb.reshape(-1, 3)[used].astype(np.uint8),
                remap[faces].astype(np.int32))


def write_ply(path: Path, mesh: Mesh) -> None:
    """Binary little-endian PLY with per-vertex colour (and faces when the mesh has any)."""
    n, m = len(mesh.vertices), len(mesh.faces)
    header = ["ply", "format binary_little_endian 1.0", "comment dfocus depth export", f"element vertex {n}",
              "property float x", "property float y", "property float z",
              "property uchar red", "property uchar green", "property uchar blue"]
    if m:
        header += [f"element face {m}", "property list uchar int vertex_indices"]
    header.append("end_header")
    verts = np.empty(n, dtype=[("p", "<f4", 3), ("c", "u1", 3)])
    verts["p"], verts["c"] = mesh.vertices, mesh.colors
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "wb") as fh:
        fh.write(("\n".join(header) + "\n").encode("ascii"))
        fh.write(verts.tobytes())
        if m:
            faces = np.empty(m, dtype=[("n", "u1"), ("i", "<i4", 3)])
            faces["n"], faces["i"] = 3, mesh.faces
            fh.write(faces.tobytes())
    tmp.replace(path)  # readers never see a half-written file


def read_ply(path: Path) -> Mesh:
    """Reader for the files write_ply produces (used by tests and tools)."""
    data = Path(path).read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    lines = data[:end].decode("ascii").splitlines()
    if lines[:2] != ["ply", "format binary_little_endian 1.0"]:
        raise ExportError(f"{path}: not a binary little-endian PLY")
    counts = {ln.split()[1]: int(ln.split()[2]) for ln in lines if ln.startswith("element")}
    n, m = counts.get("vertex", 0), counts.get("face", 0)
    verts = np.frombuffer(data, dtype=[("p", "<f4", 3), ("c", "u1", 3)], count=n, offset=end)
    faces = np.frombuffer(data, dtype=[("n", "u1"), ("i", "<i4", 3)], count=m, offset=end + verts.nbytes)
    if m and not np.all(faces["n"] == 3):
        raise ExportError(f"{path}: only triangle faces are supported")
    return Mesh(verts["p"].copy(), verts["c"].copy(), faces["i"].astype(np.int32).reshape(-1, 3))


def export_model(
    output_dir: Path | str, filename: str, depth: np.ndarray, K: np.ndarray, rgb: np.ndarray, as_mesh: bool
) -> tuple[Path, Mesh]:
    path = safe_output_path(output_dir, filename)
    mesh = grid_mesh(depth, K, rgb) if as_mesh else point_cloud(depth, K, rgb)
    write_ply(path, mesh)
    return path, mesh


def _check(depth: np.ndarray, rgb: np.ndarray) -> None:
    if depth.ndim != 2 or rgb.shape[:2] != depth.shape or rgb.ndim != 3:
        raise ExportError(f"depth {depth.shape} and colour {rgb.shape} must be HxW and HxWx3 of one size")
