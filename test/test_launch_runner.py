"""The YAML launch runner: the parser on its own (substitutions, conditions, include, groups, errors),
then `dfocus launch` on a small talker/listener graph across processes: names, namespace, params,
remaps visible to an rclpy client, respawn after a crash, and shutdown leaving no process and no
shared-memory file of its children behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from dfocus_bringup.launch_file import LaunchFileError, key_matches, load_launch
from dfocus_bringup.launch_runner import RESPAWN_GIVE_UP
from dfocus_bringup.shm_tracker import ShmTracker, shm_files_of


def _write(tmp: Path, name: str, text: str) -> Path:
    path = tmp / name
    path.write_text(textwrap.dedent(text))
    return path


def test_substitutions_conditions_groups_and_includes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DFOCUS_TEST_RATE", "7")
    _write(tmp_path, "inner.launch.yaml", """
        launch:
        - arg: {name: who, description: "required here"}
        - node: {pkg: p, exec: e, name: "inner_$(var who)", namespace: sub}
        """)
    main = _write(tmp_path, "main.launch.yaml", """
        launch:
        - arg: {name: flag, default: "true", description: d}
        - arg: {name: ns, default: top, description: d}
        - let: {name: derived, value: "x_$(var ns)"}
        - set_env: {name: DFOCUS_TEST_SET, value: "$(var derived)"}
        - node:
            pkg: p
            exec: e
            name: a
            if: $(var flag)
            param:
            - {from: "$(dirname)/params.yaml"}
            - {name: rate, value: "$(env DFOCUS_TEST_RATE)"}
            - {name: missing, value: "$(env DFOCUS_NOT_SET fallback)"}
            - {name: list, value: [1, 2]}
            remap: [{from: in, to: "/abs/$(var derived)"}]
        - node: {pkg: p, exec: e, name: b, unless: $(var flag)}
        - group:
          - push-ros-namespace: {namespace: "$(var ns)"}
          - include: {file: "$(dirname)/inner.launch.yaml", arg: [{name: who, value: "$(var derived)"}]}
        - group:
            scoped: false
            children:
            - push_ros_namespace: {namespace: /abs}
        - node: {pkg: p, exec: e, name: c}
        """)
    plan = load_launch(main, {"ns": "lab"})
    assert [n.name for n in plan.nodes] == ["a", "inner_x_lab", "c"]
    a, inner, c = plan.nodes
    assert a.namespace == "/" and inner.namespace == "/lab/sub" and c.namespace == "/abs"
    assert a.params_files == [str(tmp_path / "params.yaml")]
    assert a.params == [("rate", "7"), ("missing", "fallback"), ("list", "[1, 2]")]
    assert a.ros_arguments() == ["--ros-args", "-r", "__node:=a", "--params-file", str(tmp_path / "params.yaml"),
                                 "-p", "rate:=7", "-p", "missing:=fallback", "-p", "list:=[1, 2]",
                                 "-r", "in:=/abs/x_lab"]
    assert plan.env == {"DFOCUS_TEST_SET": "x_lab"}
    assert [n.name for n in load_launch(main, {"flag": "false"}).nodes] == ["b", "inner_x_top", "c"]


def test_includes_parameters_and_arguments_mean_what_ros2_launch_makes_of_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # launch's IncludeLaunchDescription: a relative file is found from the working directory, and
    # the included file is not a scope of its own (its let and pushed namespace stay after it).
    _write(tmp_path, "inc.launch.yaml", """
        launch:
        - let: {name: from_inside, value: "set inside"}
        - push-ros-namespace: {namespace: pushed}
        """)
    main = _write(tmp_path, "main.launch.yaml", """
        launch:
        - arg: {name: x, default: "0.3", description: d}
        - include: {file: inc.launch.yaml, arg: [{name: given, value: "$(var x)"}]}
        - node:
            pkg: p
            exec: e
            name: "n_$(var given)"
            param:
            - {name: literal, value: "0.3"}
            - {name: substituted, value: "$(var x)"}
            - {name: empty, value: "$(env DFOCUS_UNSET_FOR_TEST '')"}
            - {name: typed, value: 0.3}
            - {name: flag, value: true}
            - {name: text, value: "$(var from_inside)"}
        """)
    monkeypatch.chdir(tmp_path)
    plan = load_launch(main, {"undeclared": "1"})
    (node,) = plan.nodes
    assert node.name == "n_0.3" and node.namespace == "/pushed"
    # launch_ros keeps a literal string a string and reads a substituted one as YAML.
    assert node.params == [("literal", "'0.3'"), ("substituted", "0.3"), ("empty", "''"), ("typed", "0.3"),
                           ("flag", "true"), ("text", "set inside")]
    # Undeclared arguments are ignored, as ros2 launch does; dfocus launch names them.
    assert plan.ignored_args == ["undeclared"]
    monkeypatch.chdir(tmp_path.parent)
    with pytest.raises(LaunchFileError, match="cannot read launch file"):
        load_launch(main)


@pytest.mark.parametrize(
    ("text", "args", "reason"),
    [
        ("- nodes: {pkg: p, exec: e}", {}, "unknown tag 'nodes'"),
        ("- node: {pkg: p, exec: e, colour: red}", {}, r"unknown attribute\(s\) \['colour'\]"),
        ("- node: {pkg: p, exec: e, param: [{name: a, value: 1, type: int}]}", {}, "unknown attribute"),
        ("- node: {exec: e}", {}, "node needs `pkg`"),
        ("- node: {pkg: p, exec: e, name: $(var nope)}", {}, r"\$\(var nope\) is not set"),
        ("- node: {pkg: p, exec: e, name: $(eval 1)}", {}, "unsupported substitution"),
        ("- node: {pkg: p, exec: e, if: maybe}", {}, "expected true/false"),
        ("- arg: {name: x}", {}, "'x' is required"),
        ("- arg: {name: x, default: a, choice: [{value: a}]}", {"x": "b"}, "not one of"),
        ("- include: {file: nowhere.launch.yaml}", {}, "cannot read launch file"),
        ("- include: {file: x.launch.yaml, arg: [{name: a, value: true}]}", {},
         r"include: arg: attribute 'value' must be a YAML str"),
        ("- node: {pkg: p, exec: e, remap: [{from: a, to: 1}]}", {}, r"node: remap: attribute 'to' must be a YAML str"),
        # The YAML frontend's types, as `ros2 launch` checks them (launch_yaml Entity.get_attr).
        ("- node: {pkg: p, exec: e, respawn: true}", {}, r"'respawn' must be a YAML str, got bool"),
        ("- node: {pkg: p, exec: e, if: true}", {}, r"'if' must be a YAML str, got bool"),
        ("- node: {pkg: p, exec: e, respawn_delay: '1.0'}", {}, r"'respawn_delay' must be a YAML float, got str"),
        ("- node: {pkg: p, exec: e, respawn_delay: 1}", {}, r"'respawn_delay' must be a YAML float, got int"),
        ("- group: {scoped: 'false', children: []}", {}, r"'scoped' must be a YAML bool, got str"),
        ("- set-env: {name: X, value: '1'}", {}, r"unknown tag 'set-env'"),
        ("- arg: {name: x, default: 0.3}", {}, r"'default' must be a YAML str, got float"),
    ],
)
def test_bad_files_are_errors(tmp_path: Path, text: str, args: dict[str, str], reason: str) -> None:
    path = _write(tmp_path, "bad.launch.yaml", "launch:\n" + text + "\n")
    with pytest.raises(LaunchFileError, match=reason):
        load_launch(path, args)


def test_params_file_key_matching() -> None:
    assert key_matches("/**/depth", "/dfocus/depth") and key_matches("/**/depth", "/depth")
    assert key_matches("/dfocus/depth", "/dfocus/depth") and key_matches("/dfocus/*", "/dfocus/depth")
    assert not key_matches("/depth", "/dfocus/depth")  # a bare `depth:` key misses namespaced nodes


def test_cli_exit_codes(tmp_path: Path) -> None:
    bad = _write(tmp_path, "bad.launch.yaml", "launch:\n- nodez: {}\n")
    run = subprocess.run([sys.executable, "-m", "dfocus_bringup.cli", "launch", str(bad)], capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 2 and "unknown tag 'nodez'" in run.stderr
    missing = _write(tmp_path, "m.launch.yaml", "launch:\n- node: {pkg: dfocus_capture, exec: no_such_node}\n")
    run = subprocess.run([sys.executable, "-m", "dfocus_bringup.cli", "launch", str(missing)], capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 2 and "'no_such_node' of package 'dfocus_capture' not found" in run.stderr


TALKER = """#!{python}
import signal, sys
import rclpy
from std_msgs.msg import String
rclpy.init()
node = rclpy.create_node("talker_default_name")
if node.declare_parameter("ignore_signals", False).value:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
text = node.declare_parameter("greeting", "unset").value + "/" + node.declare_parameter("suffix", "unset").value
pub = node.create_publisher(String, "chatter", 10)
node.create_timer(0.1, lambda: pub.publish(String(data=text)))
try:
    rclpy.spin(node)
except BaseException:
    pass
"""


@pytest.fixture
def prefix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An install prefix with lib/demo_pkg/talker, found through AMENT_PREFIX_PATH like colcon's."""
    exe = tmp_path / "prefix" / "lib" / "demo_pkg" / "talker"
    exe.parent.mkdir(parents=True)
    exe.write_text(TALKER.format(python=sys.executable))
    exe.chmod(0o755)
    paths = [str(tmp_path / "prefix"), *filter(None, os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep))]
    monkeypatch.setenv("AMENT_PREFIX_PATH", os.pathsep.join(paths))
    return tmp_path / "prefix"


def _pids(log: str, label: str) -> list[int]:
    return [int(p) for p in re.findall(rf"\[INFO\] {label}: started, pid (\d+)", log)]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie waiting for its parent is gone for our purpose.
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


@pytest.mark.ros
def test_runner_starts_processes_respawns_and_cleans_up(
    tmp_path: Path, prefix: Path, node_processes: Any, wait: Any, rclpy_context: Any, spin: Any
) -> None:
    import rclpy
    from std_msgs.msg import String

    _write(tmp_path, "talk.yaml", """
        /**/talker:
          ros__parameters:
            greeting: from_file
        """)
    launch = _write(tmp_path, "demo.launch.yaml", """
        launch:
        - arg: {name: ns, default: demo, description: namespace}
        - group:
          - push-ros-namespace: {namespace: $(var ns)}
          - node:
              pkg: demo_pkg
              exec: talker
              name: talker
              respawn: "true"
              respawn_delay: 0.2
              param: [{from: "$(dirname)/talk.yaml"}, {name: suffix, value: cli}]
          - node:
              pkg: demo_pkg
              exec: talker
              name: stubborn
              param: [{name: ignore_signals, value: true}]
              remap: [{from: chatter, to: stubborn_chatter}]
        """)
    tracker = ShmTracker()
    runner = node_processes.python("dfocus_bringup.cli", "launch", str(launch), "ns:=t1", name="launch")
    node = rclpy.create_node("launch_probe", context=rclpy_context)
    got: list[str] = []
    node.create_subscription(String, "/t1/chatter", lambda m: got.append(m.data), 10)
    stubborn: list[str] = []
    node.create_subscription(String, "/t1/stubborn_chatter", lambda m: stubborn.append(m.data), 10)
    spin(node)
    wait(lambda: bool(got) and bool(stubborn), 20, "messages from both launched nodes")
    assert got[-1] == "from_file/cli" and stubborn[-1] == "unset/unset"
    # Node names travel in discovery data, apart from the messages: wait for them too.
    wait(lambda: {("talker", "/t1"), ("stubborn", "/t1")} <= set(node.get_node_names_and_namespaces()), 20,
         "both node names in the graph")
    log = node_processes.output(runner)
    (first,) = _pids(log, "talker-1")
    (stubborn_pid,) = _pids(log, "stubborn-1")
    assert first != runner.pid != stubborn_pid
    tracker.observe([first, stubborn_pid])
    assert tracker.used, "the launched nodes use no Fast DDS shared memory?"

    os.kill(first, signal.SIGKILL)  # a crash: respawned, and its segments are left for the runner
    wait(lambda: len(_pids(node_processes.output(runner), "talker-1")) == 2, 10, "the talker to respawn")
    got.clear()
    wait(lambda: bool(got), 20, "messages from the respawned talker")
    second = _pids(node_processes.output(runner), "talker-1")[1]
    tracker.observe([second])
    # Files that were there before this test (left by an earlier one) are not this runner's to remove.
    ours = (tracker.used | shm_files_of(second)) - tracker.before

    # This process leaves the graph first, so that it maps none of the children's segments any more.
    rclpy.shutdown(context=rclpy_context)
    runner.send_signal(signal.SIGINT)
    assert runner.wait(timeout=10) == 0, node_processes.output(runner)
    log = node_processes.output(runner)
    # `stubborn` ignores both, and the log names it.
    assert "sending SIGTERM to 1 process(es) still running: stubborn-1" in log and "sending SIGKILL" in log
    assert not any(_alive(p) for p in (first, second, stubborn_pid))
    leftover = {n for n in ours if (Path("/dev/shm") / n).exists()}
    # Only files that some other live process still uses may stay.
    in_use = set().union(*(shm_files_of(int(p.name)) for p in Path("/proc").iterdir() if p.name.isdigit()))
    assert leftover <= in_use, f"left behind: {sorted(leftover - in_use)}"


def test_cleanup_can_discount_the_exiting_process(tmp_path: Path) -> None:
    """A port segment only this (exiting) process still maps is kept by a plain cleanup and
    removed when this process's mappings are discounted."""
    import mmap

    tracker = ShmTracker(shm=tmp_path)
    port = tmp_path / "fastdds_port7000"
    port.write_bytes(b"\0" * 4096)
    with open(port, "r+b") as f, mmap.mmap(f.fileno(), 4096) as mapped:
        tracker.observe([os.getpid()])
        assert tracker.used == {port.name}
        assert tracker.cleanup() == [] and port.exists()
        assert tracker.cleanup(exiting=[os.getpid()]) == [port.name] and not port.exists()
        assert mapped[:1] == b"\0"  # the mapping itself stays valid


def test_a_stale_mapping_of_a_reused_port_name_does_not_keep_the_new_file(tmp_path: Path) -> None:
    import mmap

    tracker = ShmTracker(shm=tmp_path)
    port = tmp_path / "fastdds_port7001"
    port.write_bytes(b"\0" * 4096)
    with open(port, "r+b") as f, mmap.mmap(f.fileno(), 4096):
        tracker.observe([os.getpid()])
        port.unlink()  # an earlier cleanup; the port number is then taken again by a new process
        port.write_bytes(b"\0" * 4096)
        assert port.name in shm_files_of(os.getpid(), tmp_path)  # the stale mapping, by name
        assert tracker.cleanup() == [port.name] and not port.exists()


def test_a_node_that_cannot_start_is_not_respawned_forever(tmp_path: Path, prefix: Path) -> None:
    crasher = prefix / "lib" / "demo_pkg" / "crasher"
    crasher.write_text(f"#!{sys.executable}\nimport sys\nsys.exit(3)\n")
    crasher.chmod(0o755)
    launch = _write(tmp_path, "crash.launch.yaml", """
        launch:
        - node: {pkg: demo_pkg, exec: crasher, name: crasher, respawn: "true", respawn_delay: 0.05}
        """)
    run = subprocess.run([sys.executable, "-m", "dfocus_bringup.cli", "launch", str(launch)], capture_output=True,
                         text=True, timeout=120, env=os.environ)
    assert run.returncode == 1, run.stdout + run.stderr
    assert len(_pids(run.stdout, "crasher-1")) == RESPAWN_GIVE_UP
    assert f"crasher-1: not respawning: it exited {RESPAWN_GIVE_UP} times in a row" in run.stdout


@pytest.mark.ros
@pytest.mark.parametrize("how", ["SIGHUP", "SIGKILL"])
def test_no_node_outlives_a_closed_terminal_or_a_killed_runner(tmp_path: Path, prefix: Path, node_processes: Any,
                                                               wait: Any, how: str) -> None:
    launch = _write(tmp_path, "one.launch.yaml", """
        launch:
        - node: {pkg: demo_pkg, exec: talker, name: lonely, namespace: /hup}
        """)
    runner = node_processes.python("dfocus_bringup.cli", "launch", str(launch), name="launch")
    wait(lambda: bool(_pids(node_processes.output(runner), "lonely-1")), 30, "the node to start")
    (pid,) = _pids(node_processes.output(runner), "lonely-1")
    runner.send_signal(getattr(signal, how))
    # SIGHUP: the runner stops its nodes as on Ctrl-C; SIGKILL: the kernel's parent-death signal does.
    wait(lambda: not _alive(pid), 15, f"the node to end after {how} to the runner")
    assert runner.wait(timeout=15) == (0 if how == "SIGHUP" else -signal.SIGKILL), node_processes.output(runner)


def test_a_full_ros2_install_runs_the_file_with_ros2_launch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where ROS 2's launch is importable, `dfocus launch` hands the file to ros2launch's entry point
    (its keyword-only signature); --builtin keeps this runner."""
    import types

    from dfocus_bringup.launch_runner import launch_command

    calls: list[tuple[str, list[str], bool]] = []

    def launch_a_launch_file(*, launch_file_path: str, launch_file_arguments: list[str], noninteractive: bool = False,
                             args: Any = None, option_extensions: Any = None, debug: bool = False) -> int:
        calls.append((launch_file_path, launch_file_arguments, noninteractive))
        return 3

    api = types.ModuleType("ros2launch.api")
    api.launch_a_launch_file = launch_a_launch_file  # type: ignore[attr-defined]
    package = types.ModuleType("ros2launch")
    package.api = api  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "ros2launch", package)
    monkeypatch.setitem(sys.modules, "ros2launch.api", api)
    main = _write(tmp_path, "main.launch.yaml", "launch:\n- nodes: {pkg: p, exec: e}\n")
    assert launch_command([str(main), "x:=1"]) == 3
    assert calls == [(str(main), ["x:=1"], True)]
    assert launch_command([str(main), "--builtin", "x:=1"]) == 2  # this runner: the unknown tag is refused
    assert len(calls) == 1
