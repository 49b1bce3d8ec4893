"""The main() shared by the dfocus nodes: the project's DDS profile, the allocator kept from
returning image-sized blocks to the kernel (`allocator`), rclpy init, start-up errors
reported as one fatal log line with exit status 1 (not a traceback), a multi-threaded executor,
and a shutdown that closes the node's workers before destroying it and its action entities."""

from __future__ import annotations

from collections.abc import Callable

import rclpy
from rclpy.action import ActionClient, ActionServer
from rclpy.exceptions import InvalidParameterValueException, ParameterException
from rclpy.executors import Executor, ExternalShutdownException, MultiThreadedExecutor, SingleThreadedExecutor
from rclpy.impl.implementation_singleton import rclpy_implementation
from rclpy.node import Node

from dfocus_capture.allocator import keep_freed_memory
from dfocus_capture.dds import apply_default_profile, profile_note

# What a node may raise while starting: bad parameters (ValueError and its typed subclasses such
# as CalibrationError), unusable devices or ports (OSError, RuntimeError such as DriverError).
STARTUP_ERRORS: tuple[type[BaseException], ...] = (
    ValueError, OSError, RuntimeError, ParameterException, InvalidParameterValueException,
)


def destroy_with_actions(node: Node) -> None:
    """Node.destroy_node, after the node's action clients and servers: destroy_node leaves those,
    and each keeps the process's DDS participant alive, announcing itself to (and recreating the
    /dev/shm ports of) processes that have left."""
    for w in list(node.waitables):
        if isinstance(w, (ActionClient, ActionServer)):
            w.destroy()
    node.destroy_node()


def run_node(name: str, factory: Callable[[], Node], args: list[str] | None = None,
             num_threads: int | None = None) -> int:
    """Create the node with `factory` and spin it until shutdown; returns the exit status.

    num_threads=1 selects a SingleThreadedExecutor (nodes whose long work runs on threads of
    their own; rclpy's multi-threaded executor can spin hot while a callback blocks)."""
    note = profile_note(apply_default_profile())
    keep_freed_memory()
    logger = rclpy.logging.get_logger(name)
    if note:
        logger.warning(note)
    try:
        rclpy.init(args=args)
    except rclpy_implementation.RCLError as exc:  # malformed --ros-args or params file
        logger.fatal(f"cannot start: {exc}")
        return 2
    try:
        node = factory()
    except STARTUP_ERRORS as exc:
        logger.fatal(f"cannot start: {exc}")
        rclpy.try_shutdown()
        return 1
    except KeyboardInterrupt:  # Ctrl-C while starting (the depth node loads its network): a clean stop
        logger.info("interrupted while starting")
        rclpy.try_shutdown()
        return 0
    executor: Executor = (SingleThreadedExecutor() if num_threads == 1
                          else MultiThreadedExecutor(num_threads=num_threads))
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        close = getattr(node, "close", None)
        if callable(close):
            close()
        executor.shutdown(timeout_sec=5.0)
        destroy_with_actions(node)
        rclpy.try_shutdown()
    return 0
