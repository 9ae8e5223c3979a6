"""Check that the networks give on CUDA what they give on the CPU, on a machine with a GPU, once.

The tests run on CPUs only, so nothing in them covers ``device:=cuda``. This script runs, on the CPU and on CUDA
with TF32 off and the same inputs and sampler noise:

1. the shipped model, stepped as the engine steps it (:func:`~dystream_ros.runtime.frames.stream_clip`, the
   Whisper stem, the transformer's KV cache, the flow head) over 8 s of speech-like audio in both streams;
2. the published generator at the published size (random weights, seeded), streamed for a few frames;
3. the published renderer at 512 px (random weights, seeded) on the bundled portrait and three latents near its
   own.

It prints, per network, max |cuda - cpu| / max |cpu| (the tests' measure against the official goldens, bound
1e-4) and, for the renderer, the largest pixel difference (at most 1 level). The shipped model is autoregressive,
so its error is also given for the first frame alone.

Usage (on the GPU machine): ``python tools/check_cuda.py [--json]``; exits 1 if any network is off by more than
the bound.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.published import speech_like  # noqa: E402
from dystream_ros.face.published_face import PublishedRenderer  # noqa: E402
from dystream_ros.face.published_renderer import HeadAnimator, PublishedRendererConfig  # noqa: E402
from dystream_ros.face.renderers import default_portrait  # noqa: E402
from dystream_ros.model.published import HOP_SAMPLES, PublishedConfig, PublishedGenerator  # noqa: E402
from dystream_ros.model.published_stream import PublishedStream  # noqa: E402
from dystream_ros.runtime.frames import stream_clip  # noqa: E402
from dystream_ros.runtime.generator import StreamingGenerator  # noqa: E402

BOUND = 1e-4  # as the golden tests: max |a - b| / max |b|
MAX_PIXEL_DIFFERENCE = 1  # the renderer's truncating cast to uint8 may flip a level


def relative(ours: np.ndarray, reference: np.ndarray) -> float:
    """Largest difference over the largest value: max |ours - reference| / max |reference|."""
    return float(np.abs(ours - reference).max() / np.abs(reference).max())


def shipped_motion(device: str, seconds: float) -> np.ndarray:
    """(frames, motion_dim) of the shipped model stepped over the same clip."""
    audio = speech_like(seconds)
    generator = StreamingGenerator(device=device)
    return np.stack([frame.motion for frame in stream_clip(generator, audio, 0.3 * speech_like(seconds, seed=1))])


def published_latents(model: PublishedGenerator, device: str, frames: int) -> np.ndarray:
    """(frames, face_dim) latents of the published generator streamed on ``device`` with fixed noise."""
    model = model.to(device)
    noise = torch.randn(frames + 8, model.config.face_dim, generator=torch.Generator().manual_seed(1))
    stream = PublishedStream(model, torch.zeros(model.config.face_dim), noise=noise)
    audio = torch.from_numpy(speech_like((frames + 4) * HOP_SAMPLES / 16000 + 1))
    partner = 0.3 * torch.from_numpy(speech_like(audio.numel() / 16000, seed=1))
    out, offset = [], 0
    while sum(len(o) for o in out) < frames:
        out.append(stream.push(audio[offset : offset + HOP_SAMPLES], partner[offset : offset + HOP_SAMPLES]).cpu())
        offset += HOP_SAMPLES
    return torch.cat(out)[:frames].numpy()


def rendered_frames(network: HeadAnimator, device: str) -> tuple[np.ndarray, np.ndarray]:
    """Source latent and three (512, 512, 3) uint8 frames rendered on ``device``."""
    renderer = PublishedRenderer(network, device)
    renderer.set_source(default_portrait())
    source = renderer.source_latent
    rng = np.random.default_rng(0)
    latents = [source + 0.05 * rng.standard_normal(source.shape).astype(np.float32) for _ in range(3)]
    return source, np.stack([renderer.render_latent(latent) for latent in latents])


def main(argv: list[str] | None = None) -> int:
    """Run the three comparisons; print the figures; exit 1 if one is off by more than :data:`BOUND`."""
    parser = argparse.ArgumentParser(prog='check_cuda', description=__doc__.splitlines()[0])
    parser.add_argument('--json', action='store_true', help='print one JSON object')
    parser.add_argument('--frames', type=int, default=8, help='published generator frames to compare')
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print('check_cuda: no CUDA device here', file=sys.stderr)
        return 2
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    report: dict = {'gpu': torch.cuda.get_device_name(), 'torch': torch.__version__, 'bound': BOUND}

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    start = time.perf_counter()
    with torch.inference_mode():
        cpu, cuda = shipped_motion('cpu', 8.0), shipped_motion('cuda', 8.0)
    report['shipped'] = {'frames': len(cpu), 'relative': relative(cuda, cpu),
                         'first_frame_relative': relative(cuda[:1], cpu[:1])}
    say(f'shipped model: {report["shipped"]} ({time.perf_counter() - start:.0f} s)')

    start = time.perf_counter()
    torch.manual_seed(0)
    model = PublishedGenerator(PublishedConfig()).eval()
    with torch.inference_mode():
        cpu = published_latents(model, 'cpu', args.frames)
        cuda = published_latents(model, 'cuda', args.frames)
    report['published_generator'] = {'frames': args.frames, 'relative': relative(cuda, cpu)}
    say(f'published generator: {report["published_generator"]} ({time.perf_counter() - start:.0f} s)')
    del model

    start = time.perf_counter()
    torch.manual_seed(0)
    network = HeadAnimator(PublishedRendererConfig()).eval()
    with torch.inference_mode():
        cpu_source, cpu_frames = rendered_frames(network, 'cpu')
        cuda_source, cuda_frames = rendered_frames(network, 'cuda')
    difference = np.abs(cuda_frames.astype(int) - cpu_frames.astype(int))
    report['published_renderer'] = {'frames': len(cpu_frames), 'relative': relative(cuda_source, cpu_source),
                                    'max_pixel_difference': int(difference.max()),
                                    'mean_pixel_difference': round(float(difference.mean()), 4)}
    say(f'published renderer: {report["published_renderer"]} ({time.perf_counter() - start:.0f} s)')

    failed = [name for name in ('shipped', 'published_generator', 'published_renderer')
              if report[name]['relative'] > BOUND]
    if report['published_renderer']['max_pixel_difference'] > MAX_PIXEL_DIFFERENCE:
        failed.append('published_renderer pixels')
    report['failed'] = failed
    print(json.dumps(report) if args.json else '\n'.join(f'{k}: {v}' for k, v in report.items()))
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
