"""The project's messages go through rosbag2 files (mcap and sqlite3) and come back equal."""
from __future__ import annotations

from pathlib import Path

import pytest
from rclpy.serialization import deserialize_message, serialize_message
from rosbags.rosbag2 import Reader, StoragePlugin, Writer

from dystream_ros.bags import project_typestore
from support.messages import TOPICS, sample_messages


@pytest.mark.parametrize('storage', [StoragePlugin.MCAP, StoragePlugin.SQLITE3], ids=['mcap', 'sqlite3'])
def test_messages_round_trip_through_a_rosbag2_file(tmp_path: Path, storage: StoragePlugin) -> None:
    typestore = project_typestore()
    messages = sample_messages()
    bag = tmp_path / 'conversation'
    with Writer(bag, version=9, storage_plugin=storage) as writer:
        for index, (topic, msg) in enumerate(messages.items()):
            type_name = f'dystream_ros/msg/{type(msg).__name__}'
            connection = writer.add_connection(f'/{topic}', type_name, typestore=typestore)
            raw = serialize_message(msg)
            # rosbags reads what rclpy writes and writes what rclpy reads (bytes differ only in CDR padding,
            # which rclpy leaves uninitialised)
            via_rosbags = typestore.serialize_cdr(typestore.deserialize_cdr(raw, type_name), type_name)
            assert deserialize_message(bytes(via_rosbags), type(msg)) == msg
            writer.write(connection, 1_000_000_000 + index * 40_000_000, raw)

    with Reader(bag) as reader:
        assert reader.message_count == len(messages)
        back = {conn.topic.lstrip('/'): deserialize_message(raw, TOPICS[conn.topic.lstrip('/')])
                for conn, _, raw in reader.messages()}
    assert back == messages
    motion = typestore.deserialize_cdr(serialize_message(messages['face/motion']), 'dystream_ros/msg/FaceMotion')
    assert list(motion.blendshape_names) == messages['face/motion'].blendshape_names
