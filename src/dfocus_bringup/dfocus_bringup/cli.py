"""The `dfocus` command: one entry point, subcommands implemented next to the code they drive.

Each subcommand is `module:function` taking argv (list[str]) and returning an exit status; the
module is imported only when its subcommand runs, so `dfocus --help` stays instant and
`dfocus play` does not import torch.
"""

from __future__ import annotations

import importlib
import sys

from dfocus_capture.allocator import keep_freed_memory

COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("dfocus_bringup.run_demo:run_command", "the whole graph on the simulated array; writes out/"),
    "launch": ("dfocus_bringup.launch_runner:launch_command", "run a ROS 2 YAML launch file"),
    "depth": ("dfocus_depth.cli:depth_command", "depth map (.npy, metres) from a burst of image files"),
    "refocus": ("dfocus_refocus.cli:refocus_command", "refocused image from a burst of image files"),
    "all-in-focus": ("dfocus_refocus.cli:all_in_focus_command", "all-in-focus fusion of a burst"),
    "simulate": ("dfocus_capture.sim.cli:simulate_command", "render a simulated burst with ground truth"),
    "record": ("dfocus_capture.bag_cli:record_command", "record topics of the running graph to rosbag2"),
    "play": ("dfocus_capture.bag_cli:play_command", "replay a rosbag2 into the graph"),
    "train": ("dfocus_depth.cli:train_command", "train the depth CNN on simulator data"),
    "eval-depth": ("dfocus_depth.cli:eval_command", "depth accuracy against StereoSGBM"),
    "adapt": ("dfocus_depth.cli:adapt_command", "fine-tune the depth CNN on your own unlabelled bursts"),
    "bench": ("dfocus_bringup.bench:bench_command", "speed/memory/quality benchmarks -> bench/results.md"),
    "soak": ("dfocus_bringup.soak:soak_command", "capture -> refocus cycles for a while; memory, losses -> bench/soak"),
}


def usage() -> str:
    width = max(len(c) for c in COMMANDS)
    lines = ["usage: dfocus COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "dfocus COMMAND --help shows a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        sys.stdout.write(usage() + "\n")
        return 0
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        sys.stderr.write(f"dfocus: unknown command {name!r}\n\n{usage()}\n")
        return 2
    keep_freed_memory()
    module_name, func_name = COMMANDS[name][0].split(":")
    func = getattr(importlib.import_module(module_name), func_name)
    return int(func(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
