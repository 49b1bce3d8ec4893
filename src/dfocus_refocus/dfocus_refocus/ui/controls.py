"""The page's control values (JSON from the WebSocket) checked and turned into graph requests.

Everything from the browser is untrusted: each number must be finite and inside the range the
interfaces document, or the request is refused with a reason (UiError) before it reaches the graph.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from dfocus_refocus.ui.errors import UiError
from dfocus_refocus.ui.graph import CaptureRequest, PlaneRequest, RenderRequest, Tone

MAX_DEPTH_M = 1000.0


@dataclass(frozen=True)
class Controls:
    sequence_id: int = 0  # 0 = the latest
    focus_m: float = 0.0  # 0 with a mask = derived from the painted depths
    near_m: float = 0.0  # near = far = 0: thin-lens depth of field
    far_m: float = 0.0
    f_number: float = 0.0  # 0 = the reference camera's
    bokeh_strength: float = 1.0
    tone: Tone = Tone()

    def plane(self, mask: np.ndarray | None) -> PlaneRequest:
        return PlaneRequest(self.focus_m, self.near_m, self.far_m, mask)

    def render_request(self, mask: np.ndarray | None, sequence_id: int, width: int = 0) -> RenderRequest:
        return RenderRequest(
            plane=self.plane(mask),
            f_number=self.f_number,
            bokeh_strength=self.bokeh_strength,
            tone=self.tone,
            sequence_id=sequence_id,
            output_width=width,
        )

    @property
    def look(self) -> tuple[float, float, Tone]:
        """What the live focal_plane topic cannot carry (aperture, bokeh, tone)."""
        return self.f_number, self.bokeh_strength, self.tone


def number(d: Mapping[str, Any], key: str, default: float, lo: float, hi: float) -> float:
    raw = d.get(key, default)
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        raise UiError(f"{key} must be a number, got {raw!r}")
    try:
        value = float(raw)
    except OverflowError:  # an integer beyond any float
        value = math.inf
    if not math.isfinite(value) or not lo <= value <= hi:
        raise UiError(f"{key} must be within {lo:g}..{hi:g}, got {raw!r}")
    return value


def integer(d: Mapping[str, Any], key: str, default: int, lo: int, hi: int) -> int:
    value = number(d, key, default, lo, hi)
    if value != int(value):
        raise UiError(f"{key} must be a whole number, got {value:g}")
    return int(value)


def parse_controls(d: Mapping[str, Any]) -> Controls:
    tone = d.get("tone", {})
    if not isinstance(tone, Mapping):
        raise UiError("tone must be an object")
    f_number = number(d, "f_number", 0.0, 0.0, 64.0)
    if 0.0 < f_number < 0.5:
        raise UiError(f"f_number must be 0 (the camera's) or at least 0.5, got {f_number:g}")
    return Controls(
        sequence_id=integer(d, "sequence_id", 0, 0, 2**32 - 1),
        focus_m=number(d, "focus_m", 0.0, 0.0, MAX_DEPTH_M),
        near_m=number(d, "near_m", 0.0, 0.0, MAX_DEPTH_M),
        far_m=number(d, "far_m", 0.0, 0.0, MAX_DEPTH_M),
        f_number=f_number,
        bokeh_strength=number(d, "bokeh_strength", 1.0, 0.0, 4.0),
        tone=Tone(
            exposure_ev=number(tone, "exposure_ev", 0.0, -4.0, 4.0),
            contrast=number(tone, "contrast", 1.0, 0.0, 3.0),
            saturation=number(tone, "saturation", 1.0, 0.0, 3.0),
            temperature=number(tone, "temperature", 0.0, -1.0, 1.0),
            tint=number(tone, "tint", 0.0, -1.0, 1.0),
            relight=number(tone, "relight", 0.0, 0.0, 1.0),
        ),
    )


def parse_capture(d: Mapping[str, Any]) -> CaptureRequest:
    return CaptureRequest(
        num_shots=integer(d, "num_shots", 5, 1, 10),
        pattern=integer(d, "pattern", 1, 0, 3),
        amplitude_mm=number(d, "amplitude_mm", 0.5, 0.0, 5.0),
        hand_held=bool(d.get("hand_held", False)),
        focus_mode=integer(d, "focus_mode", 0, 0, 1),
    )
