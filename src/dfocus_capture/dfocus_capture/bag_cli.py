"""`dfocus record` and `dfocus play BAG`: the bag_recorder / bag_player nodes run in this process,
with options spelled like `ros2 bag record` / `ros2 bag play`."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from dfocus_capture.bag import DEFAULT_TOPICS, STORAGES, BagError, parse_remap


def _ros_args(namespace: str, params: dict[str, object], remaps: Sequence[tuple[str, str]] = ()) -> list[str]:
    args = ["--ros-args", "-r", f"__ns:={namespace}"]
    for name, value in params.items():
        # JSON is valid YAML: lists and strings with '*' or ':' survive the ROS argument parser.
        args += ["-p", f"{name}:={json.dumps(value)}"]
    for old, new in remaps:
        args += ["-r", f"{old}:={new}"]
    return args


def record_command(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="dfocus record", description="Record topics of the running graph to rosbag2.")
    p.add_argument("topics", nargs="*",
                   help=f"topic patterns, relative to --namespace (default: {' '.join(DEFAULT_TOPICS)})")
    p.add_argument("-a", "--all", action="store_true", help="record every non-hidden topic")
    p.add_argument("-o", "--output", default="", help="bag folder to create (default: rosbag2_<date>-<time>)")
    p.add_argument("-s", "--storage", choices=STORAGES, default="mcap")
    p.add_argument("--namespace", default="/dfocus", help="namespace relative topic patterns resolve in")
    p.add_argument("-d", "--duration", type=float, default=0.0, help="stop after this many seconds")
    a = p.parse_args(argv)
    if a.duration < 0:
        p.error("--duration must be >= 0")
    from dfocus_capture import bag_recorder_node

    params: dict[str, object] = {"output": a.output, "storage": a.storage, "all": a.all,
                                 "max_duration_s": float(a.duration)}
    if a.topics:
        params["topics"] = list(a.topics)
    return bag_recorder_node.main(_ros_args(a.namespace, params))


def play_command(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="dfocus play", description="Replay a rosbag2 into the graph.")
    p.add_argument("bag", help="rosbag2 folder")
    p.add_argument("-r", "--rate", type=float, default=1.0, help="playback speed factor")
    p.add_argument("-l", "--loop", action="store_true")
    p.add_argument("--clock", action="store_true", help="publish /clock for use_sim_time nodes")
    p.add_argument("--clock-hz", type=float, default=100.0)
    p.add_argument("--topics", nargs="+", default=["/*"], help="topic patterns to play (default: all)")
    p.add_argument("--remap", nargs="+", default=[], metavar="OLD:=NEW", help="rename topics")
    p.add_argument("--delay", type=float, default=0.0, help="seconds to wait before playing")
    p.add_argument("--wait-for-subscribers", type=int, default=0, metavar="N",
                   help="wait (up to 10 s) until every topic has N subscribers")
    p.add_argument("--keep-alive", action="store_true", help="stay up at the end (latched topics keep serving)")
    a = p.parse_args(argv)
    if not a.rate > 0:
        p.error("--rate must be > 0")
    try:
        remaps = [parse_remap(r) for r in a.remap]
    except BagError as exc:
        p.error(str(exc))
    from dfocus_capture import bag_player_node

    params = {"bag": a.bag, "rate": float(a.rate), "loop": a.loop, "clock": a.clock,
              "clock_hz": float(a.clock_hz), "topics": list(a.topics), "start_delay_s": float(a.delay),
              "wait_for_subscribers": a.wait_for_subscribers, "keep_alive": a.keep_alive}
    return bag_player_node.main(_ros_args("/", params, remaps))
