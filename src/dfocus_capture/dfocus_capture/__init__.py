"""Camera array (sim, folder, v4l2), IMU, micro-actuators, Dynamic Focus burst sequencer and
rosbag2 record/replay for dfocus."""
