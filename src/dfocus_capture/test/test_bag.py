"""The rosbag2 core without rclpy: bags written here carry the dfocus types, their QoS and the exact
bytes, are readable by the independent mcap reader, and use the layout `ros2 bag play` expects."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory

from dfocus_capture.bag import (
    DEFAULT_TOPICS,
    BagError,
    BagReader,
    BagWriter,
    PlaybackClock,
    TopicQos,
    make_typestore,
    parse_remap,
    replay_qos,
    select_topics,
)

STORE = make_typestore()
SEQ = "dfocus_interfaces/msg/FocusSequence"
IMG = "sensor_msgs/msg/Image"


def _stamp(ns: int) -> object:
    Time = STORE.types["builtin_interfaces/msg/Time"]
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def _image(ns: int, pixels: np.ndarray) -> object:
    T = STORE.types
    header = T["std_msgs/msg/Header"](stamp=_stamp(ns), frame_id="cam0_optical_frame")
    h, w = pixels.shape[:2]
    return T[IMG](header=header, height=h, width=w, encoding="rgb8", is_bigendian=0, step=w * 3,
                  data=pixels.reshape(-1))


def _sequence(ns: int, seq_id: int) -> object:
    """A FocusSequence with one frame, built from the typestore only (no rclpy)."""
    T = STORE.types
    header = T["std_msgs/msg/Header"](stamp=_stamp(ns), frame_id="cam0_optical_frame")
    info = STORE.types["sensor_msgs/msg/CameraInfo"](
        header=header, height=4, width=6, distortion_model="plumb_bob", d=np.zeros(5), k=np.eye(3).ravel(),
        r=np.eye(3).ravel(), p=np.zeros(12), binning_x=0, binning_y=0,
        roi=T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))
    pose = T["geometry_msgs/msg/Pose"](position=T["geometry_msgs/msg/Point"](x=0.0, y=0.0, z=0.0),
                                       orientation=T["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0))
    frame = T["dfocus_interfaces/msg/CapturedFrame"](
        camera_index=0, shot_index=0, camera_name="cam0", image=_image(ns, np.full((4, 6, 3), seq_id, np.uint8)),
        camera_info=info, pose=pose, focus_distance_m=0.8, f_number=1.8, focal_length_mm=6.0, pixel_size_um=3.0,
        exposure_time_s=0.01)
    return T[SEQ](header=header, sequence_id=seq_id, num_shots=1, num_cameras=1, reference_camera="cam0",
                  focus_mode=0, hand_held=False, frames=[frame], imu=[], actuator_states=[])


def _write_bag(path: Path, storage: str) -> list[tuple[str, int, bytes]]:
    rng = np.random.default_rng(3)
    written: list[tuple[str, int, bytes]] = []
    writer = BagWriter(path, storage, STORE)
    writer.add_topic("/dfocus/capture/sequence", SEQ, [TopicQos(reliable=True, transient_local=True, depth=1)])
    writer.add_topic("/dfocus/cam0/image_raw", IMG, [TopicQos(reliable=False, depth=5)])
    t0 = 1_700_000_000_000_000_000
    for i in range(6):
        t = t0 + i * 33_000_000
        data = bytes(STORE.serialize_cdr(_image(t, rng.integers(0, 255, (8, 10, 3), np.uint8)), IMG))
        writer.write("/dfocus/cam0/image_raw", t + 1000, data)
        written.append(("/dfocus/cam0/image_raw", t + 1000, data))
        if i % 3 == 2:
            data = bytes(STORE.serialize_cdr(_sequence(t, i), SEQ))
            writer.write("/dfocus/capture/sequence", t + 2000, data)
            written.append(("/dfocus/capture/sequence", t + 2000, data))
    writer.close()
    return written


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_round_trip_keeps_bytes_order_and_qos(tmp_path: Path, storage: str) -> None:
    bag = tmp_path / "session"
    written = _write_bag(bag, storage)
    meta = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert meta["version"] == 9
    assert meta["storage_identifier"] == storage
    assert meta["message_count"] == len(written) == 8
    # ros2 bag play reads the files named in relative_file_paths from the bag folder.
    assert all((bag / f).is_file() for f in meta["relative_file_paths"])
    qos = {t["topic_metadata"]["name"]: t["topic_metadata"]["offered_qos_profiles"]
           for t in meta["topics_with_message_count"]}
    assert qos["/dfocus/capture/sequence"][0]["durability"] == "transient_local"
    assert qos["/dfocus/cam0/image_raw"][0]["reliability"] == "best_effort"
    # As rosbag2 writes them: the distribution, and unset durations as rmw's infinite.
    assert meta["ros_distro"] == "kilted"
    infinite = {"sec": 9223372036, "nsec": 854775807}
    assert all(q[k] == infinite for profiles in qos.values() for q in profiles
               for k in ("deadline", "lifespan", "liveliness_lease_duration"))

    reader = BagReader(bag)
    topics = reader.topics()
    assert topics["/dfocus/capture/sequence"].qos == TopicQos(reliable=True, transient_local=True, depth=1)
    assert topics["/dfocus/capture/sequence"].msgtype == SEQ and topics["/dfocus/cam0/image_raw"].count == 6
    got = [(m.topic, m.timestamp_ns, m.data) for m in reader.messages()]
    assert got == sorted(written, key=lambda w: w[1])
    only = [m.topic for m in reader.messages(["/dfocus/capture/sequence"])]
    assert only == ["/dfocus/capture/sequence"] * 2
    assert reader.duration_ns == written[-1][1] - written[0][1]
    reader.close()


def test_independent_mcap_reader_decodes_custom_types(tmp_path: Path) -> None:
    bag = tmp_path / "session"
    _write_bag(bag, "mcap")
    (mcap_file,) = bag.glob("*.mcap")
    seen: dict[str, list[object]] = {}
    with mcap_file.open("rb") as f:
        for schema, channel, _, decoded in make_reader(f, decoder_factories=[DecoderFactory()]).iter_decoded_messages():
            assert schema is not None and schema.encoding == "ros2msg"
            seen.setdefault(channel.topic, []).append(decoded)
    seqs = seen["/dfocus/capture/sequence"]
    assert [s.sequence_id for s in seqs] == [2, 5]  # type: ignore[attr-defined]
    frame = seqs[1].frames[0]  # type: ignore[attr-defined]
    assert frame.camera_name == "cam0" and frame.image.width == 6
    assert bytes(frame.image.data) == bytes([5]) * 72
    assert len(seen["/dfocus/cam0/image_raw"]) == 6


def test_bad_paths_and_types_raise(tmp_path: Path) -> None:
    with pytest.raises(BagError, match="not a rosbag2 folder"):
        BagReader(tmp_path)
    (tmp_path / "exists").mkdir()
    with pytest.raises(BagError, match="exists already"):
        BagWriter(tmp_path / "exists", "mcap", STORE)
    with pytest.raises(BagError, match="storage must be one of"):
        BagWriter(tmp_path / "x", "rosbag1", STORE)
    with pytest.raises(BagError, match="does not exist"):
        BagWriter(tmp_path / "missing" / "x", "mcap", STORE)
    writer = BagWriter(tmp_path / "y", "mcap", STORE)
    with pytest.raises(BagError, match="unknown to the typestore"):
        writer.add_topic("/a", "nope_msgs/msg/Nope")
    with pytest.raises(BagError, match="was not added"):
        writer.write("/b", 1, b"")
    writer.close()
    _write_bag(tmp_path / "z", "mcap")
    with pytest.raises(BagError, match="not in the bag"):
        list(BagReader(tmp_path / "z").messages(["/dfocus/depth/image"]))


def test_corrupt_bag_raises_bag_error(tmp_path: Path) -> None:
    bag = tmp_path / "session"
    _write_bag(bag, "mcap")
    (mcap_file,) = bag.glob("*.mcap")
    mcap_file.write_bytes(mcap_file.read_bytes()[:200])
    with pytest.raises(BagError):
        list(BagReader(bag).messages())


def test_topic_selection_and_replay_qos() -> None:
    available = ["/dfocus/cam0/image_raw", "/dfocus/cam1/image_raw", "/dfocus/cam1/camera_info",
                 "/dfocus/capture/sequence", "/dfocus/capture/announced", "/other/cam0/image_raw",
                 "/dfocus/refocus/image"]
    assert select_topics(available, DEFAULT_TOPICS, "/dfocus") == [  # not the raw streams, unless named
        "/dfocus/capture/announced", "/dfocus/capture/sequence"]
    assert select_topics(available, ["cam*/image_raw"], "/dfocus") == [
        "/dfocus/cam0/image_raw", "/dfocus/cam1/image_raw"]
    assert select_topics(available, ["/other/*"], "/dfocus") == ["/other/cam0/image_raw"]
    mixed = replay_qos([TopicQos(True, True, 1), TopicQos(False, True, 5)])
    assert mixed == TopicQos(reliable=False, transient_local=True, depth=5)
    assert replay_qos([]) == TopicQos()


def test_playback_clock_and_remaps() -> None:
    clock = PlaybackClock(bag_start_ns=1_000, wall_start_ns=50_000, rate=2.0)
    assert clock.wall_time(1_000) == 50_000 and clock.wall_time(3_000) == 51_000
    assert clock.bag_time(51_000) == 3_000
    with pytest.raises(BagError, match="rate"):
        PlaybackClock(0, 0, rate=0.0)
    assert parse_remap("/a:=/b") == ("/a", "/b")
    with pytest.raises(BagError, match="old:=new"):
        parse_remap("/a=/b")
