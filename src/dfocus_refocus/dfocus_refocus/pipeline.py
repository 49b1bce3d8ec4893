"""A burst prepared once (registration + all-in-focus fusion), refocused many times.

This is the one core the CLI, the action, the live preview and the benchmarks share: `prepare`
does the slow, plane-independent work; `render` is the fast part (thin-lens bokeh on the cached
all-in-focus image and depth at the output resolution, then tone).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np

from dfocus_capture.burst import Burst
from dfocus_capture.calibration import CameraModel
from dfocus_refocus.bokeh import BokehParams, render_bokeh
from dfocus_refocus.focal_plane import FocalPlaneError, SharpRange, resolve_focal_plane, signed_coc_px
from dfocus_refocus.fusion import FusionParams, fuse_all_in_focus
from dfocus_refocus.registration import WORKERS, Registration, register_burst
from dfocus_refocus.srgb import to_srgb8
from dfocus_refocus.tone import ToneParams, apply_tone

# stage name, fraction of that stage done (0..1); may raise to stop the work.
StageProgress = Callable[[str, float], None]


# Simulated apertures: f/0.5 is the limit of a lens in air (numerical aperture 1); beyond f/128
# nothing is blurred at these sensor sizes.
F_NUMBER_RANGE = (0.5, 128.0)


@dataclass(frozen=True)
class RefocusRequest:
    focus_m: float = 0.0
    near_m: float = 0.0
    far_m: float = 0.0
    mask: np.ndarray | None = None  # reference-image pixels, non-zero = keep sharp
    f_number: float = 0.0  # 0 = the reference camera's
    bokeh_strength: float = 1.0  # 0..4
    tone: ToneParams = ToneParams()
    output_width: int = 0  # 0 = full resolution (the other side follows the aspect ratio)
    output_height: int = 0


@dataclass
class Rendered:
    image: np.ndarray  # HxWx3 uint8 sRGB
    sharp: SharpRange
    width: int
    height: int


@dataclass
class _Level:
    camera: CameraModel
    linear: np.ndarray
    depth: np.ndarray


def output_size(ref: CameraModel, width: int, height: int) -> tuple[int, int]:
    """The requested output size, the missing side following the reference aspect ratio."""
    if width < 0 or height < 0:
        raise FocalPlaneError(f"output size must not be negative, got {width}x{height}")
    if width == 0 and height == 0:
        return ref.width, ref.height
    if width == 0:
        width = max(1, round(height * ref.width / ref.height))
    if height == 0:
        height = max(1, round(width * ref.height / ref.width))
    if width > 2 * ref.width or height > 2 * ref.height:
        raise FocalPlaneError(f"output {width}x{height} is more than twice the capture {ref.width}x{ref.height}")
    return width, height


@dataclass
class PreparedSequence:
    """Cached products of one burst: registration, filled depth, all-in-focus (linear light)."""

    burst: Burst
    depth: np.ndarray  # as received (NaN = invalid), reference resolution
    registration: Registration
    all_in_focus: np.ndarray  # HxWx3 float32 linear
    _levels: dict[tuple[int, int], _Level] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def reference(self) -> CameraModel:
        return self.registration.reference

    def all_in_focus_srgb(self) -> np.ndarray:
        return to_srgb8(self.all_in_focus)

    def level(self, width: int, height: int) -> _Level:
        """All-in-focus, depth and camera at an output size (cached: the preview reuses its own)."""
        key = (width, height)
        with self._lock:
            lvl = self._levels.get(key)
            if lvl is None:
                ref = self.reference
                if key == (ref.width, ref.height):
                    lvl = _Level(ref, self.all_in_focus, self.registration.depth)
                else:
                    interp = cv2.INTER_AREA if width < ref.width else cv2.INTER_LINEAR
                    linear = np.asarray(cv2.resize(self.all_in_focus, key, interpolation=interp), np.float32)
                    # Nearest keeps depth edges crisp (no invented in-between depths).
                    depth = np.asarray(
                        cv2.resize(self.registration.depth, key, interpolation=cv2.INTER_NEAREST), np.float32
                    )
                    lvl = _Level(ref.scaled(width, height), linear, depth)
                if len(self._levels) >= 4:
                    self._levels.pop(next(iter(self._levels)))
                self._levels[key] = lvl
            return lvl

    def resolve(self, req: RefocusRequest) -> SharpRange:
        """Validate the request's plane against this sequence (FocalPlaneError with the reason)."""
        if not 0.0 <= req.bokeh_strength <= 4.0:
            raise FocalPlaneError(f"bokeh_strength must be within 0..4, got {req.bokeh_strength}")
        if req.f_number != 0 and not F_NUMBER_RANGE[0] <= req.f_number <= F_NUMBER_RANGE[1]:
            raise FocalPlaneError(f"f_number must be within {F_NUMBER_RANGE[0]:g}..{F_NUMBER_RANGE[1]:g} "
                                  f"(0 = the camera's), got {req.f_number}")
        req.tone.validate()
        return resolve_focal_plane(
            self.reference,
            focus_m=req.focus_m,
            near_m=req.near_m,
            far_m=req.far_m,
            f_number=req.f_number or None,
            mask=req.mask,
            depth=self.depth,
        )

    def render(self, req: RefocusRequest, params: BokehParams | None = None) -> Rendered:
        sharp = self.resolve(req)
        width, height = output_size(self.reference, req.output_width, req.output_height)
        lvl = self.level(width, height)
        f_number = req.f_number or self.reference.f_number
        coc = signed_coc_px(lvl.depth, sharp, lvl.camera, f_number, req.bokeh_strength)
        linear = render_bokeh(lvl.linear, coc, params or BokehParams())
        linear = apply_tone(linear, req.tone, lvl.depth)
        return Rendered(to_srgb8(linear), sharp, width, height)


def prepare_sequence(
    burst: Burst,
    depth: np.ndarray,
    *,
    refine: str = "auto",
    fusion: FusionParams | None = None,
    progress: StageProgress | None = None,
    workers: int = WORKERS,
) -> PreparedSequence:
    """Register the burst into the reference view and fuse the all-in-focus image (the slow part),
    `workers` frames at a time."""

    def stage(name: str) -> Callable[[float], None] | None:
        if progress is None:
            return None
        return lambda fraction: progress(name, fraction)

    reg = register_burst(burst, depth, refine=refine, progress=stage("registering"), workers=workers)
    aif = fuse_all_in_focus(reg, fusion or FusionParams(), progress=stage("fusing"), workers=workers)
    raw = np.asarray(depth, dtype=np.float32)
    if raw.shape != reg.depth.shape:
        raw = np.asarray(cv2.resize(raw, reg.depth.shape[::-1], interpolation=cv2.INTER_NEAREST), np.float32)
    return PreparedSequence(burst=burst, depth=raw, registration=reg, all_in_focus=aif)
