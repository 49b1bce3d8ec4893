"""ament_python package dfocus_depth: installs with colcon, or with pip into the project venv."""
from setuptools import find_packages, setup

PACKAGE = "dfocus_depth"

# Executables: name -> module with a main(args=None). Keep in sync with the README's node table.
NODES: dict[str, str] = {"depth": "dfocus_depth.depth_node"}

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    package_data={PACKAGE: ["py.typed", "weights/*.pt", "weights/*.json"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="dfocus developers",
    maintainer_email="dfocus@example.org",
    description=(
        "Multi-view depth CNN (trained here), depth node, point clouds and 3D model export for dfocus."
    ),
    license="Apache-2.0",
    entry_points={"console_scripts": [f"{exe} = {mod}:main" for exe, mod in NODES.items()]},
)
