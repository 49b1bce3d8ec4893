"""QoS profiles shared by every dfocus node, so that publishers and subscribers always match.

Drivers stream with sensor-data QoS (best effort, keep last 5): a late frame is worthless.
Whatever must not be lost (bursts, depth of a burst, refocus results) is reliable; the burst and
its depth are also transient-local so that a node started late still gets the latest one.
"""

from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)

SENSOR = qos_profile_sensor_data

# capture/sequence, depth/*: the latest burst and its products, delivered to late joiners.
LATCHED = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)

# Results and live streams that must arrive in order (refocus/image).
RELIABLE = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=10,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)

# Live preview requests: only the newest focal plane matters.
LATEST = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)

# actuators/state: the simulated cameras and IMU (and any client) rebuild the stage's motion from
# every sample, so a reader that falls behind on a loaded machine must not lose any (a gap across
# a move reads as a slow glide). Five seconds at the 100 Hz default rate, on both ends.
TRACK = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=500,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)

# cam<i>/image_raw and camera_info: a burst needs every frame (a lost one is taken again), so the
# camera publishes them reliably and the sequencer reads them so; NACK repair then recovers a
# fragment lost on the way (UDP without shared memory, a full socket buffer) instead of the whole
# 3.7 MB frame. Keep last 2: a slow reader costs no more than two frames per camera, and best-effort
# readers (RViz, Foxglove) still match the reliable writer.
FRAMES = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=2,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)
