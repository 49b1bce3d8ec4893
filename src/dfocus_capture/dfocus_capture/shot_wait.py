"""How long the sequencer waits for a shot's images, and what it concludes when they do not come.

A loaded machine renders and delivers slowly; a stopped camera never delivers. The two look alike
for `frame_timeout_s` after a trigger, and were told apart wrongly: a burst whose first shot took
20 s to render on a loaded machine was aborted as "camera stopped?". The rules here:

- Once some camera has delivered the shot, the others get `frame_timeout_s` from that first image
  (cameras expose together, so a late set is late as a whole).
- While no camera has delivered anything of the shot or after it, the array is slow, not stopped
  (nothing says any camera went on without the others): the wait extends to `silent_timeout_s`.
- The wait also scales with the delivery times seen: never less than SLOW_FACTOR times the slowest
  of the last RECENT shots (a machine that took 4 s per shot a moment ago will again).
- A camera has stopped only when it delivered nothing of the shot or after it while some other
  camera delivered a later image: then no retake can help.

Pure and clock-free (the caller passes monotonic seconds), so the rules are tested without a graph.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

SLOW_FACTOR = 2.0  # a shot may take this many times the slowest recent delivery
RECENT = 8  # shots whose delivery time is remembered


@dataclass
class DeliveryHistory:
    """Delivery times (trigger answered -> complete set) of the last RECENT shots."""

    seconds: deque[float] = field(default_factory=lambda: deque(maxlen=RECENT))

    def add(self, seconds: float) -> None:
        self.seconds.append(max(0.0, seconds))

    def expected_max(self) -> float:
        """SLOW_FACTOR times the slowest recent delivery (0 with no history)."""
        return SLOW_FACTOR * max(self.seconds, default=0.0)


@dataclass
class ShotWait:
    """The deadline of one shot's images (monotonic seconds)."""

    triggered_at: float
    frame_timeout_s: float
    silent_timeout_s: float
    expected_s: float = 0.0  # DeliveryHistory.expected_max() when the shot was triggered
    first_image_at: float | None = None
    warned_slow: bool = False

    def saw_image(self, now: float) -> None:
        """Some camera's image of this shot (or a later one) has arrived."""
        if self.first_image_at is None:
            self.first_image_at = now

    def deadline(self) -> float:
        base = self.triggered_at + max(self.frame_timeout_s, min(self.expected_s, self.silent_timeout_s))
        if self.first_image_at is None:
            return max(base, self.triggered_at + self.silent_timeout_s)
        return max(base, self.first_image_at + self.frame_timeout_s)

    def slow_now(self, now: float) -> bool:
        """True once, when the array has been silent for `frame_timeout_s` (time to say it is slow)."""
        if self.warned_slow or self.first_image_at is not None or now < self.triggered_at + self.frame_timeout_s:
            return False
        self.warned_slow = True
        return True


def stopped_cameras(lacking: list[str], went_on: dict[str, bool], later_shot_triggered: bool) -> list[str]:
    """The lacking cameras that stopped: nothing of the shot or after it while another camera
    delivered a later image. `went_on` maps every camera to whether it delivered after the shot."""
    if not later_shot_triggered:
        return []
    silent = [c for c in lacking if not went_on.get(c, False)]
    others_went_on = any(v for c, v in went_on.items() if c not in silent)
    return silent if others_went_on else []
