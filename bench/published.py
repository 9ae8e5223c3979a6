"""Published-weights benchmark: what one frame of the published DyStream costs, next to the shipped model.

``dystream bench published [--json] [--generator FILE] [--renderer FILE | --no-renderer] [--device cuda]
[--backend onnx] [--frames N]``

Times, per 40 ms frame, the published generator run as a stream (:class:`PublishedStream`: the non-causal
wav2vec2 encoders re-run over a 3.9 s window with 60 ms of lookahead, the GPT over 94 frames in 5 guidance branches,
5 Euler steps of the flow head) and the published renderer (flow estimator and face generator, 512 x 512, the
source portrait encoded once). Without ``--generator`` / ``--renderer`` the models are built at the published size
with random weights: the cost is the same as with the real ones. The baseline is the shipped model's streaming step
(``StreamingGenerator``, torch) on the same device in the same run; ``generator_vs_shipped`` is the ratio of the
two. The paper's bar is 34 ms for a whole frame. On a GPU, run it as one command (``--device cuda``, and
``--backend onnx`` for ONNX Runtime with TensorRT or CUDA); on 2 CPU cores a full-size frame takes seconds, so keep
``--frames`` small there.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

PAPER_FRAME_MS = 34.0


def speech_like(seconds: float, seed: int = 0) -> np.ndarray:
    """Seeded 16 kHz audio with syllable-rate bursts of harmonics: the encoders' cost does not depend on it, the
    guidance branches see something other than silence."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    envelope = np.clip(np.sin(2 * np.pi * 4.0 * t), 0, None)
    voice = sum(np.sin(2 * np.pi * 140 * k * t) / k for k in range(1, 6))
    return (0.2 * envelope * voice + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def synchronise(device: str) -> None:
    """Wait for the GPU's queued work, so a wall-clock time covers it."""
    import torch

    if device.startswith('cuda'):
        torch.cuda.synchronize(device)


def time_generator(model, device: str, frames: int) -> list[float]:  # noqa: ANN001 (PublishedGenerator, GeneratorSteps)
    """Wall ms of each frame the stream makes, after the first (warm-up)."""
    import torch

    from dystream_ros.model.published import HOP_SAMPLES
    from dystream_ros.model.published_stream import PublishedStream

    audio = torch.from_numpy(speech_like((frames + 4) * HOP_SAMPLES / 16000 + 1))
    partner = torch.from_numpy(speech_like(audio.numel() / 16000, seed=1)) * 0.3
    stream = PublishedStream(model, torch.zeros(model.config.face_dim), generator=torch.Generator().manual_seed(0))
    times, made, offset = [], 0, 0
    while made < frames + 1:
        chunk = slice(offset, offset + HOP_SAMPLES)
        offset += HOP_SAMPLES
        synchronise(device)
        start = time.perf_counter()
        out = stream.push(audio[chunk], partner[chunk])
        synchronise(device)
        if len(out):
            if made:  # the first frame warms up
                times.append((time.perf_counter() - start) * 1e3)
            made += len(out)
    return times


def time_renderer(renderer, device: str, frames: int) -> list[float]:  # noqa: ANN001 (PublishedRenderer)
    """Wall ms of each rendered frame (latents near the source's), after one warm-up frame."""
    from dystream_ros.face.renderers import default_portrait

    renderer.set_source(default_portrait())
    rng = np.random.default_rng(0)
    times = []
    for k in range(frames + 1):
        latent = renderer.source_latent + 0.05 * rng.standard_normal(renderer.source_latent.shape).astype(np.float32)
        synchronise(device)
        start = time.perf_counter()
        renderer.render_latent(latent)
        synchronise(device)
        if k:
            times.append((time.perf_counter() - start) * 1e3)
    return times


def time_shipped(device: str, frames: int) -> list[float]:
    """Wall ms per frame of the shipped model's streaming step on the same device (the baseline)."""
    from dystream_ros.runtime.frames import stream_clip
    from dystream_ros.runtime.generator import StreamingGenerator

    generator = StreamingGenerator(device=device)
    audio = speech_like((frames + 10) * 0.04)
    times, last = [], None
    for _ in stream_clip(generator, audio, 0.3 * speech_like(audio.size / 16000, seed=1)):
        synchronise(device)
        now = time.perf_counter()
        if last is not None:
            times.append((now - last) * 1e3)
        last = now
    return times[5:]


def figures(times: list[float]) -> dict[str, float]:
    """Median and 90th percentile of a list of milliseconds."""
    return {'ms_per_frame': round(float(np.median(times)), 2), 'p90_ms': round(float(np.percentile(times, 90)), 2),
            'frames': len(times)}


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the figures (one JSON object with --json)."""
    parser = argparse.ArgumentParser(prog='dystream bench published', description=__doc__.splitlines()[0])
    parser.add_argument('--json', action='store_true', help='print one JSON object')
    parser.add_argument('--generator', default=None, help='a converted generator (default: published size, random)')
    parser.add_argument('--renderer', default=None, help='a converted renderer (default: published size, random)')
    parser.add_argument('--no-renderer', action='store_true', help='time the generator only')
    parser.add_argument('--device', default=None, help='torch device (default: cuda where there is one, else cpu)')
    parser.add_argument('--frames', type=int, default=None, help='timed frames (default: 50 on a GPU, 3 on a CPU)')
    parser.add_argument('--threads', type=int, default=0, help='torch / ONNX Runtime CPU threads (0: they choose)')
    parser.add_argument('--backend', choices=('torch', 'onnx'), default='torch',
                        help='torch on --device, or ONNX Runtime (TensorRT, CUDA or CPU, whichever it has; the '
                             'export is made first, minutes at full size, and cached)')
    args = parser.parse_args(argv)

    import torch

    from dystream_ros.apps.bench import MachineLoad
    from dystream_ros.face.published_face import PublishedRenderer
    from dystream_ros.face.published_renderer import HeadAnimator, PublishedRendererConfig
    from dystream_ros.face.published_weights import load_published_model
    from dystream_ros.model.published import PublishedConfig, PublishedGenerator
    from dystream_ros.model.published_checkpoint import load_published_generator
    from dystream_ros.runtime.published_onnx import OnnxGeneratorSteps, OnnxRendererParts

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    device = args.device or ('cuda' if torch.cuda.is_available() else 'cpu')
    frames = args.frames or (50 if device.startswith('cuda') else 3)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    onnx = args.backend == 'onnx'
    build_device = 'cpu' if onnx else device  # ONNX Runtime is given CPU tensors and places them itself
    report: dict = {'device': device, 'backend': args.backend, 'torch_threads': torch.get_num_threads(),
                    'paper_frame_ms': PAPER_FRAME_MS}
    with MachineLoad() as load:
        start = time.perf_counter()
        model = (load_published_generator(args.generator, build_device) if args.generator
                 else PublishedGenerator(PublishedConfig()).to(build_device).eval())
        parameters = sum(p.numel() for p in model.parameters())
        generator = OnnxGeneratorSteps.for_model(model, num_threads=args.threads, progress=say) if onnx else model
        report['generator'] = {'weights': args.generator or 'random, published size', 'parameters': parameters,
                               'load_s': round(time.perf_counter() - start, 1),
                               'providers': generator.providers if onnx else [f'torch:{device}']}
        del model
        with torch.inference_mode():
            report['generator'].update(figures(time_generator(generator, device, frames)))
        del generator
        if not args.no_renderer:
            start = time.perf_counter()
            network = (load_published_model(args.renderer) if args.renderer
                       else HeadAnimator(PublishedRendererConfig()).eval())
            parameters = sum(p.numel() for p in network.parameters())
            parts = (OnnxRendererParts.for_model(network, num_threads=args.threads, progress=say) if onnx
                     else network)
            renderer = PublishedRenderer(parts, build_device)
            report['renderer'] = {'weights': args.renderer or 'random, published size', 'parameters': parameters,
                                  'load_s': round(time.perf_counter() - start, 1),
                                  'providers': parts.providers if onnx else [f'torch:{device}']}
            del network, parts
            with torch.inference_mode():
                report['renderer'].update(figures(time_renderer(renderer, device, frames)))
            del renderer
        with torch.inference_mode():
            shipped = figures(time_shipped(device, max(frames, 25)))
    report['baseline'] = {'name': 'the shipped model, StreamingGenerator.step (torch)', **shipped}
    report['generator_vs_shipped'] = round(report['generator']['ms_per_frame'] / shipped['ms_per_frame'], 1)
    frame_ms = report['generator']['ms_per_frame'] + report.get('renderer', {}).get('ms_per_frame', 0.0)
    report['frame_ms'] = round(frame_ms, 2)
    report['machine_load'] = load.figures()
    if args.json:
        print(json.dumps(report))
    else:
        for part in ('generator', 'renderer'):
            if part in report:
                f = report[part]
                print(f'{part:>9}: {f["ms_per_frame"]:9.1f} ms/frame median, p90 {f["p90_ms"]:.1f} ms '
                      f'({f["frames"]} frames, {f["parameters"] / 1e6:.0f} M parameters, {f["weights"]})')
        print(f' baseline: {shipped["ms_per_frame"]:9.1f} ms/frame ({report["baseline"]["name"]}); the published '
              f'generator costs {report["generator_vs_shipped"]:.0f}x that')
        print(f'    frame: {frame_ms:9.1f} ms on {device} (the paper: {PAPER_FRAME_MS:.0f} ms on a GPU)')
        print(load.line())
    return 0


if __name__ == '__main__':
    sys.exit(main())
