"""declare_params: values in range are accepted and show in the returned dict, values out of range,
read-only parameters and changes the node refuses are rejected with a reason and leave it as it was."""

from __future__ import annotations

from typing import Any

import pytest

from dfocus_capture.params import ParamSpec, declare_params

pytestmark = pytest.mark.ros

SPECS = [
    ParamSpec("rate", 2.0, "a rate", min=0.0, max=10.0),
    ParamSpec("mode", "a", "a mode", choices=("a", "b")),
    ParamSpec("size", 4, "a size", min=1, max=8, read_only=True),
]


def test_the_values_follow_accepted_sets_only(rclpy_context: Any) -> None:
    import rclpy
    from rclpy.parameter import Parameter

    node = rclpy.create_node("params_test", context=rclpy_context)
    try:
        seen: list[dict[str, Any]] = []

        def on_change(changes: dict[str, Any]) -> str | None:
            seen.append(dict(values))  # the old values, while the change is being decided
            return "mode b needs rate > 5" if changes.get("mode") == "b" and changes.get("rate", 0) <= 5 else None

        values = declare_params(node, SPECS, on_change)
        assert values == {"rate": 2.0, "mode": "a", "size": 4}

        ok = node.set_parameters([Parameter("rate", value=7.5)])[0]
        assert ok.successful and values["rate"] == 7.5 and seen[-1]["rate"] == 2.0

        for param, reason in [(Parameter("rate", value=11.0), "rate"), (Parameter("mode", value="c"), "mode"),
                              (Parameter("size", value=2), "read-only")]:
            res = node.set_parameters([param])[0]
            assert not res.successful and reason in res.reason, res.reason
        res = node.set_parameters_atomically([Parameter("mode", value="b"), Parameter("rate", value=3.0)])
        assert not res.successful and "needs rate > 5" in res.reason
        assert values == {"rate": 7.5, "mode": "a", "size": 4}
        assert node.get_parameter("rate").value == 7.5
    finally:
        node.destroy_node()
