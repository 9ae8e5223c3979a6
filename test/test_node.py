"""dystream_node end to end in a real ROS graph: the node in its own process, the shipped demo bag replayed
into it by a second process, and its outputs received here, in a third. The node runs the shipped model."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import QuaternionStamped
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import Image
from support.realtime import live_run
from trajectory_msgs.msg import JointTrajectory

from dystream_ros.apps.bag_tools import read_conversation
from dystream_ros.apps.graph_run import GraphRun, Received, node_command
from dystream_ros.audio.vad import voice_activity
from dystream_ros.data.metrics import activity_with_hangover, listening_nod_ratio
from dystream_ros.face.motion import quaternion_to_rpy
from dystream_ros.msg import FaceMotion
from dystream_ros.nodes.conversions import stamp_ns
from dystream_ros.units import FPS, NS_PER_S, SAMPLE_RATE_HZ

ROOT = Path(__file__).resolve().parent.parent
DEMO_BAG = ROOT / 'dystream_ros' / 'assets' / 'demo_conversation'
BAG_START_NS = 1_700_000_000 * NS_PER_S  # the demo bag's first audio stamp
MS = 1_000_000
IDLE_BEFORE_REPLAY_S = 6.0
NECK_LIMITS = {'head_1_joint': (-1.2, 1.2), 'head_2_joint': (-0.9, 0.7)}  # config defaults


@dataclass
class Outputs:
    """Everything the node publishes; face/motion with the time each message arrived here."""

    motion: list[Received[FaceMotion]]
    image_stamps: list[int]
    pose_stamps: list[int]
    neck: list[JointTrajectory]
    diagnostics: list[DiagnosticArray]


def _header_stamp(message: Any) -> int:
    return stamp_ns(message.header.stamp)


pytestmark = pytest.mark.realtime


@pytest.fixture
def replayed(request: pytest.FixtureRequest, live_runs: dict) -> dict:
    """The node's outputs for the replayed demo bag: one run shared by the module's tests (a fresh one for a rerun)."""
    return live_run(request, live_runs, _replay)


def _replay() -> dict:
    """Run the node, replay the demo bag at its recorded pace, collect everything, stop the node with SIGINT."""
    reliable = QoSProfile(depth=200)
    with GraphRun({'image_size': 256}, listener='dystream_test_listener', cwd=ROOT) as graph:
        motion = graph.subscribe(FaceMotion, 'face/motion', reliable)
        images = graph.subscribe(Image, 'face/image', qos_profile_sensor_data, keep=_header_stamp)
        poses = graph.subscribe(QuaternionStamped, 'head/pose', reliable, keep=_header_stamp)
        neck = graph.subscribe(JointTrajectory, 'neck/command', reliable)
        diagnostics = graph.subscribe(DiagnosticArray, '/diagnostics', reliable)
        graph.start()  # idle frames flow once the node is active
        first_idle = len(motion)
        time.sleep(IDLE_BEFORE_REPLAY_S)  # the robot alone in a quiet room, for comparison
        replay = graph.replay(DEMO_BAG)
        time.sleep(1.5)  # the last frames on their way
    assert replay.returncode == 0, replay.stdout
    outputs = Outputs(motion, [stamp for _, stamp in images], [stamp for _, stamp in poses], [m for _, m in neck],
                      [d for _, d in diagnostics])
    self_audio, partner_audio = read_conversation(DEMO_BAG, '/self_audio', '/partner_audio')
    return {'outputs': outputs, 'first_idle': first_idle, 'node_rc': graph.returncode,
            'logs': {'replay': replay.stdout, 'node': graph.output}, 'self_audio': self_audio,
            'partner_audio': partner_audio}


def _conversation_frames(replayed: dict) -> list[FaceMotion]:
    """The frames whose audio time lies inside the replayed conversation."""
    end_ns = BAG_START_NS + len(replayed['self_audio']) * NS_PER_S // SAMPLE_RATE_HZ
    return [m for _, m in replayed['outputs'].motion if BAG_START_NS - 40 * MS <= stamp_ns(m.header.stamp) < end_ns]


def test_frames_come_at_25_hz_and_none_is_lost_at_real_time_pace(replayed: dict) -> None:
    received = replayed['outputs'].motion
    indices = [m.frame_index for _, m in received]
    assert indices == list(range(indices[0], indices[0] + len(indices))), 'frame indices jump: frames were lost'
    conversation = _conversation_frames(replayed)
    seconds = len(replayed['self_audio']) / SAMPLE_RATE_HZ
    assert abs(len(conversation) - seconds * FPS) <= 2
    # the publication rate over the replay, measured on arrival here
    times = np.array([t for t, m in received[replayed['first_idle']:]]) / NS_PER_S
    rate = (len(times) - 1) / (times[-1] - times[0])
    assert FPS * 0.95 <= rate <= FPS * 1.05, rate
    assert 'frames_dropped' not in replayed['logs']['node']


def test_every_output_carries_the_audio_time_of_its_frame(replayed: dict) -> None:
    stamps = np.array([stamp_ns(m.header.stamp) for m in _conversation_frames(replayed)])
    assert (np.diff(stamps) == 40 * MS).all()
    # the node's frame grid starts within one 32 ms message of the bag's first sample
    assert abs((stamps[0] - BAG_START_NS) % (40 * MS)) <= 40 * MS and abs(stamps[0] - BAG_START_NS) < 80 * MS
    outputs = replayed['outputs']
    motion_stamps = {stamp_ns(m.header.stamp) for _, m in outputs.motion}
    # (before any audio the stamps follow the node's clock; the bag's audio clock is years earlier)
    last = stamp_ns(outputs.motion[-1][1].header.stamp)  # the last frame's other messages may be on their way
    conversation = {s for s in motion_stamps if s <= last}
    assert {s for s in outputs.pose_stamps if s <= last} <= conversation
    assert {s for s in outputs.image_stamps if s <= last} <= conversation
    assert len(outputs.image_stamps) > 0.9 * len(outputs.motion)
    latencies_ms = [m.latency.sec * 1e3 + m.latency.nanosec / 1e6 for m in _conversation_frames(replayed)]
    assert 0 <= np.median(latencies_ms) < 100


def _frame_activity(audio: np.ndarray, frames: list[FaceMotion]) -> np.ndarray:
    active = activity_with_hangover(voice_activity(audio) > 0, 0)
    index = [(stamp_ns(m.header.stamp) - BAG_START_NS) // (40 * MS) for m in frames]
    return np.array([bool(active[i]) if 0 <= i < len(active) else False for i in index])


def test_the_mouth_moves_while_the_robot_speaks_and_closes_when_it_is_silent(replayed: dict) -> None:
    frames = _conversation_frames(replayed)
    jaw_index = list(frames[0].blendshape_names).index('jawOpen')
    jaw = np.array([m.blendshape_weights[jaw_index] for m in frames])
    speaking = _frame_activity(replayed['self_audio'], frames)
    silent = ~activity_with_hangover(speaking, 8) & ~activity_with_hangover(speaking[::-1], 8)[::-1]
    assert jaw[speaking].mean() > 0.1 and jaw[speaking].mean() > 4 * max(jaw[silent].mean(), 0.01)
    assert np.std(jaw[speaking]) > 0.05  # it moves with the syllables, not just open
    assert all(0.0 <= w <= 1.0 for m in frames for w in m.blendshape_weights)
    assert np.mean(jaw[silent] < 0.1) > 0.8
    assert np.mean([m.activity in (FaceMotion.ACTIVITY_SPEAKING, FaceMotion.ACTIVITY_OVERLAP)
                    for m, s in zip(frames, speaking) if s]) > 0.8


def test_the_head_moves_more_while_listening_than_in_silence(replayed: dict) -> None:
    # every frame the node published, the quiet room before the replay included: the bag itself has under 2 s in
    # which nobody speaks, too few to judge calm from
    frames = [m for _, m in replayed['outputs'].motion]
    pitch = [quaternion_to_rpy(np.array([m.head_rotation.x, m.head_rotation.y, m.head_rotation.z,
                                         m.head_rotation.w]))[1] for m in frames]
    own = activity_with_hangover(_frame_activity(replayed['self_audio'], frames))
    heard = activity_with_hangover(_frame_activity(replayed['partner_audio'], frames))
    assert (heard & ~own).sum() > 50 and (~heard & ~own).sum() > 100
    ratio = listening_nod_ratio(np.array(pitch), own, heard)
    assert ratio > 1.5, ratio
    assert any(m.activity == FaceMotion.ACTIVITY_LISTENING for m in frames)


def test_neck_commands_stay_within_the_joint_limits(replayed: dict) -> None:
    commands = replayed['outputs'].neck
    assert len(commands) > 0.9 * len(replayed['outputs'].motion)
    for command in commands:
        assert list(command.joint_names) == list(NECK_LIMITS)
        for name, position in zip(command.joint_names, command.points[0].positions):
            low, high = NECK_LIMITS[name]
            assert low <= position <= high
        assert all(abs(v) <= 1.5 + 1e-9 for v in command.points[0].velocities)


def test_diagnostics_report_rates_latency_and_backend(replayed: dict) -> None:
    diagnostics = replayed['outputs'].diagnostics
    assert len(diagnostics) >= 30  # one a second
    values = {kv.key: kv.value for kv in diagnostics[-3].status[0].values}
    assert values['backend'] == 'StreamingGenerator' and 'torch' in values['providers']
    assert float(values['latency_p99_ms']) >= float(values['latency_p50_ms']) > 0
    assert int(values['frames_dropped']) == 0
    # where a frame's time goes, per stage (the lookahead is a wait, the rest is work)
    assert int(values['lookahead_ms']) == 60
    for stage in ('encoder', 'transformer_and_head', 'render', 'publish'):
        assert 0 < float(values[f'{stage}_ms_mean']) < 40, stage
    rates = [int(kv.value) for d in diagnostics for kv in d.status[0].values if kv.key == 'self_audio_messages_per_s']
    # 512-sample messages: 31.25 per second while the bag plays (a player that stalls on a busy machine catches up
    # with a burst in one second: the typical second counts)
    assert 25 <= np.median([r for r in rates if r > 0]) <= 40


def test_the_node_shuts_down_cleanly_on_sigint(replayed: dict) -> None:
    assert replayed['node_rc'] == 0, replayed['logs']['node'][-2000:]
    assert 'Traceback' not in replayed['logs']['node']


@pytest.mark.parametrize(('parameter', 'expected'), [
    ('renderer:=banana', 'renderer must be one of stylised, photo, published, none'),
    ('model_path:=/nonexistent/dystream.safetensors', 'model_path: no such file: /nonexistent/dystream.safetensors'),
    ('neck_axes:=[yaw]', 'neck parameter lists must have the same length'),
    ('self_sample_format:=MP3', 'self_sample_format must be one of S16LE, S32LE, F32LE'),
])
def test_invalid_parameters_stop_the_node_with_a_message_naming_them(parameter: str, expected: str) -> None:
    name, value = parameter.split(':=')
    result = subprocess.run(node_command({name: value}), cwd=ROOT, env=dict(os.environ), capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 1
    assert expected in result.stdout + result.stderr


@pytest.mark.parametrize('attempt', range(3))
def test_sigterm_while_publishing_is_a_clean_shutdown(attempt: int) -> None:
    with GraphRun({'renderer': 'none'}, listener='sigterm_listener', cwd=ROOT) as graph:
        frames = graph.subscribe(FaceMotion, 'face/motion', QoSProfile(depth=10))
        graph.start()
        graph.wait_until(lambda: len(frames) >= 10 + 7 * attempt, 120)  # stop at different moments
        graph.stop(signal.SIGTERM)
    assert frames
    assert graph.returncode == 0 and 'Traceback' not in graph.output, graph.output[-2000:]
