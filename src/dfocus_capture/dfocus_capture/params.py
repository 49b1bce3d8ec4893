"""Declare node parameters with descriptors (description, range, read-only) and validate on set.

Every dfocus node declares its parameters through `ParamSpec`s so that `ros2 param describe`
shows the same text as the package README, and a set outside the range or choices is refused
with a reason instead of reaching the node's logic.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    SetParametersResult,
)
from rclpy.node import Node
from rclpy.parameter import Parameter


@dataclass(frozen=True)
class ParamSpec:
    name: str
    default: Any
    description: str
    min: float | int | None = None
    max: float | int | None = None
    choices: tuple[Any, ...] | None = None
    read_only: bool = False  # needs a restart to change (e.g. sizes, devices)

    def descriptor(self) -> ParameterDescriptor:
        d = ParameterDescriptor(name=self.name, description=self.description, read_only=self.read_only)
        if self.choices:
            d.additional_constraints = "one of: " + ", ".join(str(c) for c in self.choices)
        if self.min is not None and self.max is not None:
            if isinstance(self.default, bool):
                pass
            elif isinstance(self.default, int):
                d.integer_range = [IntegerRange(from_value=int(self.min), to_value=int(self.max), step=0)]
            elif isinstance(self.default, float):
                d.floating_point_range = [
                    FloatingPointRange(from_value=float(self.min), to_value=float(self.max), step=0.0)
                ]
        return d

    def check(self, value: Any) -> str | None:
        """None when `value` is acceptable, else the reason it is not."""
        if self.choices and value not in self.choices:
            return f"{self.name} must be one of {list(self.choices)}, got {value!r}"
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if value != value:  # NaN
                return f"{self.name} must be a number, got NaN"
            if self.min is not None and value < self.min:
                return f"{self.name} must be >= {self.min}, got {value}"
            if self.max is not None and value > self.max:
                return f"{self.name} must be <= {self.max}, got {value}"
        return None


def declare_params(
    node: Node,
    specs: Iterable[ParamSpec],
    on_change: Callable[[dict[str, Any]], str | None] | None = None,
) -> dict[str, Any]:
    """Declare all specs, validate the launch-time values, and install an on-set validator.

    Returns the current values, a dict kept current on every accepted set (on_change sees the old
    values there). Raises ValueError at start-up when a configured value is invalid.
    `on_change(changes)` may refuse a valid-looking change by returning a reason.
    """
    specs = list(specs)
    by_name = {s.name: s for s in specs}
    values: dict[str, Any] = {}
    for s in specs:
        value = node.declare_parameter(s.name, s.default, s.descriptor()).value
        reason = s.check(value)
        if reason:
            raise ValueError(f"invalid parameter: {reason}")
        values[s.name] = value

    def _validate(params: list[Parameter]) -> SetParametersResult:
        changes: dict[str, Any] = {}
        for p in params:
            spec = by_name.get(p.name)
            if spec is None:
                continue
            if spec.read_only:
                return SetParametersResult(successful=False, reason=f"{p.name} is read-only (restart the node)")
            reason = spec.check(p.value)
            if reason:
                return SetParametersResult(successful=False, reason=reason)
            changes[p.name] = p.value
        if on_change and changes:
            reason = on_change(changes)
            if reason:
                return SetParametersResult(successful=False, reason=reason)
        values.update(changes)
        return SetParametersResult(successful=True)

    node.add_on_set_parameters_callback(_validate)
    return values
