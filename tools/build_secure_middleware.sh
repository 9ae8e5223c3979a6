#!/usr/bin/env bash
# Build Fast DDS 3.2.2 and rmw_fastrtps_shared_cpp / rmw_fastrtps_cpp 9.3.3 with DDS-Security (SECURITY=ON) against a
# venv of the PyPI ROS 2 wheels, and write the overlay that tools/secure_middleware.sh swaps into a venv.
#
#   tools/build_secure_middleware.sh VENV SOURCES OUT
#
# SOURCES: a folder or a .tar.gz holding Fast-DDS-3.2.2/, rmw_fastrtps_shared_cpp/ and rmw_fastrtps_cpp/
#          (e.g. the mirror's sources.tar.gz), or the word `upstream` to git clone the upstream tags.
# OUT:     gets exactly lib/libfastdds.so.3.2.2, lib/librmw_fastrtps_shared_cpp.so, lib/librmw_fastrtps_cpp.so and
#          include/fastdds/config.hpp (HAVE_SECURITY 1).
# Sources, build trees and install prefixes live in OUT/../secure_middleware_build (SECURE_MIDDLEWARE_WORK overrides);
# a re-run reuses them and only rebuilds what changed. VENV is only read, never written.
# About 13 minutes on 2 cores here, 35 on slower ones (JOBS, default 2, sets the parallelism; compiles run under
# `nice -n 10`).
set -euo pipefail

FASTDDS_TAG=v3.2.2
RMW_RELEASE_TAG=9.3.3-1          # ros2-gbp release tags: release/kilted/<package>/<version>
FASTDDS_URL=https://github.com/eProsima/Fast-DDS
RMW_URL=https://github.com/ros2-gbp/rmw_fastrtps-release
FASTDDS_SRC_NAME=Fast-DDS-3.2.2
JOBS=${JOBS:-2}

step() { printf '[secure-middleware] %s\n' "$*"; }
die() { printf '[secure-middleware] error: %s\n' "$*" >&2; exit 1; }
# Run a noisy command with its output in a log file; show the log's tail if it fails.
logged() {
  local log=$1; shift
  if ! "$@" > "$log" 2>&1; then
    tail -n 40 "$log" >&2
    die "failed: $* (full log: $log)"
  fi
}

[ $# -eq 3 ] || { sed -n '2,14p' "$0"; exit 2; }
[ -x "$1/bin/python" ] || die "$1 is not a venv (no bin/python)"
VENV=$(cd "$1" && pwd -P)
SOURCES=$2
OUT=$(realpath -m "$3")
WORK=$(realpath -m "${SECURE_MIDDLEWARE_WORK:-$(dirname "$OUT")/secure_middleware_build}")
case "$OUT/" in "$VENV"/*) die "OUT must not be inside the venv" ;; esac
case "$WORK/" in "$VENV"/*) die "the work folder must not be inside the venv" ;; esac
case "$SOURCES" in
  upstream) ;;
  *.tar.gz|*.tgz) [ -f "$SOURCES" ] || die "$SOURCES not found"; SOURCES=$(realpath "$SOURCES") ;;
  *) [ -d "$SOURCES" ] || die "$SOURCES is neither a folder, a .tar.gz nor 'upstream'"; SOURCES=$(realpath "$SOURCES") ;;
esac

SRC=$WORK/src
BUILD=$WORK/build
PREFIX_FASTDDS=$WORK/install/fastdds   # our secure Fast DDS: headers, library, CMake config
PREFIX_RMW=$WORK/install/rmw           # both rmw packages
COMPAT=$WORK/compat                    # link-time stand-ins for what the wheels' CMake exports name (see step 4)
LOGS=$WORK/logs
mkdir -p "$WORK" "$BUILD" "$LOGS" "$COMPAT"
cd "$WORK"   # cmake makes relative PATH values absolute against the working directory: keep that in here
step "venv $VENV; sources $SOURCES; work folder $WORK; overlay $OUT"

# What we take from the venv. The wheels' fastcdr and foonathan_memory are the ones the other wheels were built with.
SITE=$(ls -d "$VENV"/lib/python3*/site-packages | head -n1)
FASTCDR_DIR=$VENV/lib/cmake/fastcdr
FOONATHAN_DIR=$VENV/lib/foonathan_memory/cmake
for dir in "$SITE" "$FASTCDR_DIR" "$FOONATHAN_DIR" "$VENV/share/rmw/cmake" "$VENV/share/tracetools/cmake"; do
  [ -d "$dir" ] || die "$dir is missing: is $VENV a venv of the ROS 2 wheels with ros-rclpy[fastrtps]?"
done
# foonathan_memory's exported target names <prefix>/lib64/libfoonathan_memory-*.a; venvs have lib64 -> lib.
[ -e "$VENV/lib64" ] || die "$VENV/lib64 is missing (foonathan_memory's CMake config expects lib64 -> lib)"
# The wheels' CMake files name their build container's /opt/python; tools/setup_venv.sh step 4 repoints them.
if grep -rqs --include='*.cmake' '/opt/python/cp' "$VENV/share/rmw_dds_common" "$VENV/share/rmw"; then
  step "warning: $VENV/share still names /opt/python/...; if cmake trips on it, run tools/setup_venv.sh first"
fi

# 1. Build tools and the system libraries Fast DDS links: asio (headers), tinyxml2, OpenSSL (security plugins),
#    sqlite3 (the source mirror has no sqlite3 amalgamation, see step 3). At run time the overlay needs libssl3,
#    libtinyxml2-9 and libsqlite3-0, which these pull in.
for tool in cmake make g++ gcc; do command -v "$tool" > /dev/null || die "$tool is needed (apt-get install cmake build-essential)"; done
missing=()
for pkg in libasio-dev libtinyxml2-dev libssl-dev libsqlite3-dev; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if ((${#missing[@]})); then
  step "1/6 apt: installing ${missing[*]}"
  SUDO=$([ "$(id -u)" -eq 0 ] || echo sudo)
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  step "1/6 apt: build dependencies present"
fi

# 2. Sources into $SRC, which we own (so we may add a file to it, and SOURCES is only read). Re-staged only when
#    SOURCES changed (a fresh clone gives every file a new mtime, and make would start the 30-minute build over).
case "$SOURCES" in
  upstream) source_id="upstream $FASTDDS_TAG $RMW_RELEASE_TAG" ;;
  *.tar.gz|*.tgz) source_id="tar $(sha256sum < "$SOURCES" | cut -c1-64)" ;;
  *) source_id="dir $SOURCES" ;;
esac
if [ "$(cat "$SRC/.staged" 2>/dev/null)" = "$source_id" ]; then
  step "2/6 sources: reusing $SRC"
else
  step "2/6 sources: staging into $SRC"
  rm -rf "$SRC" "$SRC.new"; mkdir -p "$SRC.new"
  case "$SOURCES" in
    upstream)
      command -v git > /dev/null || die "git is needed for 'upstream'"
      # No submodules: asio and tinyxml2 come from the system, fastcdr and foonathan_memory from the venv.
      git -c advice.detachedHead=false clone -q --depth 1 --branch "$FASTDDS_TAG" "$FASTDDS_URL" "$SRC.new/$FASTDDS_SRC_NAME"
      for pkg in rmw_fastrtps_shared_cpp rmw_fastrtps_cpp; do   # each release tag holds one package at its root
        git -c advice.detachedHead=false clone -q --depth 1 --branch "release/kilted/$pkg/$RMW_RELEASE_TAG" \
          "$RMW_URL" "$SRC.new/$pkg"
      done ;;
    *.tar.gz|*.tgz) tar -xzf "$SOURCES" -C "$SRC.new" ;;
    *) cp -a "$SOURCES/." "$SRC.new/" ;;
  esac
  for dir in "$FASTDDS_SRC_NAME" rmw_fastrtps_shared_cpp rmw_fastrtps_cpp; do
    [ -f "$SRC.new/$dir/CMakeLists.txt" ] || die "$SOURCES has no $dir/ at its top level"
  done
  mv "$SRC.new" "$SRC"
  echo "$source_id" > "$SRC/.staged"
fi
FASTDDS_SRC=$SRC/$FASTDDS_SRC_NAME

# 3. Fast DDS with SECURITY=ON, configured like the wheel's (Release, statistics, SHM) minus the tools.
#    sqlite3: Fast DDS compiles its bundled amalgamation src/cpp/rtps/persistence/sqlite3.c; the source mirror has a
#    stub (or nothing) there, so link the system libsqlite3 instead (its 3.40 covers the API the persistence
#    service uses; Fast DDS links with --no-undefined, so a gap would fail here, not at run time).
#    -Wno-error=maybe-uninitialized: gcc 12 reports false -Wmaybe-uninitialized in the xtypes code; keep it a
#    warning should CXXFLAGS (honoured here) bring -Werror.
sqlite_file=$FASTDDS_SRC/src/cpp/rtps/persistence/sqlite3.c
fastdds_extra=(-DCMAKE_CXX_STANDARD_LIBRARIES=)
if ! grep -qs 'sqlite3_open_v2' "$sqlite_file"; then
  [ -f "$sqlite_file" ] || printf '/* stub: no sqlite3 amalgamation in these sources; the system libsqlite3 is linked */\n' > "$sqlite_file"
  fastdds_extra=(-DCMAKE_CXX_STANDARD_LIBRARIES=-lsqlite3)
  step "3/6 fast dds: no sqlite3 amalgamation in the sources, linking the system libsqlite3"
fi
step "3/6 fast dds: configuring (log: $LOGS/fastdds-configure.log)"
logged "$LOGS/fastdds-configure.log" cmake -S "$FASTDDS_SRC" -B "$BUILD/fastdds" -Wno-dev \
  -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX="$PREFIX_FASTDDS" \
  -DSECURITY=ON -DCOMPILE_TOOLS=OFF -DINSTALL_TOOLS=OFF -DBUILD_TESTING=OFF -DCOMPILE_EXAMPLES=OFF \
  -DBUILD_DOCUMENTATION=OFF -DTHIRDPARTY=OFF \
  -Dfastcdr_DIR="$FASTCDR_DIR" -Dfoonathan_memory_DIR="$FOONATHAN_DIR" \
  -DCMAKE_CXX_FLAGS="${CXXFLAGS:-} -Wno-error=maybe-uninitialized" "${fastdds_extra[@]}"
step "3/6 fast dds: compiling with -j$JOBS, about 30 minutes (log: $LOGS/fastdds-build.log)"
start=$SECONDS
logged "$LOGS/fastdds-build.log" nice -n 10 cmake --build "$BUILD/fastdds" -j "$JOBS"
logged "$LOGS/fastdds-install.log" cmake --install "$BUILD/fastdds"
step "3/6 fast dds: built and installed into $PREFIX_FASTDDS in $((SECONDS - start)) s"
FASTDDS_CMAKE_DIR=$(dirname "$(find "$PREFIX_FASTDDS" -name fastdds-config.cmake | head -n1)")
FASTDDS_LIB=$PREFIX_FASTDDS/lib/libfastdds.so.3.2.2
[ -f "$FASTDDS_LIB" ] && [ -f "$FASTDDS_CMAKE_DIR/fastdds-config.cmake" ] || die "the Fast DDS install lacks its library or CMake config"
grep -q '#define HAVE_SECURITY 1' "$PREFIX_FASTDDS/include/fastdds/config.hpp" || die "Fast DDS was configured without security"

# 4. The rmw libraries, against OUR Fast DDS (not the venv's stock one, which has HAVE_SECURITY 0):
#    - fastdds_DIR names our install outright, and CMAKE_PREFIX_PATH lists it first. (This also keeps the wheel's
#      fastdds-shared-targets.cmake, which names its builder's /usr/lib64/libtinyxml2.so, out of the build.)
#    - -I our include in CMAKE_CXX_FLAGS: the venv's fastcdr target puts VENV/include, which holds the stock
#      fastdds/config.hpp, on the include path too; a -I directory is searched before the imported targets'
#      -isystem ones, so every translation unit sees HAVE_SECURITY 1 (a mixed set hangs; checked in step 5).
#    - tracetools exports a bare `lttng-ust` (-llttng-ust), which no system library path holds: the wheels graft a
#      renamed copy under site-packages/ros_*.libs/. $COMPAT gets a liblttng-ust.so symlink to it, put on the link
#      path with -L. --as-needed drops it again, since the rmw code calls tracetools, not lttng-ust, directly.
if grep -qs 'lttng-ust' "$VENV"/share/tracetools/cmake/*.cmake; then
  lttng=$(ls "$SITE"/ros_*.libs/liblttng-ust-[0-9a-f]*.so* 2>/dev/null | head -n1 || true)   # not -tracepoint-
  if [ -n "$lttng" ]; then
    ln -sfn "$lttng" "$COMPAT/liblttng-ust.so"
  elif ! ldconfig -p | grep -q 'liblttng-ust\.so '; then
    die "tracetools exports -llttng-ust, and neither the wheels' grafted copy nor a system one was found"
  fi
fi
export AMENT_PREFIX_PATH=$PREFIX_RMW:$VENV
rmw_common=(-Wno-dev -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF -DSECURITY=ON
  -DCMAKE_INSTALL_PREFIX="$PREFIX_RMW" -DCMAKE_PREFIX_PATH="$PREFIX_FASTDDS;$PREFIX_RMW;$VENV"
  -Dfastdds_DIR="$FASTDDS_CMAKE_DIR" -Dfastcdr_DIR="$FASTCDR_DIR" -Dfoonathan_memory_DIR="$FOONATHAN_DIR"
  -DPython3_EXECUTABLE="$VENV/bin/python"
  -DCMAKE_CXX_FLAGS="${CXXFLAGS:-} -I$PREFIX_FASTDDS/include -Wno-error=maybe-uninitialized"
  -DCMAKE_SHARED_LINKER_FLAGS="-L$COMPAT -Wl,--as-needed")
for pkg in rmw_fastrtps_shared_cpp rmw_fastrtps_cpp; do
  extra=()
  # rmw_fastrtps_cpp must link the rmw_fastrtps_shared_cpp just built, not the venv's.
  [ "$pkg" = rmw_fastrtps_cpp ] && extra=(-Drmw_fastrtps_shared_cpp_DIR="$PREFIX_RMW/share/rmw_fastrtps_shared_cpp/cmake")
  step "4/6 $pkg: configuring, compiling with -j$JOBS, installing (logs: $LOGS/$pkg-*.log)"
  start=$SECONDS
  logged "$LOGS/$pkg-configure.log" cmake -S "$SRC/$pkg" -B "$BUILD/$pkg" "${rmw_common[@]}" "${extra[@]}"
  grep -q "^fastdds_DIR:.*=$FASTDDS_CMAKE_DIR\$" "$BUILD/$pkg/CMakeCache.txt" || die "$pkg did not pick up our Fast DDS"
  logged "$LOGS/$pkg-build.log" nice -n 10 cmake --build "$BUILD/$pkg" -j "$JOBS"
  logged "$LOGS/$pkg-install.log" cmake --install "$BUILD/$pkg"
  step "4/6 $pkg: done in $((SECONDS - start)) s"
done

# 5. Check the set before handing it out: the three libraries must agree on SECURITY.
step "5/6 checking the libraries"
for pkg in rmw_fastrtps_shared_cpp rmw_fastrtps_cpp; do   # gcc's dependency files list every header compiled
  used=$(find "$BUILD/$pkg" -name '*.o.d' -exec grep -ho '[^ ]*/fastdds/config\.hpp' {} + | sort -u || true)
  [ "$used" = "$PREFIX_FASTDDS/include/fastdds/config.hpp" ] \
    || die "$pkg was not compiled against our fastdds/config.hpp alone: ${used:-none found}"
done
grep -qa 'DDS:Auth:PKI-DH' "$FASTDDS_LIB" || die "$FASTDDS_LIB has no DDS-Security plugins"
grep -qa 'dds.sec.auth.plugin' "$PREFIX_RMW/lib/librmw_fastrtps_shared_cpp.so" \
  || die "librmw_fastrtps_shared_cpp.so was compiled with HAVE_SECURITY 0"
# Our config.hpp must match the wheel's in everything but HAVE_SECURITY (other switches change the ABI).
if ! diff <(grep -v 'define HAVE_SECURITY' "$VENV/include/fastdds/config.hpp") \
          <(grep -v 'define HAVE_SECURITY' "$PREFIX_FASTDDS/include/fastdds/config.hpp") > "$LOGS/config-diff.txt"; then
  cat "$LOGS/config-diff.txt" >&2
  die "fastdds/config.hpp differs from the venv's beyond HAVE_SECURITY"
fi

# 6. The overlay: written beside OUT and then moved into place, so OUT is either the old or the complete new one.
step "6/6 writing the overlay $OUT"
if [ -e "$OUT" ]; then   # only ever replace an earlier overlay
  other=$(find "$OUT" -mindepth 1 -not -path "$OUT/lib*" -not -path "$OUT/include*" | head -n1)
  [ -z "$other" ] || die "$OUT holds more than an overlay ($other): not replacing it"
fi
rm -rf "$OUT.new"
mkdir -p "$OUT.new/lib" "$OUT.new/include/fastdds"
install -m 755 "$FASTDDS_LIB" "$OUT.new/lib/libfastdds.so.3.2.2"   # 755 like the wheels' (Debian's cmake installs 644)
install -m 755 "$PREFIX_RMW/lib/librmw_fastrtps_shared_cpp.so" "$PREFIX_RMW/lib/librmw_fastrtps_cpp.so" "$OUT.new/lib/"
install -m 644 "$PREFIX_FASTDDS/include/fastdds/config.hpp" "$OUT.new/include/fastdds/config.hpp"
rm -rf "$OUT"
mv "$OUT.new" "$OUT"
step "ok: $OUT ($(du -sh "$OUT" | cut -f1)); install it with: tools/secure_middleware.sh install VENV $OUT"
