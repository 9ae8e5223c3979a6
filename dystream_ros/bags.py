"""rosbag2 files (mcap and sqlite3) with the project's messages, through the pure-Python ``rosbags`` library.

No ``ros2 bag`` is needed: rosbags writes the same CDR bytes as rclpy (checked in test/test_bags.py), so bags
written here replay into real nodes and bags recorded on a robot read here.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from rosbags.typesys import Stores, get_typestore, get_types_from_msg

from dystream_ros.resources import PACKAGE, share_path

if TYPE_CHECKING:
    from rosbags.typesys.store import Typestore

MESSAGE_NAMES = ('AudioData', 'AudioInfo', 'AudioDataStamped', 'FaceMotion')


def project_typestore(store: Stores = Stores.ROS2_KILTED) -> Typestore:
    """Return a rosbags typestore of ``store`` with the dystream_ros messages registered from msg/*.msg."""
    typestore = get_typestore(store)
    types = {}
    for name in MESSAGE_NAMES:
        text = share_path('msg', f'{name}.msg').read_text(encoding='utf-8')
        types.update(get_types_from_msg(text, f'{PACKAGE}/msg/{name}'))
    typestore.register(types)
    return typestore
