"""Ray casting of a `Scene` for a posed pinhole camera, then thin-lens defocus and the sensor.

Every surface is planar, so casting a pixel's ray against it is exact and cheap in closed form:
the inverse depth 1/z on a plane is affine in the pixel coordinates, and the texture coordinates
of the hit point are a homography of them. Per surface the renderer fills its projected polygon,
keeps the nearest hit per pixel (z-buffer), and samples the texture through that homography
(cv2.warpPerspective, mip level chosen from the pixel footprint). Reflective surfaces add a
per-pixel mirror lookup into the environment map and a highlight of the key light.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from dfocus_capture.calibration import CameraModel
from dfocus_capture.sim.defocus import thin_lens_defocus
from dfocus_capture.sim.scene import Scene
from dfocus_capture.sim.sensor import (
    SensorNoise,
    decode_srgb8,
    develop,
    encode_srgb8,
)

NEAR_CLIP_M = 0.02
_SHIFT = 4  # fixed-point bits for sub-pixel polygon filling


class RenderError(ValueError):
    """A view cannot be rendered (bad focus/aperture, camera too large, ...)."""


@dataclass
class View:
    image: np.ndarray  # HxWx3 uint8 sRGB, defocused, with sensor noise if requested
    depth: np.ndarray  # HxW float32, metres along the optical axis (ground truth)
    all_in_focus: np.ndarray  # HxWx3 uint8 sRGB, pinhole, noise-free
    coc_px: np.ndarray  # HxW float32 circle-of-confusion diameter (pixels)
    specular_mask: np.ndarray  # HxW bool
    textureless_mask: np.ndarray  # HxW bool
    surface_id: np.ndarray  # HxW int16 index into scene.surfaces


@dataclass
class PinholeRender:
    linear: np.ndarray  # HxWx3 float32 linear radiance (may exceed 1 in highlights)
    srgb: np.ndarray  # the same as uint8 sRGB (clipped)
    depth: np.ndarray
    surface_id: np.ndarray
    inv_depth: np.ndarray  # 1 / depth (float32)


@dataclass
class Defocused:
    pinhole: PinholeRender
    coc_signed: np.ndarray  # HxW float32 circle of confusion, pixels, negative in front of the focus
    planes: np.ndarray  # C x H x W float32: defocused linear R, G, B (and the inverse depth plane)


def _clip(points: np.ndarray, planes: np.ndarray) -> np.ndarray:
    """Sutherland-Hodgman clip of a convex polygon (Nx3) to the half-spaces n . p + d >= 0
    (planes: Mx4 rows n, d)."""
    dists = points @ planes[:, :3].T + planes[:, 3]
    if np.all(dists >= 0):  # wholly inside: the common case, no clipping needed
        return points
    if np.any(np.all(dists < 0, axis=0)):  # wholly outside one plane
        return points[:0]
    for plane in planes:
        if len(points) == 0:
            break
        dist = points @ plane[:3] + plane[3]
        out: list[np.ndarray] = []
        n = len(points)
        for i in range(n):
            j = (i + 1) % n
            if dist[i] >= 0:
                out.append(points[i])
            if (dist[i] >= 0) != (dist[j] >= 0):
                t = dist[i] / (dist[i] - dist[j])
                out.append(points[i] + t * (points[j] - points[i]))
        points = np.asarray(out).reshape(-1, 3)
    return points


def _frustum(cam: CameraModel, margin_px: float = 2.0) -> np.ndarray:
    """Near plane and the four side planes of the image (plus a margin), camera frame."""
    xl = (-0.5 - margin_px - cam.cx) / cam.fx
    xr = (cam.width - 0.5 + margin_px - cam.cx) / cam.fx
    yt = (-0.5 - margin_px - cam.cy) / cam.fy
    yb = (cam.height - 0.5 + margin_px - cam.cy) / cam.fy
    return np.array([[0, 0, 1, -NEAR_CLIP_M], [1, 0, -xl, 0], [-1, 0, xr, 0], [0, 1, -yt, 0], [0, -1, yb, 0]])


def _sample_points(img: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Bilinear samples of img (wrapping) at N float points -> Nx3 (cv2.remap needs 2-D maps
    under 32767 on a side, so the points are laid out in rows of 1024)."""
    n = len(x)
    rows = max(1, math.ceil(n / 1024))
    mx = np.zeros(rows * 1024, np.float32)
    my = np.zeros(rows * 1024, np.float32)
    mx[:n], my[:n] = x, y
    out = cv2.remap(img, mx.reshape(rows, 1024), my.reshape(rows, 1024), cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_WRAP)
    return np.asarray(out.reshape(rows * 1024, -1)[:n])


@dataclass
class _Raster:
    index: int
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive)
    H_tex: np.ndarray  # texel (level 0) -> image homography
    ab_min: np.ndarray  # range of the visible surface coordinates (metres)
    ab_max: np.ndarray
    z_min: float
    cos_view: float


# Texture images larger than this (per side) are sampled with wrap-around from the single tile
# instead (slower path in OpenCV).
_MAX_TILED_PX = 8192


class ThinLensRenderer:
    """Renders views of one scene. Per-scene data (textures, mip maps, tiled copies) is kept.
    `render` may be called from several threads at once (one view per thread)."""

    def __init__(self, scene: Scene) -> None:
        self.scene = scene
        self._tiled: dict[tuple[int, int, int, int], np.ndarray] = {}
        self.specular_ids = [i for i, s in enumerate(scene.surfaces) if s.specular is not None]
        self.textureless_ids = [i for i, s in enumerate(scene.surfaces) if s.textureless]

    # -- geometry -------------------------------------------------------------------------------
    def _rasterize(self, cam: CameraModel) -> tuple[np.ndarray, np.ndarray, list[_Raster]]:
        """Nearest surface per pixel: inverse depth (float32) and surface index (int16)."""
        W, H = cam.width, cam.height
        T_cam_ref = np.linalg.inv(cam.T_ref_cam)
        Rc, tc = T_cam_ref[:3, :3], T_cam_ref[:3, 3]
        K = cam.K
        K_inv = np.linalg.inv(K)
        frustum = _frustum(cam)
        inv_z = np.zeros((H, W), np.float32)  # 0 = nothing hit yet (infinitely far)
        sid = np.full((H, W), -1, np.int16)
        rasters: list[_Raster] = []
        xs = np.arange(W, dtype=np.float32)
        ys = np.arange(H, dtype=np.float32)
        for k, s in enumerate(self.scene.surfaces):
            o = Rc @ s.origin + tc
            u, v = Rc @ s.u_axis, Rc @ s.v_axis
            n = np.cross(u, v)
            d = float(n @ o)
            if abs(d) < 1e-9:  # plane through the optical centre: seen edge-on
                continue
            verts = _clip(o[None, :] + s.polygon[:, :1] * u + s.polygon[:, 1:] * v, frustum)
            if len(verts) < 3:
                continue
            proj = (K @ verts.T).T
            px = proj[:, :2] / proj[:, 2:3]
            x0, y0 = max(0, int(math.floor(px[:, 0].min())) - 1), max(0, int(math.floor(px[:, 1].min())) - 1)
            x1, y1 = min(W, int(math.ceil(px[:, 0].max())) + 2), min(H, int(math.ceil(px[:, 1].max())) + 2)
            if x0 >= x1 or y0 >= y1:
                continue
            cover = np.zeros((y1 - y0, x1 - x0), np.uint8)
            pts = np.round((px - [x0, y0]) * (1 << _SHIFT)).astype(np.int32)
            cv2.fillConvexPoly(cover, pts, 255, lineType=cv2.LINE_8, shift=_SHIFT)
            w = (K_inv.T @ n) / d  # 1/z = w . (x, y, 1)
            iz = (np.float32(w[0]) * xs[x0:x1])[None, :] + (np.float32(w[1]) * ys[y0:y1] + np.float32(w[2]))[:, None]
            zb = inv_z[y0:y1, x0:x1]
            win = cv2.bitwise_and(cv2.compare(iz, zb, cv2.CMP_GT), cover)
            if not cv2.countNonZero(win):
                continue
            cv2.copyTo(iz, win, zb)
            np.putmask(sid[y0:y1, x0:x1], win != 0, k)
            centre_ray = K_inv @ np.array([(x0 + x1) / 2, (y0 + y1) / 2, 1.0])
            cos_view = abs(float(n @ centre_ray)) / (np.linalg.norm(centre_ray) * np.linalg.norm(n))
            ab = np.stack([(verts - o) @ u, (verts - o) @ v], axis=1)
            H_tex = K @ np.stack([u * s.texel_m, v * s.texel_m, o], axis=1)
            rasters.append(_Raster(k, (x0, y0, x1, y1), H_tex, ab.min(axis=0), ab.max(axis=0),
                                   float(verts[:, 2].min()), float(cos_view)))
        if (sid < 0).any():
            raise RenderError(f"{cam.name}: {(sid < 0).sum()} pixels see no surface (camera outside the scene?)")
        return inv_z, sid, rasters

    def _texture(self, k: int, level: int, nx: int, ny: int) -> np.ndarray:
        key = (k, level, nx, ny)
        tex = self._tiled.get(key)  # views may render on several threads: no check-then-read
        if tex is None:
            if len(self._tiled) > 256:
                self._tiled.clear()
            tex = np.tile(self.scene.surfaces[k].mips[level], (ny, nx, 1))
            self._tiled[key] = tex
        return tex

    def _warp_surface(self, r: _Raster, cam: CameraModel) -> np.ndarray:
        """The surface's texture as seen in the raster's box (sRGB uint8)."""
        s = self.scene.surfaces[r.index]
        x0, y0, x1, y1 = r.box
        # Mip level: texels per pixel at the nearest point, along the most foreshortened axis.
        footprint = r.z_min / cam.fx / max(r.cos_view, 1e-2)
        level = int(np.clip(math.floor(math.log2(max(footprint / s.texel_m, 1.0))), 0, len(s.mips) - 1))
        tile = s.mips[level]
        th, tw = tile.shape[:2]
        texel = s.texel_m * 2.0**level
        # Whole tiles to move the texture origin by, and how many tiles the visible part spans.
        first = np.floor(np.array([r.ab_min[0] / texel / tw, r.ab_min[1] / texel / th])).astype(int)
        last = np.floor(np.array([r.ab_max[0] / texel / tw, r.ab_max[1] / texel / th])).astype(int)
        nx, ny = int(last[0] - first[0]) + 2, int(last[1] - first[1]) + 2
        to_tex = np.array([[texel, 0.0, first[0] * tw * texel], [0.0, texel, first[1] * th * texel], [0, 0, 1.0]])
        shift = np.array([[1.0, 0, -x0], [0, 1.0, -y0], [0, 0, 1.0]])
        H_st = r.H_tex @ np.diag([1.0 / s.texel_m, 1.0 / s.texel_m, 1.0])  # surface metres -> image
        size = (x1 - x0, y1 - y0)
        if max(nx * tw, ny * th) <= _MAX_TILED_PX:
            M = shift @ H_st @ to_tex
            return np.asarray(cv2.warpPerspective(self._texture(r.index, level, nx, ny), M, size,
                                                  flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE))
        M = shift @ H_st @ np.diag([texel, texel, 1.0])
        return np.asarray(cv2.warpPerspective(tile, M, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP))

    def _shade(
        self, cam: CameraModel, sid: np.ndarray, rasters: list[_Raster]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Pinhole image of the textures with the reflections added: (sRGB uint8, linear float32)."""
        srgb = np.zeros((cam.height, cam.width, 3), np.uint8)
        speculars = []
        for r in rasters:
            x0, y0, x1, y1 = r.box
            here = cv2.compare(sid[y0:y1, x0:x1], np.full(1, r.index, np.float64), cv2.CMP_EQ)
            if not cv2.countNonZero(here):
                continue
            cv2.copyTo(self._warp_surface(r, cam), here, srgb[y0:y1, x0:x1])
            if self.scene.surfaces[r.index].specular is not None:
                speculars.append((r, here != 0))
        lin = decode_srgb8(srgb)
        for r, mask in speculars:
            self._add_reflection(cam, lin, srgb, r, mask)
        return srgb, lin

    def _add_reflection(
        self, cam: CameraModel, lin: np.ndarray, srgb: np.ndarray, r: _Raster, here: np.ndarray
    ) -> None:
        s = self.scene.surfaces[r.index]
        spec = s.specular
        assert spec is not None
        x0, y0, _, _ = r.box
        ys, xs = np.nonzero(here)
        rays = np.linalg.inv(cam.K) @ np.stack([xs + x0, ys + y0, np.ones_like(xs)]).astype(np.float64)
        d = cam.T_ref_cam[:3, :3] @ rays
        d /= np.linalg.norm(d, axis=0, keepdims=True)
        n = s.normal[:, None]
        refl = d - 2.0 * (n * d).sum(axis=0, keepdims=True) * n
        env = self.scene.environment
        eh, ew = env.shape[:2]
        lon = np.arctan2(refl[0], refl[2])
        lat = np.arcsin(np.clip(-refl[1], -1.0, 1.0))  # y points down
        mx = ((lon / (2 * np.pi) + 0.5) * ew - 0.5).astype(np.float32)
        my = ((0.5 - lat / np.pi) * eh - 0.5).astype(np.float32)
        mirror = _sample_points(env, mx, my)
        highlight = np.maximum(refl.T @ self.scene.light_dir, 0.0) ** spec.shininess * spec.highlight
        block = lin[ys + y0, xs + x0]
        block = (1.0 - spec.reflectivity) * block + spec.reflectivity * mirror + highlight[:, None].astype(np.float32)
        lin[ys + y0, xs + x0] = block
        srgb[ys + y0, xs + x0] = encode_srgb8(block)

    def pinhole(self, cam: CameraModel) -> PinholeRender:
        """The noise-free pinhole view: linear and sRGB images, depth, surface index."""
        inv_z, sid, rasters = self._rasterize(cam)
        srgb, lin = self._shade(cam, sid, rasters)
        return PinholeRender(linear=lin, srgb=srgb, depth=np.float32(1.0) / inv_z, surface_id=sid, inv_depth=inv_z)

    # -- views ----------------------------------------------------------------------------------
    def defocus(
        self, cam: CameraModel, *, focus_m: float | None = None, f_number: float | None = None,
        with_inv_depth: bool = False,
    ) -> Defocused:
        """The noise-free thin-lens image of the camera at its pose (cam.T_ref_cam in the scene
        frame), defocused for focus_m / f_number (default: the camera's own). with_inv_depth adds
        a fourth plane: the inverse depth of what each defocused pixel shows, weighted like its
        colour (a blurred foreground edge carries the foreground's share)."""
        focus = cam.focus_distance_m if focus_m is None else float(focus_m)
        n_f = cam.f_number if f_number is None else float(f_number)
        if not (math.isfinite(focus) and math.isfinite(n_f) and n_f > 0 and focus > cam.focal_length_mm * 1e-3):
            raise RenderError(f"{cam.name}: focus {focus} m / f-number {n_f} impossible for f = "
                              f"{cam.focal_length_mm} mm")
        if cam.width * cam.height > 50_000_000:
            raise RenderError(f"{cam.name}: {cam.width}x{cam.height} exceeds the simulator's 50 MP limit")
        pin = self.pinhole(cam)
        inv_z = pin.inv_depth
        # Thin lens (CameraModel.coc_px): c = A f / (s - f) * s * |1/s - 1/z| / pixel, which is
        # affine in the inverse depth; positive behind the focal plane.
        f = cam.focal_length_mm * 1e-3
        gain = (f / n_f) * f / (focus - f) * focus / (cam.pixel_size_um * 1e-6)
        signed = (np.float32(gain / focus) - np.float32(gain) * inv_z).astype(np.float32, copy=False)
        planes = [*cv2.split(pin.linear), *([inv_z] if with_inv_depth else [])]
        return Defocused(pinhole=pin, coc_signed=signed, planes=thin_lens_defocus(np.stack(planes), signed))

    def render(
        self,
        cam: CameraModel,
        *,
        focus_m: float | None = None,
        f_number: float | None = None,
        noise: SensorNoise | None = None,
        rng: np.random.Generator | None = None,
    ) -> View:
        """The camera's image at its pose (cam.T_ref_cam in the scene frame), defocused for
        focus_m / f_number (default: the camera's own), with sensor noise when `noise` is given."""
        d = self.defocus(cam, focus_m=focus_m, f_number=f_number)
        pin = d.pinhole
        return View(
            image=develop(cv2.merge(list(d.planes)), cam, noise, rng),
            depth=pin.depth,
            all_in_focus=pin.srgb,
            coc_px=np.abs(d.coc_signed),
            specular_mask=np.isin(pin.surface_id, self.specular_ids),
            textureless_mask=np.isin(pin.surface_id, self.textureless_ids),
            surface_id=pin.surface_id,
        )
