"""`dfocus eval-depth --middlebury DIR`: a user's own rectified pairs with ground truth, in the
Middlebury 2014 folder layout, scored against SGBM in the same run; unusable folders are refused
with the reason."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from dfocus_depth.cli import eval_command
from dfocus_depth.evaluate import MOTORCYCLE_CALIB, middlebury_folder_case, motorcycle_case, perturbed_cases

ROWS, COLS = 160, 256  # the top-left of Motorcycle: the calibration's principal points still hold


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from skimage.data import stereo_motorcycle

    left, right, disp = stereo_motorcycle()
    out = tmp_path_factory.mktemp("pair")
    for name, img in (("im0.png", left), ("im1.png", right)):
        assert cv2.imwrite(str(out / name), cv2.cvtColor(img[:ROWS, :COLS], cv2.COLOR_RGB2BGR))
    assert cv2.imwrite(str(out / "disp0.pfm"), np.ascontiguousarray(disp[:ROWS, :COLS], np.float32))
    (out / "calib.txt").write_text(MOTORCYCLE_CALIB.replace("width=741", f"width={COLS}")
                                   .replace("height=500", f"height={ROWS}"))
    return out


def test_a_folder_reads_as_the_same_case(folder: Path, tmp_path: Path) -> None:
    case, whole = middlebury_folder_case(folder), motorcycle_case(tmp_path)
    np.testing.assert_array_equal(case.left, whole.left[:ROWS, :COLS])
    np.testing.assert_array_equal(case.gt_disp, whole.gt_disp[:ROWS, :COLS])  # unknown (inf) reads as NaN
    assert np.isnan(case.gt_disp).any()
    assert (case.f_px, case.baseline_m, case.doffs) == (whole.f_px, whole.baseline_m, whole.doffs)
    assert case.depth_range == whole.depth_range and case.num_disparities == 80  # ndisp 70, rounded up to 16


def test_eval_scores_the_folder_against_sgbm(folder: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "eval.md"
    argv = ["--synthetic", "0", "--test-scenes", "0", "--no-motorcycle", "--middlebury", str(folder),
            "--max-width", "128", "--out", str(out)]
    assert eval_command(argv) == 0
    text = out.read_text()
    assert f"### {folder.name} ({COLS}x{ROWS})" in text and "Motorcycle" not in text
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ")[1:] for line in text.splitlines()
            if line.startswith("| dfocus") or line.startswith("| OpenCV")}
    checked = rows["dfocus CNN (the stereo pair, two-way checked, working width 768)"]
    sgbm = rows["OpenCV StereoSGBM"]
    assert checked[2] == "100.0 %" and float(sgbm[2].rstrip(" %")) < 100.0  # coverage
    assert 0.0 < float(checked[0]) < 3.0, text  # EPE px: a real estimate of a real pair


@pytest.mark.parametrize("damage, reason", [
    ("no_disp", "no readable disp0.pfm"),
    ("no_ndisp", "declares no ndisp"),
    ("small_right", "differ in size"),
    ("garbled_left", "not a readable image"),
])
def test_unusable_folders_are_refused_with_the_reason(folder: Path, tmp_path: Path, damage: str, reason: str,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in folder.iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    if damage == "no_disp":
        (bad / "disp0.pfm").unlink()
    elif damage == "no_ndisp":
        (bad / "calib.txt").write_text(MOTORCYCLE_CALIB.replace("ndisp=70\n", ""))
    elif damage == "garbled_left":
        (bad / "im0.png").write_bytes(b"not a png")
    else:
        im = cv2.imread(str(bad / "im1.png"))
        cv2.imwrite(str(bad / "im1.png"), im[:, : COLS // 2])
    argv = ["--synthetic", "0", "--test-scenes", "0", "--no-motorcycle", "--middlebury", str(bad),
            "--out", str(tmp_path / "x.md")]
    assert eval_command(argv) == 2
    assert reason in capsys.readouterr().err


def test_the_perturbed_pairs_change_only_what_they_say(folder: Path) -> None:
    case = middlebury_folder_case(folder)
    variants = perturbed_cases(case)
    exposure, noise, lower = (variants[k] for k in ("right view at another exposure", "sensor noise",
                                                    "right view 0.5 px lower"))
    for v in variants.values():
        np.testing.assert_array_equal(v.gt_disp, case.gt_disp)
        assert v.burst.frames[1].image is v.right and v.masks is case.masks
    np.testing.assert_array_equal(exposure.left, case.left)
    assert exposure.right.mean() < 0.7 * case.right.mean()
    residual = noise.left.astype(float) - case.left
    assert 3.0 < residual[(case.left > 20) & (case.left < 235)].std() < 5.0
    # Half a pixel lower: each row of the new view is the mean of that row and the one above.
    expect = (case.right[1:-1].astype(float) + case.right[:-2]) / 2
    assert np.abs(lower.right[1:-1] - expect).mean() < 1.0
