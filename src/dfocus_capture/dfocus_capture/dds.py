"""Apply the project's Fast DDS profile (config/fastdds_profile.xml) to this process.

Fast DDS reads FASTDDS_DEFAULT_PROFILES_FILE when the first participant is created, so calling
`apply_default_profile()` at the top of a node's main(), before rclpy.init, is enough. A profile
the user already set is left alone.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

PROFILE_NAME = "fastdds_profile.xml"
ENV = "FASTDDS_DEFAULT_PROFILES_FILE"


def config_dirs() -> list[Path]:
    """Where dfocus config files are looked up, first match wins: $DFOCUS_CONFIG_DIR, the source
    checkout (editable install), then share/dfocus_bringup/config of this prefix and of every
    AMENT_PREFIX_PATH entry (colcon install)."""
    dirs: list[Path] = []
    if os.environ.get("DFOCUS_CONFIG_DIR"):
        dirs.append(Path(os.environ["DFOCUS_CONFIG_DIR"]))
    dirs.append(Path(__file__).resolve().parents[3] / "config")
    prefixes = [sys.prefix, *filter(None, os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep))]
    dirs.extend(Path(p) / "share" / "dfocus_bringup" / "config" for p in prefixes)
    return dirs


def find_config(name: str) -> Path | None:
    for d in config_dirs():
        if (d / name).is_file():
            return d / name
    return None


def apply_default_profile() -> Path | None:
    """Point Fast DDS at the project's profile unless one is already configured.

    DFOCUS_DDS_PROFILE=off keeps Fast DDS on its built-in defaults (the benchmark's baseline).
    """
    if os.environ.get("DFOCUS_DDS_PROFILE", "").lower() == "off":
        os.environ.pop(ENV, None)
        return None
    if os.environ.get(ENV):
        return Path(os.environ[ENV])
    path = find_config(PROFILE_NAME)
    if path is not None:
        os.environ[ENV] = str(path)
    return path
