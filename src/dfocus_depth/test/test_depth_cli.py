"""`dfocus depth`: outputs on a simulated burst, and exit status 2 with a reason on bad input."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from dfocus_capture.calibration import ArrayCalibration, save_calibration
from dfocus_depth.cli import depth_command
from dfocus_depth.dataset import render_sample, subset_burst


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], np.ndarray]:
    tmp = tmp_path_factory.mktemp("cli")
    sample = render_sample(5_100_000, 96, 72)
    burst = subset_burst(sample.burst, [0, 1, 2])
    cal = ArrayCalibration("cam0", tuple(burst.frame(0, i).camera for i in range(3)))
    save_calibration(cal, tmp / "array.yaml")
    paths = []
    for i in range(3):
        paths.append(str(tmp / f"cam{i}.png"))
        cv2.imwrite(paths[-1], burst.frame(0, i).image[:, :, ::-1])
    return tmp, paths, sample.gt_depth


def test_depth_map_written(scene: tuple[Path, list[str], np.ndarray], capsys: pytest.CaptureFixture[str]) -> None:
    tmp, images, gt = scene
    out, conf, png = tmp / "d.npy", tmp / "c.npy", tmp / "d.png"
    status = depth_command(["--calibration", str(tmp / "array.yaml"), "--out", str(out), "--confidence", str(conf),
                            "--png", str(png), "--max-width", "96", "--near-m", "0.2", *images])
    assert status == 0, capsys.readouterr().err
    depth = np.load(out)
    assert depth.dtype == np.float32 and depth.shape == gt.shape
    ok = np.isfinite(depth)
    assert ok.mean() > 0.9
    # The right scene in metres (accuracy itself is test_quality.py's job; untrained weights give ~0.7).
    assert np.median(np.abs(depth[ok] - gt[ok]) / gt[ok]) < 0.25
    c = np.load(conf)
    assert c.shape == gt.shape and c.min() >= 0 and c.max() <= 1
    assert cv2.imread(str(png)).shape[:2] == gt.shape
    assert "from 3 views" in capsys.readouterr().out


def test_a_stereo_pair_gets_the_two_way_check(scene: tuple[Path, list[str], np.ndarray],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    tmp, images, gt = scene
    from dfocus_capture.calibration import load_calibration

    three = load_calibration(tmp / "array.yaml")
    save_calibration(ArrayCalibration("cam0", three.cameras[:2]), tmp / "pair.yaml")
    args = ["--calibration", str(tmp / "pair.yaml"), "--max-width", "96", "--near-m", "0.2", *images[:2]]
    assert depth_command([*args, "--out", str(tmp / "checked.npy")]) == 0
    assert "rejected by the two-way check" in capsys.readouterr().out
    depth = np.load(tmp / "checked.npy")
    ok = np.isfinite(depth)
    assert ok.mean() > 0.9 and np.median(np.abs(depth[ok] - gt[ok]) / gt[ok]) < 0.25
    assert depth_command([*args, "--out", str(tmp / "one_pass.npy"), "--cross-check", "off"]) == 0
    assert "two-way" not in capsys.readouterr().out
    assert not np.array_equal(np.load(tmp / "one_pass.npy"), depth)


def test_the_low_confidence_fill_can_be_turned_off(scene: tuple[Path, list[str], np.ndarray],
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    tmp, images, _ = scene
    conf = tmp / "conf.npy"
    # Without the edge median and the refinement, whose windows would carry the fills into their neighbours.
    args = ["--calibration", str(tmp / "array.yaml"), "--max-width", "96", "--near-m", "0.2", "--confidence",
            str(conf), "--no-edge-median", "--refine", "off", *images]
    assert depth_command([*args, "--out", str(tmp / "filled.npy"), "--fill-below", "0.9"]) == 0
    filled = np.load(tmp / "filled.npy")
    share = float(capsys.readouterr().out.split(" % background-filled")[0].rsplit(" ", 1)[1])
    assert 0 < share < 100
    assert depth_command([*args, "--out", str(tmp / "raw.npy"), "--fill-below", "0"]) == 0
    assert ", 0.0 % background-filled" in capsys.readouterr().out
    raw = np.load(tmp / "raw.npy")
    # Only low-confidence pixels change (the confidence map is upsampled like the depth, so the
    # comparison is on pixels clearly above the threshold).
    sure = np.load(conf) > 0.95
    assert sure.any() and np.allclose(filled[sure], raw[sure], rtol=1e-3, equal_nan=True)
    assert not np.allclose(filled, raw, rtol=1e-3, equal_nan=True)


@pytest.mark.parametrize(("case", "reason"), [
    ("too_many", "cannot be split"),
    ("wrong_size", "calibrated for"),
    ("missing_image", "cannot read image"),
    ("missing_calibration", "cannot read calibration"),
    ("bad_range", "depth range"),
    ("bad_fill", "fill_below must be a confidence"),
])
def test_bad_input_exits_2_with_reason(scene: tuple[Path, list[str], np.ndarray], case: str, reason: str,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    tmp, images, _ = scene
    cal = str(tmp / "array.yaml")
    args = ["--calibration", cal, "--out", str(tmp / "x.npy")]
    if case == "too_many":
        args += [*images, images[0]]
    elif case == "wrong_size":
        small = str(tmp / "small.png")
        cv2.imwrite(small, np.zeros((10, 12, 3), np.uint8))
        args += [images[0], small, images[2]]
    elif case == "missing_image":
        args += [images[0], str(tmp / "nope.png"), images[2]]
    elif case == "missing_calibration":
        args[1] = str(tmp / "nope.yaml")
        args += images
    elif case == "bad_fill":
        args += ["--fill-below", "1.5", *images]
    else:
        args += ["--near-m", "5", "--far-m", "1", *images]
    assert depth_command(args) == 2
    err = capsys.readouterr().err
    assert reason in err and not (tmp / "x.npy").exists()


def test_the_edge_median_can_be_turned_off(scene: tuple[Path, list[str], np.ndarray]) -> None:
    tmp, images, gt = scene
    args = ["--calibration", str(tmp / "array.yaml"), "--max-width", "96", "--near-m", "0.2", *images]
    assert depth_command([*args, "--out", str(tmp / "median.npy")]) == 0
    assert depth_command([*args, "--out", str(tmp / "plain.npy"), "--no-edge-median"]) == 0
    median, plain = np.load(tmp / "median.npy"), np.load(tmp / "plain.npy")
    assert not np.allclose(median, plain, equal_nan=True)
    for depth in (median, plain):
        ok = np.isfinite(depth)
        assert ok.mean() > 0.9 and np.median(np.abs(depth[ok] - gt[ok]) / gt[ok]) < 0.25


def test_the_census_refinement_runs_for_pairs_unless_asked(scene: tuple[Path, list[str], np.ndarray]) -> None:
    tmp, images, gt = scene
    from dfocus_capture.calibration import load_calibration

    three = load_calibration(tmp / "array.yaml")
    save_calibration(ArrayCalibration("cam0", three.cameras[:2]), tmp / "pair2.yaml")
    common = ["--max-width", "96", "--near-m", "0.2"]
    maps = {}
    for name, cal, imgs, mode in [("pair_auto", "pair2.yaml", images[:2], "auto"),
                                  ("pair_off", "pair2.yaml", images[:2], "off"),
                                  ("array_auto", "array.yaml", images, "auto"),
                                  ("array_off", "array.yaml", images, "off"),
                                  ("array_on", "array.yaml", images, "on")]:
        out = tmp / f"{name}.npy"
        assert depth_command(["--calibration", str(tmp / cal), *common, "--out", str(out),
                              "--census-refine", mode, *imgs]) == 0
        maps[name] = np.load(out)
    assert not np.allclose(maps["pair_auto"], maps["pair_off"], equal_nan=True)
    assert np.array_equal(maps["array_auto"], maps["array_off"], equal_nan=True)  # auto: pairs only
    assert not np.allclose(maps["array_on"], maps["array_off"], equal_nan=True)
    for depth in maps.values():
        ok = np.isfinite(depth)
        assert ok.mean() > 0.9 and np.median(np.abs(depth[ok] - gt[ok]) / gt[ok]) < 0.25
