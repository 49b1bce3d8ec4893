"""Tone and colour after refocus (dfocus_interfaces/msg/ToneAdjustment), in linear light.

Order: white balance (temperature/tint as channel gains), exposure (2^EV), depth relighting (a light
at the camera: the foreground lifts, the background falls off), saturation (around luminance),
contrast (around mid-grey in log space, so it neither clips nor shifts the mean grey). Neutral
settings leave the image bit-identical.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dfocus_refocus.srgb import luminance

MID_GREY = 0.18
# Percentile of the depths taken as "the foreground" for relighting.
RELIGHT_NEAR_PERCENTILE = 5.0


class ToneError(ValueError):
    """A tone setting is out of its documented range."""


@dataclass(frozen=True)
class ToneParams:
    exposure_ev: float = 0.0  # -4..4
    contrast: float = 1.0  # 0..3
    saturation: float = 1.0  # 0..3
    temperature: float = 0.0  # -1..1
    tint: float = 0.0  # -1..1
    relight: float = 0.0  # 0..1

    def validate(self) -> None:
        limits = {
            "exposure_ev": (-4.0, 4.0),
            "contrast": (0.0, 3.0),
            "saturation": (0.0, 3.0),
            "temperature": (-1.0, 1.0),
            "tint": (-1.0, 1.0),
            "relight": (0.0, 1.0),
        }
        for name, (lo, hi) in limits.items():
            v = float(getattr(self, name))
            if not (math.isfinite(v) and lo <= v <= hi):
                raise ToneError(f"tone {name} must be within {lo:g}..{hi:g}, got {v}")

    @property
    def neutral(self) -> bool:
        return self == ToneParams()


def white_balance_gains(temperature: float, tint: float) -> np.ndarray:
    """RGB gains: warmer raises red and lowers blue; tint + is magenta (less green). Luminance-neutral."""
    g = np.array(
        [2.0 ** (0.5 * temperature), 2.0 ** (-0.5 * tint), 2.0 ** (-0.5 * temperature)], dtype=np.float64
    )
    g /= float(np.dot(g, [0.2126, 0.7152, 0.0722]))
    return g.astype(np.float32)


def relight_gain(depth: np.ndarray, strength: float) -> np.ndarray:
    """Per-pixel gain of a light at the camera: 1 + s at the foreground, falling with 1/z^2 towards 1 - s."""
    z = np.where(np.isfinite(depth) & (depth > 0), depth, np.nan)
    if np.all(np.isnan(z)):
        return np.ones(depth.shape, np.float32)
    z_near = float(np.nanpercentile(z, RELIGHT_NEAR_PERCENTILE))
    z = np.nan_to_num(z, nan=float(np.nanmax(z)))
    falloff = np.clip((z_near / np.maximum(z, 1e-3)) ** 2, 0.0, 1.0)
    return np.asarray(1.0 + strength * (2.0 * falloff - 1.0), dtype=np.float32)


def apply_tone(linear: np.ndarray, tone: ToneParams, depth: np.ndarray | None = None) -> np.ndarray:
    """Tone-adjusted float32 linear RGB (not clipped; the sRGB encoder clips)."""
    tone.validate()
    if tone.neutral:
        return linear
    out = np.array(linear, dtype=np.float32)
    gains = white_balance_gains(tone.temperature, tone.tint) * np.float32(2.0**tone.exposure_ev)
    if not np.allclose(gains, 1.0):
        out *= gains
    if tone.relight > 0 and depth is not None:
        if depth.shape != out.shape[:2]:
            raise ToneError(f"relighting needs a depth map of the image size {out.shape[:2]}, got {depth.shape}")
        out *= relight_gain(depth, tone.relight)[:, :, None]
    if tone.saturation != 1.0:
        y = luminance(out)[:, :, None]
        out = y + (out - y) * np.float32(tone.saturation)
        np.maximum(out, 0.0, out=out)
    if tone.contrast != 1.0:
        # Scale luminance around mid-grey in log2 space, keep chroma ratios.
        y = np.maximum(luminance(out), 1e-6)
        y_new = MID_GREY * (y / MID_GREY) ** np.float32(tone.contrast)
        out *= (y_new / y)[:, :, None]
    return out
