"""Simulated actuator stage: limits, velocity profile, settling, encoder, stuck-axis fault."""

from __future__ import annotations

import numpy as np
import pytest

from dfocus_capture.actuator_model import ActuatorError, StageConfig, StageModel

CFG = StageConfig()


def trajectory(model: StageModel, t0: float, t1: float, dt: float = 1e-4) -> tuple[np.ndarray, np.ndarray]:
    ts = np.arange(t0, t1, dt)
    return ts, np.array([model.true_position(t) for t in ts])


def test_long_move_reaches_max_speed_then_settles_within_tolerance() -> None:
    stage = StageModel(CFG, t0=0.0)
    stage.command([1.0, -0.5], t=1.0)
    length = float(np.hypot(1.0, 0.5))
    ts, pos = trajectory(stage, 1.0, 1.2)
    speed = np.linalg.norm(np.diff(pos, axis=0), axis=1) / np.diff(ts)
    moving = ts[1:] < 1.0 + length / CFG.max_speed_mm_s
    # Cruises at the commanded speed; the loop's ringing adds a little on top.
    assert CFG.max_speed_mm_s <= speed.max() < 1.15 * CFG.max_speed_mm_s
    # The path is a straight line: x and y move in proportion.
    np.testing.assert_allclose(pos[1:][moving][:, 1], -0.5 * pos[1:][moving][:, 0], atol=1e-9)
    profile_end = 1.0 + length / CFG.max_speed_mm_s + CFG.max_speed_mm_s / CFG.accel_mm_s2
    settle = stage.settled_at()
    assert settle is not None and profile_end + CFG.settle_time_s < settle < profile_end + 0.03
    assert stage.state(settle - 1e-4).moving and not stage.state(settle + 1e-6).moving
    # In position: within the tolerance over the whole settle window and after.
    in_pos = pos[ts >= settle - CFG.settle_time_s]
    assert np.abs(in_pos - [1.0, -0.5]).max() <= CFG.tolerance_mm
    # It lags while accelerating (a / w^2 behind the command) and rings past the profile's end.
    w = 2 * np.pi * CFG.resonance_hz
    lag = stage.commanded_position(1.004)[0] - stage.true_position(1.004)[0]
    assert lag == pytest.approx(CFG.accel_mm_s2 / w**2 / length, rel=0.3)
    ring = pos[(ts > profile_end) & (ts < settle - CFG.settle_time_s)]
    assert np.abs(ring - [1.0, -0.5]).max() > CFG.tolerance_mm


def test_short_move_is_triangular_and_acceleration_is_bounded() -> None:
    stage = StageModel(CFG)
    stage.command([0.05, 0.0], t=0.0)
    ts, pos = trajectory(stage, 0.0, 0.02, dt=1e-4)
    vel = np.diff(pos[:, 0]) / 1e-4
    acc = np.diff(vel) / 1e-4
    # Velocity is continuous and the acceleration bounded (no spikes an IMU would see); a lightly
    # damped loop overshoots the commanded +-a steps, but stays within a few times a.
    assert np.abs(acc).max() <= 3 * CFG.accel_mm_s2
    assert np.abs(np.diff(vel)).max() <= 3 * CFG.accel_mm_s2 * 1e-4
    assert vel.max() < CFG.max_speed_mm_s


def test_relative_moves_and_encoder_resolution() -> None:
    stage = StageModel(CFG)
    stage.command([0.3, 0.2], t=0.0)
    target = stage.command([0.123456, -0.1], t=1.0, relative=True)
    np.testing.assert_allclose(target, [0.423456, 0.1])
    done = stage.settled_at()
    assert done is not None
    reading = stage.state(done + 0.5).position_mm  # ringing died out
    np.testing.assert_allclose(reading, [0.4235, 0.1], atol=1e-9)  # 0.1 um encoder steps


@pytest.mark.parametrize(
    ("target", "relative", "reason"),
    [([2.0, 0.0], False, "axis x target 2.0000 mm is outside"), ([0.0, -1.6], False, "axis y"),
     ([1.0], False, "expected 2 targets"), ([float("nan"), 0.0], False, "finite"),
     ([1.0, 0.0], True, "axis x target 2.0000")],
)
def test_refused_targets_leave_the_stage_alone(target: list[float], relative: bool, reason: str) -> None:
    stage = StageModel(CFG)
    stage.command([1.0, 0.0], t=0.0)
    with pytest.raises(ActuatorError, match=reason):
        stage.command(target, t=1.0, relative=relative)
    np.testing.assert_allclose(stage.state(1.0).target_mm, [1.0, 0.0])


def test_stuck_axis_never_settles_and_reports_following_error() -> None:
    stage = StageModel(StageConfig(stuck_axis="y"))
    stage.command([0.5, 0.0], t=0.0)  # only x moves: fine
    assert stage.settled_at() is not None and stage.state(1.0).fault is False
    stage.command([0.5, 0.5], t=1.0)
    assert stage.settled_at() is None
    state = stage.state(1.5)
    assert state.moving and state.fault
    assert "axis y" in state.fault_message and "stuck at 0.0000 mm" in state.fault_message
    assert state.position_mm[1] == 0.0


def test_bad_configs_are_refused() -> None:
    with pytest.raises(ActuatorError, match="below"):
        StageConfig(min_mm=(1.0, -1.0), max_mm=(-1.0, 1.0))
    with pytest.raises(ActuatorError, match="stuck_axis"):
        StageConfig(stuck_axis="z")
    with pytest.raises(ActuatorError, match="max_speed"):
        StageConfig(max_speed_mm_s=0.0)
    with pytest.raises(ActuatorError, match="outside"):
        StageModel(CFG, start_mm=np.array([5.0, 0.0]))
