"""rosbag2 files for dfocus: writing serialized messages as they arrive, reading them back in time
order, and the timing of a replay. Pure Python on `rosbags` (rosbag2 itself is not installable here);
the nodes in bag_recorder_node / bag_player_node move the bytes to and from the ROS graph.

Messages are stored as the CDR bytes the middleware delivered (no deserialize/serialize round trip),
so a replay is byte-identical. The custom dfocus types are registered from the installed .msg files,
so the bag carries their full definitions and any rosbag2 / mcap reader can decode them.
"""

from __future__ import annotations

import fnmatch
import importlib
import os
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from rosbags.interfaces import (
    ConnectionExtRosbag2,
    Qos,
    QosDurability,
    QosHistory,
    QosLiveliness,
    QosReliability,
    QosTime,
)
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.rosbag2.errors import ReaderError, WriterError
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

INTERFACES = "dfocus_interfaces"
STORAGES = ("mcap", "sqlite3")
METADATA_VERSION: Literal[9] = 9

# What `dfocus record` takes when no topics are named: the bursts and their depth products
# (relative to the recorder's namespace; shell-style patterns). Not the free-running raw camera
# streams: 5 cameras at 5 Hz write about 13 GB in 17 minutes at 1280x960; name them to record
# them ('cam*/image_raw' 'cam*/camera_info'). The bursts already hold every frame they used.
DEFAULT_TOPICS = (
    "capture/sequence",
    "capture/announced",
    "imu/data",
    "actuators/state",
    "depth/image",
    "depth/confidence",
    "depth/camera_info",
    "depth/points",
    "/tf",
    "/tf_static",
)


class BagError(RuntimeError):
    """A bag cannot be written or read: bad path, unknown type, unreadable or corrupt file."""


@dataclass(frozen=True)
class TopicQos:
    """The QoS a publisher offered, in the terms rosbag2 stores in metadata.yaml."""

    reliable: bool = True
    transient_local: bool = False
    depth: int = 10

    def to_rosbags(self) -> Qos:
        return Qos(
            QosHistory.KEEP_LAST,
            self.depth,
            QosReliability.RELIABLE if self.reliable else QosReliability.BEST_EFFORT,
            QosDurability.TRANSIENT_LOCAL if self.transient_local else QosDurability.VOLATILE,
            QOS_INFINITE,  # deadline
            QOS_INFINITE,  # lifespan
            QosLiveliness.AUTOMATIC,
            QOS_INFINITE,  # liveliness lease duration
            False,
        )

    @staticmethod
    def from_rosbags(q: Qos) -> TopicQos:
        return TopicQos(
            reliable=q.reliability != QosReliability.BEST_EFFORT,
            transient_local=q.durability == QosDurability.TRANSIENT_LOCAL,
            depth=max(1, int(q.depth)),
        )


def replay_qos(offered: Iterable[TopicQos]) -> TopicQos:
    """The QoS to republish with: like rosbag2, the weakest promise any recorded publisher made
    (best effort if one was, transient-local only if all were), so that every original
    subscriber is still compatible."""
    offered = list(offered)
    if not offered:
        return TopicQos()
    return TopicQos(
        reliable=all(q.reliable for q in offered),
        transient_local=all(q.transient_local for q in offered),
        depth=max(q.depth for q in offered),
    )


def interface_dirs() -> list[Path]:
    """Candidate share/dfocus_interfaces folders: every AMENT_PREFIX_PATH entry, then this Python's
    prefix (the venv, where the interface wheel installs)."""
    prefixes = [*filter(None, os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)), sys.prefix]
    return [Path(p) / "share" / INTERFACES for p in prefixes]


# The ROS 2 distribution of the ros-* wheels: its typestore, and the bags' `ros_distro`.
ROS_DISTRO = "kilted"
ROS_TYPESTORE = Stores.ROS2_KILTED
# rmw's infinite duration (RMW_DURATION_INFINITE, INT64_MAX ns), as rosbag2 records an unset
# deadline, lifespan or liveliness lease.
QOS_INFINITE = QosTime(9223372036, 854775807)


def make_typestore() -> Typestore:
    """The ROS 2 Kilted typestore plus every dfocus_interfaces message."""
    store = get_typestore(ROS_TYPESTORE)
    for share in interface_dirs():
        msgs = sorted((share / "msg").glob("*.msg"))
        if msgs:
            types = {}
            for path in msgs:
                types.update(get_types_from_msg(path.read_text(), f"{INTERFACES}/msg/{path.stem}"))
            store.register(types)
            return store
    raise BagError(f"cannot find the {INTERFACES} message files (looked in {[str(d) for d in interface_dirs()]})")


def message_class(msgtype: str) -> Any:
    """'pkg/msg/Type' -> its generated Python class (needs the package installed, not rclpy)."""
    parts = msgtype.split("/")
    if len(parts) != 3:
        raise BagError(f"message type must look like pkg/msg/Type, got {msgtype!r}")
    try:
        return getattr(importlib.import_module(f"{parts[0]}.{parts[1]}"), parts[2])
    except (ImportError, AttributeError) as exc:
        raise BagError(f"message type {msgtype} is not installed: {exc}") from exc


def resolve_topic(pattern: str, namespace: str) -> str:
    """An absolute topic name (or pattern) from a relative one, like rclpy resolves names."""
    if pattern.startswith("/"):
        return pattern
    ns = namespace.rstrip("/")
    return f"{ns}/{pattern}" if ns else f"/{pattern}"


def select_topics(available: Iterable[str], patterns: Iterable[str], namespace: str) -> list[str]:
    """The available absolute topic names matching any pattern (relative patterns resolved in
    `namespace`)."""
    absolute = [resolve_topic(p, namespace) for p in patterns]
    return sorted(t for t in available if any(fnmatch.fnmatchcase(t, p) for p in absolute))


def is_hidden(topic: str) -> bool:
    """Hidden topics (a name component starting with '_', e.g. action internals) are left out of
    `--all`, as in rosbag2."""
    return any(part.startswith("_") for part in topic.split("/"))


class BagWriter:
    """Appends serialized messages to a new rosbag2 (metadata version 9), one connection per topic."""

    def __init__(self, path: Path | str, storage: str = "mcap", typestore: Typestore | None = None) -> None:
        if storage not in STORAGES:
            raise BagError(f"storage must be one of {list(STORAGES)}, got {storage!r}")
        self.path = Path(path)
        if self.path.exists():
            raise BagError(f"{self.path} exists already; a bag is never overwritten")
        if not self.path.parent.is_dir():
            raise BagError(f"folder {self.path.parent} does not exist")
        self.typestore = typestore or make_typestore()
        self._writer = Writer(
            self.path,
            version=METADATA_VERSION,
            storage_plugin=StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3,
        )
        self._connections: dict[str, object] = {}
        self.counts: dict[str, int] = {}
        try:
            self._writer.open()
        except WriterError as exc:
            raise BagError(str(exc)) from exc

    def add_topic(self, topic: str, msgtype: str, qos: Iterable[TopicQos] = ()) -> None:
        """Register a topic before writing to it; `msgtype` as rclpy names it (pkg/msg/Type)."""
        if topic in self._connections:
            return
        if msgtype not in self.typestore.fielddefs:
            raise BagError(f"{topic}: message type {msgtype} is unknown to the typestore")
        try:
            conn = self._writer.add_connection(
                topic, msgtype, typestore=self.typestore, offered_qos_profiles=[q.to_rosbags() for q in qos]
            )
        except WriterError as exc:
            raise BagError(f"{topic}: {exc}") from exc
        self._connections[topic] = conn
        self.counts[topic] = 0

    def write(self, topic: str, timestamp_ns: int, data: bytes) -> None:
        conn = self._connections.get(topic)
        if conn is None:
            raise BagError(f"topic {topic} was not added to the bag")
        self._writer.write(conn, timestamp_ns, data)  # type: ignore[arg-type]
        self.counts[topic] += 1

    def close(self) -> None:
        """Finish the file and write metadata.yaml (idempotent), naming the ROS 2 distribution
        the messages come from as rosbag2 does (rosbags writes its own name there)."""
        if self._writer.storage is not None:
            self._writer.close()
            meta = self.path / "metadata.yaml"
            text = meta.read_text()
            fixed = re.sub(r"^(\s*ros_distro:) rosbags$", rf"\1 {ROS_DISTRO}", text, count=1, flags=re.MULTILINE)
            if fixed != text:
                part = meta.with_suffix(".yaml.part")
                part.write_text(fixed)
                part.replace(meta)


@dataclass(frozen=True)
class BagTopic:
    name: str
    msgtype: str
    count: int
    qos: TopicQos


@dataclass(frozen=True)
class BagMessage:
    topic: str
    timestamp_ns: int
    data: bytes


class BagReader:
    """Reads a rosbag2 folder (mcap or sqlite3, any metadata version rosbags understands)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        if not (self.path / "metadata.yaml").is_file():
            raise BagError(f"{self.path} is not a rosbag2 folder (no metadata.yaml)")
        try:
            self._reader = Reader(self.path)
            self._reader.open()
        except ReaderError as exc:
            raise BagError(f"{self.path}: {exc}") from exc

    @property
    def start_ns(self) -> int:
        return int(self._reader.start_time)

    @property
    def end_ns(self) -> int:
        return int(self._reader.end_time)

    @property
    def duration_ns(self) -> int:
        return max(0, int(self._reader.duration) - 1) if self._reader.message_count else 0

    def topics(self) -> dict[str, BagTopic]:
        out: dict[str, BagTopic] = {}
        for name, info in self._reader.topics.items():
            offered = [
                TopicQos.from_rosbags(q)
                for c in info.connections
                if isinstance(c.ext, ConnectionExtRosbag2)
                for q in c.ext.offered_qos_profiles
            ]
            out[name] = BagTopic(name, info.msgtype or "", info.msgcount, replay_qos(offered))
        return out

    def messages(self, topics: Iterable[str] | None = None) -> Iterator[BagMessage]:
        """Messages in receive-time order, optionally only those of `topics`."""
        wanted = None if topics is None else set(topics)
        unknown = (wanted or set()) - set(self._reader.topics)
        if unknown:
            raise BagError(f"topics not in the bag: {sorted(unknown)}; it has {sorted(self._reader.topics)}")
        conns = [c for c in self._reader.connections if wanted is None or c.topic in wanted]
        try:
            for conn, t, data in self._reader.messages(connections=conns):
                yield BagMessage(conn.topic, int(t), bytes(data))
        except ReaderError as exc:
            raise BagError(f"{self.path}: {exc}") from exc

    def close(self) -> None:
        self._reader.close()


@dataclass(frozen=True)
class PlaybackClock:
    """Maps bag time to wall time for a replay started at `wall_start_ns`, `rate` times real time."""

    bag_start_ns: int
    wall_start_ns: int
    rate: float = 1.0

    def __post_init__(self) -> None:
        if not self.rate > 0:
            raise BagError(f"rate must be > 0, got {self.rate}")

    def wall_time(self, bag_ns: int) -> int:
        """When a message stamped `bag_ns` in the bag is due."""
        return self.wall_start_ns + round((bag_ns - self.bag_start_ns) / self.rate)

    def bag_time(self, wall_ns: int) -> int:
        """The bag time a replay has reached at `wall_ns` (what /clock publishes)."""
        return self.bag_start_ns + round((wall_ns - self.wall_start_ns) * self.rate)


def parse_remap(rule: str) -> tuple[str, str]:
    """'old:=new' -> ('old', 'new'), refusing anything else with a reason."""
    old, sep, new = rule.partition(":=")
    if not sep or not old.strip() or not new.strip():
        raise BagError(f"remap must look like old:=new, got {rule!r}")
    return old.strip(), new.strip()
