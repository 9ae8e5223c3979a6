"""dystream_node's parameters: declared once with descriptions and ranges, read once into plain settings, and the
face engine they describe.

``ros2 param describe /dystream_node <name>`` shows each description. Values are checked when the node is
configured (and when set at run time): a bad value is refused with a message naming the parameter and what it
accepts, never silently replaced. Set at run time, a parameter takes effect on the next frame (frame_id, the neck,
the audio formats, the gaze), or is refused with the reason while the node is configured (those built into the model
and the engine: SET_AT_CONFIGURE), or is read-only.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType, SetParametersResult

from dystream_ros.audio import AudioFormat
from dystream_ros.errors import ConfigError
from dystream_ros.face.published_face import PublishedRenderer
from dystream_ros.face.published_weights import load_published_model
from dystream_ros.face.renderers import default_portrait, load_portrait, make_renderer
from dystream_ros.model.config import GUIDANCE_WEIGHTS
from dystream_ros.model.published import Guidance
from dystream_ros.model.published_checkpoint import is_published_generator
from dystream_ros.neck import NeckConfig, NeckMapper
from dystream_ros.runtime.amplitude import AmplitudeGenerator
from dystream_ros.runtime.engine import EngineConfig, FaceEngine
from dystream_ros.runtime.gaze import GazeConfig
from dystream_ros.runtime.generator import StreamingGenerator
from dystream_ros.runtime.published_generator import PublishedStreamingGenerator
from dystream_ros.runtime.published_onnx import OnnxRendererParts

if TYPE_CHECKING:
    from collections.abc import Callable

    from rclpy.node import Node
    from rclpy.parameter import Parameter

    from dystream_ros.runtime.frames import Generator

CHOICES: dict[str, tuple[str, ...]] = {
    'generator': ('dystream', 'amplitude'),
    'backend': ('torch', 'onnx'),
    'device': ('cpu', 'cuda'),
    'renderer': ('stylised', 'photo', 'published', 'none'),
    'neck_output': ('joint_trajectory', 'joint_state', 'none'),
    'audio_reliability': ('best_effort', 'reliable'),
    'image_reliability': ('best_effort', 'reliable'),
    'self_audio_type': ('AudioDataStamped', 'AudioData'),
    'partner_audio_type': ('AudioDataStamped', 'AudioData'),
    'self_sample_format': ('S16LE', 'S32LE', 'F32LE'),
    'partner_sample_format': ('S16LE', 'S32LE', 'F32LE'),
}

# the published Guidance's fields, in the order of GUIDANCE_WEIGHTS (cfg_self, cfg_partner, cfg_anchor, cfg_all)
PUBLISHED_GUIDANCE = ('audio', 'audio_other', 'anchor', 'all')
ALL_CHANNELS = -1  # *_channel_select [-1]: every channel (a ROS array parameter cannot be empty and typed)
_CHANNELS_HELP = ('[-1] for all of them. ReSpeaker USB Mic Array v2.0 with its 6-channel firmware: [0] the processed '
                  '(beamformed, echo-cancelled) channel, [1, 2, 3, 4] the raw microphones, 5 the playback reference '
                  '(the robot\'s own voice: never the partner); with its 4-channel firmware [0, 1, 2, 3] are the raw '
                  'microphones')

# name -> (default, description, range (min, max) for numbers or None)
_PARAMETERS: dict[str, tuple[Any, str, tuple[float, float] | None]] = {
    'generator': ('dystream', 'motion source: dystream (the model) or amplitude (the jaw-follows-loudness baseline '
                  'that cheap robots use, for comparisons)', None),
    'model_path': ('', 'DyStream weights (.safetensors); empty for the weights shipped with the package; a '
                   'generator converted by `dystream convert-official` runs the published DyStream (with '
                   'renderer published or none)', None),
    'backend': ('torch', 'inference backend: torch or onnx (ONNX Runtime, CUDA/TensorRT when available)', None),
    'device': ('cpu', 'torch device for the torch backend: cpu or cuda', None),
    'num_threads': (1, 'CPU threads for inference; 1 is fastest for the tiny model and leaves the other cores to '
                    'ROS and the renderer (more threads than free cores slow torch down a hundredfold)', (1, 64)),
    'steps': (5, 'Euler steps of the flow-matching sampler (more: smoother, slower)', (1, 20)),
    'cfg_self': (-1.0, 'guidance weight of the robot\'s own voice (lip sync strength); -1: the model\'s own',
                  (-1.0, 5.0)),
    'cfg_partner': (-1.0, 'guidance weight of the partner\'s voice (listening reactions); -1: the model\'s own',
                    (-1.0, 5.0)),
    'cfg_anchor': (-1.0, 'guidance weight of the anchor (neutral) motion; -1: the model\'s own', (-1.0, 5.0)),
    'cfg_all': (-1.0, 'guidance weight of all conditions together; -1: the model\'s own', (-1.0, 5.0)),
    'lookahead_ms': (-1, 'future audio the model waits for; -1 for the model\'s own (it is fixed by training)',
                     (-1, 200)),
    'seed': (0, 'seed of the sampler noise: the same seed and audio give the same face', (0, 2**31 - 1)),
    'renderer': ('stylised', 'face image: stylised (robot face), photo (warps avatar_image), published (the '
                 'published DyStream renderer animating avatar_image, for the published generator) or none', None),
    'renderer_path': ('', 'the published renderer converted by `dystream convert-official` (.safetensors), for '
                      'renderer published', None),
    'avatar_image': ('', 'portrait for the photo and published renderers; empty for the public-domain astronaut '
                     'portrait', None),
    'image_size': (512, 'face image width and height in pixels', (64, 2048)),
    'image_reliability': ('best_effort', 'QoS reliability of face/image: best_effort (sensor data: a slow display '
                          'gets the newest image, never old ones) or reliable (for subscribers that ask for reliable, '
                          'such as rqt_image_view or rviz with their default settings)', None),
    'frame_id': ('face', 'frame_id of the face image, face motion and head pose', None),
    'audio_reliability': ('best_effort', 'QoS reliability of the audio subscriptions (best_effort also receives '
                          'from reliable publishers; reliable receives nothing from best-effort ones)', None),
    'self_audio_type': ('AudioDataStamped', 'message type on self_audio: AudioDataStamped or plain AudioData',
                        None),
    'partner_audio_type': ('AudioDataStamped', 'message type on partner_audio: AudioDataStamped or AudioData',
                           None),
    'self_sample_rate': (16000, 'sample rate of self_audio in Hz, until an AudioInfo says otherwise', (8000, 48000)),
    'self_channels': (1, 'interleaved channels of self_audio (mixed to mono, see self_channel_select)', (1, 8)),
    'self_channel_select': ([ALL_CHANNELS], f'channels of self_audio mixed to mono (0-based); {_CHANNELS_HELP}',
                            None),
    'self_sample_format': ('S16LE', 'encoding of self_audio: S16LE, S32LE or F32LE', None),
    'partner_sample_rate': (16000, 'sample rate of partner_audio in Hz, until an AudioInfo says otherwise',
                            (8000, 48000)),
    'partner_channels': (1, 'interleaved channels of partner_audio (mixed to mono, see partner_channel_select)',
                         (1, 8)),
    'partner_channel_select': ([ALL_CHANNELS], 'channels of partner_audio mixed to mono (0-based); '
                               f'{_CHANNELS_HELP}', None),
    'partner_sample_format': ('S16LE', 'encoding of partner_audio: S16LE, S32LE or F32LE', None),
    'max_wait_ms': (500.0, 'the longest a frame waits past its lookahead for a voice whose audio arrives late (each '
                    'voice is waited for as late as it is measured to arrive, at least 40 ms, at most this)',
                    (0.0, 1000.0)),
    'inactive_after_s': (0.5, 'a voice that published nothing this long is not waited for', (0.05, 10.0)),
    'neck_output': ('joint_trajectory', 'neck command type on neck/command: joint_trajectory '
                    '(trajectory_msgs/JointTrajectory for a joint_trajectory_controller), joint_state, or none', None),
    'neck_joint_names': (['head_1_joint', 'head_2_joint'], 'neck joint names (PAL robots by default)', None),
    'neck_axes': (['yaw', 'pitch'], 'head rotation axis each joint follows: pitch, yaw or roll', None),
    'neck_gains': ([1.0, -1.0], 'joint angle per radian of head rotation (negative flips it)', None),
    'neck_offsets_rad': ([0.0, 0.0], 'joint angle with the head at rest', None),
    'neck_min_rad': ([-1.2, -0.9], 'lower position limit of each joint', None),
    'neck_max_rad': ([1.2, 0.7], 'upper position limit of each joint', None),
    'neck_max_velocity_rad_s': ([1.5, 1.5], 'velocity limit of each joint', None),
    'neck_max_acceleration_rad_s2': ([6.0, 6.0], 'acceleration limit of each joint', None),
    'neck_smoothing_s': (0.12, 'time constant of the low-pass on the neck targets', (0.0, 2.0)),
    'gaze_camera_frame': ('camera', 'frame_id of a camera fixed to the head: a gaze_target in it is moved into the '
                          'head frame with gaze_camera_pose (a target in frame_id, or with an empty frame_id, is in '
                          'the head frame: x forward, y left, z up)', None),
    'gaze_camera_pose': ([0.0, 0.0, 0.0, 0.0, 0.0, 0.0], 'pose of gaze_camera_frame in the head frame: x, y, z (m), '
                         'roll, pitch, yaw (rad); an optical frame (z forward, x right, y down) at the head\'s origin '
                         'is [0, 0, 0, -1.5708, 0, -1.5708]', None),
    'gaze_lost_after_s': (1.0, 'a gaze_target not refreshed this long is lost: the face eases back to its own gaze',
                          (0.1, 10.0)),
    'autostart': (True, 'configure and activate on start (set false to drive the lifecycle yourself)', None),
}
READ_ONLY = {'generator', 'model_path', 'backend', 'device', 'num_threads', 'renderer', 'renderer_path',
             'avatar_image', 'image_size',
             'self_audio_type', 'partner_audio_type', 'audio_reliability', 'image_reliability', 'neck_output',
             'neck_joint_names', 'autostart'}

# Parameters that are built into the model or the engine when the node is configured, and why. While the node is
# configured they are refused (with that reason): accepted, they would do nothing until the next configure.
SET_AT_CONFIGURE = {
    **dict.fromkeys(('steps', *GUIDANCE_WEIGHTS), 'the sampler is built with the model: its noise levels and guidance '
                    'branches (baked into the graphs with the onnx backend)'),
    'seed': 'it seeds the sampler when the model is loaded',
    'lookahead_ms': 'it is checked against the model when the model is loaded',
}


def _descriptor(name: str, default: Any, description: str, limits: tuple[float, float] | None) -> ParameterDescriptor:
    if name in CHOICES:
        description = f'{description} [{"|".join(CHOICES[name])}]'
    if name in SET_AT_CONFIGURE:
        description = f'{description} (taken when the node is configured: set it before, or clean up and configure)'
    descriptor = ParameterDescriptor(description=description, read_only=name in READ_ONLY)
    if limits is not None and isinstance(default, int):
        descriptor.integer_range = [IntegerRange(from_value=int(limits[0]), to_value=int(limits[1]), step=1)]
    elif limits is not None:
        descriptor.floating_point_range = [FloatingPointRange(from_value=float(limits[0]), to_value=float(limits[1]))]
    if isinstance(default, list):
        descriptor.type = (ParameterType.PARAMETER_STRING_ARRAY if isinstance(default[0], str)
                           else ParameterType.PARAMETER_INTEGER_ARRAY if isinstance(default[0], int)
                           else ParameterType.PARAMETER_DOUBLE_ARRAY)
    return descriptor


def declare(node: Node) -> None:
    """Declare every parameter of dystream_node on ``node``."""
    for name, (default, description, limits) in _PARAMETERS.items():
        node.declare_parameter(name, default, _descriptor(name, default, description, limits))


def check_choice(name: str, value: Any) -> str | None:
    """Why ``value`` is not acceptable for ``name``, or None if it is."""
    if name in CHOICES and value not in CHOICES[name]:
        return f'{name} must be one of {", ".join(CHOICES[name])}, got {value!r}'
    if name in ('model_path', 'renderer_path', 'avatar_image') and value and not Path(value).is_file():
        return f'{name}: no such file: {value}'
    return None


def current_values(node: Node) -> dict[str, Any]:
    """The current value of every parameter of dystream_node."""
    return {name: node.get_parameter(name).value for name in _PARAMETERS}


def check_changes(changes: list[Parameter], current: dict[str, Any], configured: bool) -> SetParametersResult:
    """The node's on-set-parameters callback: refuse a change that would do nothing now (see SET_AT_CONFIGURE),
    and a set of values that configure would refuse (the whole set: e.g. neck arrays of different lengths)."""
    for change in changes:
        if configured and change.name in SET_AT_CONFIGURE:
            reason = (f'{change.name} cannot change while the node is configured ({SET_AT_CONFIGURE[change.name]}): '
                      'deactivate and clean up the node, set it, then configure and activate it again')
            return SetParametersResult(successful=False, reason=reason)
    try:
        settings_of({**current, **{change.name: change.value for change in changes}})
    except ConfigError as exc:
        return SetParametersResult(successful=False, reason=str(exc))
    return SetParametersResult(successful=True)


def channel_selection(value: list[int]) -> tuple[int, ...]:
    """AudioFormat.channel_select of a ``*_channel_select`` parameter: () for [-1] (all channels)."""
    return () if list(value) == [ALL_CHANNELS] else tuple(value)


@dataclass(frozen=True)
class NodeSettings:
    """The parameters, read and checked once at configure time."""

    values: dict[str, Any]
    formats: dict[str, AudioFormat]
    neck: NeckConfig | None
    gaze: GazeConfig

    def __getattr__(self, name: str) -> Any:
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(name) from None


def read(node: Node) -> NodeSettings:
    """Read and check every parameter; raise ConfigError with one line per bad value."""
    return settings_of(current_values(node))


def settings_of(values: dict[str, Any]) -> NodeSettings:
    """Check a value for every parameter; raise ConfigError with one line per bad value."""
    problems = [p for p in (check_choice(n, v) for n, v in values.items()) if p]
    formats = {}
    for stream in ('self', 'partner'):
        try:
            formats[stream] = AudioFormat(values[f'{stream}_sample_rate'], values[f'{stream}_channels'],
                                          values[f'{stream}_sample_format'],
                                          channel_selection(values[f'{stream}_channel_select']))
        except ConfigError as exc:
            problems.append(f'{stream} audio: {exc}')
    neck = None
    if values['neck_output'] != 'none':
        try:
            neck = NeckConfig.from_lists(
                values['neck_joint_names'], values['neck_axes'], values['neck_gains'], values['neck_offsets_rad'],
                values['neck_min_rad'], values['neck_max_rad'], values['neck_max_velocity_rad_s'],
                values['neck_max_acceleration_rad_s2'], values['neck_smoothing_s'])
        except ConfigError as exc:
            problems.append(f'neck: {exc}')
    problems += _published_problems(values)
    pose = values['gaze_camera_pose']
    if len(pose) != 6 or not all(math.isfinite(v) for v in pose):
        problems.append(f'gaze_camera_pose must be 6 finite numbers (x, y, z, roll, pitch, yaw), got {list(pose)}')
    if problems:
        raise ConfigError('; '.join(problems))
    return NodeSettings(values, formats, neck, GazeConfig(lost_after_s=values['gaze_lost_after_s']))


def _published_problems(values: dict[str, Any]) -> list[str]:
    """The published generator and renderer go together: its motion is a latent only that renderer shows."""
    published = (values['generator'] == 'dystream' and bool(values['model_path'])
                 and Path(values['model_path']).is_file() and is_published_generator(values['model_path']))
    problems = []
    if published and values['renderer'] not in ('published', 'none'):
        problems.append(f"model_path is the published generator, whose motion only the published renderer shows: "
                        f"renderer must be published or none, not {values['renderer']}")
    if values['renderer'] == 'published' and not published:
        problems.append('renderer published shows the published generator\'s motion: set model_path to a generator '
                        'converted by `dystream convert-official`')
    if values['renderer'] == 'published' and not values['renderer_path']:
        problems.append('renderer published needs renderer_path: the renderer converted by `dystream convert-official`')
    return problems


def engine_config(settings: NodeSettings) -> EngineConfig:
    """When the engine makes frames, as the parameters say (it takes a new one at once: FaceEngine.configure)."""
    return EngineConfig(max_wait_ms=settings.max_wait_ms, inactive_after_s=settings.inactive_after_s)


def build_engine(settings: NodeSettings, start_ns: int, progress: Callable[[str], None] | None = None) -> FaceEngine:
    """The face engine the settings describe: the generator, the renderer and the neck mapping, loaded.
    ``progress`` gets a line per step of a long ONNX export (the published model's takes minutes)."""
    torch.set_num_threads(settings.num_threads)
    generator: Generator
    renderer = None
    weights = {name: value for name in GUIDANCE_WEIGHTS if (value := settings.values[name]) >= 0}  # -1: the model's
    if settings.generator == 'amplitude':
        generator = AmplitudeGenerator()
    elif is_published_generator(settings.model_path):
        if settings.renderer == 'published':
            network = load_published_model(settings.renderer_path)
            renderer = PublishedRenderer(network if settings.backend == 'torch' else OnnxRendererParts.for_model(
                network, num_threads=settings.num_threads, progress=progress), settings.device)
            renderer.set_source(load_portrait(settings.avatar_image) if settings.avatar_image else default_portrait())
        guidance = Guidance(**{field: weights[name] for name, field in zip(GUIDANCE_WEIGHTS, PUBLISHED_GUIDANCE)
                               if name in weights})
        generator = PublishedStreamingGenerator(
            settings.model_path, device=settings.device, seed=settings.seed, steps=settings.steps, guidance=guidance,
            anchor=renderer.source_latent if renderer is not None else None,  # m0: the portrait's latent
            backend=settings.backend, num_threads=settings.num_threads, progress=progress)
    else:
        generator = StreamingGenerator(
            settings.model_path or None, backend=settings.backend, device=settings.device, seed=settings.seed,
            steps=settings.steps, num_threads=settings.num_threads, **weights)
    if settings.generator == 'dystream' and settings.lookahead_ms not in (-1, generator.lookahead_ms):
        msg = (f'lookahead_ms is {settings.lookahead_ms} but the model was trained with {generator.lookahead_ms} '
               f'ms; use -1, or train a model with `dystream train --lookahead-ms {settings.lookahead_ms}`')
        raise ConfigError(msg)
    if settings.renderer in ('stylised', 'photo'):
        renderer = make_renderer(settings.renderer, settings.image_size, settings.avatar_image or None)
    neck = NeckMapper(settings.neck) if settings.neck is not None else None
    engine = FaceEngine(generator, renderer, neck, engine_config(settings), start_ns=start_ns,
                        formats=settings.formats)
    engine.gaze.config = settings.gaze
    return engine
