"""sRGB <-> linear light through lookup tables (blur and averaging happen in linear light so that
bright highlights keep their energy and become discs instead of grey smudges)."""

from __future__ import annotations

import cv2
import numpy as np

# Fine enough that encode(decode(code)) == code for every 8-bit code (the darkest step is 3e-4).
_ENCODE_STEPS = 16383


def _decode(v: np.ndarray) -> np.ndarray:
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def _encode(v: np.ndarray) -> np.ndarray:
    return np.where(v <= 0.0031308, v * 12.92, 1.055 * np.power(np.maximum(v, 0.0031308), 1 / 2.4) - 0.055)


_DECODE8 = _decode(np.arange(256, dtype=np.float64) / 255.0).astype(np.float32)
_ENCODE_LUT = np.clip(np.round(_encode(np.linspace(0.0, 1.0, _ENCODE_STEPS + 1)) * 255.0), 0, 255).astype(np.uint8)


def to_linear(image: np.ndarray) -> np.ndarray:
    """uint8 sRGB (any shape) -> float32 linear light in [0, 1]."""
    if image.dtype != np.uint8:
        raise TypeError(f"to_linear expects uint8 sRGB, got {image.dtype}")
    if image.ndim == 3 and image.shape[2] > 4:
        return _DECODE8[image]
    return np.asarray(cv2.LUT(image, _DECODE8)).reshape(image.shape)


def to_srgb8(linear: np.ndarray) -> np.ndarray:
    """float linear light -> uint8 sRGB (values outside [0, 1] clip)."""
    idx = np.multiply(linear, np.float32(_ENCODE_STEPS), dtype=np.float32)
    np.clip(idx, 0.0, float(_ENCODE_STEPS), out=idx)
    idx += np.float32(0.5)
    return _ENCODE_LUT[idx.astype(np.uint16)]


def luminance(linear_rgb: np.ndarray) -> np.ndarray:
    """Rec. 709 relative luminance of HxWx3 linear RGB (float32)."""
    w = np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)
    return np.asarray(linear_rgb @ w, dtype=np.float32)
