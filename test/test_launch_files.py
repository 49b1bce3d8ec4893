"""Every launch file in launch/ evaluates with the dfocus launch runner, for its defaults and its
variants, and everything it names exists: executables (console scripts of the dfocus packages),
params files, and a section in each params file that applies to the node it is given to."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import yaml

from dfocus_bringup.launch_file import load_launch
from dfocus_bringup.launch_runner import check_plan, params_warnings

LAUNCH = Path(__file__).resolve().parents[1] / "launch"
FILES = sorted(LAUNCH.glob("*.launch.yaml"))
# Required arguments of each file (those without a default).
REQUIRED = {
    "dfocus_folder.launch.yaml": {"folder": "/tmp/bracket", "calibration": "config/camera_array.yaml"},
    "dfocus_v4l2.launch.yaml": {"calibration": "config/camera_array.yaml"},
    "dfocus_replay.launch.yaml": {"bag": "/tmp/session"},
}
# Every optional node switched on, so that its executable and params are checked too.
ALL_ON = {"ui": "true", "foxglove": "true", "record": "true"}


def test_the_expected_files_are_there() -> None:
    names = {f.name for f in FILES}
    assert {"dfocus.launch.yaml", "dfocus_folder.launch.yaml", "dfocus_v4l2.launch.yaml",
            "dfocus_replay.launch.yaml"} <= names


@pytest.mark.parametrize("path", FILES, ids=[f.name for f in FILES])
def test_launch_file_evaluates_and_names_what_exists(path: Path) -> None:
    args = REQUIRED.get(path.name, {})
    plan = load_launch(path, args)
    declared = set(plan.args)
    plan = load_launch(path, {**args, **{k: v for k, v in ALL_ON.items() if k in declared}})
    assert plan.nodes, "launches nothing"
    for a in plan.args.values():
        assert a.description, f"argument {a.name} has no description"
    assert check_plan(plan) == []
    assert params_warnings(plan) == []


def test_full_graph_runs_every_node_in_the_namespace() -> None:
    plan = load_launch(LAUNCH / "dfocus.launch.yaml", {"foxglove": "true", "record": "true"})
    by_name = {n.name: n for n in plan.nodes}
    assert set(by_name) == {"camera_array", "imu", "actuators", "array_tf", "sequencer", "depth", "refocus", "ui",
                            "foxglove_bridge", "bag_recorder"}
    assert ("parent_frame", "base_link") in by_name["array_tf"].params
    assert {n.namespace for n in plan.nodes} == {"/dfocus"}
    assert ("backend", "sim") in by_name["camera_array"].params
    assert by_name["camera_array"].respawn and by_name["camera_array"].respawn_delay == 2.0
    # The depth sweep starts where the simulated scenes do; real cameras keep the calibration's reach.
    assert ("near_m", "0.3") in by_name["depth"].params
    v4l2 = load_launch(LAUNCH / "dfocus_v4l2.launch.yaml", REQUIRED["dfocus_v4l2.launch.yaml"])
    assert ("near_m", "0.0") in next(n for n in v4l2.nodes if n.name == "depth").params
    replay = load_launch(LAUNCH / "dfocus_replay.launch.yaml", {"bag": "/tmp/b", "namespace": "lab"})
    assert {n.name for n in replay.nodes} == {"bag_player", "depth", "refocus"}
    assert all(("use_sim_time", "true") in n.params for n in replay.nodes if n.name != "bag_player")
    assert {n.namespace for n in replay.nodes} == {"/lab"}


def _declared_params(node_launch) -> set[str]:
    """The names a node declares (its module's PARAMS specs); rclpy adds use_sim_time."""
    from importlib.metadata import entry_points

    scripts = {e.name: e.value for e in entry_points(group="console_scripts")}
    module = importlib.import_module(scripts[node_launch.executable].split(":")[0])
    return {spec.name for spec in module.PARAMS} | {"use_sim_time"}


@pytest.mark.parametrize("path", FILES, ids=[f.name for f in FILES])
def test_every_parameter_set_is_declared_by_its_node(path: Path) -> None:
    """ROS 2 silently ignores overrides of undeclared parameters: a misspelt name in a launch or
    params file would never take effect, so every one must be a parameter the node declares."""
    args = REQUIRED.get(path.name, {})
    declared_args = set(load_launch(path, args).args)
    plan = load_launch(path, {**args, **{k: v for k, v in ALL_ON.items() if k in declared_args}})
    for node in plan.nodes:
        known = _declared_params(node)
        inline = {k for k, _ in node.params}
        from_files: set[str] = set()
        for f in node.params_files:
            for key, section in (yaml.safe_load(Path(f).read_text()) or {}).items():
                if key.rsplit("/", 1)[-1] == node.name:
                    from_files |= set(section.get("ros__parameters", {}))
        unknown = (inline | from_files) - known
        assert not unknown, f"{path.name}: {node.name} does not declare {sorted(unknown)}"


@pytest.mark.parametrize("path", FILES, ids=[f.name for f in FILES])
def test_every_inline_parameter_has_the_type_its_node_declares(path: Path) -> None:
    """rclpy refuses an override of another type (a string "true" for the bool use_sim_time stops
    the node), and launch_ros passes a quoted literal as a string: each inline value, read as the
    node reads its `-p` rule, must have the declared type."""
    args = REQUIRED.get(path.name, {})
    declared_args = set(load_launch(path, args).args)
    plan = load_launch(path, {**args, **{k: v for k, v in ALL_ON.items() if k in declared_args}})
    for node in plan.nodes:
        from importlib.metadata import entry_points

        scripts = {e.name: e.value for e in entry_points(group="console_scripts")}
        module = importlib.import_module(scripts[node.executable].split(":")[0])
        declared = {spec.name: type(spec.default) for spec in module.PARAMS} | {"use_sim_time": bool}
        for name, rule in node.params:
            value = yaml.safe_load(rule)
            assert type(value) is declared[name], (
                f"{path.name}: {node.name} {name}:={rule} is a {type(value).__name__}, declared "
                f"{declared[name].__name__}")


def _node_bodies(tree: object) -> list[dict[str, object]]:
    """Every `node:` body anywhere in a parsed launch YAML tree (inside groups and conditions too)."""
    found: list[dict[str, object]] = []
    if isinstance(tree, dict):
        for key, value in tree.items():
            if key == "node" and isinstance(value, dict):
                found.append(value)
            found += _node_bodies(value)
    elif isinstance(tree, list):
        for item in tree:
            found += _node_bodies(item)
    return found


@pytest.mark.parametrize("path", FILES, ids=[f.name for f in FILES])
def test_attributes_have_the_types_the_ros2_launch_frontend_requires(path: Path) -> None:
    # launch's YAML frontend reads `respawn` as a string (a YAML boolean is a TypeError under
    # `ros2 launch`) and `respawn_delay` as a float.
    for body in _node_bodies(yaml.safe_load(path.read_text())):
        if "respawn" in body:
            assert isinstance(body["respawn"], str), f"{path.name}: node {body.get('name')}: respawn must be quoted"
        if "respawn_delay" in body:
            assert isinstance(body["respawn_delay"], float), f"{path.name}: respawn_delay must be a float"
