"""The project's messages cross a real Fast DDS middleware between two processes unchanged."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from support.messages import TOPICS, sample_messages

TEST_DIR = Path(__file__).parent


def test_messages_cross_processes_over_fast_dds_unchanged() -> None:
    context = Context()
    rclpy.init(context=context)
    node = rclpy.create_node('dystream_test_subscriber', context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    received: dict[str, object] = {}
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    for topic, msg_type in TOPICS.items():
        node.create_subscription(msg_type, topic, lambda msg, topic=topic: received.setdefault(topic, msg), qos)

    publisher = subprocess.Popen(
        [sys.executable, '-m', 'support.publish_messages', '60'], cwd=TEST_DIR, env=dict(os.environ),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30.0
        while len(received) < len(TOPICS) and time.monotonic() < deadline and publisher.poll() is None:
            executor.spin_once(timeout_sec=0.1)
    finally:
        publisher.terminate()
        output = publisher.communicate(timeout=10)[0].decode(errors='replace')
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=context)

    assert os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] == 'LOCALHOST'
    assert sorted(received) == sorted(TOPICS), f'missing {set(TOPICS) - set(received)}; publisher said:\n{output}'
    for topic, expected in sample_messages().items():
        assert received[topic] == expected, topic
