"""The depth node's per-frame size limits, checked on header fields before any decoding."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dfocus_depth.geometry import MIN_FRAME_PX, DepthInputError, check_frame_sizes

sizes = st.lists(st.tuples(st.integers(0, 20_000), st.integers(0, 20_000)), max_size=12)


@given(sizes, st.floats(0.001, 100.0))
def test_refused_exactly_when_a_frame_is_outside_the_limits(frames: list[tuple[int, int]], limit: float) -> None:
    over = [k for k, (w, h) in enumerate(frames) if w * h > limit * 1e6 or min(w, h) < MIN_FRAME_PX]
    if over:
        with pytest.raises(DepthInputError, match=f"frame {over[0]} is {frames[over[0]][0]}x{frames[over[0]][1]}"):
            check_frame_sizes(frames, limit)
    else:
        check_frame_sizes(frames, limit)


def test_the_message_names_the_limit_and_the_parameter() -> None:
    with pytest.raises(DepthInputError, match=r"8000x6000 \(48 MP\), above the 24 MP per frame .*max_frame_megapixels"):
        check_frame_sizes([(4000, 3000), (8000, 6000)], 24.0)
    check_frame_sizes([(4000, 3000)] * 50, 24.0)  # many 12 MP frames are fine: the limit is per frame


def test_a_frame_too_small_for_depth_is_refused() -> None:
    # A 1x1 burst used to come out as "100 % valid" depth.
    with pytest.raises(DepthInputError, match=r"frame 1 is 1x1, below the 32x32 pixels"):
        check_frame_sizes([(640, 480), (1, 1)], 24.0)
