"""Publish the sample messages from a separate process until the test's subscribers have them all.

Run as ``python -m support.publish_messages SECONDS`` (from test/): it waits for a subscriber on every topic,
then republishes every 100 ms until SECONDS have passed or it is terminated.
"""
from __future__ import annotations

import sys
import time

import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy

from support.messages import TOPICS, sample_messages


def main() -> int:
    deadline = time.monotonic() + float(sys.argv[1])
    rclpy.init()
    node = rclpy.create_node('dystream_test_publisher')
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    publishers = {topic: node.create_publisher(msg_type, topic, qos) for topic, msg_type in TOPICS.items()}
    messages = sample_messages()
    try:
        while time.monotonic() < deadline:
            for topic, publisher in publishers.items():
                if publisher.get_subscription_count() > 0:
                    publisher.publish(messages[topic])
            rclpy.spin_once(node, timeout_sec=0.1)
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())
