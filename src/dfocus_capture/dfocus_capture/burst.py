"""A captured Dynamic Focus burst as plain numpy data: what every core algorithm consumes.

`Burst` is the pure counterpart of the `FocusSequence` message (see ros_convert for the mapping).
Each frame carries its own `CameraModel` whose `T_ref_cam` is the pose at exposure time and whose
`focus_distance_m` is the focus it was taken at, so the algorithms never need the message.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dfocus_capture.calibration import ArrayCalibration, CalibrationError, CameraModel

FOCUS_FIXED = 0
FOCUS_BRACKET = 1


class BurstError(ValueError):
    """A burst is incomplete or inconsistent (missing frames, mixed sizes, bad poses)."""


@dataclass
class BurstFrame:
    camera_index: int
    shot_index: int
    camera: CameraModel  # intrinsics + pose at exposure (T_ref_cam) + focus of this frame
    image: np.ndarray  # HxWx3 RGB (uint8 or uint16) or HxW mono
    exposure_time_s: float = 0.01
    stamp_ns: int = 0


@dataclass
class Burst:
    sequence_id: int
    reference_camera: str
    num_shots: int
    num_cameras: int
    frames: list[BurstFrame]
    stamp_ns: int = 0
    focus_mode: int = FOCUS_FIXED
    hand_held: bool = False
    imu: np.ndarray = field(default_factory=lambda: np.zeros((0, 7)))  # t_s, wx, wy, wz, ax, ay, az
    actuator_mm: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))  # per shot

    def __post_init__(self) -> None:
        validate_burst(self)

    def frame(self, shot: int, camera: int) -> BurstFrame:
        return self.frames[shot * self.num_cameras + camera]

    @property
    def reference_index(self) -> int:
        names = [f.camera.name for f in self.frames[: self.num_cameras]]
        return names.index(self.reference_camera)

    @property
    def reference(self) -> BurstFrame:
        """The reference camera at shot 0: the view every output is rendered in."""
        return self.frame(0, self.reference_index)

    def calibration(self, shot: int = 0) -> ArrayCalibration:
        """The array as it stood at `shot` (poses and focus at that exposure)."""
        return ArrayCalibration(
            reference_camera=self.reference_camera,
            cameras=tuple(self.frame(shot, c).camera for c in range(self.num_cameras)),
        )


def validate_burst(b: Burst) -> None:
    if not 1 <= b.num_cameras <= 16:
        raise BurstError(f"num_cameras must be 1..16, got {b.num_cameras}")
    if not 1 <= b.num_shots <= 10:
        raise BurstError(f"num_shots must be 1..10, got {b.num_shots}")
    expected = b.num_shots * b.num_cameras
    if len(b.frames) != expected:
        raise BurstError(f"burst has {len(b.frames)} frames, expected {b.num_shots} shots x {b.num_cameras} cameras")
    for i, f in enumerate(b.frames):
        if (f.shot_index, f.camera_index) != divmod(i, b.num_cameras):
            raise BurstError(f"frame {i} is shot {f.shot_index} camera {f.camera_index}: frames must be shot-major")
        if f.image.ndim not in (2, 3) or f.image.shape[:2] != (f.camera.height, f.camera.width):
            raise BurstError(
                f"frame {i} ({f.camera.name}) image {f.image.shape} does not match its camera_info "
                f"{f.camera.width}x{f.camera.height}"
            )
        if not np.all(np.isfinite(f.camera.T_ref_cam)):
            raise BurstError(f"frame {i} ({f.camera.name}) has a non-finite pose")
    names = [f.camera.name for f in b.frames[: b.num_cameras]]
    if b.reference_camera not in names:
        raise BurstError(f"reference camera {b.reference_camera!r} is not in the burst ({names})")


def burst_from_images(
    images: list[np.ndarray], calibration: ArrayCalibration, sequence_id: int = 0
) -> Burst:
    """Files given on the command line: shots x cameras in camera order, or one image per camera.

    The first image must belong to the reference camera (design brief's CLI contract); with the
    calibration's reference elsewhere in the list the cameras are rotated so that it comes first.
    """
    n = len(calibration.cameras)
    if not images:
        raise BurstError("no images given")
    try:
        calibration.check_images([im.shape for im in images])
    except CalibrationError as exc:
        raise BurstError(str(exc)) from exc
    frames = [
        BurstFrame(camera_index=i % n, shot_index=i // n, camera=calibration.cameras[i % n], image=im)
        for i, im in enumerate(images)
    ]
    return Burst(
        sequence_id=sequence_id,
        reference_camera=calibration.reference_camera,
        num_shots=len(images) // n,
        num_cameras=n,
        frames=frames,
    )
