"""Whole simulated bursts: every camera of the array, every shot, with the true poses.

The scene frame is the reference camera's optical frame at shot 0. Frame (shot k, camera c) is
rendered at T_ref_cam = inv(calib_ref) @ motion.pose_at(t_k) @ calib_c, focused per `focus_mode`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from dfocus_capture.burst import FOCUS_BRACKET, FOCUS_FIXED, Burst, BurstFrame
from dfocus_capture.calibration import ArrayCalibration
from dfocus_capture.sim.motion import ArrayMotion, MotionError, Tremor, shift_pattern
from dfocus_capture.sim.render import ThinLensRenderer
from dfocus_capture.sim.scene import Scene, random_scene
from dfocus_capture.sim.sensor import SensorNoise

DEFAULT_BRACKET_M = (0.3, 10.0)


@dataclass
class SimBurst:
    burst: Burst
    scene: Scene
    renderer: ThinLensRenderer
    motion: ArrayMotion
    gt_depth: np.ndarray  # reference camera, shot 0: HxW float32 metres
    gt_all_in_focus: np.ndarray  # HxWx3 uint8
    specular_mask: np.ndarray
    textureless_mask: np.ndarray


def bracket_focus(calibration: ArrayCalibration, num_shots: int, bracket_m: tuple[float, float]) -> np.ndarray:
    """Focus distance (m) per (shot, camera) for a focus bracket: shots x cameras samples evenly
    spaced in diopters between the bracket limits. Each camera sweeps its own contiguous part of
    the range (short focus moves between shots), nearest part to the camera focused nearest."""
    near, far = float(min(bracket_m)), float(max(bracket_m))
    if not (near > 0 and np.isfinite(far)):
        raise MotionError(f"bracket_m must be two positive distances, got {bracket_m}")
    n_cam = len(calibration.cameras)
    total = num_shots * n_cam
    t = (np.arange(total) + 0.5) / total if total > 1 else np.array([0.5])
    dioptres = 1.0 / near + t * (1.0 / far - 1.0 / near)  # near -> far
    order = np.argsort([c.focus_distance_m for c in calibration.cameras], kind="stable")
    out = np.empty((num_shots, n_cam))
    for rank, cam_index in enumerate(order):
        out[:, cam_index] = 1.0 / dioptres[rank * num_shots : (rank + 1) * num_shots]
    return out


def make_motion(
    num_shots: int, seed: int, shift_pattern_name: str, shift_amplitude_mm: float, hand_held: bool,
    shot_interval_s: float = 0.1,
) -> ArrayMotion:
    rng = np.random.default_rng([seed, 1])
    return ArrayMotion(
        shift_mm=shift_pattern(shift_pattern_name, num_shots, shift_amplitude_mm, rng),
        shot_interval_s=shot_interval_s,
        move_time_s=0.4 * shot_interval_s,
        tremor=Tremor.random(rng) if hand_held else None,
    )


def simulate_burst(
    calibration: ArrayCalibration,
    seed: int,
    *,
    num_shots: int = 5,
    shift_pattern: str = "circle",
    shift_amplitude_mm: float = 0.5,
    hand_held: bool = False,
    focus_mode: int = FOCUS_FIXED,
    bracket_m: tuple[float, float] | None = None,
    noise: bool | SensorNoise = True,
    scene: Scene | None = None,
    shot_interval_s: float = 0.1,
    exposure_time_s: float = 0.01,
    start_stamp_ns: int = 0,
) -> SimBurst:
    """Render num_shots x cameras frames of `scene` (default: random_scene(seed))."""
    if focus_mode not in (FOCUS_FIXED, FOCUS_BRACKET):
        raise MotionError(f"focus_mode must be {FOCUS_FIXED} (fixed) or {FOCUS_BRACKET} (bracket), got {focus_mode}")
    scene = scene if scene is not None else random_scene(seed)
    renderer = ThinLensRenderer(scene)
    motion = make_motion(num_shots, seed, shift_pattern, shift_amplitude_mm, hand_held, shot_interval_s)
    n_cam = len(calibration.cameras)
    if focus_mode == FOCUS_BRACKET:
        focus = bracket_focus(calibration, num_shots, bracket_m or DEFAULT_BRACKET_M)
    else:
        focus = np.array([[c.focus_distance_m for c in calibration.cameras]] * num_shots)
    sensor = noise if isinstance(noise, SensorNoise) else (SensorNoise() if noise else None)
    rng = np.random.default_rng([seed, 2])
    ref_inv = np.linalg.inv(calibration.reference.T_ref_cam)
    frames: list[BurstFrame] = []
    gt = None
    for k in range(num_shots):
        t = float(motion.shot_times_s[k])
        array_pose = motion.pose_at(t)
        for c, cam in enumerate(calibration.cameras):
            posed = replace(cam, T_ref_cam=ref_inv @ array_pose @ cam.T_ref_cam, focus_distance_m=float(focus[k, c]))
            view = renderer.render(posed, noise=sensor, rng=rng)
            if k == 0 and c == calibration.reference_index:
                gt = view
            frames.append(BurstFrame(camera_index=c, shot_index=k, camera=posed, image=view.image,
                                     exposure_time_s=exposure_time_s, stamp_ns=start_stamp_ns + round(t * 1e9)))
    assert gt is not None
    imu = motion.imu_samples()
    imu[:, 0] += start_stamp_ns * 1e-9
    burst = Burst(
        sequence_id=seed & 0xFFFFFFFF,
        reference_camera=calibration.reference_camera,
        num_shots=num_shots,
        num_cameras=n_cam,
        frames=frames,
        stamp_ns=start_stamp_ns,
        focus_mode=focus_mode,
        hand_held=hand_held,
        imu=imu,
        actuator_mm=motion.shift_mm.copy(),
    )
    return SimBurst(burst=burst, scene=scene, renderer=renderer, motion=motion, gt_depth=gt.depth,
                    gt_all_in_focus=gt.all_in_focus, specular_mask=gt.specular_mask,
                    textureless_mask=gt.textureless_mask)
