"""``dystream export-onnx``: export DyStream to ONNX, then check ONNX Runtime against torch on a random clip."""
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
from dystream_ros.runtime.generator import StreamingGenerator


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``dystream export-onnx``."""
    parser.add_argument('--model', type=Path, default=None,
                        help='checkpoint (.safetensors); default: the shipped dystream_tiny weights')
    parser.add_argument('--random-weights', metavar='CONFIG', choices=['tiny', 'base', 'official'],
                        help='export a randomly initialised model of this size instead (speed tests only)')
    parser.add_argument('--out', type=Path, required=True, help='folder for the .onnx files and meta.json')
    parser.add_argument('--steps', type=int, default=None, help='Euler steps (default: the model config)')
    for name in GUIDANCE_WEIGHTS:
        parser.add_argument(f'--{name.replace("_", "-")}', type=float, default=None, dest=name,
                            help=f'guidance weight {name} (default: the model config)')
    parser.add_argument('--check-frames', type=int, default=25,
                        help='frames of random audio to compare ONNX Runtime with torch after export (0: skip)')


def run(args: argparse.Namespace) -> int:
    """Export, then stream a random clip through both backends and print the comparison as JSON."""
    if args.random_weights and args.model:
        msg = 'give either --model or --random-weights, not both'
        raise ConfigError(msg)
    if args.random_weights:
        torch.manual_seed(0)
        model = DyStream(ModelConfig.preset(args.random_weights)).eval()
    else:
        model = load_model(args.model) if args.model else load_default_model()
    settings = {k: getattr(args, k) for k in ('steps', *GUIDANCE_WEIGHTS)}
    onnx_gen = StreamingGenerator(model, backend='onnx', onnx_dir=args.out, num_threads=1, **settings)
    report: dict[str, Any] = {'out': str(args.out), 'providers': onnx_gen.providers,
                              'branches': list(onnx_gen.guidance.names), 'steps': onnx_gen.config.steps}
    if args.check_frames > 0:
        torch_gen = StreamingGenerator(model, backend='torch', **settings)
        rng = np.random.default_rng(0)
        samples = args.check_frames * model.config.samples_per_frame + model.config.lookahead_samples
        clips = [(0.1 * rng.standard_normal(samples)).astype(np.float32) for _ in range(2)]
        ours, ref = onnx_gen.generate(*clips), torch_gen.generate(*clips)
        report['check_frames'] = int(ours.shape[0])
        report['max_abs_diff_vs_torch'] = float(np.abs(ours - ref).max())
    print(json.dumps(report))
    sys.stdout.flush()
    return 0
