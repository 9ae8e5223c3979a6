#!/usr/bin/env bash
# Swap a Fast DDS 3.2.2 and rmw_fastrtps 9.3.3 built with SECURITY=ON into a venv of the PyPI ROS wheels.
#
#   tools/secure_middleware.sh install VENV OVERLAY
#
# OVERLAY: a folder (or .tar.gz of one) with lib/libfastdds.so.3.2.2, lib/librmw_fastrtps_shared_cpp.so,
# lib/librmw_fastrtps_cpp.so and include/fastdds/config.hpp, e.g. third_party/secure_middleware/'s prebuilt one.
# The three libraries are swapped together (a listener's vtable differs with SECURITY=ON: a mixed set hangs), the
# wheel's three copies of libfastdds (.so, .so.3.2, .so.3.2.2: the loader opens .so.3.2) all replaced, and the stock
# files kept as *.stock. Then the set is checked: every library has the security plugins, and a node of the venv
# sends itself a message within 60 s; otherwise the stock files are put back and the command fails.
# A symlinked file (a throwaway venv made with `cp -as`) is replaced by a copy; its target is never written.
set -euo pipefail
[ "${1:-}" = install ] && [ $# -eq 3 ] || { sed -n '2,12p' "$0"; exit 2; }
venv=$(cd "$2" && pwd)
overlay=$3
if [ -f "$overlay" ]; then
  unpacked=$(mktemp -d); trap 'rm -rf "$unpacked"' EXIT
  tar -xzf "$overlay" -C "$unpacked"
  overlay=$(dirname "$(find "$unpacked" -name libfastdds.so.3.2.2 -path '*/lib/*' | head -n1)")/..
fi
for file in lib/libfastdds.so.3.2.2 lib/librmw_fastrtps_shared_cpp.so lib/librmw_fastrtps_cpp.so include/fastdds/config.hpp; do
  [ -f "$overlay/$file" ] || { echo "secure-middleware: $overlay has no $file" >&2; exit 1; }
done
grep -qa 'DDS:Auth:PKI-DH' "$overlay/lib/libfastdds.so.3.2.2" \
  && grep -qa 'dds.sec.auth.plugin' "$overlay/lib/librmw_fastrtps_shared_cpp.so" \
  || { echo "secure-middleware: $overlay was not built with SECURITY=ON" >&2; exit 1; }

# target in the venv <- file in the overlay
swaps=(lib/libfastdds.so:lib/libfastdds.so.3.2.2 lib/libfastdds.so.3.2:lib/libfastdds.so.3.2.2
       lib/libfastdds.so.3.2.2:lib/libfastdds.so.3.2.2 lib/librmw_fastrtps_shared_cpp.so:lib/librmw_fastrtps_shared_cpp.so
       lib/librmw_fastrtps_cpp.so:lib/librmw_fastrtps_cpp.so include/fastdds/config.hpp:include/fastdds/config.hpp)
for swap in "${swaps[@]}"; do
  target=$venv/${swap%%:*}
  [ -e "$target.stock" ] || cp -P "$target" "$target.stock"
  rm -f "$target"
  cp "$overlay/${swap#*:}" "$target"
done

restore() {
  echo "secure-middleware: $1; putting the stock libraries back" >&2
  for swap in "${swaps[@]}"; do target=$venv/${swap%%:*}; rm -f "$target"; mv "$target.stock" "$target"; done
  exit 1
}
probe='import rclpy, time
from std_msgs.msg import String
rclpy.init(); node = rclpy.create_node("secure_middleware_probe"); got = []
node.create_subscription(String, "probe", got.append, 10); pub = node.create_publisher(String, "probe", 10)
end = time.monotonic() + 30
while not got and time.monotonic() < end:
    pub.publish(String(data="x")); rclpy.spin_once(node, timeout_sec=0.1)
assert got, "no message"'
ROS_SECURITY_ENABLE=false ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST timeout -s KILL 60 "$venv/bin/python" -c "$probe" \
  || restore "a node did not pass a message with the new libraries (they do not belong together)"
echo "secure-middleware: Fast DDS with DDS-Security in $venv (stock files kept as *.stock)"
