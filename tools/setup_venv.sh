#!/usr/bin/env bash
# `make setup`: turn a bare Debian/Ubuntu x86_64 machine (no system ROS) into a working .venv with ROS 2 Kilted
# from the PyPI wheels, the pinned Python dependencies, and dystream_ros built (messages) and installed.
# Idempotent: every step checks whether it has work to do, so a second run takes seconds and changes nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=$ROOT/.venv
BUILD=$ROOT/build/venv
PYTHON=${PYTHON:-python3}

step() { printf '[setup] %s\n' "$*"; }

# 1. Debian packages (build tools for the messages; later features add theirs to requirements/apt.txt).
mapfile -t wanted < <(grep -v -e '^#' -e '^\s*$' requirements/apt.txt)
missing=()
for pkg in "${wanted[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if ((${#missing[@]})); then
  step "apt: installing ${missing[*]}"
  SUDO=$([ "$(id -u)" -eq 0 ] || echo sudo)
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# 2. The virtual environment.
if [ ! -x "$VENV/bin/python" ]; then
  step "creating $VENV with $($PYTHON --version)"
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)

# 3. Python packages, pinned; skipped while the requirement files are unchanged since the last good install.
req_hash=$(cat requirements/*.txt | sha256sum | cut -c1-16)
if [ ! -f "$VENV/.requirements-$req_hash" ]; then
  step "pip: installing requirements/*.txt (pinned by requirements/constraints.txt)"
  "${PIP[@]}" install -c requirements/constraints.txt -r requirements/ros-kilted.txt -r requirements/python.txt
  "${PIP[@]}" install --no-deps -c requirements/constraints.txt -r requirements/no-deps.txt
  rm -f "$VENV"/.requirements-*
  touch "$VENV/.requirements-$req_hash"
fi

# 4. The ROS wheels were built in a container whose Python lived in /opt/python/cpXY-cpXY; their exported CMake
#    files still name it. Point them at this interpreter (only files that still contain the old path).
read -r PYTAG PYVER PYINC NPINC < <("$VENV/bin/python" -c "
import sys, sysconfig, numpy
print(f'cp{sys.version_info[0]}{sys.version_info[1]}', f'{sys.version_info[0]}.{sys.version_info[1]}',
      sysconfig.get_paths()['include'], numpy.get_include())")
stale=$(grep -rl "/opt/python/$PYTAG-$PYTAG/" "$VENV/share" --include='*.cmake' || true)
if [ -n "$stale" ]; then
  step "patching $(echo "$stale" | wc -l) CMake files of the ROS wheels"
  echo "$stale" | xargs sed -i \
    -e "s#/opt/python/$PYTAG-$PYTAG/include/python$PYVER#$PYINC#g" \
    -e "s#/opt/python/$PYTAG-$PYTAG/lib/python$PYVER/site-packages/numpy/_core/include#$NPINC#g"
fi

# 5. Build the messages and install the package into .venv, as colcon would into install/ (incremental).
export AMENT_PREFIX_PATH=$VENV CMAKE_PREFIX_PATH=$VENV
mkdir -p "$BUILD"
if [ ! -f "$BUILD/Makefile" ]; then  # only a successful configure writes it
  step "cmake: configuring $BUILD"
  cmake -S "$ROOT" -B "$BUILD" -Wno-dev -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF \
    -DCMAKE_INSTALL_PREFIX="$VENV" -DPython3_EXECUTABLE="$VENV/bin/python" > "$BUILD.configure.log" 2>&1 \
    || { cat "$BUILD.configure.log"; exit 1; }
fi
cmake --build "$BUILD" -j "$(nproc)" > "$BUILD.build.log" 2>&1 || { cat "$BUILD.build.log"; exit 1; }
cmake --install "$BUILD" > "$BUILD.install.log" 2>&1 || { cat "$BUILD.install.log"; exit 1; }

# 6. The promise of `make setup`: these imports work with no environment set by hand.
"$VENV/bin/python" -c "import rclpy, dystream_ros; from dystream_ros.msg import FaceMotion" \
  || { echo "[setup] the installed package does not import: see $BUILD/*.log" >&2; exit 1; }
step "ok: $VENV ($(du -sh "$VENV" | cut -f1))"
