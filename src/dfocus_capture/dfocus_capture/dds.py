"""Apply the project's Fast DDS profile to this process: config/fastdds_profile.xml (large
shared-memory segments, UDPv4 for other hosts), or config/fastdds_udp_profile.xml (UDPv4 only)
where /dev/shm has too little free space for the segments (Docker's default 64 MB).

Fast DDS reads FASTDDS_DEFAULT_PROFILES_FILE when the first participant is created, so calling
`apply_default_profile()` at the top of a node's main(), before rclpy.init, is enough. A profile
the user already set is left alone; DFOCUS_DDS_PROFILE forces a choice (shm, udp, or off for Fast
DDS's built-in defaults).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

PROFILE_NAME = "fastdds_profile.xml"
UDP_PROFILE_NAME = "fastdds_udp_profile.xml"
ENV = "FASTDDS_DEFAULT_PROFILES_FILE"
CHOICE_ENV = "DFOCUS_DDS_PROFILE"
CHOICES = ("auto", "shm", "udp", "off")  # auto: the default
SHM_DIR = Path("/dev/shm")
# Free /dev/shm below which the graph runs on UDP only. One running graph held 1.6-1.9 GB of Fast
# DDS segments (256 MB per participant, filled as images pass); a tmpfs that fills mid-transfer
# ends a process with SIGBUS, and one smaller than a segment makes every participant log errors.
SHM_MIN_FREE_MB = 2048


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


def shm_free_mb(shm_dir: Path = SHM_DIR) -> float:
    """Free space of the shared-memory tmpfs in MB (0 when it is missing or unreadable)."""
    try:
        st = os.statvfs(shm_dir)
    except OSError:
        return 0.0
    return st.f_bavail * st.f_frsize / 2**20


def profile_name(choice: str, free_mb: float) -> str | None:
    """The profile file for a DFOCUS_DDS_PROFILE value (an unknown one counts as auto, see
    `profile_note`) and the free /dev/shm; None: Fast DDS's built-in defaults."""
    choice = choice.lower()
    if choice == "off":
        return None
    if choice == "shm":
        return PROFILE_NAME
    if choice == "udp":
        return UDP_PROFILE_NAME
    return PROFILE_NAME if free_mb >= SHM_MIN_FREE_MB else UDP_PROFILE_NAME


def apply_default_profile() -> Path | None:
    """Point Fast DDS at the project's profile for this host unless one is already configured
    (a parent process that chose one passes it on through the environment)."""
    name = profile_name(os.environ.get(CHOICE_ENV, ""), shm_free_mb())
    if name is None:  # off: Fast DDS's built-in defaults (the benchmark's baseline)
        os.environ.pop(ENV, None)
        return None
    if os.environ.get(ENV):
        return Path(os.environ[ENV])
    path = find_config(name)
    if path is not None:
        os.environ[ENV] = str(path)
    return path


def profile_note(path: Path | None) -> str | None:
    """A warning for the log: an unknown DFOCUS_DDS_PROFILE, or the UDP-only fallback; else None."""
    choice = os.environ.get(CHOICE_ENV, "").lower()
    if choice and choice not in CHOICES:
        return f"{CHOICE_ENV}={choice!r} is not one of {list(CHOICES)}: using auto"
    if path is None or path.name != UDP_PROFILE_NAME or choice == "udp":
        return None
    return (f"{SHM_DIR} has {shm_free_mb():.0f} MB free (under {SHM_MIN_FREE_MB} MB): DDS runs on UDP only "
            f"({path}); give the container more (docker run --shm-size=2g) for shared-memory transport")
