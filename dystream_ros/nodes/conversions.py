"""Plain data <-> ROS messages: stamps, images (the broken PyPI cv_bridge cannot be trusted with them), face
motion, neck commands and diagnostics."""
from __future__ import annotations

import array
import sys
from typing import TYPE_CHECKING

import numpy as np
from builtin_interfaces.msg import Duration, Time
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue
from geometry_msgs.msg import Quaternion, QuaternionStamped, Vector3
from sensor_msgs.msg import Image, JointState
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from dystream_ros.audio import AudioFormat, AudioIssue
from dystream_ros.errors import ConfigError
from dystream_ros.face.images import check_rgb
from dystream_ros.face.motion import BLENDSHAPE_NAMES, BLENDSHAPES, TRANSLATION, head_quaternion
from dystream_ros.msg import AudioInfo, FaceMotion
from dystream_ros.units import FPS, NS_PER_S

OTHER_CLOCK_NS = NS_PER_S  # a frame stamped this long before now has its stamps on another clock (an old bag)

if TYPE_CHECKING:
    from collections.abc import Collection

    from std_msgs.msg import Header

    from dystream_ros.runtime.engine import EngineStatus, FrameOutput


def time_message(stamp_ns: int) -> Time:
    """builtin_interfaces/Time of a stamp in integer nanoseconds."""
    return Time(sec=int(stamp_ns // NS_PER_S), nanosec=int(stamp_ns % NS_PER_S))


def duration_message(duration_ns: int) -> Duration:
    """builtin_interfaces/Duration of a non-negative duration in integer nanoseconds."""
    return Duration(sec=int(duration_ns // NS_PER_S), nanosec=int(duration_ns % NS_PER_S))


def stamp_ns(time: Time) -> int:
    """Integer nanoseconds of a builtin_interfaces/Time."""
    return int(time.sec) * NS_PER_S + int(time.nanosec)


def image_message(rgb: np.ndarray, header: Header) -> Image:
    """sensor_msgs/Image (rgb8) of an (H, W, 3) uint8 array.

    The pixels go in as one ``bytes`` object: assigning the array itself makes rclpy copy it element by element,
    about 300 times slower for a 512x512 image.
    """
    rgb = check_rgb(rgb, 'face image')
    height, width = rgb.shape[:2]
    image = Image(header=header, height=height, width=width, encoding='rgb8',
                  is_bigendian=int(sys.byteorder == 'big'), step=width * 3)
    image.data = np.ascontiguousarray(rgb).tobytes()
    return image


def pose_message(output: FrameOutput, header: Header) -> QuaternionStamped:
    """The head rotation of a frame."""
    x, y, z, w = (float(v) for v in head_quaternion(output.motion))
    return QuaternionStamped(header=header, quaternion=Quaternion(x=x, y=y, z=z, w=w))


def face_motion_message(output: FrameOutput, header: Header, latency_ns: int, face_motion: bool = True
                        ) -> FaceMotion:
    """FaceMotion of a frame: blendshapes and head pose (or, with ``face_motion`` false, the published model's
    latent), who speaks, and the latency from sound to publication."""
    message = FaceMotion(
        header=header, frame_index=output.index, activity=int(output.activity),
        self_voice_activity=float(output.self_activity), partner_voice_activity=float(output.partner_activity),
        latency=duration_message(latency_ns))
    if not face_motion:
        message.motion_latent = array.array('f', output.motion.astype(np.float32).tobytes())
        return message
    translation = output.motion[TRANSLATION]
    message.blendshape_names = list(BLENDSHAPE_NAMES)
    message.blendshape_weights = output.motion[BLENDSHAPES].astype(float).tolist()
    message.head_rotation = pose_message(output, header).quaternion
    message.head_translation = Vector3(x=float(translation[0]), y=float(translation[1]), z=float(translation[2]))
    return message


def neck_message(output: FrameOutput, header: Header, neck_output: str, now_ns: int) -> JointTrajectory | JointState:
    """The neck command of a frame, as a JointState or a one-point JointTrajectory."""
    command = output.neck
    if neck_output == 'joint_state':
        return JointState(header=header, name=list(command.names), position=command.positions.tolist(),
                          velocity=command.velocities.tolist())
    # A trajectory controller starts the trajectory at header.stamp, the frame's audio time, and reaches the point
    # time_from_start later: at the stamp itself (the face shows the frame then), but never sooner than one frame
    # from now, since a point due in the past is refused or jumped to. Stamps on another clock (an old bag) get
    # the point one frame after the stamp.
    frame_ns = NS_PER_S // FPS
    other_clock = now_ns - output.stamp_ns > OTHER_CLOCK_NS
    reach_ns = frame_ns if other_clock else max(0, now_ns + frame_ns - output.stamp_ns)
    point = JointTrajectoryPoint(positions=command.positions.tolist(), velocities=command.velocities.tolist(),
                                 time_from_start=duration_message(reach_ns))
    return JointTrajectory(header=header, joint_names=list(command.names), points=[point])


def diagnostic_values(status: EngineStatus, latencies_ms: Collection[float],
                      stage_ms: dict[str, Collection[float]]) -> dict[str, object]:
    """The engine's figures as diagnostics key/values: latency percentiles, time per stage, backend, lookahead, and
    every repaired audio problem."""
    latencies = np.array(latencies_ms) if latencies_ms else np.zeros(1)
    values: dict[str, object] = {
        'latency_p50_ms': round(float(np.percentile(latencies, 50)), 1),
        'latency_p99_ms': round(float(np.percentile(latencies, 99)), 1),
        'frames_dropped': status.frames_dropped, 'renders_dropped': status.renders_dropped,
        'frames_light': status.frames_light,
        'backend': status.generator, 'providers': ','.join(status.providers), 'lookahead_ms': status.lookahead_ms,
        **{f'{stage}_ms_mean': round(float(np.mean(ms)), 2) for stage, ms in stage_ms.items()}}
    for stream, voice in status.voices.items():
        values[f'{stream}_audio_delivery_delay_ms'] = round(voice.delivery_delay_ms, 1)
        values[f'{stream}_audio_wait_ms'] = round(voice.wait_ms, 1)
        for issue, count in voice.issues.items():
            values[f'{stream}_audio_{issue.lower()}'] = count
    return values


def late_voice_problems(status: EngineStatus) -> list[str]:
    """A line for each voice whose audio arrives later than frames may wait for it (its audio is dropped)."""
    return [f'{stream}_audio: {voice.explain(AudioIssue.LATE)}' for stream, voice in status.voices.items()
            if voice.delivery_delay_ms > voice.max_wait_ms]


def face_diagnostics(name: str, status: EngineStatus, unrendered: int, values: dict[str, object],
                     problems: Collection[str] = (), lightened: int = 0,
                     renderer: str = 'stylised') -> DiagnosticStatus:
    """The node's DiagnosticStatus: WARN, saying why, when ``problems`` (e.g. wrong publishers) are given, frames
    were dropped, or work was shed in the last second (``unrendered`` images, ``lightened`` Euler steps); the
    advice fits the ``renderer`` parameter."""
    warnings = list(problems)
    if unrendered and renderer == 'published':
        warnings.append(f'short of time: {unrendered} frames in the last second got no image (their motion was '
                        'published); the published renderer needs a GPU: device cuda, or backend onnx with '
                        'onnxruntime-gpu')
    elif unrendered:
        warnings.append(f'short of time: {unrendered} frames in the last second got no image (their motion and pose '
                        'were published); lower image_size, use the stylised renderer or backend onnx, or free the CPU')
    if lightened:
        warnings.append(f'short of time: {lightened} frames in the last second were sampled with fewer Euler steps')
    if status.frames_dropped:
        warnings.append(f'{status.frames_dropped} frames dropped (the engine fell behind)')
    return DiagnosticStatus(level=DiagnosticStatus.WARN if warnings else DiagnosticStatus.OK, name=name,
                            message='; '.join(warnings) or 'publishing', hardware_id='dystream_ros',
                            values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])


def audio_type_problems(stream: str, expected: str, offered: dict[str, list[str]]) -> list[str]:
    """What to fix when publishers on ``stream``'s audio topic send another type than ``expected``.

    Args:
        stream: 'self' or 'partner'.
        expected: the type the node subscribes, e.g. ``dystream_ros/msg/AudioDataStamped``.
        offered: each other type on the topic -> the publishers (node names) that send it.
    """
    problems = []
    for type_name, publishers in sorted(offered.items()):
        short = type_name.rsplit('/', 1)[-1]
        if type_name.startswith('dystream_ros/msg/AudioData'):
            fix = f'set {stream}_audio_type:={short}'
        else:
            fix = f'it is not audio: remap {stream}_audio to the topic of AudioDataStamped or AudioData'
        problems.append(f'{stream}_audio: {", ".join(sorted(publishers))} publish {type_name}, but the node '
                        f'subscribes {expected}, so nothing is received: {fix}')
    return problems


def inactive_diagnostics(name: str) -> DiagnosticStatus:
    """The node's DiagnosticStatus while it is configured but not active: OK, nothing to report."""
    return DiagnosticStatus(level=DiagnosticStatus.OK, name=name, message='inactive', hardware_id='dystream_ros')


def audio_format_of(info: AudioInfo, channel_select: tuple[int, ...] = ()) -> AudioFormat:
    """The format an AudioInfo declares, keeping the node's ``channel_select`` (AudioInfo has no such field);
    ConfigError for compressed audio, values out of range, or selected channels the stream does not have."""
    if info.coding_format and info.coding_format.upper() not in ('WAVE', 'PCM', 'RAW'):
        msg = f'coding_format {info.coding_format!r} is compressed; publish raw PCM (coding_format WAVE)'
        raise ConfigError(msg)
    return AudioFormat(int(info.sample_rate), int(info.channels), info.sample_format.upper(), channel_select)
