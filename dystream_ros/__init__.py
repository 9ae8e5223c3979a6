"""dystream_ros: a live talking face for social robots, driven by DyStream (arXiv 2512.24408).

Data flows one way: audio messages -> one timeline per voice -> encoder -> generator -> motion -> renderer / neck
-> messages. Only the nodes (and the ``dystream`` commands that drive a ROS graph: bag tools, demo, the node
harness) import rclpy; everything below the nodes runs and is tested in plain Python. README.md, Layout, names the
rooms and which may import which.
"""
from __future__ import annotations

import pkgutil

# The generated messages (dystream_ros.msg) are installed by rosidl next to the installed copy of this package.
# When the package is imported from a source checkout (tests, development), extend the package path so that the
# installed msg module is still found; with an installed package alone this is a no-op.
__path__ = pkgutil.extend_path(__path__, __name__)

__version__ = '0.1.0'
