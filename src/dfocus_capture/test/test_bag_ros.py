"""Record and replay across processes: a talker process publishes camera images and FocusSequences,
the bag_recorder process writes them, the bag_player process republishes them into this test's
subscriber, which must see the identical stream (count, order, stamps, bytes), with /clock."""

from __future__ import annotations

import hashlib
import inspect
from pathlib import Path
from typing import Any

import pytest
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from dfocus_capture.bag import BagReader

pytestmark = pytest.mark.ros

N_IMAGES = 20
N_SEQUENCES = 2

# The talker: waits for a subscriber on each topic, publishes, waits until all is acknowledged,
# then prints what it sent and stays up.
TALKER = f"""
import hashlib, sys, time
from typing import Any
import numpy as np
import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy, DurabilityPolicy
from sensor_msgs.msg import Image
from dfocus_interfaces.msg import FocusSequence
from dfocus_capture.burst import burst_from_images
from dfocus_capture.calibration import load_calibration
from dfocus_capture.ros_convert import burst_to_msg, image_to_msg, ns_to_stamp
from std_msgs.msg import Header

{{KEY}}
rclpy.init()
node = rclpy.create_node("talker", namespace="/test")
img_pub = node.create_publisher(Image, "cam0/image_raw", QoSProfile(depth=50))
seq_pub = node.create_publisher(FocusSequence, "capture/sequence", QoSProfile(
    depth=5, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL))
deadline = time.monotonic() + 20
while (img_pub.get_subscription_count() < 1 or seq_pub.get_subscription_count() < 1) and time.monotonic() < deadline:
    rclpy.spin_once(node, timeout_sec=0.05)
rng = np.random.default_rng(11)
cal = load_calibration({str(Path(__file__).resolve().parents[3] / "config" / "camera_array.yaml")!r}).scaled(64, 48)
t0 = 1_700_000_000_000_000_000
for i in range({N_IMAGES}):
    msg = image_to_msg(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8), "rgb8",
                       Header(stamp=ns_to_stamp(t0 + i * 40_000_000), frame_id="cam0_optical_frame"))
    img_pub.publish(msg)
    print("SENT", "/test/cam0/image_raw", content_key(msg), flush=True)
    if i % 10 == 9:
        burst = burst_from_images([rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) for _ in range(2 * len(cal))],
                                  cal, sequence_id=i)
        burst.stamp_ns = t0 + i * 40_000_000
        seq = burst_to_msg(burst)
        seq_pub.publish(seq)
        print("SENT", "/test/capture/sequence", content_key(seq), flush=True)
    time.sleep(0.04)
ok = img_pub.wait_for_all_acked(rclpy.duration.Duration(seconds=10)) and seq_pub.wait_for_all_acked(
    rclpy.duration.Duration(seconds=10))
print("ACKED" if ok else "NOT ACKED", flush=True)
while rclpy.ok():
    rclpy.spin_once(node, timeout_sec=0.1)
"""


def content_key(msg: Any) -> str:
    """Stamp and payload digest of an Image or FocusSequence. Not the CDR bytes: Fast CDR leaves
    alignment padding uninitialised, so two serializations of one message can differ; what must be
    byte-identical is the wire data the recorder received and the player sends."""
    images = [f.image for f in msg.frames] if hasattr(msg, "frames") else [msg]
    digest = hashlib.sha256(b"".join(bytes(i.data) for i in images)).hexdigest()
    return f"{msg.header.stamp.sec}.{msg.header.stamp.nanosec:09d}:{len(images)}:{digest}"


TALKER = TALKER.replace("{KEY}", inspect.getsource(content_key))


def _sent(log: str) -> list[tuple[str, str]]:
    return [(line.split()[1], line.split()[2]) for line in log.splitlines() if line.startswith("SENT ")]


def _record(node_processes: Any, wait: Any, bag: Path, storage: str) -> list[tuple[str, str]]:
    talker = node_processes.python(TALKER, module=False, name="talker")
    recorder = node_processes.python(
        "dfocus_capture.bag_recorder_node", "--ros-args", "-r", "__ns:=/test", "-p", f"output:={bag}",
        "-p", f"storage:={storage}", "-p", "discovery_period_s:=0.1",
        "-p", "topics:=[cam0/image_raw, capture/sequence]", name="recorder")  # raw streams: only when named
    wait(lambda: "ACKED" in node_processes.output(talker) or talker.poll() is not None, 30, "talker to publish")
    assert talker.poll() is None and "NOT ACKED" not in node_processes.output(talker), node_processes.output(talker)
    recorder.send_signal(2)
    assert recorder.wait(timeout=10) == 0, node_processes.output(recorder)
    talker.send_signal(2)
    return _sent(node_processes.output(talker))


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_record_then_replay_is_identical(
    tmp_path: Path, node_processes: Any, wait: Any, rclpy_context: Any, spin: Any, storage: str
) -> None:
    import rclpy
    from rclpy.serialization import deserialize_message
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import Image

    from dfocus_interfaces.msg import FocusSequence

    bag = tmp_path / "session"
    sent = _record(node_processes, wait, bag, storage)
    assert len(sent) == N_IMAGES + N_SEQUENCES
    types = {"/test/cam0/image_raw": Image, "/test/capture/sequence": FocusSequence}
    recorded = list(BagReader(bag).messages())
    assert [(m.topic, content_key(deserialize_message(m.data, types[m.topic]))) for m in recorded] == sent

    node = rclpy.create_node("replay_listener", context=rclpy_context)
    got: list[tuple[str, bytes]] = []
    clocks: list[int] = []
    latched = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    node.create_subscription(Image, "/test/cam0/image_raw", lambda d: got.append(("/test/cam0/image_raw", d)),
                             QoSProfile(depth=50), raw=True)
    node.create_subscription(FocusSequence, "/test/capture/sequence",
                             lambda d: got.append(("/test/capture/sequence", d)), latched, raw=True)
    node.create_subscription(Clock, "/clock", lambda m: clocks.append(m.clock.sec * 10**9 + m.clock.nanosec), 10)
    spin(node)
    player = node_processes.python(
        "dfocus_capture.bag_player_node", "--ros-args", "-p", f"bag:={bag}", "-p", "rate:=2.0", "-p", "clock:=true",
        "-p", "wait_for_subscribers:=1", name="player")
    assert player.wait(timeout=60) == 0, node_processes.output(player)
    # The player ends once its last message is published; delivery may still be in flight.
    wait(lambda: len(got) >= len(sent), 20, f"all {len(sent)} replayed messages (got {len(got)})")
    # The wire bytes, in order per topic (DDS orders nothing across topics).
    for topic in types:
        assert [d for t, d in got if t == topic] == [m.data for m in recorded if m.topic == topic], topic
        assert [content_key(deserialize_message(d, types[t])) for t, d in got if t == topic] == [
            key for t, key in sent if t == topic]
    reader = BagReader(bag)
    assert clocks, "no /clock published"
    assert all(reader.start_ns <= c <= reader.end_ns + 10**9 for c in clocks) and clocks == sorted(clocks)


def test_bad_inputs_fail_with_reasons(tmp_path: Path, node_processes: Any) -> None:
    missing = node_processes.python("dfocus_capture.bag_player_node", "--ros-args", "-p", f"bag:={tmp_path / 'no'}",
                                    name="player")
    assert missing.wait(timeout=20) == 1
    assert "not a rosbag2 folder" in node_processes.output(missing)
    (tmp_path / "taken").mkdir()
    taken = node_processes.python("dfocus_capture.bag_recorder_node", "--ros-args", "-p",
                                  f"output:={tmp_path / 'taken'}", name="recorder")
    assert taken.wait(timeout=20) == 1
    assert "exists already" in node_processes.output(taken)


def test_cli_rejects_bad_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from dfocus_capture.bag_cli import play_command

    with pytest.raises(SystemExit) as exc:
        play_command([str(tmp_path), "--remap", "a=b"])
    assert exc.value.code == 2 and "old:=new" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        play_command([str(tmp_path), "--rate", "0"])
    assert "--rate must be > 0" in capsys.readouterr().err


# A topic that never pauses, as the 400 Hz IMU: the recorder must still stop on a signal or a duration.
STREAMER = """
import rclpy
from std_msgs.msg import Header
rclpy.init()
node = rclpy.create_node("streamer", namespace="/test")
pub = node.create_publisher(Header, "imu_like", 100)
timer = node.create_timer(0.0025, lambda: pub.publish(Header(frame_id="imu_link")))
print("STREAMING", flush=True)
rclpy.spin(node)
"""


@pytest.mark.parametrize("stop", ["sigint", "sigterm", "duration"])
def test_the_recorder_stops_while_a_topic_streams_and_leaves_a_readable_bag(
        tmp_path: Path, node_processes: Any, wait: Any, stop: str) -> None:
    streamer = node_processes.python(STREAMER, module=False, name="streamer")
    wait(lambda: "STREAMING" in node_processes.output(streamer), 30, "the streamer")
    bag = tmp_path / "stream"
    duration = ["-p", "max_duration_s:=3.0"] if stop == "duration" else []
    recorder = node_processes.python(
        "dfocus_capture.bag_recorder_node", "--ros-args", "-r", "__ns:=/test", "-p", f"output:={bag}",
        "-p", "topics:=[imu_like]", "-p", "discovery_period_s:=0.1", *duration, name="recorder")
    wait(lambda: "first message on /test/imu_like" in node_processes.output(recorder), 30, "recording to start")
    if stop != "duration":
        recorder.send_signal(2 if stop == "sigint" else 15)
    assert recorder.wait(timeout=20) == 0, node_processes.output(recorder)
    assert (bag / "metadata.yaml").is_file()
    assert sum(1 for m in BagReader(bag).messages() if m.topic == "/test/imu_like") > 10
