"""`dfocus refocus` / `dfocus all-in-focus` on image files written from a simulated burst."""

from pathlib import Path

import cv2
import numpy as np
import pytest
from refocus_cases import CAL, make_case

from dfocus_refocus.baselines import psnr
from dfocus_refocus.cli import all_in_focus_command, refocus_command
from dfocus_refocus.pipeline import RefocusRequest, prepare_sequence


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], str, str, object]:
    case = make_case(seed=9, width=320)
    out = tmp_path_factory.mktemp("burst")
    images = []
    for f in case.burst.frames:
        path = out / f"shot{f.shot_index}_{f.camera.name}.png"
        cv2.imwrite(str(path), cv2.cvtColor(f.image, cv2.COLOR_RGB2BGR))
        images.append(str(path))
    depth = out / "depth.npy"
    np.save(depth, case.depth)
    cal = load_scaled_calibration(out, case)
    return images, str(depth), cal, case


def load_scaled_calibration(folder: Path, case: object) -> str:
    from dfocus_capture.calibration import save_calibration

    path = folder / "calibration.yaml"
    save_calibration(case.calibration, path)  # type: ignore[attr-defined]
    return str(path)


def test_refocus_and_all_in_focus_from_files(files, tmp_path, capsys) -> None:
    images, depth, cal, case = files
    aif = tmp_path / "aif.png"
    assert all_in_focus_command(["--calibration", cal, "--depth", depth, "--out", str(aif), *images]) == 0
    fused = cv2.cvtColor(cv2.imread(str(aif)), cv2.COLOR_BGR2RGB)
    prepared = prepare_sequence(case.burst, case.depth)
    assert np.array_equal(fused, prepared.all_in_focus_srgb())  # files in, the same core's result out
    assert psnr(fused, case.all_in_focus) > 25.0
    out = tmp_path / "refocused.png"
    argv = ["--calibration", cal, "--depth", depth, "--focus-m", "0.5", "--f-number", "1.4", "--out", str(out)]
    assert refocus_command([*argv, *images]) == 0
    assert "focus 0.500 m" in capsys.readouterr().out
    got = cv2.cvtColor(cv2.imread(str(out)), cv2.COLOR_BGR2RGB)
    # The same core as the node: the file is the pipeline's rendering of that plane (a 1.4 f-number
    # thin-lens depth of field around 0.5 m).
    expected = prepared.render(RefocusRequest(focus_m=0.5, f_number=1.4)).image
    assert np.abs(got.astype(int) - expected).mean() < 0.5


def test_cli_errors_exit_1_with_the_reason(files, tmp_path, capsys) -> None:
    images, depth, cal, _ = files
    out = str(tmp_path / "x.png")
    bad_plane = ["--calibration", cal, "--depth", depth, "--focus-m", "1", "--near-m", "2", "--far-m", "1.5"]
    assert refocus_command([*bad_plane, "--out", out, *images]) == 1
    assert "beyond far_m" in capsys.readouterr().err
    assert all_in_focus_command(["--calibration", cal, "--depth", depth, "--out", out, *images[:3]]) == 1
    assert "cannot be split over 5" in capsys.readouterr().err
    assert all_in_focus_command(["--calibration", str(CAL), "--depth", depth, "--out", out, "nope.png"]) == 1
    assert "cannot read image nope.png" in capsys.readouterr().err


def test_bad_outputs_depth_maps_and_apertures_are_refused_before_any_work(files, tmp_path, capsys) -> None:
    images, depth, cal, case = files
    base = ["--calibration", cal, "--depth", depth, "--focus-m", "0.5"]
    h, w = case.depth.shape
    wrong, transposed = tmp_path / "wrong.npy", tmp_path / "transposed.npy"
    np.save(wrong, np.ones((10, 10), np.float32))
    np.save(transposed, np.ascontiguousarray(case.depth.T))
    for argv, reason in [
        (["--out", str(tmp_path / "x.xyz")], "no image writer for .xyz"),
        (["--out", str(tmp_path / "noext")], "no image writer for a name without extension"),
        (["--out", str(tmp_path)], "is a directory"),
        (["--out", str(tmp_path / "x.png"), "--f-number", "0.01"], "f_number must be within 0.5..128"),
        (["--out", str(tmp_path / "x.png"), "--depth", str(wrong)], f"is 10x10 but the reference image is {w}x{h}"),
        (["--out", str(tmp_path / "x.png"), "--depth", str(transposed)], f"is {h}x{w} but the reference image"),
    ]:
        assert refocus_command([*base, *argv, *images]) == 1, argv
        assert reason in capsys.readouterr().err, argv
    assert not list(tmp_path.glob("x.*"))
