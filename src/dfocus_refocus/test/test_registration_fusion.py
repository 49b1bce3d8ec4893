"""Registration and all-in-focus fusion against the simulator's ground truth (pure, no rclpy)."""

from dataclasses import replace

import numpy as np
import pytest
from refocus_cases import make_case, rotation

from dfocus_capture.burst import Burst
from dfocus_refocus.baselines import depth_edge_band, psnr
from dfocus_refocus.fusion import max_laplacian_pick
from dfocus_refocus.pipeline import prepare_sequence
from dfocus_refocus.registration import RegistrationError, fill_depth, register_burst


@pytest.fixture(scope="module")
def pinhole_case():
    return make_case(seed=5, width=320, pinhole=True)


def test_registered_views_match_the_reference_at_visible_pixels(pinhole_case):
    c = pinhole_case
    reg = register_burst(c.burst, c.depth, refine="never")
    assert not reg.rejected and len(reg.frames) == 5
    for f in reg.frames[1:]:
        # The other views (3 cm baselines, parallax up to ~4 px here) land on the reference view...
        assert psnr(f.image, c.all_in_focus, f.valid) > 28.0, f.camera.name
        # ...and the pixels flagged as hidden (occluded or outside that view) are where warping fails.
        err = np.abs(f.image.astype(float) - c.all_in_focus).mean(axis=2)
        hidden = ~f.valid
        assert 0.03 < hidden.mean() < 0.3
        assert err[hidden].mean() > 3 * err[f.valid].mean()


def test_pose_errors_are_refined_and_garbage_frames_rejected(pinhole_case):
    c = pinhole_case
    true_reg = register_burst(c.burst, c.depth, refine="never")
    frames = []
    for f in c.burst.frames:
        if f.camera_index in (1, 3):  # IMU drift: half a degree of rotation unknown to the pose
            axis = "y" if f.camera_index == 1 else "x"
            f = replace(f, camera=replace(f.camera, T_ref_cam=f.camera.T_ref_cam @ rotation(0.5, axis)))
        if f.camera_index == 4:  # a frame that shows something else entirely
            f = replace(f, image=np.random.default_rng(0).integers(0, 256, f.image.shape, dtype=np.uint8))
        frames.append(f)
    drifted = Burst(1, "cam0", 1, 5, frames, hand_held=True)
    unrefined = register_burst(drifted, c.depth, refine="never")
    refined = register_burst(drifted, c.depth, refine="auto")
    assert [(r.camera_name, "does not match" in r.reason) for r in refined.rejected] == [("cam4", True)]
    by_camera = {f.camera_index: f for f in refined.frames}
    for k in (1, 3):
        truth, after = true_reg.frames[k], by_camera[k]
        assert after.refined
        mask = truth.valid & after.valid
        # ~4 px of misregistration (compared with the registration from the true pose)...
        before = next((f for f in unrefined.frames if f.camera_index == k), None)
        assert before is None or psnr(before.image, truth.image, mask) < 24.0
        # ...is undone.
        assert psnr(after.image, truth.image, mask) > 28.5


def test_fusion_beats_max_laplacian_and_every_single_frame():
    c = make_case(seed=8, width=480)
    prepared = prepare_sequence(c.burst, c.depth)
    band = depth_edge_band(c.depth)
    ours = prepared.all_in_focus_srgb()
    naive = max_laplacian_pick(prepared.registration)
    assert psnr(ours, c.all_in_focus) > psnr(naive, c.all_in_focus) + 0.3
    assert psnr(ours, c.all_in_focus, band) > psnr(naive, c.all_in_focus, band) + 0.3
    for f in prepared.registration.frames:  # better than any one registered frame, edges included
        assert psnr(ours, c.all_in_focus, band) > psnr(f.image, c.all_in_focus, band)


def test_depth_holes_are_filled_and_empty_depth_refused(pinhole_case):
    depth = pinhole_case.depth.copy()
    depth[100:140, 100:180] = np.nan
    filled = fill_depth(depth)
    assert np.isfinite(filled).all()
    hole = filled[100:140, 100:180]
    assert np.nanmin(depth) <= hole.min() and hole.max() <= np.nanmax(depth)
    # Continuous with the known depth around the hole (relative step under 5 %).
    assert np.abs(hole[0] / depth[99, 100:180] - 1).mean() < 0.05
    assert np.abs(hole[:, 0] / depth[100:140, 99] - 1).mean() < 0.05
    with pytest.raises(RegistrationError, match="no valid pixel"):
        register_burst(pinhole_case.burst, np.full_like(depth, np.nan))
    blank = [replace(f, image=np.zeros_like(f.image)) if f.camera_index == 0 else f for f in pinhole_case.burst.frames]
    with pytest.raises(RegistrationError, match="blank"):
        register_burst(Burst(1, "cam0", 1, 5, blank), pinhole_case.depth)


def test_frames_registered_and_fused_at_once_give_what_one_at_a_time_gives(pinhole_case):
    """Registration and fusion run frames on threads: the result must not depend on it (same
    frames in the burst's order, the same pixels), and a progress callback that raises stops it."""
    c = pinhole_case
    together = prepare_sequence(c.burst, c.depth, workers=3)
    alone = prepare_sequence(c.burst, c.depth, workers=1)
    assert [(f.shot_index, f.camera_index) for f in together.registration.frames] == \
        [(f.shot_index, f.camera_index) for f in alone.registration.frames] == \
        [(f.shot_index, f.camera_index) for f in c.burst.frames]
    np.testing.assert_array_equal(together.all_in_focus, alone.all_in_focus)

    class StopError(Exception):
        pass

    def stop_after_two(fraction: float) -> None:
        if fraction >= 2 / len(c.burst.frames):
            raise StopError
    with pytest.raises(StopError):
        register_burst(c.burst, c.depth, progress=stop_after_two)
