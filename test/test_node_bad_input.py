"""dystream_node fed bad audio keeps publishing, says what is wrong once per burst, and counts it; it also tells
a stream whose declared format does not match its audio (stereo sent as mono)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile
from std_msgs.msg import Header
from support.graph import stop_node_and_graph

from dystream_ros.msg import AudioData, AudioDataStamped, FaceMotion
from dystream_ros.nodes.conversions import time_message

ROOT = Path(__file__).resolve().parent.parent
NS = 1_000_000_000


def test_bad_audio_is_repaired_logged_once_per_burst_and_counted() -> None:
    context = Context()
    rclpy.init(context=context)
    node = rclpy.create_node('bad_audio_publisher', context=context)
    motion: list[FaceMotion] = []
    diagnostics: list[DiagnosticArray] = []
    node.create_subscription(FaceMotion, 'face/motion', motion.append, QoSProfile(depth=100))
    node.create_subscription(DiagnosticArray, '/diagnostics', diagnostics.append, QoSProfile(depth=10))
    self_pub = node.create_publisher(AudioDataStamped, 'self_audio', QoSProfile(depth=100))
    partner_pub = node.create_publisher(AudioDataStamped, 'partner_audio', QoSProfile(depth=100))
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    face = subprocess.Popen(
        [sys.executable, '-m', 'dystream_ros.nodes.dystream_node', '--ros-args', '-p', 'renderer:=none',
         '-p', 'audio_reliability:=reliable',  # a 10 MB message is many fragments: best effort may lose one
         '-p', 'partner_sample_format:=F32LE'], cwd=ROOT, env=dict(os.environ), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)

    def spin_until(wall_ns: int) -> None:
        while time.time_ns() < wall_ns:
            executor.spin_once(timeout_sec=0.01)

    def publish(publisher, data: bytes, stamp_ns: int) -> None:  # noqa: ANN001
        publisher.publish(AudioDataStamped(header=Header(stamp=time_message(stamp_ns)), audio=AudioData(data=data)))

    try:
        deadline = time.monotonic() + 120
        while not motion and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.1)
        assert motion, 'the node never started'
        tone = (0.3 * np.sin(2 * np.pi * 200 * np.arange(512) / 16000)).astype(np.float32)
        huge = np.random.default_rng(0).bytes(10_000_000)  # made once: making one takes most of a message's 32 ms
        start = time.time_ns()
        # a microphone's pace: message k goes out when its 32 ms are captured, however long the 10 MB ones take
        # to send (stamps that fell seconds behind their arrival would read as another clock)
        for k in range(100):  # 3.2 s of 32 ms messages, with a bad one among every ten
            stamp = start + k * 32_000_000
            good = (tone * 32767).astype('<i2').tobytes()
            bad = {0: b'', 1: good[:-1], 2: huge if k % 40 == 2 else good, 3: good,  # three 10 MB ones in all
                   4: good, 5: good, 6: good, 7: good, 8: good, 9: good}[k % 10]
            publish(self_pub, bad, stamp - (5 * NS if k % 10 == 3 else 0))  # 3: a stamp from 5 s ago
            nan = tone.copy()
            if k % 10 == 5:
                nan[::7] = np.nan
            publish(partner_pub, nan.tobytes(), stamp)
            spin_until(stamp + 32_000_000)
        for k in range(100, 200):  # then the partner's microphone sends stereo, still declared mono
            stamp = start + k * 32_000_000
            publish(self_pub, (tone * 32767).astype('<i2').tobytes(), stamp)
            publish(partner_pub, np.repeat(tone, 2).tobytes(), stamp)
            spin_until(stamp + 32_000_000)
        spin_until(time.time_ns() + 2_500_000_000)
        frames = len(motion)
    finally:
        log = stop_node_and_graph(face, signal.SIGINT, executor, node, context)
    assert face.returncode == 0, log[-3000:]
    indices = [m.frame_index for m in motion]
    assert indices == list(range(indices[0], indices[0] + len(indices))), log[-3000:]  # no frame lost meanwhile
    assert frames > 25 * 5
    for problem in ('an empty message', 'byte count is not a whole number', 'NaN or infinite samples',
                    'a message longer than the whole audio buffer', 'the stamps jumped backwards'):
        lines = [line for line in log.splitlines() if problem in line]
        assert 1 <= len(lines) <= 2, (problem, lines)  # once per burst, not once per message
    values = {kv.key: kv.value for kv in diagnostics[-1].status[0].values}
    assert int(values['self_audio_empty']) == 10
    assert int(values['partner_audio_not_finite']) == 10
    assert int(values['self_audio_too_large']) >= 1
    (mismatch,) = [line for line in log.splitlines() if 'does not fit the time between its stamps' in line]
    assert 'partner_audio' in mismatch and 'more likely 32000 samples per second' in mismatch, mismatch
    assert int(values['partner_audio_rate_mismatch']) >= 1
