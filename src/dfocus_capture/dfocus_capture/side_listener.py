"""A helper node on an executor thread of its own, for subscriptions that must be served while the
owner's executor may be busy (a blocking service callback) or that are too frequent for rclpy's
multi-threaded executor (it costs several times more CPU per message than a single-threaded one).
"""

from __future__ import annotations

import threading

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.impl.implementation_singleton import rclpy_implementation
from rclpy.node import Node


class SideListener:
    """`node` is named `<owner>_<suffix>` in the owner's namespace; create subscriptions on it, then
    start(). Global arguments are not applied: `-r __node:=x` would rename it too (two nodes of one
    name), so the namespace is passed explicitly."""

    def __init__(self, owner: Node, suffix: str) -> None:
        self.node = rclpy.create_node(f"{owner.get_name()}_{suffix}", namespace=owner.get_namespace(),
                                      context=owner.context, start_parameter_services=False,
                                      use_global_arguments=False)
        self._executor = SingleThreadedExecutor(context=owner.context)
        self._executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, name=f"{suffix}_listener", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _spin(self) -> None:
        try:
            self._executor.spin()
        except ExternalShutdownException:  # the context went down (Ctrl-C): nothing to report
            pass
        except rclpy_implementation.RCLError:
            # Ctrl-C shut the context down while this thread was building its wait set: also the end.
            if self.node.context.ok():
                raise

    def close(self) -> None:
        self._executor.shutdown(timeout_sec=2.0)
        if self._thread.is_alive():
            self._thread.join(timeout=2.0)
        self.node.destroy_node()
