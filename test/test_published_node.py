"""The published generator in the face engine and in dystream_node, converted from the random-weight reference.

The published renderer is full size whatever the weights (about 30 s a frame on 2 cores), so these run with
``renderer:=none``: what is checked is that the node streams the published latents on face/motion, frame after
frame, from live audio, and refuses combinations that cannot work. The renderer's numerics are checked in
test_published_renderer.py.
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
import torch
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.publisher import Publisher
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import Image
from std_msgs.msg import Header
from support.graph import stop_node_and_graph
from support.onnx_export import OnnxExport

from dystream_ros.audio import AudioFormat
from dystream_ros.model.published_checkpoint import load_published_generator
from dystream_ros.model.published_stream import PublishedStream
from dystream_ros.msg import AudioData, AudioDataStamped, FaceMotion
from dystream_ros.neck import NeckConfig, NeckMapper
from dystream_ros.nodes.conversions import time_message
from dystream_ros.runtime.engine import FaceEngine
from dystream_ros.runtime.frames import stream_clip
from dystream_ros.runtime.published_generator import PublishedStreamingGenerator
from dystream_ros.units import NS_PER_S, SAMPLE_RATE_HZ

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope='module')
def converted(published_generator: Path) -> Path:
    return published_generator


def _voice(seconds: float, seed: int) -> np.ndarray:
    """Syllable-rate bursts of a harmonic tone with a little noise, 16 kHz."""
    t = np.arange(int(seconds * SAMPLE_RATE_HZ)) / SAMPLE_RATE_HZ
    rng = np.random.default_rng(seed)
    tone = sum(np.sin(2 * np.pi * 150 * k * t) / k for k in range(1, 5))
    return (0.2 * np.clip(np.sin(2 * np.pi * 3.5 * t), 0, None) * tone
            + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def test_the_engine_steps_the_published_stream_frame_by_frame(converted: Path) -> None:
    voices = {'self': _voice(1.6, 0), 'partner': 0.5 * _voice(1.6, 1)}
    generator = PublishedStreamingGenerator(converted, seed=3)
    stepped = np.stack([frame.motion for frame in stream_clip(generator, voices['self'], voices['partner'])])
    # the same audio in one piece through the stream itself: the engine's frame-by-frame feeding changes nothing
    stream = PublishedStream(load_published_generator(converted), torch.zeros(512),
                             generator=torch.Generator().manual_seed(3))
    whole = stream.push(torch.from_numpy(voices['self']), torch.from_numpy(voices['partner'])).numpy()
    assert stepped.shape == (len(whole), 512) and len(whole) == (len(voices['self']) - 960) // 640
    np.testing.assert_allclose(stepped, whole, rtol=0, atol=1e-5)
    assert np.abs(np.diff(stepped, axis=0)).max() > 1e-3  # it moves

    # live, in 32 ms messages: every frame, a latent each, and no neck command (a latent has no head pose)
    formats = dict.fromkeys(voices, AudioFormat(SAMPLE_RATE_HZ, 1, 'F32LE'))
    engine = FaceEngine(generator, neck=NeckMapper(NeckConfig()), start_ns=0, formats=formats)
    assert not engine.face_motion
    outputs = []
    for start in range(0, len(voices['self']), 512):
        now = (start + 512) * NS_PER_S // SAMPLE_RATE_HZ
        for name, audio in voices.items():
            engine.push(name, audio[start:start + 512].tobytes(), start * NS_PER_S // SAMPLE_RATE_HZ, now)
        outputs += engine.poll(now)
    assert [o.index for o in outputs] == list(range(len(outputs))) and len(outputs) >= 35
    assert all(o.motion.shape == (512,) and o.neck is None for o in outputs)
    live = np.stack([o.motion for o in outputs])
    # the same latents as stepping the clip, up to the engine's DC blocker on each voice
    assert np.corrcoef(live.ravel(), stepped[:len(live)].ravel())[0, 1] > 0.999


def _start_face(*parameters: str) -> subprocess.Popen:
    arguments = [f'{name}:={value}' for name, value in (p.split('=', 1) for p in parameters)]
    command = [sys.executable, '-m', 'dystream_ros.nodes.dystream_node', '--ros-args']
    for argument in arguments:
        command += ['-p', argument]
    return subprocess.Popen(command, cwd=ROOT, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def _speak(executor: SingleThreadedExecutor, publishers: dict[str, Publisher], voices: dict[str, np.ndarray]) -> int:
    """Publish both voices at a microphone's pace (32 ms messages, stamped), spinning; return the first stamp."""
    start = time.time_ns()
    for k in range(len(voices['self']) // 512):
        stamp = start + k * 32_000_000
        for name, publisher in publishers.items():
            pcm = (voices[name][k * 512:(k + 1) * 512] * 32767).astype('<i2').tobytes()
            publisher.publish(AudioDataStamped(header=Header(stamp=time_message(stamp)), audio=AudioData(data=pcm)))
        while time.time_ns() < stamp + 32_000_000:
            executor.spin_once(timeout_sec=0.005)
    return start


@pytest.mark.realtime
@pytest.mark.parametrize('backend', ['torch', 'onnx'])
def test_dystream_node_streams_the_published_latents_on_face_motion(
        converted: Path, backend: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if backend == 'onnx':  # exported beforehand with `dystream export-onnx`, found in the cache by the weights' hash
        monkeypatch.setenv('DYSTREAM_CACHE', str(request.getfixturevalue('published_onnx_export').cache))
    context = Context()
    rclpy.init(context=context)
    node = rclpy.create_node('published_listener', context=context)
    motion: list[FaceMotion] = []
    node.create_subscription(FaceMotion, 'face/motion', motion.append, QoSProfile(depth=100))
    self_pub = node.create_publisher(AudioDataStamped, 'self_audio', QoSProfile(depth=100))
    partner_pub = node.create_publisher(AudioDataStamped, 'partner_audio', QoSProfile(depth=100))
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    face = _start_face(f'model_path={converted}', 'renderer=none', 'max_wait_ms=1000.0', f'backend={backend}')
    voices = {'self': _voice(4.0, 0), 'partner': 0.5 * _voice(4.0, 1)}
    try:
        deadline = time.monotonic() + 120
        while not motion and time.monotonic() < deadline and face.poll() is None:
            executor.spin_once(timeout_sec=0.1)
        assert motion, 'the node never started'
        started = len(motion)
        start = _speak(executor, {'self': self_pub, 'partner': partner_pub}, voices)
        end = time.monotonic() + 3
        while time.monotonic() < end:
            executor.spin_once(timeout_sec=0.05)
    finally:
        log = stop_node_and_graph(face, signal.SIGINT, executor, node, context)
    assert face.returncode == 0, log[-3000:]
    assert 'no head pose or neck commands: the published motion is a latent' in log, log[-3000:]
    if backend == 'onnx':
        assert 'CPUExecutionProvider' in log and 'exporting' not in log, log[-3000:]  # the cached export, reused
    spoken = motion[started:]
    # 4 s of speech make 100 frames; the reduced model takes about 35 ms a frame on an idle core, so a busy machine
    # skips some (and says so): the latents are what is checked here, not the pace
    assert len(spoken) >= 25, log[-3000:]
    assert all(len(m.motion_latent) == 512 and not m.blendshape_names and not m.blendshape_weights for m in spoken)
    latents = np.array([m.motion_latent for m in spoken])
    assert np.all(np.isfinite(latents)) and np.abs(np.diff(latents, axis=0)).max() > 1e-3
    stamps = [_stamp(m) for m in spoken]
    assert sum(start <= s < start + 4 * NS_PER_S for s in stamps) >= 20  # stamped with the speech's own time


@pytest.mark.realtime
def test_dystream_node_shows_the_published_face_with_onnx_runtime(
        converted: Path, published_renderer: Path, published_onnx_export: OnnxExport,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The published renderer is full size (512 px; about 13 s a frame on one core): the node renders what it can and
    # skips the rest. What is checked: the published face reaches face/image, from live audio, in a ROS graph.
    monkeypatch.setenv('DYSTREAM_CACHE', str(published_onnx_export.cache))
    context = Context()
    rclpy.init(context=context)
    node = rclpy.create_node('published_viewer', context=context)
    images: list[Image] = []
    motion: list[FaceMotion] = []
    node.create_subscription(Image, 'face/image', images.append, qos_profile_sensor_data)
    node.create_subscription(FaceMotion, 'face/motion', motion.append, QoSProfile(depth=100))
    publishers = {name: node.create_publisher(AudioDataStamped, f'{name}_audio', QoSProfile(depth=100))
                  for name in ('self', 'partner')}
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    face = _start_face(f'model_path={converted}', 'renderer=published', f'renderer_path={published_renderer}',
                       'backend=onnx', 'max_wait_ms=1000.0')
    try:
        deadline = time.monotonic() + 180
        while not motion and time.monotonic() < deadline and face.poll() is None:
            executor.spin_once(timeout_sec=0.1)
        assert motion, 'the node never started'
        start = _speak(executor, publishers, {'self': _voice(2.0, 0), 'partner': 0.5 * _voice(2.0, 1)})
        deadline = time.monotonic() + 60
        while (not any(_stamp(i) >= start for i in images) and time.monotonic() < deadline
               and face.poll() is None):
            executor.spin_once(timeout_sec=0.1)
    finally:
        log = stop_node_and_graph(face, signal.SIGINT, executor, node, context)
    assert face.returncode == 0, log[-3000:]
    assert 'CPUExecutionProvider' in log and 'exporting' not in log, log[-3000:]
    spoken = [i for i in images if _stamp(i) >= start]
    assert spoken, log[-3000:]
    picture = np.frombuffer(spoken[0].data, np.uint8).reshape(spoken[0].height, spoken[0].width, 3)
    assert (spoken[0].width, spoken[0].height, spoken[0].encoding) == (512, 512, 'rgb8')
    assert picture.std() > 5  # a picture, not a blank


def _stamp(message: Image | FaceMotion) -> int:
    return message.header.stamp.sec * NS_PER_S + message.header.stamp.nanosec


def test_dystream_node_refuses_to_show_the_published_motion_with_another_renderer(converted: Path) -> None:
    face = _start_face(f'model_path={converted}', 'renderer=photo')
    try:
        log, _ = face.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        face.kill()
        log, _ = face.communicate()
    assert face.returncode != 0
    assert 'renderer must be published or none, not photo' in log, log[-2000:]
