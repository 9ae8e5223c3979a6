"""The launch files start what they describe (read with the launch runner: there is no `ros2 launch` here)."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile
from rosbags.rosbag2 import Reader
from support.launch_runner import load, processes
from test_audio_capture import _virtual_microphone

from dystream_ros.apps.bags import write_conversation_bag
from dystream_ros.apps.virtual_speaker import Dac, add_virtual_speaker
from dystream_ros.data.corpus import conversation
from dystream_ros.msg import FaceMotion
from dystream_ros.security.policy import OUR_ENCLAVES

ROOT = Path(__file__).resolve().parent.parent
LAUNCH = ROOT / 'launch'


@pytest.mark.parametrize('name', ['dystream', 'robot', 'replay'])
def test_each_launch_file_names_installed_executables_and_files(name: str) -> None:
    launched, arguments = processes(load(LAUNCH / f'{name}.launch.py'))
    assert launched
    for process in launched:
        assert os.access(process.argv[0], os.X_OK), process.argv[0]
    assert Path(arguments['params_file']).is_file()
    if name == 'replay':
        assert (Path(arguments['bag']) / 'metadata.yaml').is_file()


class _Launched:
    """The processes of a launch file, and a listener for the face they publish."""

    def __init__(self, name: str, overrides: dict[str, str] | None = None, env: dict[str, str] | None = None) -> None:
        self.processes, self.arguments = processes(load(LAUNCH / f'{name}.launch.py'), overrides)
        self.context = Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node('launch_test_listener', context=self.context)
        self.motion: list[FaceMotion] = []
        self.node.create_subscription(FaceMotion, 'face/motion', self.motion.append, QoSProfile(depth=100))
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.popen = {p.name: subprocess.Popen(p.argv, env=dict(os.environ, **p.env, **(env or {})),
                                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                      for p in self.processes}

    def spin_until(self, condition, timeout_s: float) -> None:  # noqa: ANN001
        deadline = time.monotonic() + timeout_s
        while not condition() and time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.05)

    def stop(self) -> dict[str, str]:
        logs = {}
        for name, process in self.popen.items():
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
            try:
                logs[name] = process.communicate(timeout=20)[0]
            except subprocess.TimeoutExpired:
                process.kill()
                logs[name] = process.communicate()[0]
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
        return logs


def test_dystream_launch_starts_the_node_with_its_parameter_file() -> None:
    launched = _Launched('dystream')
    try:
        launched.spin_until(lambda: len(launched.motion) >= 25, 120)
        names = [n for n, _ in launched.node.get_node_names_and_namespaces()]
    finally:
        logs = launched.stop()
    assert len(launched.motion) >= 25, logs
    assert 'dystream_node' in names
    assert launched.popen['dystream_node'].returncode == 0, logs['dystream_node'][-2000:]


def test_robot_launch_feeds_the_microphone_to_the_face_as_the_partner_and_the_tts_to_the_speaker(
        tmp_path: Path) -> None:
    # the virtual microphone has no clock (it delivers the file as fast as it is read), so what is checked here
    # is the wiring; test_audio_capture and test_audio_player check the audio itself
    _virtual_microphone(tmp_path)
    speaker = Dac(add_virtual_speaker(tmp_path))
    launched = _Launched('robot', {'microphone': 'filemic', 'speaker': 'speaker'}, env={'HOME': str(tmp_path)})
    heard = []
    launched.node.create_subscription(DiagnosticArray, '/diagnostics', lambda m: heard.extend(
        int(kv.value) for kv in m.status[0].values if kv.key == 'partner_audio_messages_per_s'), QoSProfile(depth=10))

    def listening_to(topic: str) -> set[str]:  # a subscription's node name reaches the graph a little after it
        return {info.node_name for info in launched.node.get_subscriptions_info_by_topic(topic)}

    try:
        launched.spin_until(lambda: any(heard), 120)
        launched.spin_until(lambda: 'dystream_node' in listening_to('/partner_audio')
                            and {'dystream_node', 'speaker'} <= listening_to('/tts/audio'), 10)
        graph = launched.node.get_publisher_names_and_types_by_node('microphone', '/')
        face_listens, tts_listeners = 'dystream_node' in listening_to('/partner_audio'), listening_to('/tts/audio')
    finally:
        logs = launched.stop()
        speaker.close()
    assert any(heard), logs  # dystream_node counted messages from the microphone
    assert launched.motion
    assert ('/partner_audio', ['dystream_ros/msg/AudioDataStamped']) in graph
    assert face_listens
    assert {'dystream_node', 'speaker'} <= tts_listeners, logs.get('speaker', '')[-2000:]
    assert speaker.start_s is not None  # the speaker played (silence: nobody spoke)


def test_replay_launch_records_the_face_for_a_bag(tmp_path: Path) -> None:
    robot, _ = conversation(0, 'heldout', 3, 4.0)
    bag = tmp_path / 'conversation'
    write_conversation_bag(bag, robot.self_audio, robot.partner_audio, start_ns=1_700_000_000 * 10**9)
    out = tmp_path / 'face'
    launched = _Launched('replay', {'bag': str(bag), 'out': str(out)})
    try:
        replay = next(p for name, p in launched.popen.items() if 'replay' in name)
        launched.spin_until(lambda: replay.poll() is not None, 120)
        launched.spin_until(lambda: False, 1.0)  # the last frames
    finally:
        logs = launched.stop()  # what OnProcessExit -> Shutdown does: every other process gets SIGINT
    assert replay.returncode == 0, logs
    with Reader(out) as reader:
        counts = {c.topic: c.msgcount for c in reader.connections}
    seconds = robot.num_frames / 25
    assert counts['/face/motion'] >= 0.9 * seconds * 25, (counts, logs)
    assert counts['/neck/command'] >= 0.9 * seconds * 25
    assert np.isfinite(seconds)


@pytest.mark.parametrize('name', ['dystream', 'robot'])
def test_with_security_every_process_runs_enforced_in_its_enclave(name: str, tmp_path: Path) -> None:
    secure, _ = processes(load(LAUNCH / f'{name}.launch.py'), {'security': 'true', 'keystore': str(tmp_path)})
    plain, _ = processes(load(LAUNCH / f'{name}.launch.py'))
    for process in secure:
        assert process.env == {'ROS_SECURITY_ENABLE': 'true', 'ROS_SECURITY_STRATEGY': 'Enforce',
                               'ROS_SECURITY_KEYSTORE': str(tmp_path)}
        assert process.argv[process.argv.index('--enclave') + 1] in OUR_ENCLAVES
    assert [p.argv for p in plain] == [p.argv for p in secure]  # without security rcl ignores the enclave
    assert all(not p.env for p in plain)
