"""``dystream export-onnx``: export a model to ONNX, then check ONNX Runtime against torch on random input.

The shipped format (or ``--random-weights``) exports DyStream's streaming steps; a published generator converted by
``dystream convert-official`` exports the published one, and ``--renderer`` the published renderer. Without
``--out`` the graphs go to the cache folder where ``dystream_node`` (``backend:=onnx``) looks for them, so a robot
can be given its export before it starts (the published model's takes minutes).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dystream_ros.errors import ConfigError
from dystream_ros.model import DyStream, ModelConfig, load_default_model, load_model
from dystream_ros.model.config import GUIDANCE_WEIGHTS
from dystream_ros.model.published_checkpoint import is_published_generator
from dystream_ros.runtime.generator import StreamingGenerator


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``dystream export-onnx``."""
    parser.add_argument('--model', type=Path, default=None,
                        help='checkpoint (.safetensors): ours, or a published generator converted by `dystream '
                             'convert-official`; default: the shipped dystream_tiny weights')
    parser.add_argument('--renderer', type=Path, default=None,
                        help='a published renderer converted by `dystream convert-official`: export it too')
    parser.add_argument('--random-weights', metavar='CONFIG', choices=['tiny', 'base', 'official'],
                        help='export a randomly initialised model of this size instead (speed tests only)')
    parser.add_argument('--out', type=Path, default=None,
                        help='folder for the .onnx files and meta.json (with --renderer: a generator/ and a renderer/ '
                             'folder in it); default: the cache folder dystream_node uses')
    parser.add_argument('--steps', type=int, default=None, help='Euler steps (default: the model config)')
    for name in GUIDANCE_WEIGHTS:
        parser.add_argument(f'--{name.replace("_", "-")}', type=float, default=None, dest=name,
                            help=f'guidance weight {name} (default: the model config)')
    parser.add_argument('--check-frames', type=int, default=25,
                        help='frames of random audio to compare ONNX Runtime with torch after export (0: skip; '
                             'the published renderer is checked on one frame)')


def run(args: argparse.Namespace) -> int:
    """Export, then run random input through both backends and print the comparison as JSON."""
    if args.random_weights and args.model:
        msg = 'give either --model or --random-weights, not both'
        raise ConfigError(msg)
    published = args.model is not None and is_published_generator(args.model)
    if args.renderer and not published:
        msg = '--renderer is the published renderer: give --model a published generator converted with it'
        raise ConfigError(msg)
    report = _export_published(args) if published else _export_ours(args)
    print(json.dumps(report))
    sys.stdout.flush()
    return 0


def _export_ours(args: argparse.Namespace) -> dict[str, Any]:
    if args.random_weights:
        torch.manual_seed(0)
        model = DyStream(ModelConfig.preset(args.random_weights)).eval()
    else:
        model = load_model(args.model) if args.model else load_default_model()
    settings = {k: getattr(args, k) for k in ('steps', *GUIDANCE_WEIGHTS)}
    onnx_gen = StreamingGenerator(model, backend='onnx', onnx_dir=args.out, num_threads=1, **settings)
    report: dict[str, Any] = {'out': str(onnx_gen.backend.folder), 'providers': onnx_gen.providers,
                              'branches': list(onnx_gen.guidance.names), 'steps': onnx_gen.config.steps}
    if args.check_frames > 0:
        torch_gen = StreamingGenerator(model, backend='torch', **settings)
        rng = np.random.default_rng(0)
        samples = args.check_frames * model.config.samples_per_frame + model.config.lookahead_samples
        clips = [(0.1 * rng.standard_normal(samples)).astype(np.float32) for _ in range(2)]
        ours, ref = onnx_gen.generate(*clips), torch_gen.generate(*clips)
        report['check_frames'] = int(ours.shape[0])
        report['max_abs_diff_vs_torch'] = float(np.abs(ours - ref).max())
    return report


def _export_published(args: argparse.Namespace) -> dict[str, Any]:
    from dystream_ros.face.published_face import PublishedRenderer
    from dystream_ros.face.published_weights import load_published_model
    from dystream_ros.model.published import HOP_SAMPLES, Guidance
    from dystream_ros.model.published_checkpoint import load_published_generator
    from dystream_ros.model.published_stream import PublishedStream, TorchGeneratorSteps
    from dystream_ros.runtime.published_onnx import OnnxGeneratorSteps, OnnxRendererParts

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    if args.steps is not None and args.steps < 1:
        msg = f'--steps must be at least 1, not {args.steps}'
        raise ConfigError(msg)
    fields = dict(zip(GUIDANCE_WEIGHTS, ('audio', 'audio_other', 'anchor', 'all')))
    guidance = Guidance(**{fields[k]: v for k in GUIDANCE_WEIGHTS if (v := getattr(args, k)) is not None})
    steps = args.steps or 5
    model = load_published_generator(args.model)
    out = args.out / 'generator' if args.out and args.renderer else args.out
    onnx_steps = OnnxGeneratorSteps.for_model(model, guidance, steps, out, progress=say)
    report: dict[str, Any] = {'generator': {'out': str(onnx_steps.folder), 'providers': onnx_steps.providers,
                                            'guidance': guidance.__dict__, 'steps': steps}}
    if args.check_frames > 0:
        rng = np.random.default_rng(0)
        audio = torch.from_numpy((0.1 * rng.standard_normal((2, (args.check_frames + 2) * HOP_SAMPLES)))
                                 .astype(np.float32))
        noise = torch.from_numpy(rng.standard_normal((args.check_frames + 2, model.config.face_dim))
                                 .astype(np.float32))
        latents = []
        for backend in (TorchGeneratorSteps(model, guidance, steps), onnx_steps):
            stream = PublishedStream(backend, torch.zeros(model.config.face_dim), noise=noise)
            latents.append(torch.cat([stream.push(*audio), stream.flush()]))
        report['generator']['check_frames'] = len(latents[0])
        report['generator']['max_rel_diff_vs_torch'] = float((latents[1] - latents[0]).abs().max()
                                                             / latents[0].abs().max())
    if args.renderer:
        network = load_published_model(args.renderer)
        parts = OnnxRendererParts.for_model(network, args.out / 'renderer' if args.out else None, progress=say)
        report['renderer'] = {'out': str(parts.folder), 'providers': parts.providers}
        if args.check_frames > 0:
            portrait = np.random.default_rng(1).integers(0, 256, (512, 512, 3), dtype=np.uint8)
            frames = []
            for renderer in (PublishedRenderer(network), PublishedRenderer(parts)):
                renderer.set_source(portrait)
                frames.append(renderer.render_latent(renderer.source_latent + 0.1).astype(np.int16))
            report['renderer']['max_level_diff_vs_torch'] = int(np.abs(frames[1] - frames[0]).max())
    return report
