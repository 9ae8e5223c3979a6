"""``dystream bag replay|record|render``: rosbag2 files (mcap or sqlite3) in and out of a live ROS graph.

There is no ``ros2 bag`` on a machine with ROS from PyPI wheels, so these do the same with rosbags and rclpy:
replay publishes the recorded bytes unchanged at the recorded pace (or as fast as the face node keeps up),
record writes what a set of topics carries, and render turns a recorded conversation into a face video.
"""
from __future__ import annotations

import argparse
import importlib
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dystream_ros.errors import DataError
from dystream_ros.units import FPS, NS_PER_S, SAMPLES_PER_FRAME

if TYPE_CHECKING:
    from collections.abc import Iterable

    from dystream_ros.audio import AudioFormat


def message_class(type_name: str) -> Any:
    """The rclpy class of a ROS type name such as ``dystream_ros/msg/AudioDataStamped``."""
    package, kind, name = type_name.split('/')
    try:
        return getattr(importlib.import_module(f'{package}.{kind}'), name)
    except (ImportError, AttributeError):
        msg = f'message type {type_name} is not installed in this environment'
        raise DataError(msg) from None


def _open_reader(path: Path) -> Any:
    from rosbags.rosbag2 import Reader

    if not Path(path).exists():
        msg = f'no bag at {path}'
        raise DataError(msg)
    return Reader(path)


def replay(bag: Path, rate: float = 1.0, fast: bool = False, topics: list[str] | None = None,
           max_ahead_s: float = 0.5, loop: bool = False, restamp: bool = False) -> int:
    """Publish the bag's messages; return how many were published.

    At ``rate`` times the recorded pace, or with ``fast`` as fast as dystream_node keeps up: the replay runs at
    most ``max_ahead_s`` of audio time ahead of the newest face/motion frame the node has published. With
    ``restamp``, header stamps are moved to the present by one shift per pass (the wall-clock time of the first
    message less its recording time), as if the conversation were happening now: then a stamp is the wall-clock
    time of its sound, as a live microphone's is, and sound-to-picture latency is measurable (a message this
    process publishes late arrives late, as a late driver's would).
    """
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from rclpy.serialization import deserialize_message

    from dystream_ros.msg import AudioInfo, FaceMotion
    from dystream_ros.nodes.conversions import stamp_ns
    from dystream_ros.nodes.qos import INFO_QOS

    rclpy.init()
    node = rclpy.create_node('dystream_bag_replay')
    shown = {'first_ns': 0, 'latest_ns': 0, 'seen_at': time.monotonic(), 'frames': 0}

    def on_motion(msg: FaceMotion) -> None:
        stamp = stamp_ns(msg.header.stamp)
        shown['first_ns'] = shown['first_ns'] or stamp
        shown['latest_ns'] = max(shown['latest_ns'], stamp)
        shown['seen_at'], shown['frames'] = time.monotonic(), shown['frames'] + 1

    node.create_subscription(FaceMotion, 'face/motion', on_motion, QoSProfile(depth=50))
    published = 0
    try:
        with _open_reader(bag) as reader:
            connections = [c for c in reader.connections if not topics or c.topic in topics]
            if not connections:
                msg = f'{bag} has none of the topics {topics}'
                raise DataError(msg)
            audio_qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
            # AudioInfo latched, as dystream_node subscribes it (a volatile publisher would match nothing)
            publishers = {c.topic: node.create_publisher(message_class(c.msgtype), c.topic,
                                                         INFO_QOS if message_class(c.msgtype) is AudioInfo
                                                         else audio_qos)
                          for c in connections}
            _wait_for_subscribers(node, publishers, timeout_s=5.0)
            while True:
                started, started_wall_ns, first_ns, shift_ns = time.monotonic(), time.time_ns(), None, 0
                for connection, bag_ns, raw in reader.messages(connections=connections):
                    if first_ns is None:  # the first message is due at `started`, however long reading it took
                        first_ns, shift_ns = bag_ns, started_wall_ns - bag_ns
                    if fast:  # stay at most max_ahead_s of audio ahead of the face the node has shown
                        while (bag_ns - first_ns - (shown['latest_ns'] - shown['first_ns'])) / NS_PER_S > max_ahead_s:
                            if time.monotonic() - shown['seen_at'] > 10.0:
                                msg = 'dystream_node published no face/motion for 10 s: is it running?'
                                raise DataError(msg)
                            rclpy.spin_once(node, timeout_sec=0.005)
                    else:
                        due = started + (bag_ns - first_ns) / NS_PER_S / rate
                        while (remaining := due - time.monotonic()) > 0:  # spin_once may return early
                            rclpy.spin_once(node, timeout_sec=min(remaining, 0.01))
                    message: Any = bytes(raw)
                    if restamp:
                        message = deserialize_message(message, message_class(connection.msgtype))
                        if hasattr(message, 'header'):
                            moved = stamp_ns(message.header.stamp) + shift_ns
                            message.header.stamp.sec, message.header.stamp.nanosec = divmod(moved, NS_PER_S)
                    publishers[connection.topic].publish(message)
                    published += 1
                if not loop:
                    break
            _drain(node, 0.5)
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return published


def _wait_for_subscribers(node: Any, publishers: dict[str, Any], timeout_s: float) -> None:
    import rclpy

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not all(p.get_subscription_count() for p in publishers.values()):
        rclpy.spin_once(node, timeout_sec=0.05)


def _drain(node: Any, seconds: float) -> None:
    import rclpy

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.05)


def record(bag: Path, topics: list[str], duration_s: float | None = None, storage: str = 'mcap',
           discovery_s: float = 30.0) -> dict[str, int]:
    """Record ``topics`` into a new bag until ``duration_s`` passes (or Ctrl-C); return messages per topic.

    Waits up to ``discovery_s`` for every topic to have a publisher (in a launch file, the nodes start together).
    """
    import rclpy
    from rclpy.executors import ExternalShutdownException
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from rosbags.rosbag2 import StoragePlugin, Writer

    from dystream_ros.apps.bags import project_typestore

    typestore = project_typestore()
    rclpy.init()
    node = rclpy.create_node('dystream_bag_record')
    counts = dict.fromkeys(topics, 0)
    try:
        types = _discover_types(node, topics, discovery_s)
        plugin = StoragePlugin.MCAP if storage == 'mcap' else StoragePlugin.SQLITE3
        with Writer(bag, version=9, storage_plugin=plugin) as writer:
            for topic, type_name in types.items():
                connection = writer.add_connection(topic, type_name, typestore=typestore)
                qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.BEST_EFFORT)  # hears every publisher

                def on_message(raw: bytes, connection: Any = connection, topic: str = topic) -> None:
                    writer.write(connection, time.time_ns(), raw)
                    counts[topic] += 1

                node.create_subscription(message_class(type_name), topic, on_message, qos, raw=True)
            deadline = None if duration_s is None else time.monotonic() + duration_s
            try:
                while deadline is None or time.monotonic() < deadline:
                    rclpy.spin_once(node, timeout_sec=0.05)
            except (KeyboardInterrupt, ExternalShutdownException):
                pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return counts


def _discover_types(node: Any, topics: list[str], discovery_s: float) -> dict[str, str]:
    import rclpy

    deadline = time.monotonic() + discovery_s
    found: dict[str, str] = {}
    while time.monotonic() < deadline and len(found) < len(topics):
        rclpy.spin_once(node, timeout_sec=0.05)
        found = {name: types[0] for name, types in node.get_topic_names_and_types() if name in topics}
    missing = sorted(set(topics) - set(found))
    if missing:
        msg = f'no publisher found for {", ".join(missing)} within {discovery_s} s'
        raise DataError(msg)
    return found


def read_conversation(bag: Path, self_topic: str, partner_topic: str) -> tuple[np.ndarray, np.ndarray]:
    """The two voices of a recorded conversation as 16 kHz mono tracks on one time axis (the earliest sound of
    either is sample 0); a missing topic is an empty track.

    Each voice goes through the node's own intake (:class:`~dystream_ros.audio.VoiceInput`), fed in the order the
    bag received the messages, with their receive times: placed by its stamps, both voices on one clock where their
    stamps agree, stamp jitter closed, repeated audio dropped, a jump in the stamps (a publisher restarting)
    continued after the newest audio, an unstamped message taken to end when it was received.
    """
    from dystream_ros.apps.bags import project_typestore
    from dystream_ros.audio import VoiceInput

    typestore = project_typestore()
    messages: list[tuple[str, int | None, bytes, int]] = []  # (topic, stamp, bytes, receive time), as received
    with _open_reader(bag) as reader:
        by_topic = {c.topic: c for c in reader.connections}
        formats = {topic: _declared_format(reader, by_topic.get(f'{topic}_info'), typestore)
                   for topic in (self_topic, partner_topic) if topic in by_topic}
        for connection, bag_ns, raw in _messages(reader, [by_topic[topic] for topic in formats]):
            msg = typestore.deserialize_cdr(raw, connection.msgtype)
            stamp = msg.header.stamp.sec * NS_PER_S + msg.header.stamp.nanosec if hasattr(msg, 'header') else 0
            data = (msg.audio.data if hasattr(msg, 'header') else msg.data).tobytes()
            messages.append((connection.topic, stamp or None, data, bag_ns))
    # room for the whole conversation, even where it arrived faster than real time (it is placed by its stamps)
    received_s = (messages[-1][3] - messages[0][3]) / NS_PER_S if messages else 0.0
    audio_s = sum(len(data) / (formats[topic].frame_bytes * formats[topic].sample_rate_hz)
                  for topic, _, data, _ in messages)
    voices = {topic: VoiceInput(audio_format, 0, received_s + audio_s + 1.0) for topic, audio_format in formats.items()}
    for topic, stamp, data, arrival in messages:
        other = next((voice for name, voice in voices.items() if name != topic), None)
        voices[topic].push(data, stamp, arrival, other.timeline.offset_ns if other else None)
    starts = [voice.timeline.written_from for voice in voices.values() if voice.timeline.written_from is not None]
    origin = min(starts, default=0)
    return tuple(voices[topic].timeline.read(origin, voices[topic].timeline.written_until)
                 if topic in voices and voices[topic].timeline.written_from is not None else np.zeros(0, np.float32)
                 for topic in (self_topic, partner_topic))


def _messages(reader: Any, connections: list[Any]) -> Iterable[tuple[Any, int, bytes]]:
    """The bag's messages on ``connections``, in the order received; none for none (rosbags reads every message
    for an empty list)."""
    return reader.messages(connections=connections) if connections else ()


def _declared_format(reader: Any, info: Any, typestore: Any) -> AudioFormat:
    """The format a voice's last AudioInfo declares (the default without one)."""
    from dystream_ros.audio import AudioFormat

    audio_format = AudioFormat()
    for connection, _, raw in _messages(reader, [info] if info else []):
        declared = typestore.deserialize_cdr(raw, connection.msgtype)
        audio_format = AudioFormat(int(declared.sample_rate), int(declared.channels), declared.sample_format)
    return audio_format


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``dystream bag``."""
    sub = parser.add_subparsers(dest='action', required=True)
    play = sub.add_parser('replay', help='publish a bag into the ROS graph')
    play.add_argument('bag', type=Path)
    play.add_argument('--rate', type=float, default=1.0, help='speed relative to the recorded pace')
    play.add_argument('--fast', action='store_true', help='as fast as dystream_node keeps up')
    play.add_argument('--topics', nargs='*', help='only these topics')
    play.add_argument('--loop', action='store_true', help='start over at the end, until Ctrl-C')
    play.add_argument('--restamp', action='store_true', help='move header stamps to the present')
    rec = sub.add_parser('record', help='record topics into a new bag')
    rec.add_argument('--out', type=Path, required=True)
    rec.add_argument('topics', nargs='+')
    rec.add_argument('--duration', type=float, help='seconds to record (default: until Ctrl-C)')
    rec.add_argument('--storage', choices=['mcap', 'sqlite3'], default='mcap')
    rec.add_argument('--wait', type=float, default=30.0, help='seconds to wait for the topics to appear')
    demo = sub.add_parser('make-demo', help='write a synthetic two-person conversation (held-out voices) as a bag')
    demo.add_argument('--out', type=Path, required=True)
    demo.add_argument('--seconds', type=float, default=60.0)
    demo.add_argument('--seed', type=int, default=7)
    ren = sub.add_parser('render', help='render a recorded conversation into a face video with its sound')
    ren.add_argument('bag', type=Path)
    ren.add_argument('--out', type=Path, required=True)
    ren.add_argument('--self-topic', default='/self_audio')
    ren.add_argument('--partner-topic', default='/partner_audio')
    ren.add_argument('--avatar', type=Path, help='portrait for the photo avatar; the stylised face if absent')
    ren.add_argument('--model', type=Path, help='weights (.safetensors); the shipped ones if absent')
    ren.add_argument('--size', type=int, default=512)


def run(args: argparse.Namespace) -> int:
    """Run the chosen bag action."""
    if args.action == 'replay':
        count = replay(args.bag, args.rate, args.fast, args.topics, loop=args.loop, restamp=args.restamp)
        print(f'published {count} messages from {args.bag}')
    elif args.action == 'make-demo':
        from dystream_ros.apps.bags import write_conversation_bag
        from dystream_ros.data.corpus import conversation

        robot, _ = conversation(0, 'heldout', args.seed, args.seconds)
        count = write_conversation_bag(args.out, robot.self_audio, robot.partner_audio,
                                       start_ns=1_700_000_000 * NS_PER_S)
        print(f'{args.out}: {count} messages, {robot.num_frames / FPS:.1f} s of conversation')
    elif args.action == 'record':
        counts = record(args.out, args.topics, args.duration, args.storage, args.wait)
        print(f'recorded {sum(counts.values())} messages into {args.out}: {counts}')
    else:
        from tqdm import tqdm

        from dystream_ros.apps.video import mix, stream_motion, write_mp4
        from dystream_ros.face.renderers import make_renderer
        from dystream_ros.runtime.generator import StreamingGenerator

        self_audio, partner_audio = read_conversation(args.bag, args.self_topic, args.partner_topic)
        if not len(self_audio) and not len(partner_audio):
            msg = f'{args.bag} has no audio on {args.self_topic} or {args.partner_topic}'
            raise DataError(msg)
        n = max(len(self_audio), len(partner_audio))
        self_audio, partner_audio = np.pad(self_audio, (0, n - len(self_audio))), np.pad(
            partner_audio, (0, n - len(partner_audio)))
        renderer = make_renderer('photo' if args.avatar else 'stylised', args.size, args.avatar)
        motion = stream_motion(StreamingGenerator(args.model), self_audio, partner_audio)
        frames = (renderer.render(m) for m in tqdm(motion, total=-(-n // SAMPLES_PER_FRAME), unit='frame',
                                                   desc='render'))
        count = write_mp4(frames, args.out, mix(self_audio, partner_audio))
        print(f'{args.out}: {count} frames, {count / FPS:.1f} s')
    return 0
