"""ament_python package dfocus_capture: installs with colcon, or with pip into the project venv."""
from setuptools import find_packages, setup

PACKAGE = "dfocus_capture"

# Executables: name -> module with a main(args=None). Keep in sync with the README's node table.
NODES: dict[str, str] = {
    "bag_recorder": "dfocus_capture.bag_recorder_node",
    "bag_player": "dfocus_capture.bag_player_node",
    "camera_array": "dfocus_capture.camera_array_node",
    "imu": "dfocus_capture.imu_node",
    "actuators": "dfocus_capture.actuators_node",
    "array_tf": "dfocus_capture.array_tf_node",
    "sequencer": "dfocus_capture.sequencer_node",
}

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    package_data={PACKAGE: ["py.typed"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="dfocus developers",
    maintainer_email="dfocus@example.org",
    description=(
        "Camera array (sim, folder, v4l2), IMU, micro-actuators, Dynamic Focus burst sequencer"
        " and rosbag2 record/replay for dfocus."
    ),
    license="Apache-2.0",
    entry_points={"console_scripts": [f"{exe} = {mod}:main" for exe, mod in NODES.items()]},
)
