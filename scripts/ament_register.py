"""Give the editable pip install what a colcon install has: each ament_python package registered in
the ament index, its data files under share/<package>, and its executables in lib/<package>/, so
that `ament_index_python`, launch_ros and `ros2 run` find them (pip's editable mode skips both
`data_files` and setup.cfg's `install_scripts`).

Usage: python scripts/ament_register.py PREFIX src/dfocus_capture src/dfocus_depth ...
The rules are each package's own setup.py (read by running it with setuptools.setup captured), so
they cannot drift from what colcon installs. Data files are linked, not copied (edits show at once,
as in the editable install); executables are small launchers of the entry points' main().
"""

from __future__ import annotations

import os
import runpy
import sys
from pathlib import Path
from typing import Any

import setuptools


def read_setup(package_dir: Path) -> dict[str, Any]:
    """The keyword arguments the package's setup.py passes to setuptools.setup."""
    captured: dict[str, Any] = {}
    real_setup, cwd = setuptools.setup, Path.cwd()
    setuptools.setup = lambda **kwargs: captured.update(kwargs)  # type: ignore[assignment]
    try:
        os.chdir(package_dir)
        runpy.run_path(str(package_dir / "setup.py"), run_name="__main__")
    finally:
        setuptools.setup = real_setup
        os.chdir(cwd)
    return captured


def launcher(python: str, target: str) -> str:
    module, func = target.split(":")
    return f"#!{python}\nimport sys\nfrom {module} import {func}\nsys.exit({func}())\n"


def register(prefix: Path, package_dir: Path) -> list[Path]:
    setup = read_setup(package_dir)
    name = setup["name"]
    made: list[Path] = []
    for dest, files in setup.get("data_files", []):
        for f in files:
            link = prefix / dest / Path(f).name
            link.parent.mkdir(parents=True, exist_ok=True)
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to((package_dir / f).resolve())
            made.append(link)
    lib = prefix / "lib" / name
    lib.mkdir(parents=True, exist_ok=True)
    for spec in setup.get("entry_points", {}).get("console_scripts", []):
        exe, target = (part.strip() for part in spec.split("="))
        path = lib / exe
        path.write_text(launcher(sys.executable, target))
        path.chmod(0o755)
        made.append(path)
    return made


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        sys.stderr.write(__doc__ or "")
        return 2
    prefix = Path(argv[0]).resolve()
    for package in argv[1:]:
        made = register(prefix, Path(package).resolve())
        sys.stdout.write(f"{Path(package).name}: {len(made)} files in the ament index, share/ and lib/\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
