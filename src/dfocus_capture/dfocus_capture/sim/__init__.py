"""The dfocus scene simulator: seeded procedural scenes, ray-cast pinhole views, occlusion-aware
thin-lens defocus, a Poisson-Gaussian sensor, and whole bursts with actuator shifts and hand
tremor, with ground-truth depth and all-in-focus images. It is the `sim` camera backend and the
depth network's training-data generator."""

from dfocus_capture.sim.motion import ArrayMotion, MotionError
from dfocus_capture.sim.render import RenderError, ThinLensRenderer, View
from dfocus_capture.sim.scene import Scene, SceneError, Surface, plane_scene, random_scene
from dfocus_capture.sim.sensor import SensorError, SensorNoise
from dfocus_capture.sim.simulate import SimBurst, make_motion, simulate_burst

__all__ = ["ArrayMotion", "MotionError", "RenderError", "Scene", "SceneError", "SensorError", "SensorNoise",
           "SimBurst", "Surface", "ThinLensRenderer", "View", "make_motion", "plane_scene", "random_scene",
           "simulate_burst"]
