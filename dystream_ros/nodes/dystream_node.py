"""dystream_node: the robot's two voices in, its face (image, motion, head pose, neck command) out at 25 Hz.

A managed (lifecycle) node and a thin adapter: configure loads the model, renderer and neck mapping from the
parameters; activate warms the model up and subscribes; every audio message goes to the plain-Python
:class:`~dystream_ros.runtime.engine.FaceEngine`, and every frame it returns is published. A timer polls the
engine for frames that are due without new audio (a silent robot, no audio at all).

Topics (remap them): ``self_audio``, ``partner_audio`` (AudioDataStamped or AudioData, best effort by default),
``self_audio_info``, ``partner_audio_info`` (AudioInfo, latched), ``gaze_target`` (geometry_msgs/PointStamped: whom
to look at, in the head frame ``frame_id`` or the camera frame ``gaze_camera_frame``) in; ``face/image``
(sensor_msgs/Image rgb8, sensor-data QoS), ``face/motion`` (FaceMotion), ``head/pose``
(geometry_msgs/QuaternionStamped), ``neck/command`` (trajectory_msgs/JointTrajectory or sensor_msgs/JointState) and
``/diagnostics`` out. Every output of a frame carries the audio time of that frame as its stamp.
"""
from __future__ import annotations

import sys
import time
from collections import deque
from functools import partial
from typing import TYPE_CHECKING, Any

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from geometry_msgs.msg import PointStamped, QuaternionStamped
from rclpy.executors import ExternalShutdownException
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.subscription import Subscription
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Header
from trajectory_msgs.msg import JointTrajectory

from dystream_ros.audio import AudioFormat, AudioIssue
from dystream_ros.errors import DystreamError
from dystream_ros.msg import AudioData, AudioDataStamped, AudioInfo, FaceMotion
from dystream_ros.neck import NeckMapper
from dystream_ros.nodes import conversions, parameters
from dystream_ros.nodes.qos import INFO_QOS
from dystream_ros.nodes.startup import start_node
from dystream_ros.runtime.engine import FaceEngine, FrameOutput
from dystream_ros.runtime.gaze import camera_point_in_head
from dystream_ros.units import STREAMS

if TYPE_CHECKING:
    from rclpy.parameter import Parameter
    from rclpy.subscription import MessageInfo

# Every frame's motion matters. A reliable writer forgets frames that leave its history before the reader has
# acknowledged them, so the history holds 4 s of frames: a subscriber whose process is busy for a moment catches up
# instead of losing frames.
MOTION_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
NECK_QOS = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
IMAGE_QOS = {'best_effort': qos_profile_sensor_data,
             'reliable': QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)}  # the newest image, resent
# Messages queued per audio subscription. A TTS publishes a whole utterance at once, faster than real time: a
# minute of 32 ms chunks is about 1900 messages, which arrive while the node is busy with one frame. The queue holds
# a burst of half a minute of such chunks (they cost only their bytes while they wait), so none is lost for arriving
# early.
AUDIO_DEPTH = 1000
# A frame published this long after its audio was complete (a stalled or overloaded machine) sends no neck command:
# the head would move out of step with the face. The neck mapper still steps through it, so the next command
# continues within the joints' limits.
NECK_LATE_NS = 200_000_000
# rclpy since Iron passes the middleware's receive time to a two-argument callback; Humble's does not
RECEIVE_TIMES = hasattr(Subscription, 'CallbackType')
NECK_TYPES = {'joint_trajectory': JointTrajectory, 'joint_state': JointState}
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
        self._diagnostics_timer: Any = None
        self._active = False
        super().__init__('dystream_node', **kwargs)
        parameters.declare(self)
        self.add_on_set_parameters_callback(lambda changes: parameters.check_changes(
            changes, parameters.current_values(self), configured=self._engine is not None))
        self.add_post_set_parameters_callback(self._on_parameters_set)
        self._latencies_ms: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self._stage_ms: dict[str, deque[float]] = {}  # generate, render, publish: per frame, last 10 s
        self._messages = dict.fromkeys(STREAMS, 0)
        self._last_log: dict[tuple[str, AudioIssue], float] = {}
        self._problems_logged: set[str] = set()  # wrong publishers already logged
        self._unlogged: dict[tuple[str, AudioIssue], int] = {}
        self.frames_published = 0
        self._renders_dropped_before = 0  # renders_dropped at the previous diagnostics
        self._frames_light_before = 0  # frames_light at the previous diagnostics

    # ----- lifecycle -----------------------------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Read the parameters, load the model, the renderer and the neck mapping; create the publishers."""
        try:
            self._settings = settings = parameters.read(self)
            self._engine = parameters.build_engine(settings, self._now_ns(), progress=self.get_logger().info)
        except DystreamError as exc:
            self.get_logger().error(f'cannot configure: {exc}')
            return TransitionCallbackReturn.FAILURE
        self._outputs = {
            'image': self.create_lifecycle_publisher(Image, 'face/image', IMAGE_QOS[settings.image_reliability]),
            'motion': self.create_lifecycle_publisher(FaceMotion, 'face/motion', MOTION_QOS),
            'pose': self.create_lifecycle_publisher(QuaternionStamped, 'head/pose', MOTION_QOS),
            # a plain publisher: diagnostics say "inactive" while the lifecycle publishers are off
            'diagnostics': self.create_publisher(DiagnosticArray, '/diagnostics', MOTION_QOS),
        }
        self._diagnostics_timer = self.create_timer(1.0, self._on_diagnostics)
        if settings.neck_output in NECK_TYPES:
            self._outputs['neck'] = self.create_lifecycle_publisher(NECK_TYPES[settings.neck_output],
                                                                    'neck/command', NECK_QOS)
        status = self._engine.status()
        self.get_logger().info(
            f'configured: {status.generator} on {", ".join(status.providers)}, lookahead {status.lookahead_ms} ms, '
            f'renderer {settings.renderer}, neck {settings.neck_output}'
            + ('' if self._engine.face_motion else ' (no head pose or neck commands: the published motion is a '
               'latent; face/motion carries it in motion_latent)'))
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Warm the model up, start a fresh stream and subscribe."""
        started = time.perf_counter()
        try:
            frames = self._engine.warm_up()
        except Exception as exc:  # noqa: BLE001 (torch and ONNX Runtime raise their own types): say it, stay inactive
            self.get_logger().error(f'cannot activate: the model failed on silence: {exc!r}')
            return TransitionCallbackReturn.FAILURE
        self.get_logger().info(f'warm-up: {frames} frames in {time.perf_counter() - started:.2f} s')
        self._engine.reset(self._now_ns())
        self._renders_dropped_before = self._frames_light_before = 0  # the engine's counts start over
        reliability = (ReliabilityPolicy.BEST_EFFORT if self._settings.audio_reliability == 'best_effort'
                       else ReliabilityPolicy.RELIABLE)
        audio_qos = QoSProfile(depth=AUDIO_DEPTH, reliability=reliability)
        for stream in STREAMS:
            stamped = self._settings.values[f'{stream}_audio_type'] == 'AudioDataStamped'
            on_audio = (partial(self._on_audio, stream, stamped) if RECEIVE_TIMES
                        else partial(self._on_audio, stream, stamped, info=None))
            self._inputs.append(self.create_subscription(
                AudioDataStamped if stamped else AudioData, f'{stream}_audio', on_audio, audio_qos))
            self._inputs.append(self.create_subscription(
                AudioInfo, f'{stream}_audio_info', lambda msg, stream=stream: self._on_audio_info(stream, msg),
                INFO_QOS))
        # gaze targets come from perception at camera rate: the newest one matters, a lost one is replaced
        self._inputs.append(self.create_subscription(PointStamped, 'gaze_target', self._on_gaze_target,
                                                     qos_profile_sensor_data))
        self._tickers = [self.create_timer(POLL_PERIOD_S, self._on_poll)]
        self._active = True
        self.get_logger().info('active: listening on self_audio and partner_audio')
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop listening and publishing; the model stays loaded."""
        self._drop_io()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Free the model and the publishers."""
        self._drop_io()
        if self._diagnostics_timer is not None:
            self.destroy_timer(self._diagnostics_timer)
            self._diagnostics_timer = None
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
        self._inputs, self._tickers, self._active = [], [], False

    # ----- input ---------------------------------------------------------------------------------------------
    def _now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    def _on_audio(self, stream: str, stamped: bool, msg: AudioDataStamped | AudioData,
                  info: MessageInfo | None) -> None:
        now = self._now_ns()
        # when the middleware received it: a node busy with a frame takes a message later, and that is not the
        # audio's delay but the node's (the engine then sees it is behind, and sheds work)
        received = (info or {}).get('received_timestamp', 0)
        arrival = min(received, now) if received and not self.get_parameter('use_sim_time').value else now
        self._messages[stream] += 1
        data = msg.audio.data if stamped else msg.data
        stamp = conversions.stamp_ns(msg.header.stamp) if stamped else 0
        try:
            self._report(stream, self._engine.push(stream, bytes(data), stamp or None, arrival))
            self._publish(self._engine.poll(now))
        except DystreamError as exc:
            self.get_logger().error(f'{stream}_audio: {exc}', throttle_duration_sec=LOG_EVERY_S)

    def _on_audio_info(self, stream: str, msg: AudioInfo) -> None:
        selected = self._engine.status().voices[stream].audio_format.channel_select  # a parameter: kept
        try:
            audio_format = conversions.audio_format_of(msg, selected)
        except DystreamError as exc:
            self.get_logger().error(f'{stream}_audio_info rejected, keeping the previous format: {exc}')
            return
        self._set_format(stream, audio_format)

    def _set_format(self, stream: str, audio_format: AudioFormat) -> None:
        """Decode ``stream`` with the newest declared format (an AudioInfo or the parameters)."""
        self._report(stream, self._engine.set_format(stream, audio_format))
        self.get_logger().info(f'{stream}_audio is now {audio_format.sample_rate_hz} Hz, {audio_format.channels} '
                               f'channel(s), {audio_format.sample_format}')

    def _on_gaze_target(self, msg: PointStamped) -> None:
        """Look at the point: in the head frame as it is, in the camera frame through ``gaze_camera_pose``."""
        if not self._engine.face_motion:
            self.get_logger().warning('gaze_target ignored: the published model\'s motion is a latent, with no gaze '
                                      'or head pose to turn', throttle_duration_sec=LOG_EVERY_S)
            return
        settings, frame = self._settings, msg.header.frame_id
        point = (msg.point.x, msg.point.y, msg.point.z)
        if frame in ('', settings.frame_id):
            head_point = point
        elif frame == settings.gaze_camera_frame:
            head_point = camera_point_in_head(point, settings.gaze_camera_pose)
        else:
            self.get_logger().warning(
                f"gaze_target in frame '{frame}' ignored: give it in the head frame '{settings.frame_id}' (frame_id) "
                f"or the camera frame '{settings.gaze_camera_frame}' (gaze_camera_frame, placed by gaze_camera_pose)",
                throttle_duration_sec=LOG_EVERY_S)
            return
        if not self._engine.look_at(head_point, self._now_ns()):
            self.get_logger().warning(f'gaze_target ignored: {point} is not a finite point away from the head',
                                      throttle_duration_sec=LOG_EVERY_S)

    def _on_parameters_set(self, changed: list[Parameter]) -> None:
        """Put changed parameters into effect at once (the on-set callback refused those that cannot be)."""
        if self._engine is None:  # configure reads them
            return
        previous, self._settings = self._settings, parameters.read(self)
        if self._settings.neck != previous.neck and self._settings.neck is not None:
            neck = NeckMapper(self._settings.neck)
            neck.reset(self._engine.neck.positions)  # on from where the joints are, not from rest
            self._engine.neck = neck
        for stream in STREAMS:
            if self._settings.formats[stream] != previous.formats[stream]:
                self._set_format(stream, self._settings.formats[stream])
        self._engine.configure(parameters.engine_config(self._settings))
        self._engine.gaze.config = self._settings.gaze
        self.get_logger().info(f'in effect now: {", ".join(sorted(p.name for p in changed))}')

    def _report(self, stream: str, issues: list[AudioIssue]) -> None:
        """Log each kind of problem once per burst, with how often it happened since the last log."""
        now = time.monotonic()
        for issue in issues:
            key = (stream, issue)
            self._unlogged[key] = self._unlogged.get(key, 0) + 1
            if now - self._last_log.get(key, -LOG_EVERY_S) >= LOG_EVERY_S:
                explained = self._engine.status().voices[stream].explain(issue)
                self.get_logger().warning(f'{stream}_audio: {explained} ({self._unlogged[key]}x)')
                self._last_log[key], self._unlogged[key] = now, 0

    # ----- output --------------------------------------------------------------------------------------------
    def _on_poll(self) -> None:
        if self._engine is not None:
            self._publish(self._engine.poll(self._now_ns()))

    def _publish(self, outputs: list[FrameOutput]) -> None:
        if not self.context.ok():  # shutting down (a signal): nothing can be published any more
            return
        for output in outputs:
            started = time.perf_counter()
            header = Header(stamp=conversions.time_message(output.stamp_ns), frame_id=self._settings.frame_id)
            if output.image is not None:
                self._outputs['image'].publish(conversions.image_message(output.image, header))
            face_motion = self._engine.face_motion
            if face_motion:  # a latent has no head pose
                self._outputs['pose'].publish(conversions.pose_message(output, header))
            now = self._now_ns()
            if output.neck is not None and 'neck' in self._outputs and now - output.due_ns <= NECK_LATE_NS:
                self._outputs['neck'].publish(conversions.neck_message(output, header, self._settings.neck_output,
                                                                       now))
            latency_ns = max(now - output.due_ns, 0)
            self._outputs['motion'].publish(conversions.face_motion_message(output, header, latency_ns, face_motion))
            self._latencies_ms.append(latency_ns / 1e6)
            self.frames_published += 1
            for stage, ms in (*output.stage_ms.items(), ('publish', (time.perf_counter() - started) * 1e3)):
                self._stage_ms.setdefault(stage, deque(maxlen=LATENCY_WINDOW)).append(ms)

    def _on_diagnostics(self) -> None:
        name = f'{self.get_fully_qualified_name()}: face'  # one status per node, whatever its namespace
        if not self._active:
            self._publish_diagnostics(conversions.inactive_diagnostics(name))
            return
        status = self._engine.status()
        values = {**{f'{stream}_audio_messages_per_s': count for stream, count in self._messages.items()},
                  'frames_published': self.frames_published,
                  **conversions.diagnostic_values(status, self._latencies_ms, self._stage_ms)}
        self._messages = dict.fromkeys(STREAMS, 0)
        unrendered, self._renders_dropped_before = (status.renders_dropped - self._renders_dropped_before,
                                                    status.renders_dropped)
        lightened, self._frames_light_before = status.frames_light - self._frames_light_before, status.frames_light
        problems = self._audio_type_problems() + conversions.late_voice_problems(status)
        for problem in set(problems) - self._problems_logged:
            self.get_logger().warning(problem)
        self._problems_logged = set(problems)
        diagnostics = conversions.face_diagnostics(name, status, unrendered, values, problems, lightened,
                                                   self._settings.renderer)
        if unrendered or lightened:
            self.get_logger().warning(diagnostics.message, throttle_duration_sec=LOG_EVERY_S)
        self._publish_diagnostics(diagnostics)

    def _audio_type_problems(self) -> list[str]:
        """Publishers on the audio topics whose type is not the one subscribed (they match nothing, silently)."""
        problems = []
        for stream in STREAMS:
            expected = f'dystream_ros/msg/{self._settings.values[f"{stream}_audio_type"]}'
            offered: dict[str, list[str]] = {}
            for info in self.get_publishers_info_by_topic(self.resolve_topic_name(f'{stream}_audio')):
                # a publisher whose node is not discovered yet is named in a second (it would be said twice)
                if info.topic_type != expected and not info.node_name.startswith('_NODE_NAME_UNKNOWN'):
                    node = f'{info.node_namespace.rstrip("/")}/{info.node_name}'
                    offered.setdefault(info.topic_type, []).append(node)
            problems += conversions.audio_type_problems(stream, expected, offered)
        return problems

    def _publish_diagnostics(self, diagnostics: DiagnosticStatus) -> None:
        array = DiagnosticArray(status=[diagnostics])
        array.header.stamp = self.get_clock().now().to_msg()
        self._outputs['diagnostics'].publish(array)


def main(args: list[str] | None = None) -> int:
    """Run dystream_node until SIGINT or SIGTERM; configure and activate it when ``autostart`` is true."""
    node = start_node('dystream_node', DystreamNode, args)
    if node is None:
        return 1
    code = 0
    try:
        if node.get_parameter('autostart').value:
            for transition in (node.trigger_configure, node.trigger_activate):
                if transition() != TransitionCallbackReturn.SUCCESS:
                    node.get_logger().fatal(f'{transition.__name__.removeprefix("trigger_")} failed: see the error '
                                            'above')
                    code = 1
                    break
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
