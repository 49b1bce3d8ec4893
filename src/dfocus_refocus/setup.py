"""ament_python package dfocus_refocus: installs with colcon, or with pip into the project venv."""
from setuptools import find_packages, setup

PACKAGE = "dfocus_refocus"

# Executables: name -> module with a main(args=None). Keep in sync with the README's node table.
NODES: dict[str, str] = {
    "refocus": "dfocus_refocus.refocus_node",
    "ui": "dfocus_refocus.ui.ui_node",
}

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    package_data={PACKAGE: ["py.typed"], f"{PACKAGE}.ui": ["static/*"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="dfocus developers",
    maintainer_email="dfocus@example.org",
    description=(
        "Registration, all-in-focus fusion, thin-lens bokeh, refocus action, live preview and web UI for dfocus."
    ),
    license="Apache-2.0",
    entry_points={"console_scripts": [f"{exe} = {mod}:main" for exe, mod in NODES.items()]},
)
