"""The network's geometry and shapes (no trained weights needed): plane-sweep projection, warping,
2-8 cameras, extra shots, odd image sizes, and a seconds-long training smoke run."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from dfocus_capture.burst import Burst, BurstFrame
from dfocus_capture.calibration import CameraModel
from dfocus_depth.estimator import DepthEstimator
from dfocus_depth.geometry import DepthInputError, DepthRange, projection_coefficients
from dfocus_depth.model import DepthNet, sweep_grid


def _camera(name: str, t: tuple[float, float, float], w: int = 64, h: int = 48, yaw: float = 0.0) -> CameraModel:
    T = np.eye(4)
    c, s = np.cos(yaw), np.sin(yaw)
    T[:3, :3] = [[c, 0, s], [0, 1, 0], [-s, 0, c]]
    T[:3, 3] = t
    K = np.array([[60.0, 0, (w - 1) / 2], [0, 60.0, (h - 1) / 2], [0, 0, 1]])
    return CameraModel(name=name, width=w, height=h, K=K, D=np.zeros(5), T_ref_cam=T, focus_distance_m=1.0,
                       focal_length_mm=4.0, f_number=2.0, pixel_size_um=4.0 / 60 * 1e3)


def test_projection_coefficients_match_explicit_projection() -> None:
    ref = _camera("cam0", (0.01, -0.02, 0.0), yaw=0.02)
    view = _camera("cam1", (0.05, 0.01, 0.003), yaw=-0.03)
    A, b = projection_coefficients(ref, view)
    rng = np.random.default_rng(1)
    for _ in range(5):
        x = np.array([rng.uniform(0, 64), rng.uniform(0, 48), 1.0])
        z = rng.uniform(0.3, 5.0)
        p_ref_cam = z * np.linalg.inv(ref.K) @ x
        p_world = ref.T_ref_cam @ np.append(p_ref_cam, 1)
        p_view = np.linalg.inv(view.T_ref_cam) @ p_world
        expected = view.K @ p_view[:3]
        got = A @ x + b / z
        assert np.allclose(expected[:2] / expected[2], got[:2] / got[2], atol=1e-9)


def test_sweep_at_the_true_plane_reproduces_the_reference() -> None:
    """A textured fronto-parallel plane at 0.8 m: warping the source with the grid of that plane
    gives back the reference image; a wrong plane does not."""
    ref, view = _camera("cam0", (0, 0, 0), 96, 72), _camera("cam1", (0.04, 0.01, 0), 96, 72)
    A, b = projection_coefficients(ref, view)
    z = 0.8
    H_ref_to_view = A + np.outer(b, [0, 0, 1]) / z  # homography of the plane z = 0.8 (x3 = 1 rows)
    tex = cv2.GaussianBlur(np.random.default_rng(2).random((72, 96)).astype(np.float32), (0, 0), 1.5)
    src = cv2.warpPerspective(tex, H_ref_to_view, (96, 72), flags=cv2.INTER_LINEAR)
    # src(x_view) = tex(H^-1 x_view), i.e. the view sees the reference's texture on that plane
    At, bt = torch.tensor(A, dtype=torch.float32)[None, None], torch.tensor(b, dtype=torch.float32)[None, None]
    inv = torch.tensor([1 / z, 1 / 0.4], dtype=torch.float32).view(1, 2, 1, 1).expand(1, 2, 72, 96)
    grid, inside = sweep_grid(At, bt, inv)
    warped = torch.nn.functional.grid_sample(torch.from_numpy(src)[None, None], grid, align_corners=False)
    warped = warped.reshape(2, 72, 96).numpy()
    core = inside[0, 0, 0].numpy().copy()
    core[:4], core[-4:], core[:, :4], core[:, -4:] = False, False, False, False
    assert np.abs(warped[0] - tex)[core].mean() < 0.01
    assert np.abs(warped[1] - tex)[core & inside[0, 0, 1].numpy()].mean() > 0.05


@pytest.mark.parametrize("sources", [1, 3, 7])
def test_network_shapes_for_2_to_8_cameras(sources: int) -> None:
    net = DepthNet().eval()
    h, w, D = 48, 64, net.planes
    A = torch.eye(3).expand(1, sources, 3, 3).clone()
    b = torch.tensor([20.0, 0, 0]).expand(1, sources, 3).clone()
    with torch.inference_mode():
        out = net(torch.rand(1, 3, h, w), torch.rand(1, sources, 3, h, w), A, b,
                  torch.linspace(0.1, 2.0, D)[None], torch.rand(1, sources + 1, D))
    assert out["inv_depth"].shape == (1, 1, h, w) and out["confidence"].shape == (1, 1, h, w)
    assert torch.all((out["confidence"] >= 0) & (out["confidence"] <= 1))
    assert torch.all((out["inv_depth"] >= 0.1 - 1e-6) & (out["inv_depth"] <= 2.0 + 1e-6))


def _burst(cams: int, shots: int, w: int, h: int) -> Burst:
    rng = np.random.default_rng(cams * 10 + shots)
    models = [_camera(f"cam{i}", (0.02 * i, 0.005 * (i % 2), 0), w, h) for i in range(cams)]
    frames = []
    for s in range(shots):
        for i, m in enumerate(models):
            shift = np.eye(4)
            shift[:2, 3] = 0.0005 * s  # the actuators move the array between shots
            posed = replace(m, T_ref_cam=shift @ m.T_ref_cam)
            img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            frames.append(BurstFrame(camera_index=i, shot_index=s, camera=posed, image=img))
    return Burst(sequence_id=1, reference_camera="cam0", num_shots=shots, num_cameras=cams, frames=frames)


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("w") / "random.pt"
    torch.manual_seed(0)
    torch.save({"state_dict": DepthNet().state_dict(), "planes": DepthNet().planes, "version": 1}, path)
    return path


@pytest.mark.parametrize(("cams", "shots", "size"), [(2, 1, (101, 67)), (5, 3, (64, 48)), (8, 2, (250, 99))])
def test_estimator_any_size_and_extra_shots(random_weights: Path, cams: int, shots: int, size: tuple[int, int]) -> None:
    est = DepthEstimator(random_weights, "cpu", max_width=96)
    res = est.estimate(_burst(cams, shots, *size), DepthRange(0.3, 10.0), confidence_threshold=0.0)
    assert res.depth.shape == (size[1], size[0]) and res.depth.dtype == np.float32
    assert res.confidence.shape == res.depth.shape and res.num_views == min(cams * shots, 13)
    d = res.depth[np.isfinite(res.depth)]
    assert d.size > 0 and d.min() >= 0.3 - 1e-3 and d.max() <= 10.0 + 1e-2


def test_one_camera_is_refused(random_weights: Path) -> None:
    with pytest.raises(DepthInputError, match="at least two views"):
        DepthEstimator(random_weights, "cpu", max_width=64).estimate(_burst(1, 1, 64, 48))


def test_training_smoke_run_writes_weights_and_record(tmp_path: Path) -> None:
    from dfocus_depth.training import TrainConfig, train

    cfg = TrainConfig(scenes=2, steps=2, batch=2, width=64, height=48, validation_scenes=1, log_every=1,
                      out=str(tmp_path / "w.pt"))
    record = train(cfg, lambda _msg: None, command="test")
    assert (tmp_path / "w.pt").stat().st_size < 5e6
    saved = json.loads((tmp_path / "w.json").read_text())
    assert saved["config"]["steps"] == 2 and np.isfinite(saved["final_val_epe_px"])
    assert saved["config"]["out"] == "w.pt"  # no machine-specific path in a committed record
    assert record["curve"] and all(np.isfinite(r["train_epe_px"]) for r in saved["curve"])
    DepthEstimator(tmp_path / "w.pt", "cpu", max_width=64)  # loads back


def test_focus_cue_is_the_masked_correlation_of_observed_and_predicted_sharpness() -> None:
    from dfocus_depth.model import focus_consistency

    g = torch.Generator().manual_seed(4)
    B, S, D, h, w = 2, 4, 6, 5, 7
    ref = torch.randn(B, 1, h, w, generator=g) * 2 - 3
    src = torch.randn(B, S, D, h, w, generator=g) * 2 - 3
    inside = torch.rand(B, S, D, h, w, generator=g) > 0.3
    coc = torch.rand(B, S + 1, D, generator=g) * 8
    got = focus_consistency(ref, src, inside, coc).double().numpy()
    # Textbook two-pass Pearson correlation over the views that see each point (the reference always does).
    x = torch.cat([ref.unsqueeze(1).expand(B, 1, D, h, w), src], 1).double().numpy()
    m = torch.cat([torch.ones(B, 1, D, h, w, dtype=torch.bool), inside], 1).numpy()
    y = np.broadcast_to(-np.log1p(coc.double().numpy())[..., None, None], x.shape)
    n = m.sum(axis=1)
    xc = (x - (x * m).sum(1, keepdims=True) / n[:, None]) * m
    yc = (y - (y * m).sum(1, keepdims=True) / n[:, None]) * m
    expected = (xc * yc).sum(1) / np.sqrt((xc**2).sum(1) * (yc**2).sum(1) + 1e-4)
    assert np.abs(got - expected).max() < 1e-4
    alike = focus_consistency(ref, src, inside, torch.full((B, S + 1, D), 2.0))
    assert alike.abs().max() < 1e-3  # views focused alike carry no cue


def test_joint_bilateral_upsampling_puts_depth_edges_on_image_edges() -> None:
    from dfocus_depth.upsample import joint_bilateral_upsample

    lo = np.zeros((1, 12, 16), np.float32)
    lo[:, :, 8:] = 1.0  # a depth step between low-resolution columns 7 and 8
    guide_hi = np.zeros((24, 32, 3), np.float32)
    guide_hi[:, 16:] = 1.0  # the same edge in the image at full resolution
    guide_lo = cv2.resize(guide_hi, (16, 12), interpolation=cv2.INTER_AREA)
    up = joint_bilateral_upsample(lo, guide_lo, guide_hi)[0]
    assert up.shape == (24, 32)
    assert np.abs(up[:, :16]).max() < 1e-3 and np.abs(up[:, 16:] - 1).max() < 1e-3
    bilinear = cv2.resize(lo[0], (32, 24), interpolation=cv2.INTER_LINEAR)
    assert np.abs(bilinear[:, 15] - 0.0).max() > 0.1  # plain interpolation smears the edge
