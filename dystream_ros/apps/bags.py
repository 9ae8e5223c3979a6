"""rosbag2 files (mcap and sqlite3) with the project's messages, through the pure-Python ``rosbags`` library.

No ``ros2 bag`` is needed: rosbags writes the same CDR bytes as rclpy (checked in test/test_bags.py), so bags
written here replay into real nodes and bags recorded on a robot read here.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from dystream_ros.resources import PACKAGE, share_path
from dystream_ros.units import NS_PER_S, SAMPLE_RATE_HZ

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


def write_conversation_bag(path: Path, self_audio: np.ndarray, partner_audio: np.ndarray, start_ns: int,
                           chunk_samples: int = 512, storage: StoragePlugin = StoragePlugin.MCAP,
                           self_topic: str = '/self_audio', partner_topic: str = '/partner_audio',
                           sample_rate_hz: int = SAMPLE_RATE_HZ) -> int:
    """Write two voices sampled at ``sample_rate_hz`` as a robot would publish them: AudioDataStamped chunks
    (S16LE mono) stamped with the time of their first sample, plus one AudioInfo per voice. Return the number of
    messages."""
    typestore = project_typestore()
    audio_type, info_type = f'{PACKAGE}/msg/AudioDataStamped', f'{PACKAGE}/msg/AudioInfo'
    classes = typestore.types  # rosbags' message classes, by type name
    header_class, time_class = classes['std_msgs/msg/Header'], classes['builtin_interfaces/msg/Time']
    data_class, audio_class, info_class = classes[f'{PACKAGE}/msg/AudioData'], classes[audio_type], classes[info_type]
    count = 0
    with Writer(path, version=9, storage_plugin=storage) as writer:
        for topic, audio in ((self_topic, self_audio), (partner_topic, partner_audio)):
            info = writer.add_connection(f'{topic}_info', info_type, typestore=typestore)
            declared = info_class(1, sample_rate_hz, 'S16LE', sample_rate_hz * 16, 'WAVE')  # bitrate: 16-bit mono
            writer.write(info, start_ns, typestore.serialize_cdr(declared, info_type))
            connection = writer.add_connection(topic, audio_type, typestore=typestore)
            pcm = (np.clip(audio, -1, 1) * 32767).astype('<i2')
            for first in range(0, len(pcm), chunk_samples):
                stamp_ns = start_ns + first * NS_PER_S // sample_rate_hz
                chunk = pcm[first:first + chunk_samples]
                arrival_ns = stamp_ns + len(chunk) * NS_PER_S // sample_rate_hz  # published when captured
                header = header_class(time_class(*divmod(stamp_ns, NS_PER_S)), 'microphone')
                message = audio_class(header, data_class(chunk.view(np.uint8).copy()))
                writer.write(connection, arrival_ns, typestore.serialize_cdr(message, audio_type))
                count += 1
    return count + 2
