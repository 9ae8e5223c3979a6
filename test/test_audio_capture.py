"""audio_capture_node against a virtual ALSA microphone fed from a file (no sound card needed)."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

from dystream_ros.msg import AudioDataStamped, AudioInfo
from dystream_ros.nodes.conversions import stamp_ns

ROOT = Path(__file__).resolve().parent.parent
CHUNK = 160  # 10 ms at 16 kHz, the node's default


def _virtual_microphone(home: Path) -> np.ndarray:
    """An ALSA configuration in ``home`` whose capture device 'filemic' plays a known recording."""
    t = np.arange(200 * CHUNK) / 16000  # 2 s, a whole number of chunks (the device loops the file)
    recording = (8000 * np.sin(2 * np.pi * 440 * t) * np.sin(2 * np.pi * 3 * t)).astype('<i2')
    recording.tofile(home / 'voice.raw')
    (home / '.asoundrc').write_text(
        'pcm.!default { type asym; playback.pcm "nullout"; capture.pcm "filemic" }\n'
        'pcm.nullout { type null }\n'
        f'pcm.filemic {{ type file; slave.pcm "null"; file "/dev/null"; infile "{home / "voice.raw"}"; '
        'format "raw" }\n')
    return recording


def _run_capture(home: Path, *params: str, seconds: float = 4.0) -> tuple[subprocess.CompletedProcess, list, list]:
    context = Context()
    rclpy.init(context=context)
    node = rclpy.create_node('capture_listener', context=context)
    chunks, infos = [], []
    node.create_subscription(AudioDataStamped, 'audio', chunks.append, qos_profile_sensor_data)
    node.create_subscription(AudioInfo, 'audio_info', infos.append, QoSProfile(
        depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL))
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    process = subprocess.Popen(
        [sys.executable, '-m', 'dystream_ros.nodes.audio_capture_node', '--ros-args', *params], cwd=ROOT,
        env=dict(os.environ, HOME=str(home)), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and (process.poll() is None or not chunks):
        executor.spin_once(timeout_sec=0.05)
        if process.poll() is not None:
            break
    process.terminate()
    output = process.communicate(timeout=10)[0]
    executor.shutdown()
    node.destroy_node()
    rclpy.try_shutdown(context=context)
    return subprocess.CompletedProcess(process.args, process.returncode, output), chunks, infos


def test_the_microphone_is_published_exactly_with_its_format_and_capture_stamps(tmp_path: Path) -> None:
    recording = _virtual_microphone(tmp_path)
    result, chunks, infos = _run_capture(tmp_path, '-p', 'device:=filemic')
    assert chunks, result.stdout[-2000:]
    assert infos and (infos[0].sample_rate, infos[0].channels, infos[0].sample_format) == (16000, 1, 'S16LE')
    # this virtual device has no clock, so chunks come faster than real time and a best-effort subscriber may
    # miss some: every chunk that arrives must be the recording's audio at a chunk boundary
    matched = 0
    for chunk in chunks:
        samples = np.frombuffer(bytes(chunk.audio.data), '<i2')
        assert len(samples) == CHUNK
        offsets = [o for o in range(0, len(recording) - CHUNK + 1, CHUNK)
                   if np.array_equal(recording[o:o + CHUNK], samples)]
        matched += bool(offsets)
        assert chunk.header.frame_id == 'microphone'
    assert matched == len(chunks)
    assert any(np.frombuffer(bytes(c.audio.data), '<i2').any() for c in chunks)
    stamps = [stamp_ns(c.header.stamp) for c in chunks]
    assert stamps == sorted(stamps) and abs(stamps[0] - time.time_ns()) < 60 * 1_000_000_000


def test_a_missing_device_fails_with_the_list_of_devices(tmp_path: Path) -> None:
    _virtual_microphone(tmp_path)
    result, chunks, _ = _run_capture(tmp_path, '-p', 'device:=ReSpeaker', seconds=20.0)
    assert result.returncode == 1 and not chunks
    assert "no input device 'ReSpeaker'" in result.stdout
    assert 'filemic' in result.stdout and 'default' in result.stdout
