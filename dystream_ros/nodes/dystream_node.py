"""dystream_node: the robot's two voices in, its face (image, motion, head pose, neck command) out at 25 Hz.

A managed (lifecycle) node and a thin adapter: configure loads the model, renderer and neck mapping from the
parameters; activate warms the model up and subscribes; every audio message goes to the plain-Python
:class:`~dystream_ros.runtime.engine.FaceEngine`, and every frame it returns is published. A timer polls the
engine for frames that are due without new audio (a silent robot, no audio at all).

Topics (remap them): ``self_audio``, ``partner_audio`` (AudioDataStamped or AudioData, best effort by default),
``self_audio_info``, ``partner_audio_info`` (AudioInfo, latched) in; ``face/image`` (sensor_msgs/Image rgb8,
sensor-data QoS), ``face/motion`` (FaceMotion), ``head/pose`` (geometry_msgs/QuaternionStamped),
``neck/command`` (trajectory_msgs/JointTrajectory or sensor_msgs/JointState) and ``/diagnostics`` out. Every
output of a frame carries the audio time of that frame as its stamp.
"""
from __future__ import annotations

import sys
import time
from collections import deque
from typing import Any

import numpy as np
import rclpy
from builtin_interfaces.msg import Duration
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Quaternion, QuaternionStamped, Vector3
from rcl_interfaces.msg import SetParametersResult
from rclpy.executors import ExternalShutdownException
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import (DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data)
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Header
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from dystream_ros.audio import AudioFormat, AudioIssue
from dystream_ros.errors import DystreamError
from dystream_ros.face.motion import BLENDSHAPE_NAMES, BLENDSHAPES, ROTATION, TRANSLATION, rpy_to_quaternion
from dystream_ros.msg import AudioData, AudioDataStamped, AudioInfo, FaceMotion
from dystream_ros.nodes import parameters
from dystream_ros.nodes.conversions import image_message, stamp_ns, time_message
from dystream_ros.runtime.engine import EngineConfig, FaceEngine, FrameOutput

NS_PER_S = 1_000_000_000
STREAMS = ('self', 'partner')
MOTION_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)  # every frame's motion matters
NECK_QOS = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
INFO_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
POLL_PERIOD_S = 0.01  # how often frames due without new audio are looked for
LOG_EVERY_S = 5.0  # each kind of input problem is logged at most this often (with a count)
LATENCY_WINDOW = 250  # frames (10 s) behind the latency percentiles in diagnostics


class DystreamNode(LifecycleNode):
    """The talking-face node; see the module docstring."""

    def __init__(self, **kwargs: Any) -> None:
        self._engine: FaceEngine | None = None
        self._settings: parameters.NodeSettings | None = None
        self._outputs: dict[str, Any] = {}
        self._inputs: list[Any] = []
        self._tickers: list[Any] = []
        super().__init__('dystream_node', **kwargs)
        parameters.declare(self)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._latencies_ms: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self._stage_ms: dict[str, deque[float]] = {}  # generate, render, publish: per frame, last 10 s
        self._messages = dict.fromkeys(STREAMS, 0)
        self._last_log: dict[tuple[str, AudioIssue], float] = {}
        self._unlogged: dict[tuple[str, AudioIssue], int] = {}
        self.frames_published = 0
        self._renders_dropped_before = 0  # engine.renders_dropped at the previous diagnostics

    # ----- lifecycle -----------------------------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Read the parameters, load the model, the renderer and the neck mapping; create the publishers."""
        try:
            self._settings = settings = parameters.read(self)
            self._build_engine(settings)
        except DystreamError as exc:
            self.get_logger().error(f'cannot configure: {exc}')
            return TransitionCallbackReturn.FAILURE
        self._outputs = {
            'image': self.create_lifecycle_publisher(Image, 'face/image', qos_profile_sensor_data),
            'motion': self.create_lifecycle_publisher(FaceMotion, 'face/motion', MOTION_QOS),
            'pose': self.create_lifecycle_publisher(QuaternionStamped, 'head/pose', MOTION_QOS),
            'diagnostics': self.create_lifecycle_publisher(DiagnosticArray, '/diagnostics', MOTION_QOS),
        }
        if settings.neck_output == 'joint_trajectory':
            self._outputs['neck'] = self.create_lifecycle_publisher(JointTrajectory, 'neck/command', NECK_QOS)
        elif settings.neck_output == 'joint_state':
            self._outputs['neck'] = self.create_lifecycle_publisher(JointState, 'neck/command', NECK_QOS)
        generator = self._engine.generator
        self.get_logger().info(
            f'configured: {type(generator).__name__} on {", ".join(generator.providers)}, lookahead '
            f'{generator.lookahead_samples / 16:.0f} ms, renderer {settings.renderer}, neck {settings.neck_output}')
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Warm the model up, start a fresh stream and subscribe."""
        self._warm_up()
        self._engine = FaceEngine(self._engine.generator, self._engine.renderer, self._engine.neck,
                                  self._engine.config, start_ns=self._now_ns(), formats=self._settings.formats)
        reliability = (ReliabilityPolicy.BEST_EFFORT if self._settings.audio_reliability == 'best_effort'
                       else ReliabilityPolicy.RELIABLE)
        audio_qos = QoSProfile(depth=50, reliability=reliability)  # 50 chunks: a burst of messages is not lost
        for stream in STREAMS:
            stamped = self._settings.values[f'{stream}_audio_type'] == 'AudioDataStamped'
            self._inputs.append(self.create_subscription(
                AudioDataStamped if stamped else AudioData, f'{stream}_audio',
                lambda msg, stream=stream, stamped=stamped: self._on_audio(stream, msg, stamped), audio_qos))
            self._inputs.append(self.create_subscription(
                AudioInfo, f'{stream}_audio_info', lambda msg, stream=stream: self._on_audio_info(stream, msg),
                INFO_QOS))
        self._tickers = [self.create_timer(POLL_PERIOD_S, self._on_poll), self.create_timer(1.0, self._on_diagnostics)]
        self.get_logger().info('active: listening on self_audio and partner_audio')
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop listening and publishing; the model stays loaded."""
        self._drop_io()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Free the model and the publishers."""
        self._drop_io()
        for publisher in self._outputs.values():
            self.destroy_publisher(publisher)
        self._outputs, self._engine = {}, None
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Same as cleanup, from any state."""
        return self.on_cleanup(state)

    def _drop_io(self) -> None:
        for subscription in self._inputs:
            self.destroy_subscription(subscription)
        for timer in self._tickers:
            self.destroy_timer(timer)
        self._inputs, self._tickers = [], []

    def _build_engine(self, settings: parameters.NodeSettings) -> None:
        import torch

        from dystream_ros.face.neck import NeckMapper
        from dystream_ros.face.renderers import make_renderer
        from dystream_ros.model import StreamingGenerator
        from dystream_ros.model.config import GUIDANCE_WEIGHTS

        torch.set_num_threads(settings.num_threads)
        if settings.generator == 'amplitude':
            from dystream_ros.runtime.amplitude import AmplitudeGenerator

            generator = AmplitudeGenerator()
        else:
            generator = StreamingGenerator(
                settings.model_path or None, backend=settings.backend, device=settings.device, seed=settings.seed,
                steps=settings.steps, num_threads=settings.num_threads,
                **{name: value for name in GUIDANCE_WEIGHTS if (value := settings.values[name]) >= 0})
        model_lookahead_ms = generator.lookahead_samples * 1000 // 16000
        if settings.generator == 'dystream' and settings.lookahead_ms not in (-1, model_lookahead_ms):
            msg = (f'lookahead_ms is {settings.lookahead_ms} but the model was trained with {model_lookahead_ms} ms; '
                   f'use -1, or train a model with `dystream train --lookahead-ms {settings.lookahead_ms}`')
            raise DystreamError(msg)
        renderer = (None if settings.renderer == 'none' else
                    make_renderer(settings.renderer, settings.image_size, settings.avatar_image or None))
        neck = NeckMapper(settings.neck) if settings.neck is not None else None
        config = EngineConfig(max_wait_ms=settings.max_wait_ms, inactive_after_s=settings.inactive_after_s)
        self._engine = FaceEngine(generator, renderer, neck, config, start_ns=self._now_ns(),
                                  formats=settings.formats)

    def _warm_up(self) -> None:
        """Run one second of silence through the model and renderer so the first real frame is not slow."""
        started = time.perf_counter()
        generator = self._engine.generator
        silence = np.zeros(16000, np.float32)
        generator.push_self(silence)
        generator.push_partner(silence)
        frames = generator.pull()
        if self._engine.renderer is not None and frames:
            self._engine.renderer.render(frames[-1].motion)
        generator.reset()
        self.get_logger().info(f'warm-up: {len(frames)} frames in {time.perf_counter() - started:.2f} s')

    # ----- parameters ----------------------------------------------------------------------------------------
    def _on_set_parameters(self, changes: list[Any]) -> SetParametersResult:
        for change in changes:
            problem = parameters.check_choice(change.name, change.value)
            if problem:
                return SetParametersResult(successful=False, reason=problem)
        return SetParametersResult(successful=True)

    # ----- input ---------------------------------------------------------------------------------------------
    def _now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    def _on_audio(self, stream: str, msg: AudioDataStamped | AudioData, stamped: bool) -> None:
        now = self._now_ns()
        self._messages[stream] += 1
        data = msg.audio.data if stamped else msg.data
        stamp = stamp_ns(msg.header.stamp) if stamped else 0
        try:
            issues = self._engine.push(stream, bytes(data), stamp or None, now)
            self._report(stream, issues)
            self._publish(self._engine.poll(now))
        except DystreamError as exc:
            self.get_logger().error(f'{stream}_audio: {exc}', throttle_duration_sec=LOG_EVERY_S)

    def _on_audio_info(self, stream: str, msg: AudioInfo) -> None:
        if msg.coding_format and msg.coding_format.upper() not in ('WAVE', 'PCM', 'RAW'):
            self.get_logger().error(f'{stream}_audio_info: coding_format {msg.coding_format!r} is compressed; '
                                    'publish raw PCM (coding_format WAVE)')
            return
        try:
            audio_format = AudioFormat(int(msg.sample_rate), int(msg.channels), msg.sample_format.upper())
        except DystreamError as exc:
            self.get_logger().error(f'{stream}_audio_info rejected, keeping the previous format: {exc}')
            return
        self._report(stream, self._engine.set_format(stream, audio_format))
        self.get_logger().info(f'{stream}_audio is now {audio_format}')

    def _report(self, stream: str, issues: list[AudioIssue]) -> None:
        """Log each kind of problem once per burst, with how often it happened since the last log."""
        now = time.monotonic()
        for issue in issues:
            key = (stream, issue)
            self._unlogged[key] = self._unlogged.get(key, 0) + 1
            if now - self._last_log.get(key, -LOG_EVERY_S) >= LOG_EVERY_S:
                detail = ''
                if issue is AudioIssue.RATE_MISMATCH and self._engine is not None:
                    voice = self._engine.voices[stream]
                    declared = voice.decoder.format
                    detail = (f'; read as {declared.sample_rate_hz} Hz x {declared.channels} channel(s) it lasts '
                              f'{voice.timeline.rate_check.ratio:.2f}x the time between stamps, so it is more likely '
                              f'{declared.sample_rate_hz * voice.timeline.rate_check.ratio:.0f} samples per second')
                self.get_logger().warning(f'{stream}_audio: {issue.value}{detail} ({self._unlogged[key]}x)')
                self._last_log[key], self._unlogged[key] = now, 0

    # ----- output --------------------------------------------------------------------------------------------
    def _on_poll(self) -> None:
        if self._engine is not None:
            self._publish(self._engine.poll(self._now_ns()))

    def _publish(self, outputs: list[FrameOutput]) -> None:
        if not self.context.ok():  # shutting down (a signal): nothing can be published any more
            return
        frame_id = self._settings.frame_id
        for output in outputs:
            started = time.perf_counter()
            header = Header(stamp=time_message(output.stamp_ns), frame_id=frame_id)
            pitch, yaw, roll = (float(v) for v in output.motion[ROTATION])
            x, y, z, w = rpy_to_quaternion(roll, pitch, yaw)
            rotation = Quaternion(x=float(x), y=float(y), z=float(z), w=float(w))
            if output.image is not None:
                self._outputs['image'].publish(image_message(output.image, header))
            self._outputs['pose'].publish(QuaternionStamped(header=header, quaternion=rotation))
            if output.neck is not None and 'neck' in self._outputs:
                self._outputs['neck'].publish(self._neck_message(header, output))
            latency_ns = max(self._now_ns() - output.completed_ns, 0)
            translation = output.motion[TRANSLATION]
            self._outputs['motion'].publish(FaceMotion(
                header=header, frame_index=output.index, blendshape_names=list(BLENDSHAPE_NAMES),
                blendshape_weights=output.motion[BLENDSHAPES].astype(float).tolist(), head_rotation=rotation,
                head_translation=Vector3(x=float(translation[0]), y=float(translation[1]), z=float(translation[2])),
                activity=int(output.activity), self_voice_activity=float(output.self_activity),
                partner_voice_activity=float(output.partner_activity),
                latency=Duration(sec=int(latency_ns // NS_PER_S), nanosec=int(latency_ns % NS_PER_S))))
            self._latencies_ms.append(latency_ns / 1e6)
            self.frames_published += 1
            for stage, ms in (*output.stage_ms.items(), ('publish', (time.perf_counter() - started) * 1e3)):
                self._stage_ms.setdefault(stage, deque(maxlen=LATENCY_WINDOW)).append(ms)

    def _neck_message(self, header: Header, output: FrameOutput) -> JointTrajectory | JointState:
        command = output.neck
        if self._settings.neck_output == 'joint_state':
            return JointState(header=header, name=list(command.names), position=command.positions.tolist(),
                              velocity=command.velocities.tolist())
        # A trajectory controller starts the trajectory at header.stamp, the frame's audio time, so the point is
        # due one frame period after now; stamps on another clock (an old bag) get it one frame after the stamp.
        now = self._now_ns()
        live = abs(now - output.stamp_ns) < NS_PER_S
        reach_ns = (now - output.stamp_ns if live else 0) + NS_PER_S // 25
        point = JointTrajectoryPoint(positions=command.positions.tolist(), velocities=command.velocities.tolist(),
                                     time_from_start=Duration(sec=int(reach_ns // NS_PER_S),
                                                              nanosec=int(reach_ns % NS_PER_S)))
        return JointTrajectory(header=header, joint_names=list(command.names), points=[point])

    def _on_diagnostics(self) -> None:
        engine = self._engine
        if engine is None:
            return
        latencies = np.array(self._latencies_ms) if self._latencies_ms else np.zeros(1)
        dropped = engine.frames_dropped
        values = {
            'self_audio_messages_per_s': self._messages['self'], 'partner_audio_messages_per_s': self._messages['partner'],
            'latency_p50_ms': round(float(np.percentile(latencies, 50)), 1),
            'latency_p99_ms': round(float(np.percentile(latencies, 99)), 1),
            'frames_published': self.frames_published, 'frames_dropped': dropped,
            'renders_dropped': engine.renders_dropped, 'backend': type(engine.generator).__name__,
            'providers': ','.join(engine.generator.providers),
            'lookahead_ms': engine.lookahead * 1000 // 16000,
            **{f'{stage}_ms_mean': round(float(np.mean(ms)), 2) for stage, ms in self._stage_ms.items()},
        }
        for stream, counts in engine.issue_counts().items():
            for issue, count in counts.items():
                values[f'{stream}_audio_{issue.lower()}'] = count
        self._messages = dict.fromkeys(STREAMS, 0)
        level, message = DiagnosticStatus.OK, 'publishing'
        unrendered = engine.renders_dropped - self._renders_dropped_before
        self._renders_dropped_before = engine.renders_dropped
        if unrendered:
            level = DiagnosticStatus.WARN
            message = (f'the renderer is over its budget: {unrendered} frames in the last second got no image (their '
                       'motion and pose were published); lower image_size or use the stylised renderer')
            self.get_logger().warning(message, throttle_duration_sec=LOG_EVERY_S)
        if dropped:
            level, message = DiagnosticStatus.WARN, f'{dropped} frames dropped (the engine fell behind)'
        status = DiagnosticStatus(level=level, name=f'{self.get_name()}: face', message=message,
                                  hardware_id='dystream_ros', values=[KeyValue(key=k, value=str(v))
                                                                      for k, v in values.items()])
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self._outputs['diagnostics'].publish(array)


def main(args: list[str] | None = None) -> int:
    """Run dystream_node until SIGINT or SIGTERM; configure and activate it when ``autostart`` is true."""
    rclpy.init(args=args)
    node = DystreamNode()
    code = 0
    try:
        if node.get_parameter('autostart').value:
            if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
                node.get_logger().fatal('configuration failed: see the error above')
                code = 1
            else:
                node.trigger_activate()
        if code == 0:
            rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:  # noqa: BLE001
        # SIGTERM shuts the context down from its handler; a callback that was publishing at that moment fails
        # with an invalid context. That is the shutdown asked for, not an error; anything else is re-raised.
        if rclpy.ok():
            raise
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return code


if __name__ == '__main__':
    sys.exit(main())
