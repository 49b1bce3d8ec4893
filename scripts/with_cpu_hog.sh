#!/usr/bin/env bash
# Run a command while one busy process per core competes for the CPU (`make test-loaded`): the
# suite must hold on a loaded machine, waiting on events, never on timing luck. The hogs run at
# normal priority and are stopped however the command ends.
set -u
hogs=()
trap 'kill "${hogs[@]}" 2>/dev/null; wait "${hogs[@]}" 2>/dev/null' EXIT
for _ in $(seq "$(nproc)"); do
  python3 -c 'while True: pass' &
  hogs+=($!)
done
echo "[with_cpu_hog] ${#hogs[@]} busy processes on $(nproc) cores" >&2
"$@"
