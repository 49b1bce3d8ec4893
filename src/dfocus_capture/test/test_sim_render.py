"""The simulator's optics and geometry against closed-form truth: thin-lens blur size, occlusion
at depth edges, depth of planes, multi-view consistency, view-dependent reflections."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from dfocus_capture.calibration import CameraModel, load_calibration
from dfocus_capture.dds import find_config
from dfocus_capture.sim import RenderError, ThinLensRenderer, plane_scene, random_scene
from dfocus_capture.sim.defocus import disc_kernel
from dfocus_capture.sim.scene import Scene, make_surface, rect_polygon
from dfocus_capture.sim.sensor import srgb_to_linear
from dfocus_capture.sim.textures import environment_map, flat_texture

CAL = load_calibration(find_config("camera_array.yaml"))  # type: ignore[arg-type]
CAM = CAL.reference.scaled(640, 480)  # fx = 1000 px, 6 um pixels, f = 6 mm, f/1.8


def lin(img: np.ndarray) -> np.ndarray:
    return srgb_to_linear(img.astype(np.float32) / 255.0)


def edge_scene(distance_m: float) -> Scene:
    """A wall at distance_m, white just left of x = 0 and black right of it, 1 mm texels (one
    pixel at 1 m for CAM): a vertical step edge through the image centre."""
    tile = np.zeros((16, 512, 3), np.uint8)
    tile[:, :256] = 255
    light = np.array([0.0, 0.0, -1.0])
    wall = make_surface("wall", np.array([-0.2565, 0.0, distance_m]), np.eye(3), rect_polygon(50, 50), tile, 1e-3,
                        light)
    return Scene([wall], environment_map(np.random.default_rng(0)), light)


def two_planes(front_m: float, back_m: float) -> Scene:
    """A white wall at back_m and a black panel at front_m covering the image's left half."""
    light = np.array([0.0, 0.0, -1.0])
    back = make_surface("back", np.array([0.0, 0.0, back_m]), np.eye(3), rect_polygon(50, 50),
                        flat_texture(np.ones(3)), 0.01, light)
    front = make_surface("front", np.array([-5.0, 0.0, front_m]), np.eye(3), rect_polygon(5.0, 5.0),
                         flat_texture(np.zeros(3)), 0.01, light)
    return Scene([back, front], environment_map(np.random.default_rng(0)), light)


def disc_lsf_blur(profile: np.ndarray, diameter: float) -> np.ndarray:
    """A 1-D edge profile blurred by a disc PSF (its line spread function)."""
    k = disc_kernel(diameter).sum(axis=0)
    pad = len(k) // 2
    padded = np.pad(profile, pad, mode="edge")
    return np.convolve(padded, k, mode="valid")


@pytest.mark.parametrize("focus_m", [0.35, 0.2])
def test_defocused_edge_has_the_thin_lens_blur_diameter(focus_m: float) -> None:
    r = ThinLensRenderer(edge_scene(1.0))
    view = r.render(CAM, focus_m=focus_m)
    predicted = float(CAM.coc_px(1.0, focus_m))
    assert predicted > 5
    np.testing.assert_allclose(view.coc_px, predicted, rtol=1e-5)
    measured = lin(view.image)[100:380, :, 1].mean(axis=0)
    sharp = lin(view.all_in_focus)[100:380, :, 1].mean(axis=0)
    window = slice(320 - 3 * int(predicted), 320 + 3 * int(predicted))
    candidates = np.linspace(0.5 * predicted, 1.5 * predicted, 41)
    errors = [np.abs(disc_lsf_blur(sharp, d)[window] - measured[window]).mean() for d in candidates]
    best = candidates[int(np.argmin(errors))]
    assert abs(best - predicted) / predicted < 0.1, (best, predicted)
    assert min(errors) < 0.01


def test_plane_at_the_focus_distance_is_sharp_and_away_from_it_blurred() -> None:
    r = ThinLensRenderer(plane_scene(1.0, seed=3))

    def hf_energy(img: np.ndarray) -> float:
        g = lin(img).mean(axis=2)
        return float(np.abs(np.diff(g, axis=1)).mean() + np.abs(np.diff(g, axis=0)).mean())

    focused = r.render(CAM, focus_m=1.0)
    assert float(focused.coc_px.max()) < 0.5
    reference = hf_energy(focused.all_in_focus)
    assert hf_energy(focused.image) > 0.9 * reference
    assert hf_energy(r.render(CAM, focus_m=0.4).image) < 0.5 * reference
    assert hf_energy(r.render(CAM, focus_m=0.25).image) < hf_energy(r.render(CAM, focus_m=0.4).image)


def test_blurred_foreground_spills_over_a_sharp_background() -> None:
    view = ThinLensRenderer(two_planes(0.3, 3.0)).render(CAM, focus_m=3.0)
    c = float(CAM.coc_px(0.3, 3.0))
    assert c > 8
    row = lin(view.image)[240, :, 1]
    edge = 320  # the panel covers x < 0, i.e. columns < cx
    # Background just right of the silhouette is darkened by the blurred black panel ...
    assert row[edge + int(c / 4)] < 0.8
    # ... and far from it untouched.
    assert row[edge + int(c) + 4] > 0.97


def test_sharp_foreground_edge_stays_sharp_over_a_blurred_background() -> None:
    view = ThinLensRenderer(two_planes(0.3, 3.0)).render(CAM, focus_m=0.3)
    assert float(CAM.coc_px(3.0, 0.3)) > 8
    row = lin(view.image)[240, :, 1]
    # A uniform blur with the background's CoC would grey the panel's edge; occlusion-aware
    # layering keeps the in-focus black panel black up to its edge.
    assert row[316] < 0.02
    assert row[330] > 0.9


def test_ground_truth_depth_of_a_slanted_plane_matches_the_analytic_depth() -> None:
    light = np.array([0.0, 0.0, -1.0])
    a = np.deg2rad(35)
    R = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    centre = np.array([0.1, 0.0, 2.0])
    plane = make_surface("slanted", centre, R, rect_polygon(50, 50), flat_texture(np.full(3, 0.5)), 0.01, light)
    scene = Scene([plane], environment_map(np.random.default_rng(0)), light)
    T = np.eye(4)
    T[:3, 3] = [0.02, -0.01, 0.05]  # a camera moved off the reference pose
    cam = replace(CAM, T_ref_cam=T)
    depth = ThinLensRenderer(scene).render(cam).depth
    # Plane n . X = d in the camera frame (camera axes parallel to the scene's).
    n = R[:, 2]
    d = float(n @ (centre - T[:3, 3]))
    v, u = np.mgrid[0:480, 0:640].astype(np.float64)
    rays = np.stack([(u - cam.cx) / cam.fx, (v - cam.cy) / cam.fy, np.ones_like(u)], axis=-1)
    expected = d / (rays @ n)
    np.testing.assert_allclose(depth, expected, rtol=1e-4)


def test_views_are_consistent_where_the_poses_say() -> None:
    scene = random_scene(11, specular=True)
    r = ThinLensRenderer(scene)
    cam_a = CAL.cameras[0].scaled(320, 240)
    cam_b = CAL.cameras[2].scaled(320, 240)  # 30 mm to the right
    va, vb = r.render(cam_a), r.render(cam_b)
    v, u = np.mgrid[0:240, 0:320].astype(np.float64)
    z = va.depth.astype(np.float64)
    pts = np.stack([(u - cam_a.cx) / cam_a.fx * z, (v - cam_a.cy) / cam_a.fy * z, z, np.ones_like(z)], -1)
    in_b = pts @ (np.linalg.inv(cam_b.T_ref_cam) @ cam_a.T_ref_cam).T
    ub = cam_b.fx * in_b[..., 0] / in_b[..., 2] + cam_b.cx
    vbp = cam_b.fy * in_b[..., 1] / in_b[..., 2] + cam_b.cy
    ui, vi = np.round(ub).astype(int), np.round(vbp).astype(int)
    inside = (ui >= 0) & (ui < 320) & (vi >= 0) & (vi < 240)
    zb = np.full_like(z, np.nan)
    zb[inside] = vb.depth[vi[inside], ui[inside]]
    visible = inside & (np.abs(zb - in_b[..., 2]) < 0.01 * in_b[..., 2])
    assert visible.mean() > 0.8  # most points seen by A are seen by B where the poses put them
    ca = va.all_in_focus.astype(float)
    cb = np.zeros_like(ca)
    cb[inside] = vb.all_in_focus[vi[inside], ui[inside]]
    diff = np.abs(ca - cb).mean(axis=2)
    matte = visible & ~va.specular_mask & ~va.textureless_mask
    assert np.median(diff[matte]) < 12
    if va.specular_mask.sum() > 50:  # the mirror reflects the environment: wrong for matching
        assert np.median(diff[visible & va.specular_mask]) > np.median(diff[matte])


def test_scene_has_occlusions_a_mirror_and_a_textureless_region_within_range() -> None:
    scene = random_scene(5, near_m=0.3, far_m=10.0)
    view = ThinLensRenderer(scene).render(CAL.reference.scaled(320, 240))
    assert np.isfinite(view.depth).all()
    assert 0.3 <= view.depth.min() and view.depth.max() <= 10.0 * 1.01
    assert view.depth.max() / view.depth.min() > 5
    assert len(np.unique(view.surface_id)) >= 5
    assert any(s.specular for s in scene.surfaces) and any(s.textureless for s in scene.surfaces)


def test_impossible_focus_is_refused() -> None:
    r = ThinLensRenderer(plane_scene(1.0))
    with pytest.raises(RenderError):
        r.render(CAM, focus_m=0.001)
    with pytest.raises(RenderError):
        r.render(CAM, f_number=float("nan"))


def test_same_seed_same_scene_same_image() -> None:
    cam = CAL.reference.scaled(160, 120)
    a = ThinLensRenderer(random_scene(2)).render(cam, rng=np.random.default_rng(1))
    b = ThinLensRenderer(random_scene(2)).render(cam, rng=np.random.default_rng(1))
    assert np.array_equal(a.image, b.image)
    c = ThinLensRenderer(random_scene(3)).render(cam, rng=np.random.default_rng(1))
    assert not np.array_equal(a.image, c.image)


def test_camera_model_coc_matches_thin_lens_formula() -> None:
    cam: CameraModel = CAM
    f = cam.focal_length_mm * 1e-3
    s, z = 0.8, 2.5
    expected = (f / cam.f_number) * abs(z - s) / z * f / (s - f) / (cam.pixel_size_um * 1e-6)
    assert float(cam.coc_px(z, s)) == pytest.approx(expected)


def test_photo_texture_wraps_seamlessly_and_keeps_the_photographs_detail() -> None:
    from dfocus_capture.sim.textures import photo_texture

    rng = np.random.default_rng(3)
    photo = (rng.random((300, 420, 3)) * 255).astype(np.uint8)
    tile = photo_texture([photo], rng, 128)
    assert tile.shape == (128, 128, 3) and tile.dtype == np.uint8
    t = tile.astype(np.float32)
    # Mirrored both ways: the tile's opposite edges meet like neighbouring texels.
    seam = np.abs(t[:, 0] - t[:, -1]).mean() + np.abs(t[0] - t[-1]).mean()
    inner = np.abs(np.diff(t, axis=1)).mean() + np.abs(np.diff(t, axis=0)).mean()
    assert seam < inner
    assert t.std() > 10  # the photograph's detail, not a flat tile
    with pytest.raises(ValueError, match="at least one photograph"):
        photo_texture([], rng, 64)


def test_scenes_cut_textures_from_photographs_only_when_given_some() -> None:
    from dfocus_capture.sim.textures import photo_texture

    rng = np.random.default_rng(0)
    photos = [np.full((64, 64, 3), 0, np.uint8), np.full((64, 64), 255, np.uint8)]  # recognisable: flat
    plain, with_photos = random_scene(11), random_scene(11, photos=photos)
    def uniform(tile: np.ndarray) -> bool:  # per channel: a photograph's colour balance is random
        return float(tile.reshape(-1, 3).std(axis=0).max()) < 1.0

    assert uniform(photo_texture(photos, rng, 32))

    def flat(scene: Scene) -> int:
        return sum(1 for s in scene.surfaces if not s.textureless and uniform(s.mips[0]))
    assert flat(plain) == 0 and flat(with_photos) > 0
    again = random_scene(11)
    assert all(np.array_equal(a.mips[0], b.mips[0]) for a, b in zip(plain.surfaces, again.surfaces, strict=True))
