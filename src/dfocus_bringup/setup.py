"""ament_python package dfocus_bringup: installs with colcon, or with pip into the project venv."""
import os
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "dfocus_bringup"
HERE = os.path.dirname(os.path.abspath(__file__))


def workspace_files(*patterns: str) -> list[str]:
    """Files of the workspace root (launch/, config/), relative to this package as setuptools wants."""
    return sorted(f for p in patterns for f in glob(os.path.join("..", "..", p), root_dir=HERE))


# Executables: name -> module with a main(args=None). Keep in sync with the README's node table.
NODES: dict[str, str] = {
    "foxglove_bridge": "dfocus_bringup.foxglove_bridge_node",
}

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    package_data={PACKAGE: ["py.typed"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        # The workspace's launch files and node parameters, where $(find-pkg-share dfocus_bringup) looks.
        (f"share/{PACKAGE}/launch", workspace_files("launch/*.launch.yaml")),
        (f"share/{PACKAGE}/config", workspace_files("config/*.yaml", "config/*.xml", "config/*.json", "config/*.rviz")),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="dfocus developers",
    maintainer_email="dfocus@example.org",
    description="The dfocus command line, YAML launch runner, Foxglove bridge and benchmarks.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": ["dfocus = dfocus_bringup.cli:main"]
        + [f"{exe} = {mod}:main" for exe, mod in NODES.items()]
    },
)
