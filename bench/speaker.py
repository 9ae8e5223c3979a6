"""Speaker to face: how far apart the robot's face shows a sound and its loudspeaker plays it.

``dystream bench speaker [--json] [--utterances N] [--size PX]``

A TTS (here) publishes each utterance at once, stamped with the time it is to be played (half a second ahead), as
robot TTS nodes do. dystream_node shows it; audio_player_node plays it on a virtual loudspeaker whose DAC runs in
this process (``dystream_ros.apps.virtual_speaker``: the speaker's latency is measured first, as with a loopback
cable, and given to the player). For every frame of an utterance, the offset is the arrival of its image here (the
middleware's receive time) minus the moment the DAC played the frame's first sample: positive when the face is late.
The baseline, in the same run and through the same nodes, is the amplitude jaw (no model). The target: at most one
frame (40 ms) at p99.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from dystream_ros.units import NS_PER_S, SAMPLE_RATE_HZ

AHEAD_NS = NS_PER_S // 2  # the TTS stamps each utterance this long before it is to be played
TEXTS = ['Good morning, and welcome to the lab.', 'The meeting room is on the second floor, next to the window.',
         'Would you like me to show you the way?', 'Please take a seat, someone will be with you shortly.']


def _utterances(count: int) -> list[np.ndarray]:
    """Real TTS speech (espeak-ng), 16 kHz."""
    from dystream_ros.data.tts import Voice, synthesize

    return [u.audio for u in synthesize([TEXTS[k % len(TEXTS)] for k in range(count)], Voice('espeak', 'en-us+m3'))]


def _played_at(played: np.ndarray, samples: np.ndarray, expected: int) -> int:
    """Where in the DAC's recording ``samples`` were played, searched within a second of ``expected``."""
    from scipy.signal import correlate

    lo = max(expected - SAMPLE_RATE_HZ, 0)
    window = played[lo:expected + len(samples) + SAMPLE_RATE_HZ]
    return int(np.argmax(correlate(window, samples, mode='valid'))) + lo


def measure(generator: str, count: int, size: int, home: Path, fifo: Path, latency_s: float) -> dict:
    """Run both nodes with ``generator`` and ``count`` utterances; return the offsets between face and speaker."""
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header

    from dystream_ros.apps.bench import MachineLoad
    from dystream_ros.apps.graph_run import GraphRun, stop_process
    from dystream_ros.apps.virtual_speaker import Dac
    from dystream_ros.msg import AudioData, AudioDataStamped
    from dystream_ros.nodes.conversions import stamp_ns, time_message

    utterances = _utterances(count)
    dac = Dac(fifo)
    player = subprocess.Popen(
        [sys.executable, '-m', 'dystream_ros.nodes.audio_player_node', '--ros-args', '-p', 'device:=speaker',
         '-p', f'output_latency_ms:={round(latency_s * 1e3)}', '-p', 'audio_reliability:=reliable'],
        env=dict(os.environ, HOME=str(home)), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    parameters = {'generator': generator, 'image_size': size, 'backend': 'onnx', 'audio_reliability': 'reliable'}
    played_from: list[tuple[np.ndarray, int]] = []  # (utterance, its play time)
    try:
        with MachineLoad() as load, GraphRun(parameters, listener='dystream_bench_speaker') as graph:
            image_qos = QoSProfile(depth=20, reliability=ReliabilityPolicy.BEST_EFFORT)
            images = graph.subscribe(Image, 'face/image', image_qos, keep=lambda m: stamp_ns(m.header.stamp))
            tts = graph.node.create_publisher(AudioDataStamped, 'self_audio', QoSProfile(
                depth=1000, reliability=ReliabilityPolicy.RELIABLE))
            graph.start()
            if not graph.wait_until(lambda: tts.get_subscription_count() >= 2 and dac.start_s is not None, 60):
                msg = f'the speaker did not start: {player.poll()=}'
                raise RuntimeError(msg)
            time.sleep(1.0)  # the player's clock settles on the speaker's pace
            for audio in utterances:
                play_at = time.time_ns() + AHEAD_NS
                for first in range(0, len(audio), 320):  # 20 ms messages, all at once
                    pcm = (np.clip(audio[first:first + 320], -1, 1) * 32767).astype('<i2').tobytes()
                    stamp = time_message(play_at + first * NS_PER_S // SAMPLE_RATE_HZ)
                    tts.publish(AudioDataStamped(header=Header(stamp=stamp), audio=AudioData(data=pcm)))
                played_from.append((audio, play_at))
                time.sleep((AHEAD_NS + len(audio) * NS_PER_S // SAMPLE_RATE_HZ) / NS_PER_S + 1.0)
    finally:
        stop_process(player)
        dac.close()
    wall_minus_monotonic_ns = time.time_ns() - time.monotonic_ns()
    played = dac.played().astype(np.float32) / 32768
    offsets_ms = []
    for audio, play_at in played_from:
        dac_start_ns = round(dac.start_s * NS_PER_S) + wall_minus_monotonic_ns  # wall clock of the DAC's sample 0
        expected = round((play_at - dac_start_ns) * SAMPLE_RATE_HZ / NS_PER_S)
        at = _played_at(played, audio, expected)
        end_ns = play_at + len(audio) * NS_PER_S // SAMPLE_RATE_HZ
        for arrival, stamp in images:
            if play_at <= stamp < end_ns:
                sample = at + round((stamp - play_at) * SAMPLE_RATE_HZ / NS_PER_S)  # the frame's first sample
                offsets_ms.append((arrival - dac_start_ns - sample * NS_PER_S // SAMPLE_RATE_HZ) / 1e6)
    offsets = np.array(offsets_ms)
    expected_frames = sum(len(audio) for audio, _ in played_from) // (SAMPLE_RATE_HZ // 25)
    return {
        'offset_p50_ms': round(float(np.percentile(offsets, 50)), 1),
        'offset_p99_ms': round(float(np.percentile(np.abs(offsets), 99)), 1),
        'offset_min_ms': round(float(offsets.min()), 1),
        'offset_max_ms': round(float(offsets.max()), 1),
        'images_measured': int(len(offsets)),
        'images_expected': int(expected_frames),
        'speaker_underruns': len(dac.underruns),
        'speaker_latency_ms': round(latency_s * 1e3, 1),
        'machine_load': load.figures(),
    }


def main(argv: list[str] | None = None) -> int:
    """Measure the model and the baseline; print the figures with their ratio."""
    from dystream_ros.apps.virtual_speaker import add_virtual_speaker, speaker_latency_s

    parser = argparse.ArgumentParser(prog='dystream bench speaker', description=__doc__.splitlines()[0])
    parser.add_argument('--json', action='store_true', help='one JSON object on one line')
    parser.add_argument('--utterances', type=int, default=4, help='TTS utterances per system')
    parser.add_argument('--size', type=int, default=512, help='face image size')
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        home = Path(scratch)
        fifo = add_virtual_speaker(home)
        latency_s = speaker_latency_s(home, fifo)
        model = measure('dystream', args.utterances, args.size, home, fifo, latency_s)
        baseline = measure('amplitude', args.utterances, args.size, home, fifo, latency_s)
    report = {**model, 'baseline_amplitude': baseline,
              'offset_p99_ratio_vs_baseline': round(model['offset_p99_ms'] / max(baseline['offset_p99_ms'], 1e-3), 2),
              'targets_met': {'offset_p99_ms_le_40': bool(model['offset_p99_ms'] <= 40)}, 'image_size': args.size}
    print(json.dumps(report, indent=None if args.json else 2))
    return 0


if __name__ == '__main__':
    sys.exit(main())
