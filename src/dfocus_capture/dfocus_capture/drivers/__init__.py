"""Camera array drivers: one interface (`CameraArrayDriver`), three backends (sim, folder, v4l2)."""

from dfocus_capture.drivers.base import CameraArrayDriver, CapturedImage, DriverError, Exposure
from dfocus_capture.drivers.folder import FolderCameraArray, write_burst_folder
from dfocus_capture.drivers.sim import SimCameraArray, scene_from_spec
from dfocus_capture.drivers.v4l2 import V4l2CameraArray

BACKENDS = ("sim", "folder", "v4l2")

__all__ = ["BACKENDS", "CameraArrayDriver", "CapturedImage", "DriverError", "Exposure", "FolderCameraArray",
           "SimCameraArray", "V4l2CameraArray", "scene_from_spec", "write_burst_folder"]
