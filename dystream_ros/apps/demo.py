"""``dystream demo`` (``make demo``): the whole product on one computer, with a video to look at.

It starts dystream_node (the installed executable, shipped model, stylised face), replays the shipped demo
conversation (a minute of two people talking, with voices the model never heard) into it at the recorded pace,
records what the node publishes, and writes:

- ``out/demo.mp4``: the published face images with both voices, in sync by the frames' audio stamps;
- ``out/demo_latency.json``: sound-to-picture latency (p50, p99, max), frames published, frames dropped.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from dystream_ros.errors import DystreamError
from dystream_ros.resources import demo_bag
from dystream_ros.units import FPS, NS_PER_S, SAMPLES_PER_FRAME

FRAME_NS = NS_PER_S // FPS


def run_demo(out: Path, size: int = 512) -> dict:
    """Run the demo; return the latency summary (also written to ``out/demo_latency.json``)."""
    from rclpy.qos import QoSProfile, qos_profile_sensor_data
    from sensor_msgs.msg import Image

    from dystream_ros.apps.bag_tools import read_conversation
    from dystream_ros.apps.graph_run import GraphRun
    from dystream_ros.apps.video import mix, write_mp4
    from dystream_ros.msg import FaceMotion
    from dystream_ros.nodes.conversions import stamp_ns

    out.mkdir(parents=True, exist_ok=True)
    bag = demo_bag()
    log_path = out / 'demo_node.log'
    print(f'[demo] starting dystream_node (log: {log_path})', flush=True)
    with GraphRun({'image_size': size}, listener='dystream_demo_recorder', log_path=log_path, installed=True) as graph:
        received_images = graph.subscribe(Image, 'face/image', qos_profile_sensor_data,
                                          keep=lambda m: (stamp_ns(m.header.stamp), bytes(m.data)))
        received_motions = graph.subscribe(FaceMotion, 'face/motion', QoSProfile(depth=200))
        graph.start()
        print(f'[demo] replaying {bag} (about a minute)', flush=True)
        graph.replay(bag)
        time.sleep(1.0)  # the last frames on their way
    images: dict[int, bytes] = dict(image for _, image in received_images)
    motions: list[FaceMotion] = [motion for _, motion in received_motions]

    self_audio, partner_audio = read_conversation(bag, '/self_audio', '/partner_audio')
    audio = mix(self_audio, partner_audio)
    bag_start_ns = _first_audio_stamp(bag)
    frames_in_clip = len(audio) // SAMPLES_PER_FRAME
    # the frames whose audio time lies in the conversation, in order; a frame whose image did not arrive
    # repeats the one before it, so the picture stays in sync with the sound
    by_index = sorted((m for m in motions if bag_start_ns - FRAME_NS // 2 <= stamp_ns(m.header.stamp)),
                      key=lambda m: m.frame_index)[:frames_in_clip]
    latencies_ms = np.array([m.latency.sec * 1e3 + m.latency.nanosec / 1e6 for m in by_index])
    indices = [m.frame_index for m in motions]
    dropped = sum(b - a - 1 for a, b in zip(indices, indices[1:]) if b > a + 1)
    blank = np.zeros((size, size, 3), np.uint8)
    missing = 0

    def pictures():  # noqa: ANN202 - a generator of frames for write_mp4
        nonlocal missing
        last = blank
        for motion in by_index:
            data = images.get(stamp_ns(motion.header.stamp))
            if data is None:
                missing += 1
            else:
                last = np.frombuffer(data, np.uint8).reshape(size, size, 3)
            yield last

    written = write_mp4(pictures(), out / 'demo.mp4', audio[: len(by_index) * SAMPLES_PER_FRAME])
    summary = {
        'latency_p50_ms': round(float(np.percentile(latencies_ms, 50)), 1),
        'latency_p99_ms': round(float(np.percentile(latencies_ms, 99)), 1),
        'latency_max_ms': round(float(latencies_ms.max()), 1),
        'frames_published': len(motions),
        'frames_in_conversation': len(by_index),
        'frames_dropped': dropped,
        'images_missing_in_recording': missing,
        'video_frames': written,
        'node_exit_code': graph.returncode,
    }
    (out / 'demo_latency.json').write_text(json.dumps(summary, indent=2) + '\n')
    return summary


def _first_audio_stamp(bag: Path) -> int:
    from rosbags.rosbag2 import Reader

    from dystream_ros.apps.bags import project_typestore

    typestore = project_typestore()
    with Reader(bag) as reader:
        connections = [c for c in reader.connections if c.topic == '/self_audio']
        for connection, _, raw in reader.messages(connections=connections):
            header = typestore.deserialize_cdr(raw, connection.msgtype).header
            return header.stamp.sec * NS_PER_S + header.stamp.nanosec
    msg = f'{bag} has no /self_audio messages'
    raise DystreamError(msg)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``dystream demo``."""
    parser.add_argument('--out', type=Path, default=Path('out'), help='folder for demo.mp4 and demo_latency.json')
    parser.add_argument('--size', type=int, default=512, help='face image size in pixels')


def run(args: argparse.Namespace) -> int:
    """Run the demo and print where its results are."""
    summary = run_demo(args.out, args.size)
    print(json.dumps(summary, indent=2))
    print(f'[demo] wrote {args.out / "demo.mp4"} and {args.out / "demo_latency.json"}')
    return 0 if summary['node_exit_code'] == 0 else 1
