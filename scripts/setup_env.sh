#!/usr/bin/env bash
# Create or refresh the project venv: ROS 2 wheels, torch (local CPU wheel), the interface build,
# the dfocus packages, and the Debian packages the tests use. Idempotent; fast when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
log() { echo "[setup] $*"; }

# Debian packages: Chromium for the UI browser tests, enfuse as the focus-stacking peer.
need_apt=()
command -v chromium >/dev/null || need_apt+=(chromium)
command -v enfuse >/dev/null || need_apt+=(enfuse)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    log "apt-get install ${need_apt[*]}"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  else
    log "WARNING: not root, cannot apt-get install ${need_apt[*]} (browser/enfuse tests will fail)"
  fi
fi

[ -x "$VENV/bin/python" ] || { log "creating $VENV"; "$PY" -m venv "$VENV"; }
PIP="$VENV/bin/python -m pip --disable-pip-version-check -q"

stamp_of() { { cat "$@" 2>/dev/null || true; } | sha256sum | cut -c1-16; }  # missing files (an empty srv/) count as empty
req_stamp=$(stamp_of requirements.txt scripts/setup_env.sh)
if [ "$(cat $VENV/.req-stamp 2>/dev/null)" != "$req_stamp" ]; then
  log "installing Python dependencies (first run takes a few minutes)"
  $PIP install --upgrade pip setuptools wheel
  # torch first and pinned: the local CPU wheel; anything unpinned would pull a CUDA build.
  $PIP install torch==2.13.0
  $PIP install -r requirements.txt
  echo "$req_stamp" > $VENV/.req-stamp
fi

# The rosidl packages: dfocus_interfaces, and tf2_msgs (TFMessage alone; the ros-* wheels lack it).
for ifc in dfocus_interfaces tf2_msgs; do
  ifc_stamp=$(stamp_of src/dfocus_interfaces/cmake/*.cmake src/$ifc/CMakeLists.txt src/$ifc/package.xml src/$ifc/pyproject.toml \
    src/$ifc/msg/* src/$ifc/srv/* src/$ifc/action/*)
  if [ "$(cat $VENV/.stamp-$ifc 2>/dev/null)" != "$ifc_stamp" ]; then
    log "building $ifc (rosidl, up to 40 s)"
    $PIP install --no-build-isolation ./src/$ifc
    echo "$ifc_stamp" > $VENV/.stamp-$ifc
  fi
done

pkg_stamp=$(stamp_of src/dfocus_*/setup.py src/dfocus_*/setup.cfg)
if [ "$(cat $VENV/.pkg-stamp 2>/dev/null)" != "$pkg_stamp" ]; then
  log "installing the dfocus packages (editable)"
  $PIP install --no-build-isolation --no-deps -e src/dfocus_capture -e src/dfocus_depth \
    -e src/dfocus_refocus -e src/dfocus_bringup
  echo "$pkg_stamp" > $VENV/.pkg-stamp
fi
# What colcon would also install (the editable install skips it): the ament index entries,
# share/<pkg> data and lib/<pkg>/<executable>, for launch_ros and `ros2 run` (idempotent, < 1 s).
$VENV/bin/python scripts/ament_register.py $VENV src/dfocus_capture src/dfocus_depth src/dfocus_refocus \
  src/dfocus_bringup > /dev/null
