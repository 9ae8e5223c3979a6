"""Sound-to-picture latency of dystream_node in a real ROS graph, against the amplitude-jaw baseline.

``dystream bench e2e [--json] [--size PX] [--chunk-ms MS] [--secure [data|full]]``

For each system (the shipped DyStream model, then the amplitude baseline through the very same node), this starts
dystream_node in its own process, replays the demo conversation (65 s, re-cut into ``--chunk-ms`` audio messages:
10 ms by default, as audio_capture_node sends) at its recorded pace from a second process with its stamps moved to
the present (``dystream bag replay --restamp``: a stamp is then the wall-clock time of the
sound), and receives the face images here, in a third. A frame's latency is the arrival time of its image minus
the end of the 40 ms of sound it shows: the model's lookahead, the wait for the audio message, generation,
rendering, publishing and transport. The node's own per-stage means come from its /diagnostics. CPU and memory are
read from /proc for the node process. The ratio against the baseline is printed with the figures. Each system's
figures say how the images reached the display (frames with no image of their own, images late: see
``image_delivery``) and how busy the machine was meanwhile (``machine_load``).

``--secure`` measures the model under SROS2 instead, against itself without security in the same run: a keystore
made for the run, every process enforced in its enclave, the data encrypted (``full``: every RTPS message signed
too). It needs a middleware with DDS-Security in this Python (``make secure-middleware``).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from dystream_ros.resources import demo_bag
from dystream_ros.units import FPS, NS_PER_S, SAMPLE_RATE_HZ

FRAME_NS = NS_PER_S // FPS
SOUND_MARGIN_NS = NS_PER_S // 5  # a frame's sound ends a frame and the lookahead after its stamp
LATENCIES: dict[str, np.ndarray] = {}  # per system, for the plots
LISTENER, LISTENER_ENCLAVE = 'dystream_bench_e2e', '/dystream/bench'


def make_keystore(folder: Path, protection: str = 'data') -> Path:
    """A keystore for this domain with the enclaves of a secure run: the face, the replay and this listener."""
    from dystream_ros.security.keystore import add_enclave, create_keystore
    from dystream_ros.security.policy import FACE_OUTPUTS, OUR_ENCLAVES, Grant

    create_keystore(folder, int(os.environ.get('ROS_DOMAIN_ID') or 0), protection)
    listener = Grant(LISTENER, subscribe=(*FACE_OUTPUTS[:3], '/diagnostics', 'self_audio'))
    for enclave, grant in (('/dystream/face', OUR_ENCLAVES['/dystream/face']),
                           ('/dystream/replay', OUR_ENCLAVES['/dystream/replay']), (LISTENER_ENCLAVE, listener)):
        add_enclave(folder, enclave, grant)
    return folder


def _proc_cpu_s(pid: int) -> float:
    fields = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')  # utime + stime


def _proc_rss_mb(pid: int) -> float:
    for line in Path(f'/proc/{pid}/status').read_text().splitlines():
        if line.startswith('VmRSS:'):
            return int(line.split()[1]) / 1024
    return 0.0


def measure(generator: str, size: int, bag: Path, backend: str = 'torch', soak_minutes: float = 0.0,
            keystore: Path | None = None) -> dict:
    """Run the node with ``generator`` on the restamped bag; return its latency figures.

    With ``soak_minutes``, the bag is replayed in a loop for that long and the figures include how memory,
    latency and the motion statistics changed between the first and the last minute. With ``keystore`` (made by
    :func:`make_keystore`), the node, the replay and the listener run enforced under SROS2.
    """
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    from dystream_ros.apps.bench import MachineLoad
    from dystream_ros.apps.graph_run import GraphRun, SecureGraph, image_delivery
    from dystream_ros.msg import AudioDataStamped, FaceMotion
    from dystream_ros.nodes.conversions import stamp_ns

    def motion_of(msg: FaceMotion) -> tuple[int, np.ndarray]:  # frame index, blendshapes + pose (a soak's drift)
        rotation = msg.head_rotation
        return msg.frame_index, np.array([*msg.blendshape_weights, rotation.x, rotation.y, rotation.z])

    # an image's arrival is the middleware's receive time, so this process being busy does not count as latency;
    # a history of 20 images (what the 16 MB shared-memory segment holds) lets it catch up without losing any
    image_qos = QoSProfile(depth=20, reliability=ReliabilityPolicy.BEST_EFFORT)
    parameters = {'generator': generator, 'image_size': size, 'backend': backend}
    secure = None if keystore is None else SecureGraph(keystore, LISTENER_ENCLAVE)
    with MachineLoad() as load, GraphRun(parameters, listener=LISTENER, secure=secure) as graph:
        images = graph.subscribe(Image, 'face/image', image_qos, keep=lambda m: stamp_ns(m.header.stamp))
        # frames from before the first sound reached the node (the replay starting up) or after the last (it
        # ended) show no sound, so they have no sound-to-picture latency: only frames between the two are measured
        sounds = graph.subscribe(AudioDataStamped, 'self_audio', QoSProfile(depth=10),
                                 keep=lambda m: stamp_ns(m.header.stamp))
        frames = graph.subscribe(FaceMotion, 'face/motion', QoSProfile(depth=200), keep=motion_of)
        diagnostics = graph.subscribe(DiagnosticArray, '/diagnostics', QoSProfile(depth=10),
                                      keep=lambda m: {kv.key: kv.value for kv in m.status[0].values})
        graph.start()
        start_ns, cpu_start, wall_start = time.time_ns(), _proc_cpu_s(graph.pid), time.monotonic()
        rss: list[tuple[float, float]] = []  # (time, MB), once a second
        graph.replay(bag, restamp=True, loop=bool(soak_minutes), duration_s=soak_minutes * 60 or None,
                     tick=lambda: rss.append((time.monotonic(), _proc_rss_mb(graph.pid))))
        time.sleep(1.0)  # the last frames on their way
        cpu_percent = 100 * (_proc_cpu_s(graph.pid) - cpu_start) / (time.monotonic() - wall_start)
    if len(sounds) < 2:
        msg = 'no audio reached the node: did the replay start?'
        raise RuntimeError(msg)
    start_ns, end_ns = max(start_ns, sounds[0].value), sounds[-1].value - SOUND_MARGIN_NS
    delivery = image_delivery(images, start_ns, int((end_ns - start_ns) // FRAME_NS) + 1)
    images = [(arrival, stamp) for arrival, stamp in images if start_ns <= stamp <= end_ns]
    latencies = np.array([(arrival - stamp - FRAME_NS) / 1e6 for arrival, stamp in images])
    LATENCIES[generator] = latencies
    indices = [index for _, (index, _) in frames]
    lost = sum(b - a - 1 for a, b in zip(indices, indices[1:]) if b > a + 1)
    stages = diagnostics[-2].value if len(diagnostics) >= 2 else {}
    vectors = [vector for _, (_, vector) in frames]
    soak = _soak_figures(rss, images, vectors, wall_start, start_ns) if soak_minutes else {}
    return {
        **soak,
        'latency_p50_ms': round(float(np.percentile(latencies, 50)), 1),
        'latency_p99_ms': round(float(np.percentile(latencies, 99)), 1),
        'latency_max_ms': round(float(latencies.max()), 1),
        'images_measured': int(len(latencies)),
        **delivery,
        'frames_dropped': lost + int(stages.get('frames_dropped', 0)),
        'renders_dropped': int(stages.get('renders_dropped', 0)),
        'cpu_percent': round(cpu_percent, 1),
        'rss_mb': round(max(mb for _, mb in rss), 1),
        'audio_issues': {key: int(value) for key, value in stages.items()
                         if '_audio_' in key and not key.endswith(('_per_s', '_ms'))},
        'audio_delivery_delay_ms': {key: float(value) for key, value in stages.items()
                                    if key.endswith('_audio_delivery_delay_ms')},
        'stages_ms': {key.removesuffix('_ms_mean').removesuffix('_ms'): float(value) for key, value in stages.items()
                      if key.endswith('_ms_mean') or key == 'lookahead_ms'},
        'machine_load': load.figures(),
    }


def _soak_figures(rss: list[tuple[float, float]], images: list[tuple[int, int]],
                  motion: list[np.ndarray], wall_start: float, start_ns: int) -> dict:
    """How memory, latency and motion changed between the first and the last minute of a soak (the very first
    minute after warm-up is the reference; a minute is shortened to a third of the run for short soaks)."""
    from dystream_ros.data.metrics import statistics_drift

    duration = rss[-1][0] - wall_start
    window = min(60.0, duration / 3)
    first_mb = np.median([mb for t, mb in rss if t - wall_start < window])
    last_mb = np.median([mb for t, mb in rss if t - wall_start > duration - window])
    arrivals = np.array([(arrival - start_ns) / NS_PER_S for arrival, _ in images])
    latency = np.array([(arrival - stamp - FRAME_NS) / 1e6 for arrival, stamp in images])
    first = latency[(arrivals >= 0) & (arrivals < window)]
    last = latency[arrivals > duration - window]
    frames = np.stack(motion)
    return {
        'soak_minutes': round(duration / 60, 2),
        'rss_growth_percent': round(100 * (last_mb - first_mb) / first_mb, 2),
        'latency_p50_first_ms': round(float(np.median(first)), 1),
        'latency_p50_last_ms': round(float(np.median(last)), 1),
        'motion_drift': round(statistics_drift(frames, int(window * FPS)), 3),
    }


def plot(report: dict, folder: Path) -> Path:
    """Latency histograms of both systems and the model's per-stage bars, as one PNG."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, (hist, bars) = plt.subplots(1, 2, figsize=(12, 3.8), gridspec_kw={'width_ratios': [2, 1]})
    for name, colour in (('dystream', 'C0'), ('amplitude', 'C7')):
        hist.hist(LATENCIES[name], bins=60, alpha=0.7, color=colour, label=f'{name} (p99 '
                  f'{np.percentile(LATENCIES[name], 99):.0f} ms)')
    hist.axvline(100, color='red', linestyle='--', linewidth=0.8, label='100 ms')
    hist.set_xlabel('sound-to-picture latency (ms): image arrival minus the end of its 40 ms of sound')
    hist.legend(fontsize=8)
    stages = report['stages_ms']
    bars.barh(list(stages), list(stages.values()), color='C0')
    bars.set_xlabel('ms (node means)')
    bars.set_title('where the time goes (DyStream)', fontsize=9)
    fig.tight_layout()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / 'latency.png'
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    """Measure both systems and print the figures with their ratio."""
    parser = argparse.ArgumentParser(prog='dystream bench e2e', description=__doc__.splitlines()[0])
    parser.add_argument('--json', action='store_true', help='one JSON object on one line')
    parser.add_argument('--size', type=int, default=512, help='face image size')
    parser.add_argument('--bag', type=Path, default=demo_bag(), help='the conversation to replay')
    parser.add_argument('--chunk-ms', type=int, default=10,
                        help='audio per message: the bag is re-cut to this (0 replays it as recorded)')
    parser.add_argument('--plots', type=Path, help='folder for latency.png (e.g. docs)')
    parser.add_argument('--backend', choices=['torch', 'onnx'], default='torch', help="the model's backend")
    parser.add_argument('--soak-minutes', type=float, default=0.0,
                        help='loop the conversation this long and report memory, latency and motion drift '
                             '(the model only, no baseline)')
    parser.add_argument('--secure', choices=['data', 'full'], nargs='?', const='data', default=None,
                        help='the model under SROS2 (Enforce; data: encrypted data, full: also signed RTPS messages) '
                             'against the model without security, in one run; needs a middleware with DDS-Security '
                             '(make secure-middleware)')
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        bag = _recut(args.bag, args.chunk_ms, Path(scratch) / 'conversation') if args.chunk_ms else args.bag
        if args.secure:
            return _run_secure(args, bag, make_keystore(Path(scratch) / 'keystore', args.secure))
        return _run(args, bag)


def _recut(bag: Path, chunk_ms: int, out: Path) -> Path:
    """The bag's conversation as ``chunk_ms`` audio messages (a live microphone's period decides how long a frame
    waits for its last sound)."""
    from dystream_ros.apps.bag_tools import read_conversation
    from dystream_ros.apps.bags import write_conversation_bag

    self_audio, partner_audio = read_conversation(bag, '/self_audio', '/partner_audio')
    write_conversation_bag(out, self_audio, partner_audio, start_ns=1_700_000_000 * NS_PER_S,
                           chunk_samples=SAMPLE_RATE_HZ * chunk_ms // 1000)
    return out


def _run(args: argparse.Namespace, bag: Path) -> int:
    if args.soak_minutes:
        report = measure('dystream', args.size, bag, args.backend, args.soak_minutes)
        report['targets_met'] = {
            'rss_growth_lt_5_percent': bool(report['rss_growth_percent'] < 5),
            'no_latency_growth': bool(report['latency_p50_last_ms'] <= report['latency_p50_first_ms'] + 10),
            'no_dropped_frames': bool(report['frames_dropped'] == 0)}
        report['audio_message_ms'] = args.chunk_ms or 'as recorded'
        print(json.dumps(report, indent=None if args.json else 2))
        return 0
    model = measure('dystream', args.size, bag, args.backend)
    baseline = measure('amplitude', args.size, bag)
    report = {
        **model,
        'baseline_amplitude': baseline,
        'latency_p50_ratio_vs_baseline': round(model['latency_p50_ms'] / max(baseline['latency_p50_ms'], 1e-3), 2),
        'latency_p99_ratio_vs_baseline': round(model['latency_p99_ms'] / max(baseline['latency_p99_ms'], 1e-3), 2),
        'targets_met': {'latency_p99_ms_le_100': bool(model['latency_p99_ms'] <= 100),
                        'no_dropped_frames': bool(model['frames_dropped'] == 0)},
        'image_size': args.size, 'backend': args.backend, 'audio_message_ms': args.chunk_ms or 'as recorded',
    }
    if args.plots:
        report['plot'] = str(plot(report, args.plots))
    print(json.dumps(report, indent=None if args.json else 2))
    return 0


def _run_secure(args: argparse.Namespace, bag: Path, keystore: Path) -> int:
    """The model without security (the baseline) and under SROS2, one after the other."""
    plain = measure('dystream', args.size, bag, args.backend)
    secure = measure('dystream', args.size, bag, args.backend, keystore=keystore)
    report = {
        'secure': secure, 'baseline_without_security': plain, 'protection': args.secure,
        'latency_p50_ratio_vs_baseline': round(secure['latency_p50_ms'] / max(plain['latency_p50_ms'], 1e-3), 2),
        'latency_p99_ratio_vs_baseline': round(secure['latency_p99_ms'] / max(plain['latency_p99_ms'], 1e-3), 2),
        'latency_p50_added_ms': round(secure['latency_p50_ms'] - plain['latency_p50_ms'], 1),
        'cpu_percent_added': round(secure['cpu_percent'] - plain['cpu_percent'], 1),
        'image_size': args.size, 'backend': args.backend, 'audio_message_ms': args.chunk_ms or 'as recorded',
    }
    print(json.dumps(report, indent=None if args.json else 2))
    return 0


if __name__ == '__main__':
    sys.exit(main())
