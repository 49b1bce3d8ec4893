"""The evaluation suite: the test split is disjoint from training in photographs, its cases are
well formed, the figures are computed as defined, and `dfocus eval-depth --split test` writes its
tables and plots."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dfocus_depth.cli import eval_command
from dfocus_depth.dataset import PHOTOGRAPHS, SKIMAGE_PHOTOGRAPHS, load_photograph, training_photographs
from dfocus_depth.eval_suite import FAMILIES, family_cases
from dfocus_depth.evaluate import SGBM_VALID, Tally, evaluate
from dfocus_depth.layered_scenes import TEST_PHOTOGRAPHS, load_test_photographs

# The brief's training list: scikit-image's photographs allowed for training.
ALLOWED_SKIMAGE = {"brick", "grass", "gravel", "rocket", "coins", "camera", "text", "page", "moon", "horse", "clock"}


def test_training_uses_only_the_allowed_photographs_and_never_the_test_split_ones() -> None:
    assert set(SKIMAGE_PHOTOGRAPHS) <= ALLOWED_SKIMAGE
    sources = {name.partition(":")[0] for name in PHOTOGRAPHS}
    assert sources == {"skimage", "sklearn", "matplotlib"}
    assert not set(TEST_PHOTOGRAPHS) & ALLOWED_SKIMAGE
    photos = training_photographs()
    assert len(photos) == len(PHOTOGRAPHS)
    for photo in photos:
        assert photo.dtype == np.uint8 and photo.ndim in (2, 3) and (photo.ndim == 2 or photo.shape[2] == 3)
        assert photo.std() > 5  # a picture, not a blank
    # No test photograph is among the training ones, pixel for pixel.
    test = {p.shape: p for p in load_test_photographs()}
    assert not any(p.shape in test and np.array_equal(p, test[p.shape]) for p in photos)


def test_an_unknown_photograph_source_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown photograph source"):
        load_photograph("opencv:lena.jpg")


def test_tally_figures_follow_their_definitions() -> None:
    gt = np.array([[10.0, 10.0, 1.0, 1.0]], np.float32)
    pred = np.array([[10.05, 13.0, 1.1, np.nan]], np.float32)
    t = Tally()
    t.add(pred, gt, np.ones(gt.shape, bool), f_b=100.0, doffs=0.0)
    row = t.row(light_field=True)
    assert row["coverage"] == pytest.approx(0.75)
    assert row["epe_px"] == pytest.approx((0.05 + 3.0 + 0.1) / 3, rel=1e-5)
    assert row["bad2"] == pytest.approx(1 / 3)
    assert row["bad007"] == pytest.approx(2 / 3)
    assert row["mse100"] == pytest.approx(100 * (0.05**2 + 9 + 0.01) / 3, rel=1e-4)
    # Depths 10 m -> 9.95 (0.5 %), 7.69 (23 %), 100 -> 90.9 (9 %): two of three > 5 % off.
    assert row["bad_rel5"] == pytest.approx(2 / 3)


@pytest.fixture(scope="module")
def light_field_case():  # type: ignore[no-untyped-def]
    family = next(f for f in FAMILIES if f.light_field)
    return family_cases(family, 1, load_test_photographs())[0]


def test_test_split_cases_are_well_formed(light_field_case) -> None:  # type: ignore[no-untyped-def]
    case = light_field_case
    assert case.light_field and case.burst.num_cameras == 5
    assert np.isfinite(case.gt_disp).all()
    assert 0.3 < float(case.gt_disp.min()) and float(case.gt_disp.max()) < 6.5  # within 6 px per view step
    assert 0.8 < case.masks[SGBM_VALID].mean() < 1.0
    # An oracle scores perfectly, and a half-pixel bias fails BadPix0.07 everywhere.
    (perfect, biased) = evaluate([case], {"oracle": lambda c: c.gt_disp, "biased": lambda c: c.gt_disp + 0.5})
    assert perfect["epe_px"] == 0 and perfect["bad007"] == 0
    assert biased["bad007"] == 1.0 and biased["epe_px"] == pytest.approx(0.5, abs=1e-4)


def test_eval_depth_test_split_writes_tables_and_plots(tmp_path: Path) -> None:
    out = tmp_path / "eval.md"
    rc = eval_command(["--split", "test", "--test-scenes", "1", "--test-max-width", "192", "--no-motorcycle",
                       "--out", str(out), "--plots", str(tmp_path), "--threads", "1"])
    assert rc == 0
    text = out.read_text()
    assert "Test split summary" in text and "BadPix0.07" in text
    for family in FAMILIES:
        assert f"Test split: {family.name}" in text
    assert (tmp_path / "depth_eval_maps.png").stat().st_size > 10_000
    assert (tmp_path / "depth_eval_vs_depth.png").stat().st_size > 10_000


def test_adaptation_is_scored_on_other_scenes_of_the_same_rig(light_field_case, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from dfocus_depth.estimator import DepthEstimator
    from dfocus_depth.eval_suite import adaptation_rows

    family = next(f for f in FAMILIES if f.light_field)
    est = DepthEstimator(device="cpu", max_width=96)
    (row,) = adaptation_rows({family.name: [light_field_case]}, est, 2, tmp_path, lambda _: None)
    assert row["method"] == family.name and (tmp_path / "adapted_0.pt").is_file()
    assert float(row["epe_px"]) > 0 and float(row["adapted epe_px"]) > 0  # type: ignore[arg-type]
    assert row["change"] == pytest.approx(float(row["adapted epe_px"]) / float(row["epe_px"]) - 1)  # type: ignore[arg-type]
    assert est.weights.name == "depth_cnn.pt"  # the estimator itself is left as it was
