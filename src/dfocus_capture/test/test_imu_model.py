"""Simulated IMU: noise and bias statistics, gravity, and that its readings integrate back to the
motion (hand tremor and actuator stage) the cameras see."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from dfocus_capture.actuator_model import StageConfig, StageModel
from dfocus_capture.hand_motion import HandTremor, MotionError, TremorConfig
from dfocus_capture.imu_model import GRAVITY_M_S2, ActuatorTrack, ImuModelError, ImuNoiseConfig, ImuSimulator

RATE = 400.0
QUIET = ImuNoiseConfig(gyro_noise_density=0, accel_noise_density=0, gyro_bias_sigma=0, accel_bias_sigma=0,
                       gyro_bias_walk=0, accel_bias_walk=0, bits=32)


def readings(imu: ImuSimulator, t0: float, seconds: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ts = t0 + np.arange(int(seconds * RATE)) / RATE
    g, a = zip(*(imu.sample(float(t), RATE) for t in ts), strict=True)
    return ts, np.array(g), np.array(a)


def test_at_rest_it_reads_gravity_plus_bias_with_datasheet_noise() -> None:
    cfg = ImuNoiseConfig()
    imu = ImuSimulator(cfg, seed=3)
    _, gyro, accel = readings(imu, 1000.0, 5.0)
    np.testing.assert_allclose(accel.mean(axis=0), [0, -GRAVITY_M_S2, 0] + imu.accel_bias, atol=2e-3)
    np.testing.assert_allclose(gyro.mean(axis=0), imu.gyro_bias, atol=2e-4)
    assert np.abs(imu.accel_bias).max() > 1e-3  # a real part has a bias to remove
    np.testing.assert_allclose(accel.std(axis=0), cfg.accel_noise_density * np.sqrt(RATE), rtol=0.1)
    np.testing.assert_allclose(gyro.std(axis=0), cfg.gyro_noise_density * np.sqrt(RATE), rtol=0.1)
    # Another power-up (seed) has another bias.
    assert not np.allclose(ImuSimulator(cfg, seed=4).accel_bias, imu.accel_bias)


def test_readings_saturate_and_are_quantised() -> None:
    cfg = ImuNoiseConfig(bits=12)
    tremor = HandTremor(1, TremorConfig(translation_rms_mm=1000.0))  # metres of shake: way past 4 g
    _, _, accel = readings(ImuSimulator(cfg, seed=1, tremor=tremor), 0.0, 1.0)
    lsb = 2 * cfg.accel_range / 2**12
    assert accel.max() <= cfg.accel_range and accel.min() >= -cfg.accel_range
    assert np.sum(accel == -cfg.accel_range) > 0
    np.testing.assert_allclose(accel / lsb, np.round(accel / lsb), atol=1e-6)


def test_tremor_derivatives_are_exact() -> None:
    tremor = HandTremor(11)
    t, h = 12_345.678, 1e-4  # (at epoch-sized t, float64 steps of 0.2 us would swamp h)
    T0, T1 = tremor.pose_at(t - h), tremor.pose_at(t + h)
    # Body rate from the numerical derivative of the rotation: R^T dR/dt = [w]x.
    R = tremor.pose_at(t)[:3, :3]
    W = R.T @ (T1[:3, :3] - T0[:3, :3]) / (2 * h)
    np.testing.assert_allclose([W[2, 1], W[0, 2], W[1, 0]], tremor.angular_velocity_at(t), rtol=1e-3, atol=1e-7)
    np.testing.assert_allclose((T1[:3, 3] - T0[:3, 3]) / (2 * h), tremor.velocity_at(t), rtol=1e-4, atol=1e-9)
    acc = (tremor.velocity_at(t + h) - tremor.velocity_at(t - h)) / (2 * h)
    np.testing.assert_allclose(acc, tremor.acceleration_at(t), rtol=1e-3, atol=1e-7)


def test_tremor_has_the_configured_size_and_is_seeded() -> None:
    cfg = TremorConfig(translation_rms_mm=0.4, rotation_rms_mrad=3.0)
    ts = np.arange(0, 20, 0.005)
    poses = np.array([HandTremor(5, cfg).pose_at(t) for t in ts])
    rms_mm = np.sqrt((poses[:, :3, 3] ** 2).mean(axis=0)) * 1e3
    np.testing.assert_allclose(rms_mm, 0.4, rtol=0.25)
    angle_mrad = np.sqrt((poses[:, 2, 1] ** 2).mean()) * 1e3  # ~ rotation about x
    assert 1.5 < angle_mrad < 4.5
    np.testing.assert_array_equal(HandTremor(5, cfg).pose_at(3.0), HandTremor(5, cfg).pose_at(3.0))
    assert not np.allclose(HandTremor(6, cfg).pose_at(3.0), HandTremor(5, cfg).pose_at(3.0))
    with pytest.raises(MotionError):
        TremorConfig(band_hz=(5.0, 1.0))


def test_accelerometer_double_integrates_to_the_actuator_shift() -> None:
    stage = StageModel(StageConfig())
    imu = ImuSimulator(QUIET, seed=0)
    stage.command([0.5, -0.3], t=10.0)
    state_ts = 9.9 + np.arange(60) / 200.0  # actuators/state at 200 Hz
    for t in state_ts:
        imu.stage.add(float(t), stage.measured(float(t)))
    ts, _, accel = readings(imu, 9.9, 0.29)
    a = accel - [0, -GRAVITY_M_S2, 0]
    vel = np.cumsum(a, axis=0) / RATE
    pos = np.cumsum(vel, axis=0) / RATE
    np.testing.assert_allclose(pos[-1, :2] * 1e3, [0.5, -0.3], atol=0.01)
    np.testing.assert_allclose(vel[-1], 0.0, atol=1e-3)


def test_actuator_track_ignores_stale_samples_and_refuses_nan() -> None:
    track = ActuatorTrack()
    track.add(1.0, np.array([0.0, 0.0]))
    track.add(0.5, np.array([1.0, 1.0]))
    np.testing.assert_allclose(track.position_at(2.0), 0.0)
    with pytest.raises(ImuModelError):
        track.add(2.0, np.array([np.nan, 0.0]))


def test_bad_noise_config_is_refused() -> None:
    with pytest.raises(ImuModelError):
        ImuNoiseConfig(gyro_noise_density=-1.0)
    with pytest.raises(ImuModelError):
        ImuNoiseConfig(accel_range=1.0)


def test_actuator_track_is_safe_to_read_while_samples_arrive() -> None:
    track = ActuatorTrack(max_samples=50)
    stop = threading.Event()
    errors: list[Exception] = []

    def read() -> None:
        while not stop.is_set():
            try:
                track.position_at(0.5)
                track.velocity_at(0.5)
            except Exception as exc:  # noqa: BLE001 - any failure of a concurrent read is the bug
                errors.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    for k in range(20000):
        track.add(k * 1e-4, np.array([k * 1e-3, 0.0]))
    stop.set()
    reader.join()
    assert errors == []
    np.testing.assert_allclose(track.position_at(1.99985), [0.0199985, 0.0, 0.0], rtol=1e-6)  # mm -> m


def test_actuator_track_waits_for_the_state_past_a_stamp() -> None:
    track = ActuatorTrack()
    assert not track.wait_past(1.0, 0.05)  # empty
    track.add(0.9, np.array([0.0, 0.0]))
    assert not track.wait_past(1.0, 0.05)  # no later state within the timeout
    assert track.wait_past(0.9, 0.0)
    # The state after the stamp arrives from another thread while the reader waits.
    writer = threading.Timer(0.05, lambda: track.add(1.1, np.array([2.0, 0.0])))
    writer.start()
    try:
        assert track.wait_past(1.0, 30.0)
    finally:
        writer.join()
    np.testing.assert_allclose(track.position_at(1.0), [1e-3, 0.0, 0.0])


def test_actuator_track_wait_ends_when_stopped() -> None:
    """A shutdown must not sit out the whole wait for a stage node that has already stopped."""
    track = ActuatorTrack()
    stop = threading.Event()
    stopper = threading.Timer(0.1, stop.set)
    stopper.start()
    start = time.monotonic()
    try:
        assert not track.wait_past(1.0, 60.0, stop)
    finally:
        stopper.join()
    assert time.monotonic() - start < 30.0  # ended by the stop, not the 60 s timeout
    stop.clear()
    track.add(1.0, np.array([0.0, 0.0]))
    assert track.wait_past(1.0, 0.0, stop)
