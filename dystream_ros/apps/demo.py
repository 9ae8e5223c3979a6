"""``dystream demo`` (``make demo``): the whole product on one computer, with a video to look at.

It starts dystream_node (the installed executable, shipped model, stylised face), replays the shipped demo
conversation (a minute of two people talking, with voices the model never heard) into it at the recorded pace,
records what the node publishes, and writes:

- ``out/demo.mp4``: the published face images with both voices, each image at the audio time its header stamp
  names (the frames the node published before the conversation began are not in it);
- ``out/demo_latency.json``: sound-to-picture latency (p50, p99, max), frames published and dropped, and the
  video frames with no image of their own (missing) or whose image came late (see
  :func:`~dystream_ros.apps.graph_run.image_delivery`), and how busy the machine was meanwhile.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from dystream_ros.errors import DystreamError
from dystream_ros.resources import demo_bag
from dystream_ros.units import NS_PER_S, SAMPLES_PER_FRAME

AUDIO_TOPICS = ('/self_audio', '/partner_audio')


def run_demo(out: Path, size: int = 512, bag: Path | None = None, installed: bool = True) -> dict:
    """Run the demo on ``bag`` (the shipped conversation by default); return the summary (also written to
    ``out/demo_latency.json``). ``installed``: start the installed node (as a user does), or this checkout's."""
    from rclpy.qos import QoSProfile, qos_profile_sensor_data
    from sensor_msgs.msg import Image

    from dystream_ros.apps.bag_tools import read_conversation
    from dystream_ros.apps.bench import MachineLoad
    from dystream_ros.apps.graph_run import GraphRun, Received, image_delivery
    from dystream_ros.apps.video import frames_by_stamp, held, mix, video_frame_of, write_mp4
    from dystream_ros.msg import FaceMotion
    from dystream_ros.nodes.conversions import stamp_ns

    out.mkdir(parents=True, exist_ok=True)
    bag = bag or demo_bag()
    log_path = out / 'demo_node.log'
    print(f'[demo] starting dystream_node (log: {log_path})', flush=True)
    with MachineLoad() as load, GraphRun({'image_size': size}, listener='dystream_demo_recorder',
                                         log_path=log_path, installed=installed) as graph:
        received_images = graph.subscribe(Image, 'face/image', qos_profile_sensor_data,
                                          keep=lambda m: (stamp_ns(m.header.stamp), bytes(m.data)))
        received_motions = graph.subscribe(FaceMotion, 'face/motion', QoSProfile(depth=200))
        graph.start()
        print(f'[demo] replaying {bag}', flush=True)
        graph.replay(bag)
        time.sleep(1.0)  # the last frames on their way
    motions: list[FaceMotion] = [motion for _, motion in received_motions]

    # the video's timeline is the sound track's: its first sample is the earliest sound of either voice
    audio = mix(*read_conversation(bag, *AUDIO_TOPICS))
    start_ns = _first_audio_stamp(bag)
    frames = len(audio) // SAMPLES_PER_FRAME
    conversation = [m for m in motions if 0 <= video_frame_of(stamp_ns(m.header.stamp), start_ns) < frames]
    latencies_ms = np.array([m.latency.sec * 1e3 + m.latency.nanosec / 1e6 for m in conversation])
    indices = [m.frame_index for m in motions]
    pictures = frames_by_stamp(((stamp, np.frombuffer(data, np.uint8).reshape(size, size, 3))
                                for _, (stamp, data) in received_images), start_ns, frames)
    write_mp4(held(pictures), out / 'demo.mp4', audio[:frames * SAMPLES_PER_FRAME])
    delivery = image_delivery([Received(arrival, stamp) for arrival, (stamp, _) in received_images], start_ns, frames)
    summary = {
        'latency_p50_ms': round(float(np.percentile(latencies_ms, 50)), 1),
        'latency_p99_ms': round(float(np.percentile(latencies_ms, 99)), 1),
        'latency_max_ms': round(float(latencies_ms.max()), 1),
        'frames_published': len(motions),
        'frames_in_conversation': len(conversation),
        'frames_dropped': sum(b - a - 1 for a, b in zip(indices, indices[1:]) if b > a + 1),
        **delivery,
        'node_exit_code': graph.returncode,
        'machine_load': load.figures(),
    }
    (out / 'demo_latency.json').write_text(json.dumps(summary, indent=2) + '\n')
    return summary


def _first_audio_stamp(bag: Path) -> int:
    """The earliest header stamp of either voice in ``bag``: the audio time of the sound track's first sample."""
    from rosbags.rosbag2 import Reader

    from dystream_ros.apps.bags import project_typestore

    typestore = project_typestore()
    firsts = []
    with Reader(bag) as reader:
        for topic in AUDIO_TOPICS:
            connections = [c for c in reader.connections if c.topic == topic]
            first = next(iter(reader.messages(connections=connections)), None) if connections else None
            message = typestore.deserialize_cdr(first[2], first[0].msgtype) if first else None
            if hasattr(message, 'header'):
                firsts.append(message.header.stamp.sec * NS_PER_S + message.header.stamp.nanosec)
    if not firsts:
        msg = f'{bag} has no stamped audio (AudioDataStamped) on {" or ".join(AUDIO_TOPICS)}'
        raise DystreamError(msg)
    return min(firsts)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``dystream demo``."""
    parser.add_argument('--out', type=Path, default=Path('out'), help='folder for demo.mp4 and demo_latency.json')
    parser.add_argument('--size', type=int, default=512, help='face image size in pixels')
    parser.add_argument('--bag', type=Path, help='a recorded conversation (/self_audio, /partner_audio); the shipped '
                                                  'demo conversation if absent')


def run(args: argparse.Namespace) -> int:
    """Run the demo and print where its results are."""
    summary = run_demo(args.out, args.size, args.bag)
    print(json.dumps(summary, indent=2))
    print(f'[demo] wrote {args.out / "demo.mp4"} and {args.out / "demo_latency.json"}')
    return 0 if summary['node_exit_code'] == 0 else 1
