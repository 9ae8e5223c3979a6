"""audio_player_node plays the robot's voice on a virtual ALSA speaker at the times the face shows it.

The virtual speaker (:mod:`dystream_ros.apps.virtual_speaker`) is ALSA's ``file`` plugin writing into a FIFO, and
the test is its DAC: it plays the samples at exactly 16 kHz and notes when each was played; the speaker's latency
is measured first and given to the node as ``output_latency_ms``. What is checked: every stretch of sound the
robot sent comes out of the DAC, whole, at the time the face shows it (its stamp, or its arrival for unstamped
audio) within one frame (40 ms).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from scipy.signal import correlate
from support.graph import stop_node_and_graph

from dystream_ros.apps.virtual_speaker import Dac, add_virtual_speaker, speaker_latency_s
from dystream_ros.msg import AudioData, AudioDataStamped
from dystream_ros.nodes.audio_player_node import PlayClock
from dystream_ros.nodes.conversions import time_message

ROOT = Path(__file__).resolve().parent.parent
RATE = 16000
CHUNK = 320  # 20 ms per message, as a TTS sends them
FRAME_S = 0.04

pytestmark = pytest.mark.realtime


@pytest.fixture(scope='module')
def speaker(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, float]:
    """The virtual speaker: its HOME, its FIFO and its latency (s)."""
    home = tmp_path_factory.mktemp('speaker')
    fifo = add_virtual_speaker(home)
    latency_s = speaker_latency_s(home, fifo)
    assert 0.0 < latency_s < 0.3, latency_s  # the FIFO (128 ms) and one ALSA buffer
    return home, fifo, latency_s


def _chirp(seconds: float, f0: float, f1: float) -> np.ndarray:
    """A frequency sweep: every 20 ms of it is different, so where it was played is unambiguous."""
    t = np.arange(round(seconds * RATE)) / RATE
    return (0.5 * np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t * t / (2 * seconds)))).astype(np.float32)


def _pcm(samples: np.ndarray) -> bytes:
    return np.round(samples * 32767).astype('<i2').tobytes()


class _Robot:
    """audio_player_node on the virtual speaker, and a TTS publishing to it."""

    def __init__(self, speaker: tuple[Path, Path, float], audio_type: type) -> None:
        home, fifo, latency_s = speaker
        self.dac = Dac(fifo)
        self.audio_type = audio_type
        self.process = subprocess.Popen(
            [sys.executable, '-m', 'dystream_ros.nodes.audio_player_node', '--ros-args', '-p', 'device:=speaker',
             '-p', f'output_latency_ms:={round(latency_s * 1e3)}', '-p', f'audio_type:={audio_type.__name__}'],
            cwd=ROOT, env=dict(os.environ, HOME=str(home)), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True)
        self.context = Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node('tts', context=self.context)
        self.publisher = self.node.create_publisher(audio_type, 'self_audio', QoSProfile(
            depth=1000, reliability=ReliabilityPolicy.RELIABLE))
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.monotonic_to_ros_ns = time.time_ns() - time.monotonic_ns()  # the DAC's clock -> the node's clock

    def wait_until_playing(self) -> bool:
        """Wait until the speaker plays what the TTS sends. The publisher sees the node's subscription as soon as it
        is made, before the node has started its speaker and begun to spin: what is sent then is taken up to 0.1 s
        late (measured) or not at all, so a quiet tick is sent, once a second, until the speaker plays one. The tick
        is longer than the speaker's latency, since what is due on arrival plays only from when the speaker can, and
        a tone: the node's DC blocker would take a constant level out."""
        tick = 0.01 * np.sin(2 * np.pi * 440 * np.arange(round(0.4 * RATE)) / RATE).astype(np.float32)
        deadline, next_tick = time.monotonic() + 60, 0.0
        while not self.dac.played().any() and time.monotonic() < deadline and self.process.poll() is None:
            if self.publisher.get_subscription_count() > 0 and time.monotonic() >= next_tick:
                self.say(tick, None if self.audio_type is AudioData else self.now_ns())
                next_tick = time.monotonic() + 1.0
            self.executor.spin_once(timeout_sec=0.05)
        time.sleep(1.0)  # the tick has played, and the node's play clock has settled on the speaker's pace
        return bool(self.dac.played().any())

    def now_ns(self) -> int:
        return self.node.get_clock().now().nanoseconds

    def say(self, samples: np.ndarray, stamp_ns: int | None, chunk: int = CHUNK) -> int:
        """Publish an utterance as fast as possible in messages of ``chunk`` samples; return when it started."""
        sent_ns = self.now_ns()
        for first in range(0, len(samples), chunk):
            data = _pcm(samples[first:first + chunk])
            if stamp_ns is None:
                self.publisher.publish(AudioData(data=data))
            else:
                msg = AudioDataStamped(audio=AudioData(data=data))
                msg.header.stamp = time_message(stamp_ns + first * 1_000_000_000 // RATE)
                self.publisher.publish(msg)
        return sent_ns

    def stop(self) -> str:
        output = stop_node_and_graph(self.process, signal.SIGINT, self.executor, self.node, self.context)
        self.dac.close()  # after the node: a device that stops playing would block it in its last write
        return output

    def report(self, output: str) -> str:
        """What went on, for a failing assertion: where the DAC ran dry (s), and what the node said."""
        node_lines = '\n'.join(line for line in output.splitlines() if 'audio_player_node' in line)
        return f'DAC ran dry at {[round(i / RATE, 3) for i in self.dac.underruns]} s; node: {node_lines}'

    def mismatched(self, matches: list[float], due_ns: int) -> list[tuple[float, float]]:
        """(seconds into the DAC's recording, match) of the 20 ms chunks that did not come out as sent."""
        due_s = (due_ns - self.monotonic_to_ros_ns) / 1e9 - self.dac.start_s
        return [(round(due_s + i * CHUNK / RATE, 3), round(m, 2)) for i, m in enumerate(matches) if m <= 0.9]

    def played_at(self, samples: np.ndarray, due_ns: int) -> tuple[float, list[float]]:
        """When ``samples`` came out of the speaker, relative to ``due_ns`` (s), and how closely each 20 ms of
        it matches what was sent (correlation; 20 ms of silence counts as a match)."""
        played = self.dac.played().astype(np.float32) / 32768
        due = round((due_ns - self.monotonic_to_ros_ns - round(self.dac.start_s * 1e9)) * RATE / 1e9)
        lo = max(due - RATE // 2, 0)
        window = played[lo:due + len(samples) + RATE // 2]
        lag = int(np.argmax(correlate(window, samples, mode='valid'))) + lo
        matches = []
        for first in range(0, len(samples) - CHUNK + 1, CHUNK):
            sent, heard = samples[first:first + CHUNK], played[lag + first:lag + first + CHUNK]
            if not sent.any():
                matches.append(1.0)
                continue
            matches.append(float(np.dot(sent, heard) / (np.linalg.norm(sent) * np.linalg.norm(heard) + 1e-9)))
        return (lag - due) / RATE, matches


def test_a_tts_utterance_stamped_ahead_is_played_at_its_stamps(speaker: tuple[Path, Path, float]) -> None:
    robot = _Robot(speaker, AudioDataStamped)
    burst, whole = _chirp(1.5, 300, 3500), _chirp(1.0, 3000, 500)
    try:
        assert robot.wait_until_playing()
        burst_due = robot.now_ns() + 500_000_000  # a TTS stamps its utterance with the time it will be played
        robot.say(burst, burst_due)  # 75 messages at once
        time.sleep(2.2)
        whole_due = robot.now_ns() + 500_000_000
        robot.say(whole, whole_due, chunk=len(whole))  # the whole utterance in one message
        time.sleep(1.8)
    finally:
        output = robot.stop()
    for samples, due in ((burst, burst_due), (whole, whole_due)):
        offset_s, matches = robot.played_at(samples, due)
        assert abs(offset_s) <= FRAME_S, (offset_s, robot.report(output))
        assert min(matches) > 0.9, (robot.mismatched(matches, due), robot.report(output))  # all of it, in order


def test_unstamped_bursts_play_from_their_arrival_one_after_the_other(speaker: tuple[Path, Path, float]) -> None:
    robot = _Robot(speaker, AudioData)
    # it starts with a breath of silence: of audio due from its arrival, a speaker can only play what is still ahead
    # of its own latency when it arrives (here the FIFO's 128 ms, more than a sound card's)
    breath = np.zeros(round((speaker[2] + FRAME_S) * RATE), np.float32)
    first = np.concatenate([breath, _chirp(1.0, 300, 3500)])
    second = _chirp(0.6, 3000, 500)
    try:
        assert robot.wait_until_playing()
        first_sent = robot.say(first, None)
        time.sleep(0.3)
        robot.say(second, None)  # while the first still plays: chained after it, not mixed into it
        time.sleep(2.0)
    finally:
        output = robot.stop()
    for samples, due in ((first, first_sent), (second, first_sent + len(first) * 1_000_000_000 // RATE)):
        offset_s, matches = robot.played_at(samples, due)
        assert abs(offset_s) <= FRAME_S, (offset_s, robot.report(output))
        assert min(matches) > 0.9, (robot.mismatched(matches, due), robot.report(output))


def test_a_missing_speaker_fails_with_the_list_of_devices(speaker: tuple[Path, Path, float]) -> None:
    home, _, _ = speaker
    result = subprocess.run(
        [sys.executable, '-m', 'dystream_ros.nodes.audio_player_node', '--ros-args', '-p', 'device:=Bluetooth'],
        cwd=ROOT, env=dict(os.environ, HOME=str(home)), capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1
    assert "no output device 'Bluetooth'" in result.stderr and 'speaker' in result.stderr


def test_the_play_clock_follows_the_dac_not_the_jitter_of_its_reports() -> None:
    clock = PlayClock(tolerance=320, settle=4000)
    starts = [clock.start_of(1000 + 160 * k + (480 if k == 5 else 0), 160, underflow=False) for k in range(10)]
    assert starts == [1000 + 160 * k for k in range(10)]  # one late report (30 ms) moves nothing
    # a sound card whose clock runs 25 ms away from the count for longer than `settle`: followed
    starts = [clock.start_of(1000 + 160 * k + 400, 160, underflow=False) for k in range(10, 40)]
    assert starts[-1] == 1000 + 160 * 39 + 400 and clock.resyncs == [400]
    assert clock.start_of(50_000, 160, underflow=True) == 50_000  # the output ran dry: re-anchored at once
