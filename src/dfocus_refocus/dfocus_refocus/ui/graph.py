"""What the web server needs from the ROS graph, as plain types: the `GraphPort` protocol that the
ui node implements with rclpy, and the errors a call can end with.

Keeping rclpy out of this interface lets the server run (and be tested) against any implementation,
and keeps every graph failure one of a few exception types that `errors.plain_message` can explain.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


class GraphError(RuntimeError):
    """A request to the ROS graph did not succeed."""


class NodeUnavailableError(GraphError):
    """No server answered for an action or service within the wait timeout."""

    def __init__(self, node: str, interface: str, waited_s: float) -> None:
        super().__init__(f"{interface} not available after {waited_s:g} s")
        self.node, self.interface, self.waited_s = node, interface, waited_s


class GoalRejectedError(GraphError):
    """The action server refused the goal."""


class GoalAbortedError(GraphError):
    """The action server accepted the goal, then gave up; the message is the server's reason."""


class GoalCanceledError(GraphError):
    """The goal ended cancelled (by the user, or preempted by a newer goal)."""


class GraphTimeoutError(GraphError):
    """A call did not finish within its deadline (the node may be stuck or gone)."""

    def __init__(self, what: str, waited_s: float) -> None:
        super().__init__(f"{what} did not finish within {waited_s:g} s")
        self.what, self.waited_s = what, waited_s


@dataclass(frozen=True)
class Progress:
    """Action feedback: a stage name, overall progress 0..1, and for a capture the shot counter."""

    stage: str
    progress: float
    shot_index: int = -1
    num_shots: int = 0


ProgressCallback = Callable[[Progress], None]


@dataclass(frozen=True)
class Tone:
    exposure_ev: float = 0.0
    contrast: float = 1.0
    saturation: float = 1.0
    temperature: float = 0.0
    tint: float = 0.0
    relight: float = 0.0


@dataclass(frozen=True)
class PlaneRequest:
    """A FocalPlane message's content; `mask` is mono8 in reference-image pixels, or None."""

    focus_m: float
    near_m: float = 0.0
    far_m: float = 0.0
    mask: np.ndarray | None = field(default=None, compare=False)


@dataclass(frozen=True)
class RenderRequest:
    plane: PlaneRequest
    f_number: float = 0.0
    bokeh_strength: float = 1.0
    tone: Tone = Tone()
    sequence_id: int = 0
    output_width: int = 0
    output_height: int = 0


@dataclass(frozen=True)
class RenderResult:
    image: np.ndarray  # HxWx3 uint8 RGB
    sequence_id: int
    focus_m: float
    near_m: float
    far_m: float
    message: str


@dataclass(frozen=True)
class CaptureRequest:
    num_shots: int = 5
    pattern: int = 1
    amplitude_mm: float = 0.5
    hand_held: bool = False
    focus_mode: int = 0


@dataclass(frozen=True)
class CaptureResult:
    sequence_id: int
    message: str


@dataclass(frozen=True)
class SequenceInfo:
    sequence_id: int
    stamp_ns: int
    has_depth: bool


class GraphPort(Protocol):
    """Every call is async, raises a GraphError subclass on failure, and never waits forever.
    Cancelling the task that awaits `render` or `capture` cancels the goal on the server."""

    async def render(self, request: RenderRequest, progress: ProgressCallback) -> RenderResult: ...

    async def capture(self, request: CaptureRequest, progress: ProgressCallback) -> CaptureResult: ...

    async def list_sequences(self) -> list[SequenceInfo]: ...

    def publish_focal_plane(self, plane: PlaneRequest) -> None: ...
