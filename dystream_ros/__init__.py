"""dystream_ros: a live talking face for social robots, driven by DyStream (arXiv 2512.24408).

Data flows one way: audio messages -> audio buffers -> encoder -> generator -> motion -> renderer / neck ->
messages. Only ``dystream_ros.nodes`` imports rclpy; everything else runs and is tested in plain Python.
"""
from __future__ import annotations

import pkgutil

# The generated messages (dystream_ros.msg) are installed by rosidl next to the installed copy of this package.
# When the package is imported from a source checkout (tests, development), extend the package path so that the
# installed msg module is still found; with an installed package alone this is a no-op.
__path__ = pkgutil.extend_path(__path__, __name__)

__version__ = '0.1.0'
