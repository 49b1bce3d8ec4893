"""`dfocus adapt`: the photometric error it minimises is right (zero at the true depth, larger
elsewhere), a seconds-long run lowers it and writes weights the estimator loads, and it reads
bursts from burst folders and rosbag2 files, refusing what it cannot use with a reason."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from dfocus_capture.bag import BagWriter, TopicQos
from dfocus_capture.calibration import ArrayCalibration
from dfocus_capture.drivers.folder import write_burst_folder
from dfocus_capture.ros_convert import burst_to_msg
from dfocus_depth.adapt import AdaptConfig, AdaptError, adapt, photometric_error, read_bursts
from dfocus_depth.cli import adapt_command
from dfocus_depth.estimator import DepthEstimator
from dfocus_depth.eval_suite import pinhole_camera
from dfocus_depth.geometry import projection_coefficients
from dfocus_depth.layered_scenes import Capture, layered_scene, render_burst


def _burst(seed: int = 0):  # type: ignore[no-untyped-def]
    cams = tuple(pinhole_camera(name, 128, 96, 110.0, x, 1.0, 8.0) for name, x in (("cam0", 0.0), ("cam1", 0.04),
                                                                             ("cam2", -0.04)))
    cal = ArrayCalibration(reference_camera="cam0", cameras=cams)
    texture = cv2.GaussianBlur(np.random.default_rng(seed).random((200, 260, 3)).astype(np.float32), (0, 0), 1.0)
    scene = layered_scene(cal, (2.5, 0.9), ((texture * 255).astype(np.uint8),), seed)
    burst, depth = render_burst(scene, cal, Capture(gain=1.0, vignetting=0.0), seed)
    return burst, depth


def test_photometric_error_is_lowest_at_the_true_depth() -> None:
    burst, depth = _burst()
    ref, src = (f.image.astype(np.float32) / 255 for f in burst.frames[:2])
    A, b = projection_coefficients(burst.frames[0].camera, burst.frames[1].camera)

    def error(inv: np.ndarray) -> float:
        err, seen = photometric_error(torch.from_numpy(ref).permute(2, 0, 1)[None],
                                      torch.from_numpy(src).permute(2, 0, 1)[None, None],
                                      torch.tensor(A, dtype=torch.float32)[None, None],
                                      torch.tensor(b, dtype=torch.float32)[None, None],
                                      torch.from_numpy(inv.astype(np.float32))[None, None])
        return float(err[seen].mean())

    truth = error(1.0 / depth)
    assert truth < 0.6 * error(1.0 / depth * 1.3)
    assert truth < 0.6 * error(np.full(depth.shape, 1 / 1.5))


def test_a_short_run_lowers_the_photometric_error_and_writes_loadable_weights(tmp_path: Path) -> None:
    bursts = [_burst(s)[0] for s in (1, 2)]
    out = tmp_path / "adapted.pt"
    logs: list[str] = []
    record = adapt(bursts, out, logs.append, AdaptConfig(steps=12, lr=1e-3, max_width=96, threads=1, log_every=4))
    assert float(record["photometric_error_after"]) < float(record["photometric_error_before"])  # type: ignore[arg-type]
    saved = json.loads(out.with_suffix(".json").read_text())
    assert saved["steps_done"] == 12 and len(saved["curve"]) == 3
    est = DepthEstimator(out, "cpu", 96)
    assert np.isfinite(est.estimate(bursts[0]).depth).mean() > 0.9
    assert any("photometric error after" in line for line in logs)


def test_a_cancelled_run_keeps_what_it_reached(tmp_path: Path) -> None:
    calls = iter(range(100))
    record = adapt([_burst(3)[0]], tmp_path / "w.pt", lambda _: None, AdaptConfig(steps=50, max_width=64, threads=1),
                   stop=lambda: next(calls) >= 2)
    assert record["steps_done"] == 2 and (tmp_path / "w.pt").is_file()


def test_bursts_are_read_from_folders_and_bags(tmp_path: Path) -> None:
    from rclpy.serialization import serialize_message

    burst, _ = _burst(4)
    write_burst_folder(burst, tmp_path / "folder")
    (from_folder,) = read_bursts(tmp_path / "folder")
    assert from_folder.num_cameras == 3 and np.array_equal(from_folder.frames[1].image, burst.frames[1].image)

    writer = BagWriter(tmp_path / "bag", "mcap")
    topic = "/dfocus/capture/sequence"
    writer.add_topic(topic, "dfocus_interfaces/msg/FocusSequence", [TopicQos(reliable=True, depth=1)])
    for i in range(2):
        writer.write(topic, 1_000 + i, serialize_message(burst_to_msg(burst)))
    writer.close()
    from_bag = read_bursts(tmp_path / "bag")
    assert len(from_bag) == 2 and np.array_equal(from_bag[0].frames[2].image, burst.frames[2].image)


def test_unusable_inputs_are_refused_with_a_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(AdaptError, match="neither a rosbag2 folder nor a burst folder"):
        read_bursts(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(AdaptError, match="calibration"):
        read_bursts(tmp_path / "empty")
    with pytest.raises(AdaptError, match="no bursts"):
        adapt([], tmp_path / "x.pt", lambda _: None)
    assert adapt_command([str(tmp_path / "missing"), "--out", str(tmp_path / "x.pt")]) == 2
    assert "neither a rosbag2 folder" in capsys.readouterr().err
