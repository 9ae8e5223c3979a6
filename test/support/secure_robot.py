"""A robot process in a secure graph (run in the security-enabled environment, with ``--enclave``), for test_security.

    python secure_robot.py speak VOICE.npy --ros-args --enclave /test/robot
        Watches the face (face/motion, face/image, /diagnostics). Prints ``ready`` at the first face frame, then
        waits for a line on stdin; then speaks VOICE (16 kHz float32) on self_audio in real time, watches one more
        second, and prints one JSON line: what it saw before and after the line (jaw opening, images, the voices'
        messages per second that the face reported) and the face node's topics as the graph shows them. Remap
        self_audio with ``-r self_audio:=...`` to speak on another topic.
    python secure_robot.py publish TOPIC --ros-args --enclave ...
        Prints ``created`` if it may create a self_audio publisher on TOPIC, ``refused: ...`` if not.
"""
from __future__ import annotations

import json
import select
import sys
import time

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from dystream_ros.msg import AudioData, AudioDataStamped, FaceMotion
from dystream_ros.nodes.conversions import time_message

CHUNK = 320  # 20 ms at 16 kHz


def speak(voice_file: str) -> None:
    node = rclpy.create_node('robot_around_the_face')
    phase = 'before'
    seen: dict[str, dict[str, list[float]]] = {
        p: {'jaw': [], 'images': [], 'self_audio_per_s': [], 'partner_audio_per_s': []} for p in ('before', 'during')}
    node.create_subscription(FaceMotion, 'face/motion', lambda m: seen[phase]['jaw'].append(
        m.blendshape_weights[list(m.blendshape_names).index('jawOpen')]), QoSProfile(depth=100))
    node.create_subscription(Image, 'face/image', lambda m: seen[phase]['images'].append(1), qos_profile_sensor_data)

    def on_diagnostics(message: DiagnosticArray) -> None:
        for status in message.status:
            values = {v.key: v.value for v in status.values}
            for stream in ('self', 'partner'):
                if f'{stream}_audio_messages_per_s' in values:
                    seen[phase][f'{stream}_audio_per_s'].append(float(values[f'{stream}_audio_messages_per_s']))

    node.create_subscription(DiagnosticArray, '/diagnostics', on_diagnostics, QoSProfile(depth=10))
    voice = node.create_publisher(AudioDataStamped, 'self_audio',
                                  QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE))
    deadline = time.monotonic() + 180
    while not seen['before']['jaw'] and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.1)
    print('ready', flush=True)
    while not select.select([sys.stdin], [], [], 0.0)[0]:
        rclpy.spin_once(node, timeout_sec=0.05)
    sys.stdin.readline()
    phase = 'during'
    samples = (np.clip(np.load(voice_file), -1, 1) * 32767).astype('<i2')
    start = time.monotonic()
    for k in range(0, len(samples) - CHUNK + 1, CHUNK):
        while time.monotonic() < start + k / 16000:
            rclpy.spin_once(node, timeout_sec=0.002)
        header = Header(stamp=time_message(time.time_ns()))
        voice.publish(AudioDataStamped(header=header, audio=AudioData(data=samples[k:k + CHUNK].tobytes())))
    end = time.monotonic() + 1.5
    while time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.05)
    graph = {'publishes': sorted(name for name, _ in node.get_publisher_names_and_types_by_node('dystream_node', '/')),
             'subscribes': sorted(name for name, _ in
                                  node.get_subscriber_names_and_types_by_node('dystream_node', '/'))}
    print(json.dumps({phase: {'jaw_max': max(values['jaw'], default=-1.0), 'frames': len(values['jaw']),
                              'images': len(values['images']), 'self_audio_per_s': values['self_audio_per_s'],
                              'partner_audio_per_s': values['partner_audio_per_s']}
                      for phase, values in seen.items()} | {'graph': graph}), flush=True)


def try_publish(topic: str) -> None:
    node = rclpy.create_node('robot_around_the_face')
    try:
        node.create_publisher(AudioDataStamped, topic, 10)
    except Exception as exc:  # noqa: BLE001 (rclpy's RCLError): the refusal is the result
        print(f'refused: {exc}', flush=True)
    else:
        print('created', flush=True)


def main() -> int:
    args = rclpy.utilities.remove_ros_args(sys.argv)
    rclpy.init()
    try:
        {'speak': speak, 'publish': try_publish}[args[1]](args[2])
    finally:
        rclpy.try_shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())
