"""Whole simulated bursts: every camera of the array, every shot, with the true poses.

The scene frame is the reference camera's optical frame at shot 0. Frame (shot k, camera c) is
rendered at T_ref_cam = inv(calib_ref) @ motion.pose_at(t_k) @ calib_c, focused per `focus_mode`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from dfocus_capture.burst import FOCUS_FIXED, Burst, BurstFrame
from dfocus_capture.calibration import ArrayCalibration
from dfocus_capture.hand_motion import HandTremor
from dfocus_capture.shift_patterns import PATTERN_NAMES, focus_plan, shift_targets
from dfocus_capture.sim.motion import ArrayMotion, MotionError
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


def make_motion(
    num_shots: int, seed: int, pattern: str, shift_amplitude_mm: float, hand_held: bool, shot_interval_s: float = 0.1
) -> ArrayMotion:
    """The burst's motion: the shift pattern by name ('circle', 'line', 'random', 'none') and,
    hand-held, tremor seeded from `seed`."""
    codes = {name: code for code, name in PATTERN_NAMES.items()}
    if pattern not in codes:
        raise MotionError(f"shift_pattern must be one of {sorted(codes)}, got {pattern!r}")
    return ArrayMotion(
        shift_mm=shift_targets(codes[pattern], num_shots, shift_amplitude_mm, seed=seed),
        shot_interval_s=shot_interval_s,
        move_time_s=0.4 * shot_interval_s,
        tremor=HandTremor(seed) if hand_held else None,
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
    """Render num_shots x cameras frames of `scene` (default: random_scene(seed)). Raises
    MotionError / ShotPlanError / RenderError on impossible requests."""
    scene = scene if scene is not None else random_scene(seed)
    renderer = ThinLensRenderer(scene)
    motion = make_motion(num_shots, seed, shift_pattern, shift_amplitude_mm, hand_held, shot_interval_s)
    n_cam = len(calibration.cameras)
    near, far = bracket_m or DEFAULT_BRACKET_M
    focus = focus_plan(focus_mode, num_shots, [c.focus_distance_m for c in calibration.cameras], near, far)
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
