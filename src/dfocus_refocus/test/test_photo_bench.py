"""The photograph-textured refocus benchmark: every layer of a scene at each f-number, scored
against the independent renderer's true thin-lens render; with the true depth the pipeline beats
doing nothing, and its PNG chart is written."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dfocus_refocus.photo_bench import F_NUMBERS, photo_rows, write_photo_report


def test_refocus_beats_doing_nothing_with_the_true_depth_and_is_charted(tmp_path: Path) -> None:
    rows = photo_rows(1, 320)
    assert len(rows) == 3 * len(F_NUMBERS)  # three layers, each f-number
    for r in rows:
        assert 25 < r.nothing_db < 60 and 25 < r.cnn_db < 60 and np.isfinite(r.true_depth_edges_db)
    # Blur where the true render has it: the ceiling beats the best unblurred answer on average.
    assert np.mean([r.true_depth_db - r.nothing_db for r in rows]) > 0.3
    write_photo_report(rows, tmp_path)
    assert "margin over do-nothing" in (tmp_path / "refocus_photo.md").read_text()
    assert (tmp_path / "refocus_photo_psnr.png").stat().st_size > 5_000
