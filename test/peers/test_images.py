"""Real photographs (scikit-image's sample data) as a deterministic 5-camera, 1280x960 burst."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from skimage import data

from dfocus_capture.burst import Burst, burst_from_images
from dfocus_capture.calibration import load_calibration

CALIBRATION = Path(__file__).resolve().parents[2] / "config" / "camera_array.yaml"
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field")


def photos(width: int = 1280, height: int = 960) -> list[np.ndarray]:
    return [
        np.ascontiguousarray(cv2.resize(getattr(data, name)(), (width, height), interpolation=cv2.INTER_CUBIC))
        for name in PHOTOS
    ]


def photo_burst() -> Burst:
    return burst_from_images(photos(), load_calibration(CALIBRATION), sequence_id=1)
