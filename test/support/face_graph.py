"""The robot around dystream_node in a test: the node in its own process, and the test's own ROS graph that
publishes its voices and records what it shows (each frame with the time it arrived)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from dystream_ros.msg import AudioData, AudioDataStamped, FaceMotion
from dystream_ros.nodes.conversions import stamp_ns, time_message
from support.graph import stop_node_and_graph

if TYPE_CHECKING:
    from collections.abc import Callable

ROOT = Path(__file__).resolve().parent.parent.parent
VOICE_QOS = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)  # what TTS and microphone nodes use


def s16(audio: np.ndarray) -> bytes:
    """float32 samples in [-1, 1] -> S16LE bytes."""
    return (np.clip(audio, -1, 1) * 32767).astype('<i2').tobytes()


class FaceUnderTest:
    """dystream_node started with ``node_params`` (``name:=value``), and publishers of its two voices (stamped
    unless named in ``unstamped``)."""

    def __init__(self, *node_params: str, unstamped: tuple[str, ...] = ()) -> None:
        self.context = Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node('robot_around_the_face', context=self.context)
        self.frames: list[tuple[FaceMotion, int]] = []  # (frame, time.time_ns() when it arrived)
        self.image_stamps: set[int] = set()
        self.node.create_subscription(FaceMotion, 'face/motion', lambda m: self.frames.append((m, time.time_ns())),
                                      QoSProfile(depth=1000))
        self.node.create_subscription(Image, 'face/image', lambda m: self.image_stamps.add(stamp_ns(m.header.stamp)),
                                      qos_profile_sensor_data)
        self.publishers = {stream: self.node.create_publisher(AudioData if stream in unstamped else AudioDataStamped,
                                                              f'{stream}_audio', VOICE_QOS)
                           for stream in ('self', 'partner')}
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.face = subprocess.Popen(
            [sys.executable, '-m', 'dystream_ros.nodes.dystream_node', '--ros-args',
             *(arg for param in node_params for arg in ('-p', param))],
            cwd=ROOT, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.log = ''

    def publish(self, stream: str, data: bytes, stamp_ns: int | None = None) -> None:
        """One message of ``stream``: stamped with ``stamp_ns``, or plain AudioData for an unstamped stream."""
        if stamp_ns is None:
            self.publishers[stream].publish(AudioData(data=data))
        else:
            self.publishers[stream].publish(AudioDataStamped(header=Header(stamp=time_message(stamp_ns)),
                                                             audio=AudioData(data=data)))

    def spin(self, seconds: float, on_tick: Callable[[int], None] | None = None) -> None:
        """Spin for ``seconds``, calling ``on_tick(time.time_ns())`` about every 2 ms."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if on_tick is not None:
                on_tick(time.time_ns())
            self.executor.spin_once(timeout_sec=0.002)

    def wait_for_face(self, on_tick: Callable[[int], None] | None = None) -> None:
        """Spin until the node publishes its first frame."""
        deadline = time.monotonic() + 120
        while not self.frames and time.monotonic() < deadline and self.face.poll() is None:
            self.spin(0.1, on_tick)
        assert self.frames, f'the node never started: {self.close()[-3000:]}'

    def frames_between(self, start_ns: int, end_ns: int) -> dict[int, tuple[FaceMotion, int]]:
        """Frame stamp -> (frame, when it arrived), for the frames whose sound starts in ``[start, end)``."""
        return {stamp: (message, received) for message, received in self.frames
                if start_ns <= (stamp := stamp_ns(message.header.stamp)) < end_ns}

    def close(self) -> str:
        """Stop the node with SIGINT and tear the graph down; return (and keep) what the node printed."""
        if self.context.ok():
            self.log = stop_node_and_graph(self.face, signal.SIGINT, self.executor, self.node, self.context)
        return self.log


def blendshape(message: FaceMotion, name: str) -> float:
    """One named blendshape weight of a FaceMotion."""
    return message.blendshape_weights[list(message.blendshape_names).index(name)]
