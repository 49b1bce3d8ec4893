"""The dfocus command line, YAML launch runner, Foxglove bridge and benchmarks."""
