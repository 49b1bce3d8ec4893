"""The ROS 2 YAML launch format, evaluated into a flat list of node processes.

`launch`/`launch_ros` are not installable here, so `dfocus launch` reads the same files itself. The
subset supported is what a node graph needs: arg, let, set_env, node (pkg, exec, name,
namespace, param, remap, ros_args, args, env, output, respawn, respawn_delay), include (file, arg),
group (list or {scoped, children}) with push-ros-namespace / push_ros_namespace, `if` / `unless`
on every action, and the substitutions $(var), $(env), $(dirname), $(find-pkg-share). Anything
else is a LaunchFileError naming the file and the entry, never silently ignored.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

DFOCUS_PACKAGES = ("dfocus_capture", "dfocus_depth", "dfocus_refocus", "dfocus_bringup", "dfocus_interfaces")
REPO = Path(__file__).resolve().parents[3]


class LaunchFileError(ValueError):
    """A launch file cannot be read or evaluated (unknown tag or attribute, bad substitution...)."""


@dataclass(frozen=True)
class ArgDecl:
    name: str
    default: str | None
    description: str
    choices: tuple[str, ...] = ()


@dataclass
class NodeLaunch:
    """One node process: what launch_ros would start for a `node` entry."""

    package: str
    executable: str
    name: str | None
    namespace: str
    params_files: list[str] = field(default_factory=list)
    params: list[tuple[str, str]] = field(default_factory=list)
    remaps: list[tuple[str, str]] = field(default_factory=list)
    extra_ros_args: list[str] = field(default_factory=list)
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    respawn: bool = False
    respawn_delay: float = 0.0
    output: str = "screen"
    source: str = ""

    @property
    def label(self) -> str:
        return self.name or self.executable

    def ros_arguments(self) -> list[str]:
        """`--ros-args ...` exactly as launch_ros passes them."""
        out = ["--ros-args"]
        if self.name:
            out += ["-r", f"__node:={self.name}"]
        if self.namespace != "/":
            out += ["-r", f"__ns:={self.namespace}"]
        for f in self.params_files:
            out += ["--params-file", f]
        for k, v in self.params:
            # rcl reads the value as YAML; an empty one is a parse error, not an empty string.
            out += ["-p", f"{k}:={v if v != '' else chr(39) * 2}"]
        for a, b in self.remaps:
            out += ["-r", f"{a}:={b}"]
        return out + self.extra_ros_args


@dataclass
class LaunchPlan:
    nodes: list[NodeLaunch]
    env: dict[str, str]
    args: dict[str, ArgDecl]
    ignored_args: list[str] = field(default_factory=list)  # command-line arguments no file declares


# Tag -> allowed attributes ("if"/"unless" are allowed everywhere).
TAGS: dict[str, set[str]] = {
    "arg": {"name", "default", "description", "choice"},
    "let": {"name", "value"},
    "set_env": {"name", "value"},
    "include": {"file", "arg"},
    "group": {"scoped", "children"},
    "push-ros-namespace": {"namespace"},
    "push_ros_namespace": {"namespace"},
    "node": {"pkg", "exec", "name", "namespace", "param", "remap", "ros_args", "args", "env", "output",
             "respawn", "respawn_delay"},
}
CONDITIONS = {"if", "unless"}
# Attributes the YAML frontend reads with a type other than its default, string (launch_yaml's
# Entity.get_attr checks the YAML value's type exactly: 1 is not a float, "false" not a bool).
# Every other scalar attribute must be a YAML string: `respawn: true` or `if: true` are refused by
# `ros2 launch`, so they are refused here too (quote them).
TYPED_ATTRIBUTES: dict[tuple[str, str], type] = {("node", "respawn_delay"): float, ("group", "scoped"): bool}
STRING_ATTRIBUTES: dict[str, set[str]] = {
    "node": {"pkg", "exec", "name", "namespace", "ros_args", "args", "output", "respawn"},
    "arg": {"name", "default", "description"},
    "let": {"name", "value"},
    "set_env": {"name", "value"},
    "include": {"file"},
    "push-ros-namespace": {"namespace"},
    "push_ros_namespace": {"namespace"},
    # the sub-entries (a param's value is read with its YAML type)
    "include: arg": {"name", "value"},
    "node: param": {"name", "from"},
    "node: remap": {"from", "to"},
    "node: env": {"name", "value"},
}

_SUBST = re.compile(r"\$\(")


def package_share(package: str) -> Path:
    """share/<package>. From a source checkout (editable install) the dfocus packages resolve to the
    tree itself: the repository root holds dfocus_bringup's launch/ and config/."""
    if package == "dfocus_bringup" and (REPO / "launch").is_dir() and (REPO / "config").is_dir():
        return REPO
    if package in DFOCUS_PACKAGES and (REPO / "src" / package / "package.xml").is_file():
        return REPO / "src" / package
    prefixes = [*filter(None, os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)), sys.prefix]
    for p in prefixes:
        if (Path(p) / "share" / package).is_dir():
            return Path(p) / "share" / package
    raise LaunchFileError(f"package {package!r} not found in AMENT_PREFIX_PATH or {sys.prefix}")


class _Scope:
    def __init__(self, configs: dict[str, str], namespace: str, env: dict[str, str]) -> None:
        self.configs = configs
        self.namespace = namespace
        self.env = env

    def child(self) -> _Scope:
        return _Scope(dict(self.configs), self.namespace, dict(self.env))


def join_namespace(base: str, ns: str) -> str:
    if not ns:
        return base
    if ns.startswith("/"):
        joined = ns
    else:
        joined = base.rstrip("/") + "/" + ns
    return "/" + "/".join(p for p in joined.split("/") if p)


def parse_bool(text: str, what: str) -> bool:
    low = text.strip().lower()
    if low in ("true", "1"):
        return True
    if low in ("false", "0"):
        return False
    raise LaunchFileError(f"{what}: expected true/false, got {text!r}")


class Evaluator:
    """Evaluates launch files with command-line arguments into a LaunchPlan."""

    def __init__(self, cli_args: dict[str, str]) -> None:
        self.cli_args = dict(cli_args)
        self.nodes: list[NodeLaunch] = []
        self.args: dict[str, ArgDecl] = {}
        self._stack: list[Path] = []

    def run(self, path: Path | str) -> LaunchPlan:
        scope = _Scope(dict(self.cli_args), "/", {})
        self._file(Path(path), scope)
        # ros2 launch sets undeclared arguments as launch configurations and says nothing; they
        # change nothing a file does not read, so they are reported (a typo?) but not refused.
        undeclared = sorted(set(self.cli_args) - set(self.args))
        return LaunchPlan(self.nodes, scope.env, self.args, undeclared)

    # -- files and entries ------------------------------------------------------------------
    def _file(self, path: Path, scope: _Scope) -> None:
        path = path.resolve()
        if path in self._stack:
            raise LaunchFileError(f"{path}: included recursively")
        try:
            doc = yaml.safe_load(path.read_text())
        except OSError as exc:
            raise LaunchFileError(f"cannot read launch file {path}: {exc}") from exc
        except yaml.YAMLError as exc:
            raise LaunchFileError(f"{path}: not valid YAML: {exc}") from exc
        if not isinstance(doc, dict) or set(doc) != {"launch"} or not isinstance(doc["launch"], list):
            raise LaunchFileError(f"{path}: the top level must be `launch:` with a list of actions")
        self._stack.append(path)
        try:
            self._entries(doc["launch"], scope)
        finally:
            self._stack.pop()

    def _where(self) -> str:
        return str(self._stack[-1]) if self._stack else "<launch>"

    def _entries(self, entries: Any, scope: _Scope) -> None:
        if not isinstance(entries, list):
            raise LaunchFileError(f"{self._where()}: expected a list of actions, got {entries!r}")
        for entry in entries:
            if not isinstance(entry, dict) or len(entry) != 1:
                raise LaunchFileError(f"{self._where()}: each action is a one-key mapping, got {entry!r}")
            (tag, body), = entry.items()
            if tag not in TAGS:
                raise LaunchFileError(f"{self._where()}: unknown tag {tag!r} (supported: {sorted(TAGS)})")
            if tag == "group" and isinstance(body, list):
                body = {"children": body}
            if not isinstance(body, dict):
                raise LaunchFileError(f"{self._where()}: {tag} needs a mapping of attributes, got {body!r}")
            unknown = set(body) - TAGS[tag] - CONDITIONS
            if unknown:
                raise LaunchFileError(
                    f"{self._where()}: {tag}: unknown attribute(s) {sorted(unknown)} (allowed: {sorted(TAGS[tag])})")
            self._check_types(body, tag)
            if self._condition(body, scope, tag):
                getattr(self, "_" + tag.replace("-", "_"))(body, scope)

    def _check_types(self, body: dict[str, Any], tag: str) -> None:
        """The YAML frontend's type rules (TYPED_ATTRIBUTES, STRING_ATTRIBUTES, conditions)."""
        for key, value in body.items():
            want = TYPED_ATTRIBUTES.get((tag, key))
            if want is None and (key in CONDITIONS or key in STRING_ATTRIBUTES.get(tag, set())):
                want = str
            if want is not None and type(value) is not want:
                hint = ' (quote it: "..." )' if want is str else ""
                raise LaunchFileError(f"{self._where()}: {tag}: attribute {key!r} must be a YAML {want.__name__}, "
                                      f"got {type(value).__name__} {value!r}{hint}")

    def _condition(self, body: dict[str, Any], scope: _Scope, tag: str) -> bool:
        ok = True
        if "if" in body:
            ok = parse_bool(self.subst(body["if"], scope), f"{self._where()}: {tag}: if")
        if "unless" in body:
            ok = ok and not parse_bool(self.subst(body["unless"], scope), f"{self._where()}: {tag}: unless")
        return ok

    def _require(self, body: dict[str, Any], key: str, tag: str) -> Any:
        if key not in body:
            raise LaunchFileError(f"{self._where()}: {tag} needs `{key}`")
        return body[key]

    def _arg(self, body: dict[str, Any], scope: _Scope) -> None:
        name = str(self._require(body, "name", "arg"))
        default = None if "default" not in body else self.subst(body["default"], scope)
        choices = tuple(self.subst(c["value"] if isinstance(c, dict) else c, scope) for c in body.get("choice", []))
        raw = None if "default" not in body else str(body["default"])
        self.args.setdefault(name, ArgDecl(name, raw, str(body.get("description", "")), choices))
        if name not in scope.configs:
            if default is None:
                raise LaunchFileError(f"{self._where()}: launch argument {name!r} is required (pass {name}:=VALUE)")
            scope.configs[name] = default
        if choices and scope.configs[name] not in choices:
            raise LaunchFileError(f"launch argument {name}={scope.configs[name]!r} is not one of {list(choices)}")

    def _let(self, body: dict[str, Any], scope: _Scope) -> None:
        scope.configs[str(self._require(body, "name", "let"))] = self.subst(self._require(body, "value", "let"), scope)

    def _set_env(self, body: dict[str, Any], scope: _Scope) -> None:
        name = self.subst(self._require(body, "name", "set_env"), scope)
        scope.env[name] = self.subst(self._require(body, "value", "set_env"), scope)

    def _push_ros_namespace(self, body: dict[str, Any], scope: _Scope) -> None:
        scope.namespace = join_namespace(scope.namespace, self.subst(self._require(body, "namespace", "push"), scope))

    def _group(self, body: dict[str, Any], scope: _Scope) -> None:
        scoped = bool(body.get("scoped", True))  # a YAML boolean (_check_types)
        self._entries(self._require(body, "children", "group"), scope.child() if scoped else scope)

    def _include(self, body: dict[str, Any], scope: _Scope) -> None:
        # As launch's IncludeLaunchDescription: a relative path is taken from the working directory
        # (write $(dirname)/... for one next to this file); the arguments are set, in order, as
        # launch configurations of the current scope, and the included file runs in that scope:
        # its args, lets, set_envs and pushed namespace stay after it unless a group scopes them.
        path = Path(self.subst(self._require(body, "file", "include"), scope))
        for a in self._list(body.get("arg", []), "include: arg", {"name", "value"}):
            scope.configs[self.subst(self._require(a, "name", "include: arg"), scope)] = self.subst(
                self._require(a, "value", "include: arg"), scope)
        self._file(path.absolute(), scope)

    def _node(self, body: dict[str, Any], scope: _Scope) -> None:
        s = lambda v: self.subst(v, scope)  # noqa: E731
        node = NodeLaunch(
            package=s(self._require(body, "pkg", "node")),
            executable=s(self._require(body, "exec", "node")),
            name=s(body["name"]) if "name" in body else None,
            namespace=join_namespace(scope.namespace, s(body.get("namespace", ""))),
            env=dict(scope.env),
            respawn=parse_bool(s(body.get("respawn", False)), "node: respawn"),
            output=s(body.get("output", "screen")),
            source=self._where(),
        )
        node.respawn_delay = float(body.get("respawn_delay", 0.0))  # a YAML float (_check_types)
        for p in self._list(body.get("param", []), "node: param", {"name", "value", "from"}):
            if "from" in p:
                node.params_files.append(s(p["from"]))
            else:
                node.params.append((s(self._require(p, "name", "param")), self._param_value(p.get("value"), scope)))
        for r in self._list(body.get("remap", []), "node: remap", {"from", "to"}):
            node.remaps.append((s(self._require(r, "from", "remap")), s(self._require(r, "to", "remap"))))
        for e in self._list(body.get("env", []), "node: env", {"name", "value"}):
            node.env[s(e["name"])] = s(e["value"])
        node.extra_ros_args = shlex.split(s(body.get("ros_args", "")))
        node.args = shlex.split(s(body.get("args", "")))
        self.nodes.append(node)

    def _param_value(self, value: Any, scope: _Scope) -> str:
        """The value as a `-p name:=VALUE` rule, typed as launch_ros types it: a YAML scalar keeps
        its type, a string with substitutions is read as YAML once substituted ("$(var x)" with
        x = 0.3 is a double), and a string without any stays a string ("0.3" is the string '0.3')."""
        typed = [self._typed(v, scope) for v in value] if isinstance(value, list) else self._typed(value, scope)
        return yaml.safe_dump(typed, default_flow_style=True).strip().removesuffix("\n...")

    def _typed(self, v: Any, scope: _Scope) -> Any:
        if not isinstance(v, str) or "$(" not in v:
            return v
        text = self.subst(v, scope)
        typed = yaml.safe_load(text)
        return text if typed is None else typed  # an empty substitution stays the empty string

    def _list(self, items: Any, what: str, allowed: set[str]) -> list[dict[str, Any]]:
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise LaunchFileError(f"{self._where()}: {what} must be a list of mappings")
        for i in items:
            self._check_types(i, what)
            unknown = set(i) - allowed
            if unknown:
                raise LaunchFileError(f"{self._where()}: {what}: unknown attribute(s) {sorted(unknown)}")
        return items

    # -- substitutions ------------------------------------------------------------------------
    def subst(self, value: Any, scope: _Scope) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if not isinstance(value, str):
            return str(value)
        out, i = [], 0
        while True:
            m = _SUBST.search(value, i)
            if m is None:
                out.append(value[i:])
                return "".join(out)
            out.append(value[i : m.start()])
            end = self._closing(value, m.end())
            out.append(self._apply(self.subst(value[m.end() : end], scope), scope))
            i = end + 1

    def _closing(self, text: str, start: int) -> int:
        depth = 1
        for k in range(start, len(text)):
            depth += {"(": 1, ")": -1}.get(text[k], 0)
            if depth == 0:
                return k
        raise LaunchFileError(f"{self._where()}: unclosed substitution in {text!r}")

    def _apply(self, inner: str, scope: _Scope) -> str:
        parts = shlex.split(inner)
        if not parts:
            raise LaunchFileError(f"{self._where()}: empty substitution $()")
        kind, rest = parts[0], parts[1:]
        if kind == "var" and len(rest) == 1:
            if rest[0] not in scope.configs:
                raise LaunchFileError(f"{self._where()}: $(var {rest[0]}) is not set (declare it with `arg` or `let`)")
            return scope.configs[rest[0]]
        if kind == "env" and len(rest) in (1, 2):
            if rest[0] in scope.env:
                return scope.env[rest[0]]
            if rest[0] in os.environ:
                return os.environ[rest[0]]
            if len(rest) == 2:
                return rest[1]
            raise LaunchFileError(f"{self._where()}: environment variable {rest[0]} is not set")
        if kind == "dirname" and not rest:
            return str(self._stack[-1].parent)
        if kind == "find-pkg-share" and len(rest) == 1:
            return str(package_share(rest[0]))
        raise LaunchFileError(f"{self._where()}: unsupported substitution $({inner})")


def params_file_keys(path: Path | str) -> list[str]:
    """The node-name keys of a ROS 2 params file (nested namespaces joined), e.g. ['/**/depth']."""
    try:
        doc = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise LaunchFileError(f"cannot read params file {path}: {exc}") from exc
    keys: list[str] = []

    def walk(d: Any, prefix: str) -> None:
        if not isinstance(d, dict):
            return
        for k, v in d.items():
            if k == "ros__parameters":
                keys.append(prefix or "/")
            else:
                walk(v, f"{prefix}/{str(k).strip('/')}")

    walk(doc, "")
    return keys


def key_matches(key: str, fqn: str) -> bool:
    """rcl's rule: a params-file key matches a fully qualified node name, `/**` standing for any
    namespace and `*` for one name component. A bare `name:` only matches a node in `/`."""
    pattern = "^" + re.escape(key).replace(r"/\*\*", "(/[^/]+)*").replace(r"\*", "[^/]+") + "$"
    return re.match(pattern, fqn) is not None


def parse_cli_args(items: list[str]) -> dict[str, str]:
    """['name:=value', ...] -> dict, refusing anything else."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition(":=")
        if not sep or not name:
            raise LaunchFileError(f"launch arguments look like name:=value, got {item!r}")
        out[name] = value
    return out


def load_launch(path: Path | str, cli_args: dict[str, str] | None = None) -> LaunchPlan:
    return Evaluator(cli_args or {}).run(path)
