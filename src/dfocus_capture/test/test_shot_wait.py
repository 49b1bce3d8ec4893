"""The sequencer's waiting rules for a shot's images, with controlled time: slow is not stopped."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dfocus_capture.shot_wait import SLOW_FACTOR, DeliveryHistory, ShotWait, stopped_cameras


def test_a_silent_array_is_waited_for_up_to_the_silent_timeout() -> None:
    wait = ShotWait(triggered_at=100.0, frame_timeout_s=3.0, silent_timeout_s=30.0)
    assert wait.deadline() == 130.0
    assert not wait.slow_now(102.0)
    assert wait.slow_now(103.5)  # said once, when frame_timeout_s has passed in silence
    assert not wait.slow_now(110.0)


def test_once_an_image_arrives_the_rest_get_frame_timeout_from_it() -> None:
    wait = ShotWait(triggered_at=100.0, frame_timeout_s=3.0, silent_timeout_s=30.0)
    wait.saw_image(120.0)  # the machine took 20 s to render the first camera's image
    assert wait.deadline() == 123.0
    wait.saw_image(121.0)  # only the first image counts
    assert wait.deadline() == 123.0
    assert not wait.slow_now(122.0)


def test_a_prompt_image_keeps_the_short_deadline() -> None:
    wait = ShotWait(triggered_at=100.0, frame_timeout_s=3.0, silent_timeout_s=30.0)
    wait.saw_image(100.1)
    assert wait.deadline() == pytest.approx(103.1)  # a lost image of a healthy array is known within ~3 s


def test_the_wait_scales_with_recent_deliveries() -> None:
    history = DeliveryHistory()
    for seconds in (0.2, 4.0, 0.3):
        history.add(seconds)
    assert history.expected_max() == SLOW_FACTOR * 4.0
    wait = ShotWait(100.0, 3.0, 30.0, history.expected_max())
    wait.saw_image(100.1)
    assert wait.deadline() == 108.0  # twice the slowest recent delivery
    # Capped by the silent timeout: one freak delivery cannot make every wait endless.
    capped = ShotWait(100.0, 3.0, 30.0, 500.0)
    capped.saw_image(100.1)
    assert capped.deadline() == 130.0


def test_the_history_forgets_old_shots() -> None:
    history = DeliveryHistory()
    history.add(20.0)
    for _ in range(8):
        history.add(0.5)
    assert history.expected_max() == SLOW_FACTOR * 0.5


def test_a_camera_stopped_only_when_another_went_on() -> None:
    went_on = {"cam0/image_raw": True, "cam1/image_raw": False, "cam2/image_raw": True}
    assert stopped_cameras(["cam1/image_raw"], went_on, later_shot_triggered=True) == ["cam1/image_raw"]
    # Nobody went on: the whole array is slow, not one camera stopped.
    silent = dict.fromkeys(went_on, False)
    assert stopped_cameras(list(silent), silent, later_shot_triggered=True) == []
    # No later shot was triggered: nothing could have gone on.
    assert stopped_cameras(["cam1/image_raw"], went_on, later_shot_triggered=False) == []


@given(st.floats(0.0, 1e6), st.floats(0.05, 60.0), st.floats(0.05, 600.0), st.floats(0.0, 1e4),
       st.none() | st.floats(0.0, 1e3))
def test_the_deadline_is_never_before_frame_timeout(triggered: float, frame_s: float, silent_s: float,
                                                   expected: float, first_after: float | None) -> None:
    wait = ShotWait(triggered, frame_s, silent_s, expected)
    if first_after is not None:
        wait.saw_image(triggered + first_after)
    assert wait.deadline() >= triggered + frame_s
    assert wait.deadline() <= triggered + max(frame_s, silent_s) + (first_after or 0.0) + frame_s
