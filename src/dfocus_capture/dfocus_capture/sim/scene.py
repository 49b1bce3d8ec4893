"""Procedural scenes for the simulator: planar textured surfaces (rectangles, discs, box faces) in
the reference camera's optical frame (REP 103: x right, y down, z forward, metres).

A seeded `random_scene` gives a textured back wall, a ground plane, fronto-parallel and slanted
panels, discs and boxes at 0.3-10 m that occlude each other, a glossy mirror-like panel (its
appearance depends on the viewpoint) and a uniformly coloured, textureless panel.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from dfocus_capture.sim.textures import (
    KINDS,
    environment_map,
    flat_texture,
    make_texture,
    mip_pyramid,
    photo_texture,
)

# Field of view random scenes are composed for (tan of the half angles): the default 1280x960
# array with fx = 2000 px sees +-0.32 x +-0.24; a little margin keeps objects near the borders.
VIEW_TAN_X = 0.30
VIEW_TAN_Y = 0.22
# Texel size relative to a pixel's footprint (at fx = 2000 px) at the surface's distance.
NOMINAL_FX = 2000.0
# Depth span of a random scene unless asked otherwise (the simulated workspace: launch files set
# the depth node's near_m to DEFAULT_NEAR_M for the simulator).
DEFAULT_NEAR_M = 0.3
DEFAULT_FAR_M = 10.0


class SceneError(ValueError):
    """Scene parameters are impossible (e.g. near >= far)."""


@dataclass(frozen=True)
class Specular:
    """A glossy, mirror-like finish: a view-dependent reflection of the environment map plus a
    highlight of the key light, mixed over the surface's own (diffuse) texture."""

    reflectivity: float = 0.7
    shininess: float = 120.0
    highlight: float = 4.0  # linear radiance of the highlight peak


@dataclass
class Surface:
    """A planar convex polygon with a wrapped texture tile.

    Points are origin + a * u_axis + b * v_axis for (a, b) inside `polygon` (metres, convex, in
    order). Texture texel (i, j) of mip level 0 sits at (a, b) = (i, j) * texel_m.
    """

    name: str
    origin: np.ndarray
    u_axis: np.ndarray
    v_axis: np.ndarray
    polygon: np.ndarray  # Nx2
    mips: list[np.ndarray]  # sRGB uint8 tiles, level 0 first, shading baked in
    texel_m: float
    specular: Specular | None = None
    textureless: bool = False

    @property
    def normal(self) -> np.ndarray:
        n = np.cross(self.u_axis, self.v_axis)
        return np.asarray(n / np.linalg.norm(n))

    def vertices(self) -> np.ndarray:
        """Nx3 polygon corners in the scene frame."""
        return np.asarray(self.origin[None, :] + self.polygon[:, :1] * self.u_axis + self.polygon[:, 1:] * self.v_axis)


@dataclass
class Scene:
    surfaces: list[Surface]
    environment: np.ndarray  # linear equirectangular map, HxWx3 float32
    light_dir: np.ndarray  # unit vector from the scene towards the key light
    seed: int = 0
    near_m: float = DEFAULT_NEAR_M
    far_m: float = DEFAULT_FAR_M
    notes: dict[str, object] = field(default_factory=dict)


def _unit(v: np.ndarray) -> np.ndarray:
    return np.asarray(v / np.linalg.norm(v), dtype=np.float64)


def _rot_y(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _rot_x(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def rect_polygon(half_u: float, half_v: float) -> np.ndarray:
    return np.array([[-half_u, -half_v], [half_u, -half_v], [half_u, half_v], [-half_u, half_v]])


def disc_polygon(radius: float, sides: int = 40) -> np.ndarray:
    a = np.linspace(0, 2 * np.pi, sides, endpoint=False)
    return np.stack([radius * np.cos(a), radius * np.sin(a)], axis=1)


def shade(tile: np.ndarray, normal: np.ndarray, light_dir: np.ndarray, ambient: float = 0.45) -> np.ndarray:
    """Bake Lambertian shading of a (two-sided) flat surface under the key light into its tile."""
    k = ambient + (1.0 - ambient) * abs(float(np.dot(normal, light_dir)))
    return np.clip(tile.astype(np.float32) * k + 0.5, 0, 255).astype(np.uint8)


def texel_for_depth(z: float, rng: np.random.Generator) -> float:
    """Texel size giving detail of about one to two pixels at depth z for the nominal camera."""
    return float(z / NOMINAL_FX * rng.uniform(0.8, 1.6))


def make_surface(
    name: str,
    centre: np.ndarray,
    R: np.ndarray,
    polygon: np.ndarray,
    tile: np.ndarray,
    texel_m: float,
    light_dir: np.ndarray,
    specular: Specular | None = None,
    textureless: bool = False,
) -> Surface:
    """A surface whose local u, v axes are the first two columns of rotation R (R = I: a
    fronto-parallel surface, u right, v down)."""
    u, v = R[:, 0].astype(np.float64), R[:, 1].astype(np.float64)
    n = np.cross(u, v)
    return Surface(
        name=name,
        origin=np.asarray(centre, np.float64),
        u_axis=u,
        v_axis=v,
        polygon=np.asarray(polygon, np.float64),
        mips=mip_pyramid(shade(tile, n, light_dir)),
        texel_m=texel_m,
        specular=specular,
        textureless=textureless,
    )


def _box_faces(
    name: str, centre: np.ndarray, half: np.ndarray, R: np.ndarray, tile: np.ndarray, texel: float, light: np.ndarray
) -> list[Surface]:
    faces = []
    # (axis of the face normal, the two in-plane axes)
    for axis, (a, b) in ((2, (0, 1)), (0, (2, 1)), (1, (0, 2))):
        for sign in (-1.0, 1.0):
            c = centre + R[:, axis] * half[axis] * sign
            Rf = np.stack([R[:, a], R[:, b], np.cross(R[:, a], R[:, b])], axis=1)
            faces.append(
                make_surface(f"{name}_face{axis}{'+' if sign > 0 else '-'}", c, Rf,
                             rect_polygon(half[a], half[b]), tile, texel, light)
            )
    return faces


def random_scene(
    seed: int,
    *,
    near_m: float = DEFAULT_NEAR_M,
    far_m: float = DEFAULT_FAR_M,
    specular: bool = True,
    textureless: bool = True,
    tile_px: int = 256,
    photos: Sequence[np.ndarray] = (),
    kinds: Sequence[str] = KINDS,
    photo_share: float = 0.5,
    thin_objects: int = 0,
) -> Scene:
    """A seeded random scene spanning near_m..far_m in front of the reference camera. With
    `photos`, `photo_share` of the surfaces that draw a texture are cut from those photographs,
    the others draw a procedural kind from `kinds`. `thin_objects` adds that many poles and wires
    (a few pixels wide) in front of the scene."""
    if not (0.05 <= near_m < far_m):
        raise SceneError(f"need 0.05 <= near_m < far_m, got near_m={near_m}, far_m={far_m}")
    rng = np.random.default_rng(seed)
    light = _unit(np.array([rng.uniform(-0.6, 0.6), -1.0, -rng.uniform(0.3, 1.0)]))
    surfaces: list[Surface] = []

    def tile(kind: str | None = None) -> np.ndarray:
        if kind is None and photos and rng.random() < photo_share:
            return photo_texture(photos, rng, tile_px)
        return make_texture(kind or str(rng.choice(list(kinds))), rng, tile_px)

    # Back wall: fills the view behind everything, so every pixel has a finite depth.
    z_wall = far_m * rng.uniform(0.8, 1.0)
    surfaces.append(make_surface("back_wall", np.array([0.0, 0.0, z_wall]), np.eye(3),
                                 rect_polygon(3.0 * z_wall, 2.5 * z_wall), tile(), texel_for_depth(z_wall, rng),
                                 light))

    # Ground plane below the camera, in bands of doubling depth so each band gets its own mip level.
    height = min(rng.uniform(0.6, 1.4), 0.2 * z_wall)
    z0 = max(near_m, height / (VIEW_TAN_Y + 0.05))
    if z0 < z_wall:
        ground_tile = tile(str(rng.choice(["noise", "bricks", "checker"])))
        texel = texel_for_depth(max(z0, 1.0), rng)
        R_ground = np.stack([np.array([1.0, 0, 0]), np.array([0, 0, 1.0]), np.array([0, -1.0, 0])], axis=1)
        edges = [z0]
        while edges[-1] * 2 < z_wall:
            edges.append(edges[-1] * 2)
        edges.append(z_wall)
        half_w = 3.0 * z_wall
        for i, (za, zb) in enumerate(zip(edges[:-1], edges[1:], strict=True)):
            poly = np.array([[-half_w, za], [half_w, za], [half_w, zb], [-half_w, zb]])
            surfaces.append(make_surface(f"ground{i}", np.array([0.0, height, 0.0]), R_ground, poly, ground_tile,
                                         texel, light))

    def depth_sample(lo: float, hi: float) -> float:
        # Shallow scenes (far_m close to near_m) can invert a preferred band: keep it ordered.
        lo, hi = min(lo, hi), max(lo, hi)
        return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))

    obj_far = max(near_m * 1.5, 0.6 * z_wall)
    n_objects = int(rng.integers(5, 9))
    placed: list[tuple[float, float, float, float]] = []  # tan_x, tan_y, z, angular half size
    for i in range(n_objects):
        # The first object is close (near_m..1.6 near_m); every other one overlaps something placed
        # before it half of the time, so there are always occlusion boundaries.
        z = depth_sample(near_m, min(obj_far, 1.6 * near_m)) if i == 0 else depth_sample(near_m * 1.2, obj_far)
        size = rng.uniform(0.05, 0.16)
        if placed and rng.random() < 0.5:
            tx0, ty0, _, s0 = placed[int(rng.integers(len(placed)))]
            ang = rng.uniform(0, 2 * np.pi)
            tx, ty = tx0 + math.cos(ang) * (s0 + size) * 0.8, ty0 + math.sin(ang) * (s0 + size) * 0.8
        else:
            tx, ty = rng.uniform(-VIEW_TAN_X, VIEW_TAN_X), rng.uniform(-VIEW_TAN_Y, VIEW_TAN_Y)
        tx, ty = float(np.clip(tx, -VIEW_TAN_X, VIEW_TAN_X)), float(np.clip(ty, -VIEW_TAN_Y, VIEW_TAN_Y))
        placed.append((tx, ty, z, size))
        centre = np.array([tx * z, ty * z, z])
        half = size * z
        texel = texel_for_depth(z, rng)
        kind = str(rng.choice(["rect", "slanted", "disc", "box"]))
        if kind == "rect":
            surfaces.append(make_surface(f"rect{i}", centre, np.eye(3),
                                         rect_polygon(half * rng.uniform(0.6, 1.4), half * rng.uniform(0.6, 1.4)),
                                         tile(), texel, light))
        elif kind == "slanted":
            R = _rot_y(rng.uniform(-1.0, 1.0)) @ _rot_x(rng.uniform(-0.7, 0.7))
            surfaces.append(make_surface(f"slanted{i}", centre, R, rect_polygon(half, half * rng.uniform(0.6, 1.4)),
                                         tile(), texel, light))
        elif kind == "disc":
            surfaces.append(make_surface(f"disc{i}", centre, np.eye(3), disc_polygon(half), tile(), texel, light))
        else:
            R = _rot_y(rng.uniform(-0.8, 0.8)) @ _rot_x(rng.uniform(-0.3, 0.3))
            halves = np.array([half, half * rng.uniform(0.6, 1.3), half * rng.uniform(0.5, 1.2)])
            surfaces.extend(_box_faces(f"box{i}", centre + R[:, 2] * halves[2], halves, R, tile(), texel, light))

    for i in range(thin_objects):
        # A pole or wire at any orientation across much of the view, 0.2-2 % of the view wide (a
        # few pixels at any working resolution).
        z = depth_sample(near_m, obj_far)
        width = z * math.exp(rng.uniform(math.log(0.002), math.log(0.02)))
        a = rng.uniform(0, np.pi)
        roll = np.array([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0], [0.0, 0.0, 1.0]])
        centre = np.array([rng.uniform(-VIEW_TAN_X, VIEW_TAN_X) * z, rng.uniform(-VIEW_TAN_Y, VIEW_TAN_Y) * z, z])
        surfaces.append(make_surface(f"thin{i}", centre, roll @ _rot_x(rng.uniform(-0.4, 0.4)),
                                     rect_polygon(rng.uniform(0.15, 0.4) * z, width / 2), tile(),
                                     texel_for_depth(z, rng), light))

    if specular:
        z = depth_sample(max(near_m * 2, 0.8), max(near_m * 2.5, min(3.0, obj_far)))
        tx, ty = rng.choice([-1, 1]) * rng.uniform(0.05, 0.2), rng.uniform(-0.1, 0.1)
        R = _rot_y(rng.uniform(0.4, 0.8) * rng.choice([-1, 1])) @ _rot_x(rng.uniform(-0.3, 0.3))
        half = rng.uniform(0.08, 0.12) * z
        base = (make_texture("noise", rng, tile_px).astype(np.float32) * 0.35).astype(np.uint8)
        surfaces.append(make_surface("mirror", np.array([tx * z, ty * z, z]), R, rect_polygon(half, half * 0.8), base,
                                     texel_for_depth(z, rng), light,
                                     specular=Specular(reflectivity=float(rng.uniform(0.6, 0.9)),
                                                       shininess=float(rng.uniform(60, 300)))))
    if textureless:
        z = depth_sample(max(near_m * 2, 0.7), max(near_m * 2.5, min(4.0, obj_far)))
        tx, ty = rng.uniform(-0.2, 0.2), rng.uniform(-0.15, 0.15)
        half = rng.uniform(0.04, 0.08) * z
        colour = rng.uniform(0.3, 0.8) * np.ones(3) + rng.uniform(-0.05, 0.05, 3)
        surfaces.append(make_surface("textureless", np.array([tx * z, ty * z, z]), np.eye(3),
                                     rect_polygon(half * 1.2, half), flat_texture(colour), 1e-3, light,
                                     textureless=True))
    return Scene(surfaces=surfaces, environment=environment_map(rng), light_dir=light, seed=seed, near_m=near_m,
                 far_m=far_m)


def plane_scene(distance_m: float, seed: int = 0, kind: str = "checker", tile_px: int = 256) -> Scene:
    """A single fronto-parallel textured wall at `distance_m`: a focus / calibration target."""
    if not distance_m > 0.05:
        raise SceneError(f"plane distance must be > 0.05 m, got {distance_m}")
    rng = np.random.default_rng(seed)
    light = np.array([0.0, 0.0, -1.0])
    wall = make_surface("plane", np.array([0.0, 0.0, distance_m]), np.eye(3),
                        rect_polygon(5.0 * distance_m, 5.0 * distance_m), make_texture(kind, rng, tile_px),
                        texel_for_depth(distance_m, rng), light)
    return Scene(surfaces=[wall], environment=environment_map(rng), light_dir=light, seed=seed,
                 near_m=distance_m, far_m=distance_m)
