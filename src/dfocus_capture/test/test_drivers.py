"""Camera array drivers: sim timing and faults, folder round trip and errors, absent v4l2 devices."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from dfocus_capture.calibration import load_calibration, save_calibration
from dfocus_capture.dds import find_config
from dfocus_capture.drivers import DriverError, FolderCameraArray, SimCameraArray, V4l2CameraArray, scene_from_spec
from dfocus_capture.sim import simulate_burst
from dfocus_capture.sim.cli import simulate_command

FULL = load_calibration(find_config("camera_array.yaml"))  # type: ignore[arg-type]
CAL = FULL.scaled(160, 120)


def test_sim_trigger_is_synchronized_and_takes_exposure_plus_readout() -> None:
    with SimCameraArray(FULL, 320, 240, scene=scene_from_spec("random", 1), exposure_time_s=0.02) as drv:
        assert drv.resolution == (320, 240)
        t0 = time.monotonic()
        shots = drv.trigger()
        elapsed = time.monotonic() - t0
    assert elapsed >= drv.frame_time_s  # never faster than the real sensor
    assert len({s.stamp_ns for s in shots}) == 1 and len(shots) == 5
    assert all(s.image.shape == (240, 320, 3) and s.image.dtype == np.uint8 for s in shots)
    assert shots[0].camera.fx == pytest.approx(500.0)


def test_sim_exposures_deliver_their_images_later_with_two_frame_buffers() -> None:
    shifts = iter(np.linspace(0.0, 0.3e-3, 4))  # one pose per exposure, 0.1 mm apart

    def shifted(_stamp_ns: int) -> np.ndarray:
        pose = np.eye(4)
        pose[0, 3] = next(shifts)
        return pose

    with SimCameraArray(CAL, realtime=False, noise=None, array_pose=shifted) as drv:
        exposures = [drv.expose() for _ in range(4)]
        # Two frame buffers: the fourth exposure waited until the second one's images were rendered.
        assert all(f.done() for f in exposures[1].futures)
        for e in exposures:
            images = e.images()
            assert [i.camera_index for i in images] == sorted(e.cameras) == list(range(5))
            assert {i.stamp_ns for i in images} == {e.stamp_ns}
        # Each exposure is rendered at its own pose (the warp keeps the parallax).
        first, last = exposures[0].images()[0], exposures[-1].images()[0]
        assert last.camera.T_ref_cam[0, 3] - first.camera.T_ref_cam[0, 3] == pytest.approx(0.3e-3)
        assert np.abs(first.image.astype(np.int16) - last.image.astype(np.int16)).mean() > 1.0


def test_sim_exposure_returns_before_its_pose_is_known() -> None:
    # The pose at the stamp may only become known later (the stage's state arrives after its
    # stamp): the exposure returns at once, and its images are rendered at that pose.
    known = threading.Event()
    asked: list[int] = []

    def pose_when_known(stamp_ns: int) -> np.ndarray:
        asked.append(stamp_ns)
        assert known.wait(30.0)
        pose = np.eye(4)
        pose[0, 3] = 0.2e-3
        return pose

    with SimCameraArray(CAL, realtime=False, noise=None, array_pose=pose_when_known) as drv:
        exposure = drv.expose()
        assert not any(f.done() for f in exposure.futures)
        known.set()
        images = exposure.images()
    assert asked == [exposure.stamp_ns]  # asked once per exposure (keyframes are made at the rest pose)
    assert all(i.camera.T_ref_cam[0, 3] - CAL.cameras[i.camera_index].T_ref_cam[0, 3] == pytest.approx(0.2e-3)
               for i in images)


def test_sim_focus_and_fault_injection() -> None:
    drv = SimCameraArray(CAL, realtime=False, fail_camera=1, fail_after=2, noise=None)
    drv.open()
    assert drv.set_focus(3, 0.5) == 0.5
    with pytest.raises(DriverError):
        drv.set_focus(0, -1.0)
    with pytest.raises(DriverError):
        drv.set_focus(9, 1.0)
    first = drv.trigger()
    assert [s.camera.focus_distance_m for s in first][3] == 0.5
    drv.trigger()
    third = drv.trigger()
    assert [s.camera_index for s in third] == [0, 2, 3, 4]  # camera 1 stopped after 2 triggers
    drv.close()
    with pytest.raises(DriverError):
        drv.trigger()


def test_sim_scene_specs() -> None:
    assert len(scene_from_spec("plane:2.0", 0).surfaces) == 1
    assert scene_from_spec("random:0.5:4", 3).far_m == 4
    for bad in ("cube", "plane:x", "random:5:1"):
        with pytest.raises(DriverError):
            scene_from_spec(bad, 0)


def test_simulate_then_folder_plays_back_the_same_images(tmp_path: Path) -> None:
    out = tmp_path / "burst"
    assert simulate_command(["--out", str(out), "--width", "160", "--height", "120", "--shots", "2",
                             "--seed", "5", "--hand-held"]) == 0
    assert (out / "gt_depth.npy").is_file() and (out / "gt_all_in_focus.png").is_file()
    expected = simulate_burst(CAL, 5, num_shots=2, hand_held=True)
    with FolderCameraArray(out) as drv:
        assert drv.num_shots == 2
        for shot in range(3):  # wraps around after the last shot
            got = drv.trigger()
            for s in got:
                f = expected.burst.frame(shot % 2, s.camera_index)
                np.testing.assert_array_equal(s.image, f.image)
                np.testing.assert_allclose(s.camera.T_ref_cam, f.camera.T_ref_cam, atol=1e-12)
                assert s.camera.focus_distance_m == pytest.approx(f.camera.focus_distance_m)
    np.testing.assert_allclose(np.load(out / "gt_depth.npy"), expected.gt_depth)


def _write_bracket(folder: Path, count: int, size: tuple[int, int] = (160, 120), dtype: type = np.uint8) -> None:
    folder.mkdir()
    save_calibration(CAL, folder / "calibration.yaml")
    rng = np.random.default_rng(0)
    peak = np.iinfo(dtype).max
    for i in range(count):
        img = (rng.random((size[1], size[0], 3)) * peak).astype(dtype)
        cv2.imwrite(str(folder / f"img{i:02d}.tif"), img)


def test_folder_reads_16_bit_tiffs_in_sorted_order(tmp_path: Path) -> None:
    _write_bracket(tmp_path / "b", 10, dtype=np.uint16)
    with FolderCameraArray(tmp_path / "b") as drv:
        shots = drv.trigger()
    raw = cv2.imread(str(tmp_path / "b" / "img00.tif"), cv2.IMREAD_UNCHANGED)[:, :, ::-1]
    assert shots[0].image.dtype == np.uint8
    np.testing.assert_array_equal(shots[0].image, np.round(raw / 257.0).astype(np.uint8))


def test_folder_errors_say_what_does_not_match(tmp_path: Path) -> None:
    _write_bracket(tmp_path / "count", 7)
    with pytest.raises(DriverError, match="7 images cannot be split"):
        FolderCameraArray(tmp_path / "count")
    _write_bracket(tmp_path / "size", 5, size=(100, 80))
    drv = FolderCameraArray(tmp_path / "size")
    with pytest.raises(DriverError, match="100x80 but cam0 is calibrated for 160x120"):
        drv.open()
    (tmp_path / "nocal").mkdir()
    with pytest.raises(DriverError, match="calibration"):
        FolderCameraArray(tmp_path / "nocal")
    with pytest.raises(DriverError, match="does not exist"):
        FolderCameraArray(tmp_path / "missing")
    (tmp_path / "badcal").mkdir()
    (tmp_path / "badcal" / "calibration.yaml").write_text("cameras: 3\n")
    with pytest.raises(DriverError, match="calibration"):
        FolderCameraArray(tmp_path / "badcal")


def test_v4l2_absent_devices_raise_a_clean_error() -> None:
    drv = V4l2CameraArray(CAL, [f"/dev/video{90 + i}" for i in range(5)])
    with pytest.raises(DriverError, match="/dev/video90 is absent"):
        drv.open()
    assert not drv.is_open
    with pytest.raises(DriverError, match="2 v4l2 devices given for 5"):
        V4l2CameraArray(CAL, ["0", "1"])
