"""The calibration reader: the YAML contract, Middlebury calib.txt, and the errors it raises."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dfocus_capture.calibration import (
    CalibrationError,
    calibration_to_dict,
    camera_from_dict,
    camera_to_dict,
    load_calibration,
    parse_middlebury_calib,
    save_calibration,
)

REPO = Path(__file__).resolve().parents[3]
SHIPPED = REPO / "config" / "camera_array.yaml"

MOTORCYCLE_CALIB = """cam0=[3979.911 0 1244.772; 0 3979.911 1019.507; 0 0 1]
cam1=[3979.911 0 1369.115; 0 3979.911 1019.507; 0 0 1]
doffs=124.343
baseline=193.001
width=2964
height=1988
ndisp=270
"""


def test_shipped_calibration_loads_with_reference_and_geometry() -> None:
    cal = load_calibration(SHIPPED)
    assert cal.reference_camera == "cam0" and cal.reference_index == 0
    assert 3 <= len(cal) <= 8
    for cam in cal.cameras:
        # fx must agree with the thin-lens optics: f / pixel pitch.
        assert cam.fx == pytest.approx(cam.focal_length_mm / cam.pixel_size_um * 1e3, rel=1e-3)
    assert len({c.focus_distance_m for c in cal.cameras}) == len(cal)
    assert cal.camera("cam1").baseline_to_ref_m == pytest.approx(0.03)


def test_round_trip_preserves_every_field(tmp_path: Path) -> None:
    cal = load_calibration(SHIPPED)
    out = tmp_path / "c.yaml"
    save_calibration(cal, out)
    again = load_calibration(out)
    assert calibration_to_dict(again) == calibration_to_dict(cal)


def test_circle_of_confusion_follows_thin_lens() -> None:
    cam = load_calibration(SHIPPED).reference  # f = 6 mm, N = 1.8, s = 1 m, 3 um pixels
    coc = cam.coc_px(np.array([1.0, 2.0, np.inf]))
    assert coc[0] == pytest.approx(0.0, abs=1e-9)
    f, n, s = 6e-3, 1.8, 1.0
    expected_2m = (f / n) * (2.0 - s) / 2.0 * f / (s - f) / 3e-6
    assert coc[1] == pytest.approx(expected_2m, rel=1e-6)
    assert np.isnan(coc[2]) or coc[2] == pytest.approx((f / n) * f / (s - f) / 3e-6, rel=1e-6)


def test_scaling_to_12mp_keeps_field_of_view() -> None:
    cam = load_calibration(SHIPPED).reference
    big = cam.scaled(4000, 3000)
    assert big.width == 4000 and big.height == 3000
    # The same ray hits the same relative image position.
    assert (big.cx + 0.5) / big.width == pytest.approx((cam.cx + 0.5) / cam.width)
    assert big.fx / big.width == pytest.approx(cam.fx / cam.width)
    # Optics stay physical: CoC in metres on the sensor is unchanged.
    assert big.coc_px(3.0) * big.pixel_size_um == pytest.approx(cam.coc_px(3.0) * cam.pixel_size_um)


def test_middlebury_calib_gives_a_rectified_pair(tmp_path: Path) -> None:
    path = tmp_path / "calib.txt"
    path.write_text(MOTORCYCLE_CALIB)
    cal = load_calibration(path)
    assert [c.name for c in cal.cameras] == ["cam0", "cam1"]
    cam0, cam1 = cal.cameras
    assert (cam0.width, cam0.height) == (2964, 1988)
    assert cam1.T_ref_cam[0, 3] == pytest.approx(0.193001)
    assert cam0.extra["doffs"] == pytest.approx(124.343) and cam0.extra["ndisp"] == 270
    # Z = f B / (d + doffs): cam1's principal point carries doffs.
    assert cam1.cx - cam0.cx == pytest.approx(124.343)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["cameras"][0].pop("camera_matrix"), "missing keys"),
        (lambda d: d["cameras"][0].__setitem__("camera_matrix", [1, 2, 3]), "expected 9 numbers"),
        (lambda d: d["cameras"][0].__setitem__("f_number", float("nan")), "f_number"),
        (lambda d: d["cameras"][0].__setitem__("focus_distance_m", -1), "focus_distance_m"),
        (lambda d: d.__setitem__("reference_camera", "camX"), "reference_camera"),
        (lambda d: d["cameras"][1].__setitem__("name", "cam0"), "unique"),
        (lambda d: d["cameras"][0].__setitem__("T_ref_cam", [2, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1]),
         "orthonormal"),
        (lambda d: d["cameras"][0].__setitem__("distortion_model", "fisheye9"), "distortion_model"),
        (lambda d: d["cameras"][0].__setitem__("distortion_coefficients", 0.5), "must be a list of numbers"),
        (lambda d: d["cameras"][0].__setitem__("distortion_coefficients", [0.1, "x"]), "not a list of numbers"),
        (lambda d: d["cameras"][0].__setitem__("focus_distance_m", "far"), "focus_distance_m must be a number"),
        (lambda d: d["cameras"][0].__setitem__("image_width", 1280.5), "whole number of pixels"),
        (lambda d: d["cameras"][0].__setitem__("image_height", True), "whole number of pixels"),
        (lambda d: d["cameras"][0].__setitem__("camera_matrix", [2000, 0, 640, 0, 2000, 480, 1, 1, 1]),
         r"\[fx s cx; 0 fy cy; 0 0 1\]"),
    ],
)
def test_malformed_calibrations_are_refused_with_a_reason(tmp_path: Path, mutate, message: str) -> None:
    data = yaml.safe_load(SHIPPED.read_text())
    mutate(data)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(CalibrationError, match=message):
        load_calibration(path)


def test_unreadable_and_non_yaml_files(tmp_path: Path) -> None:
    with pytest.raises(CalibrationError, match="cannot read"):
        load_calibration(tmp_path / "absent.yaml")
    bad = tmp_path / "x.yaml"
    bad.write_text("cameras: [unclosed")
    with pytest.raises(CalibrationError, match="not valid YAML"):
        load_calibration(bad)
    binary = tmp_path / "b.yaml"
    binary.write_bytes(bytes(range(128, 256)) * 8)
    with pytest.raises(CalibrationError, match="not a text file"):
        load_calibration(binary)
    with pytest.raises(CalibrationError, match="missing key 'baseline'"):
        parse_middlebury_calib(MOTORCYCLE_CALIB.replace("baseline=193.001\n", ""))


def test_check_images_reports_the_mismatching_camera() -> None:
    cal = load_calibration(SHIPPED)
    cal.check_images([(960, 1280, 3)] * 10)
    with pytest.raises(CalibrationError, match="cannot be split"):
        cal.check_images([(960, 1280, 3)] * 4)
    with pytest.raises(CalibrationError, match="cam2"):
        cal.check_images([(960, 1280, 3)] * 2 + [(480, 640, 3)] + [(960, 1280, 3)] * 2)


_ANY_VALUE = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                       st.text(max_size=8), st.lists(st.floats(allow_nan=True), max_size=20),
                       st.lists(st.text(max_size=3), max_size=3), st.dictionaries(st.text(max_size=3), st.integers()))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(camera=st.integers(0, 4), key=st.sampled_from([
    "name", "image_width", "image_height", "camera_matrix", "distortion_model", "distortion_coefficients",
    "T_ref_cam", "focus_distance_m", "focal_length_mm", "f_number", "pixel_size_um", "unknown_key"]),
    value=_ANY_VALUE)
def test_any_value_in_any_field_loads_or_is_refused_with_a_reason(tmp_path: Path, camera: int, key: str,
                                                                   value: object) -> None:
    data = yaml.safe_load(SHIPPED.read_text())
    data["cameras"][camera][key] = value
    path = tmp_path / "fuzz.yaml"
    path.write_text(yaml.safe_dump(data))
    try:
        load_calibration(path)
    except CalibrationError as exc:
        assert str(exc)  # one line with the reason: no other exception type reaches the user


@pytest.mark.parametrize("key,value", [("camera_matrix", [float("nan"), 0, 320, 0, 500, 240, 0, 0, 1]),
                                       ("camera_matrix", [500, 0, float("inf"), 0, 500, 240, 0, 0, 1]),
                                       ("distortion_coefficients", [0.0, float("nan"), 0.0, 0.0, 0.0])])
def test_non_finite_intrinsics_are_refused(key: str, value: list[float]) -> None:
    # NaN compares false with everything: a NaN fx passed the "fx > 0" check and depth ran for 15 s.
    cam = camera_to_dict(load_calibration(SHIPPED).cameras[0])
    cam[key] = value
    with pytest.raises(CalibrationError, match="NaN or infinity"):
        camera_from_dict(cam)
