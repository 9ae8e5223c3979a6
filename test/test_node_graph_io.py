"""dystream_node's messages, parameters and outputs as a robot integrator meets them: the node in its own process,
publishers and subscribers here. The model is not the point here, so most runs use the amplitude generator."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rcl_interfaces.msg import SetParametersResult
from rcl_interfaces.srv import SetParameters
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import Header, String
from trajectory_msgs.msg import JointTrajectory

from dystream_ros.apps.bags import write_conversation_bag
from dystream_ros.apps.graph_run import GraphRun
from dystream_ros.data.corpus import conversation
from dystream_ros.msg import AudioData, AudioDataStamped, AudioInfo, FaceMotion
from dystream_ros.nodes.conversions import stamp_ns, time_message
from dystream_ros.nodes.qos import INFO_QOS

ROOT = Path(__file__).resolve().parent.parent
FAST = {'generator': 'amplitude', 'renderer': 'none'}
CHUNK = 512  # samples: 32 ms at 16 kHz
RELIABLE = QoSProfile(depth=1000)

pytestmark = pytest.mark.realtime


def stamped(pcm: np.ndarray, stamp_ns: int) -> AudioDataStamped:
    """One audio message of S16LE samples, stamped ``stamp_ns``."""
    return AudioDataStamped(header=Header(stamp=time_message(stamp_ns)),
                            audio=AudioData(data=pcm.astype('<i2').tobytes()))


def tone(seconds: float, level: float = 0.5, rate_hz: int = 16000) -> np.ndarray:
    """A 200 Hz tone as S16LE sample values."""
    t = np.arange(int(seconds * rate_hz)) / rate_hz
    return (level * 32767 * np.sin(2 * np.pi * 200 * t)).astype(np.int16)


def status_values(array: DiagnosticArray) -> dict[str, str]:
    return {kv.key: kv.value for kv in array.status[0].values}


def test_a_tts_burst_of_300_chunks_reaches_the_node_whole() -> None:
    # A TTS publishes an utterance at once: 300 chunks (9.6 s of audio) in one burst, stamped from now on.
    with GraphRun(FAST, listener='burst_listener', cwd=ROOT) as graph:
        diagnostics = graph.subscribe(DiagnosticArray, '/diagnostics', RELIABLE)
        publisher = graph.node.create_publisher(AudioDataStamped, 'self_audio', RELIABLE)
        graph.start()
        graph.wait_until(lambda: publisher.get_subscription_count() > 0, 10)
        audio, start_ns = tone(300 * CHUNK / 16000), time.time_ns()
        for k in range(300):
            publisher.publish(stamped(audio[k * CHUNK:(k + 1) * CHUNK], start_ns + k * 32_000_000))
        before = len(diagnostics)
        graph.wait_until(lambda: len(diagnostics) >= before + 3, 10)  # every count reported
    received = sum(int(status_values(d.value)['self_audio_messages_per_s']) for d in diagnostics)
    assert received == 300, graph.output[-2000:]


def test_neck_points_are_never_due_in_the_past_and_stale_frames_send_none() -> None:
    # A TTS stamps its audio with the time it will be played, 0.5 s ahead; then the node's process stalls for
    # 1.5 s (descheduled, swapped out) while the robot is quiet, and catches up with the frames it owes.
    with GraphRun(FAST, listener='neck_listener', cwd=ROOT) as graph:
        motion = graph.subscribe(FaceMotion, 'face/motion', RELIABLE)
        neck = graph.subscribe(JointTrajectory, 'neck/command', RELIABLE)
        publisher = graph.node.create_publisher(AudioDataStamped, 'self_audio', RELIABLE)
        graph.start()
        audio, start_ns = tone(2.0), time.time_ns()
        for k in range(len(audio) // CHUNK):
            publisher.publish(stamped(audio[k * CHUNK:(k + 1) * CHUNK], start_ns + 500_000_000 + k * 32_000_000))
            time.sleep(CHUNK / 16000)
        time.sleep(1.0)
        os.kill(graph.pid, signal.SIGSTOP)
        time.sleep(1.5)
        os.kill(graph.pid, signal.SIGCONT)
        time.sleep(1.0)
    latency_ms = {stamp_ns(m.header.stamp): m.latency.sec * 1e3 + m.latency.nanosec / 1e6 for _, m in motion}
    stamps = sorted(latency_ms)
    # the stall happened: the frames it held up came late, or were skipped (the engine skips ahead past 0.5 s)
    assert max(latency_ms.values()) > 1000 or np.diff(stamps).max() > 1_000_000_000
    commanded = set()
    for received_ns, command in neck:
        stamp = stamp_ns(command.header.stamp)
        reach_ns = stamp + stamp_ns(command.points[0].time_from_start)
        assert command.points[0].time_from_start.sec >= 0
        assert reach_ns >= received_ns - 10_000_000, (reach_ns - received_ns) / 1e6  # not due before it arrived
        commanded.add(stamp)
    late = {stamp for stamp, ms in latency_ms.items() if ms > 200}
    assert not late & commanded  # no command for a frame published late
    on_time = set(latency_ms) - late
    assert len(commanded) >= 0.95 * len(on_time)
    spoken = [stamp for stamp in commanded if start_ns + 500_000_000 <= stamp < start_ns + 2_500_000_000]
    assert len(spoken) > 40  # the frames stamped ahead had commands, due at their stamps


def test_a_reliable_subscriber_gets_face_images_with_image_reliability_reliable() -> None:
    # rqt_image_view and rviz subscribe reliable by default; a best-effort publisher gives them nothing
    with GraphRun({'generator': 'amplitude', 'image_size': 64, 'image_reliability': 'reliable'},
                  listener='reliable_display', cwd=ROOT) as graph:
        images = graph.subscribe(Image, 'face/image', QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE))
        graph.start()
        graph.wait_until(lambda: len(images) >= 25, 10)
    assert len(images) >= 25, graph.output[-2000:]
    assert (images[-1].value.height, images[-1].value.encoding) == (64, 'rgb8')


def test_a_48_khz_bag_replayed_with_dystream_bag_replay_is_read_as_48_khz(tmp_path: Path) -> None:
    bag = tmp_path / 'voice_48k'
    write_conversation_bag(bag, tone(4.0, rate_hz=48000) / 32768, np.zeros(0), start_ns=1_700_000_000 * 10**9,
                           chunk_samples=1536, sample_rate_hz=48000)
    with GraphRun(FAST, listener='bag_listener', cwd=ROOT) as graph:
        diagnostics = graph.subscribe(DiagnosticArray, '/diagnostics', RELIABLE)
        graph.start()
        replay = graph.replay(bag, restamp=True)
        time.sleep(1.5)
    assert replay.returncode == 0, replay.stdout
    assert 'self_audio is now 48000 Hz' in graph.output, graph.output[-3000:]
    assert 'does not fit the time between its stamps' not in graph.output, graph.output[-3000:]
    assert any(int(status_values(d.value)['self_audio_messages_per_s']) for d in diagnostics)
    assert 'self_audio_rate_mismatch' not in status_values(diagnostics[-1].value)


def test_a_publisher_of_the_wrong_type_is_named_with_what_to_set() -> None:
    # plain AudioData where the stamped type is expected (the default), and a string where audio belongs
    with GraphRun(FAST, listener='wrong_types', cwd=ROOT) as graph:
        diagnostics = graph.subscribe(DiagnosticArray, '/diagnostics', RELIABLE)
        graph.node.create_publisher(AudioData, 'self_audio', RELIABLE)
        graph.node.create_publisher(String, 'partner_audio', RELIABLE)
        graph.start()
        graph.wait_until(lambda: any(d.value.status[0].level == DiagnosticStatus.WARN for d in diagnostics), 10)
        time.sleep(3.0)  # the node goes on checking
    warned = [d.value.status[0] for d in diagnostics if d.value.status[0].level == DiagnosticStatus.WARN]
    assert warned, graph.output[-2000:]
    assert 'set self_audio_type:=AudioData' in warned[-1].message
    assert 'publish std_msgs/msg/String' in warned[-1].message and 'it is not audio' in warned[-1].message
    for hint in ('set self_audio_type:=AudioData', 'std_msgs/msg/String'):
        lines = [line for line in graph.output.splitlines() if hint in line]
        assert len(lines) == 1, lines  # said once, not every second


@pytest.mark.parametrize(('select', 'heard'), [([0], False), (None, True)])
def test_a_microphone_array_is_heard_only_on_the_channels_selected(select: list[int] | None, heard: bool) -> None:
    # a ReSpeaker-style 6-channel array: the robot's own voice on its playback reference (channel 5), silence on
    # the beamformed channel 0 and the raw microphones; the format comes from a latched AudioInfo
    robot, _ = conversation(2, 'heldout', 9, 5.0)
    voice = robot.self_audio[:4 * 16000] / np.abs(robot.self_audio).max() * 0.9
    array = np.zeros((len(voice), 6), np.int16)
    array[:, 5] = (voice * 32767).astype(np.int16)
    parameters = {**FAST, **({'partner_channel_select': select} if select else {})}
    with GraphRun(parameters, listener='array_listener', cwd=ROOT) as graph:
        motion = graph.subscribe(FaceMotion, 'face/motion', RELIABLE)
        info = graph.node.create_publisher(AudioInfo, 'partner_audio_info', INFO_QOS)
        info.publish(AudioInfo(channels=6, sample_rate=16000, sample_format='S16LE', coding_format='WAVE'))
        publisher = graph.node.create_publisher(AudioDataStamped, 'partner_audio', RELIABLE)
        graph.start()
        time.sleep(1.0)  # the AudioInfo is taken
        start_ns, started = time.time_ns(), time.monotonic()
        for k in range(len(array) // CHUNK):
            publisher.publish(stamped(array[k * CHUNK:(k + 1) * CHUNK].reshape(-1), start_ns + k * 32_000_000))
            time.sleep(max(0.0, started + (k + 1) * CHUNK / 16000 - time.monotonic()))
        time.sleep(0.5)
    assert 'partner_audio is now 16000 Hz, 6 channel(s)' in graph.output, graph.output[-2000:]
    during = [m for _, m in motion if stamp_ns(m.header.stamp) >= start_ns]
    assert len(during) > 80
    listening = sum(m.partner_voice_activity > 0 for m in during)
    assert (listening >= 5) if heard else (listening == 0), listening  # the loud words at its end: 7 frames


def test_parameters_set_at_run_time_take_effect_at_once_or_are_refused_with_the_reason() -> None:
    with GraphRun({**FAST, 'neck_offsets_rad': [0.5, 0.0]}, listener='parameter_client', cwd=ROOT) as graph:
        motion = graph.subscribe(FaceMotion, 'face/motion', RELIABLE)
        neck = graph.subscribe(JointTrajectory, 'neck/command', RELIABLE)
        client = graph.node.create_client(SetParameters, '/dystream_node/set_parameters')
        graph.start()

        def set_parameters(**values: object) -> list[SetParametersResult]:
            request = SetParameters.Request(parameters=[Parameter(n, value=v).to_parameter_msg()
                                                        for n, v in values.items()])
            future = client.call_async(request)
            assert graph.wait_until(future.done, 10)
            return future.result().results

        refused = {
            'steps': set_parameters(steps=10),
            'length': set_parameters(neck_max_rad=[1.2]),
            'order': set_parameters(neck_max_rad=[-2.0, 0.7]),
            'infinite': set_parameters(neck_gains=[float('inf'), -1.0]),
            'axis': set_parameters(neck_axes=['yaw', 'tilt']),
        }
        changed_at = time.time_ns()
        accepted = set_parameters(frame_id='robot_face', neck_max_rad=[0.2, 0.7], max_wait_ms=300.0)
        time.sleep(1.0)
    assert graph.returncode == 0, graph.output[-2000:]
    for why, (result,) in refused.items():
        assert not result.successful, why
    assert 'cannot change while the node is configured' in refused['steps'][0].reason
    assert 'same length' in refused['length'][0].reason
    assert 'min_rad < max_rad' in refused['order'][0].reason
    assert 'must be finite' in refused['infinite'][0].reason
    assert "'tilt'" in refused['axis'][0].reason
    assert all(result.successful for result in accepted)
    assert 'in effect now: max_wait_ms' in graph.output, graph.output[-2000:]
    # in effect on the next frames: the joint limit moved the head in, the frame id is the new one
    before = [m for t, m in neck if t < changed_at]
    assert before and before[-1].points[0].positions[0] == 0.5
    after = [m for t, m in neck if t > changed_at + 200_000_000]
    assert after and all(m.points[0].positions[0] <= 0.2 for m in after)
    assert all(m.header.frame_id == 'robot_face' for t, m in motion if t > changed_at + 200_000_000)
