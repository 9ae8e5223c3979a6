"""The project's messages go through rosbag2 files (mcap and sqlite3) and come back equal."""
from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile
from rclpy.serialization import deserialize_message, serialize_message
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from support.messages import TOPICS, sample_messages

from dystream_ros.apps.bags import project_typestore, write_conversation_bag
from dystream_ros.apps.graph_run import close_graph, replay_command
from dystream_ros.msg import AudioDataStamped
from dystream_ros.nodes.conversions import stamp_ns
from dystream_ros.units import NS_PER_S, SAMPLE_RATE_HZ


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



def test_a_restamped_replay_stamps_each_message_with_the_present_time_of_its_sound(tmp_path: Path) -> None:
    # what the latency benchmark relies on: stamps keep the recorded spacing, and a message arrives just after the
    # end of its own sound, not before
    audio = np.zeros(3 * SAMPLE_RATE_HZ, np.float32)
    write_conversation_bag(tmp_path / 'old', audio, audio, start_ns=1_600_000_000 * NS_PER_S, chunk_samples=160)
    context = Context()
    rclpy.init(context=context)
    node = rclpy.create_node('restamp_probe', context=context)
    got: list[tuple[int, int]] = []  # (received, stamp)
    node.create_subscription(AudioDataStamped, 'self_audio', lambda m, info: got.append(
        (info['received_timestamp'], stamp_ns(m.header.stamp))), QoSProfile(depth=100))
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    replay = subprocess.Popen(replay_command(tmp_path / 'old', restamp=True), env=dict(os.environ))
    try:
        deadline = time.monotonic() + 60
        while replay.poll() is None and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.01)
        executor.spin_once(timeout_sec=0.2)
    finally:
        replay.kill()
        close_graph(executor, node, context)
    assert replay.returncode == 0 and len(got) > 250
    stamps = np.array([stamp for _, stamp in got])
    assert (np.diff(stamps) == 10_000_000).all()  # the recorded spacing
    after_sound_ms = np.array([(received - stamp - 10_000_000) / 1e6 for received, stamp in got])
    assert after_sound_ms.min() > -1.0 and np.median(after_sound_ms) < 10.0, after_sound_ms
