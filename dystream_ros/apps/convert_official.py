"""``dystream convert-official``: the published DyStream checkpoints, as our safetensors.

The published generator (``last.ckpt`` of the hub repo ``robinwitch/DyStream``) and renderer are Lightning files:
pickles. This reads them with ``torch.load(weights_only=True)``, which rebuilds tensors and plain containers and
executes no pickled code, keeps the weights the official inference uses (the generator's EMA, the renderer's four
inference sub-nets), folds what is training-only machinery in eval (weight norm, spectral norm, weight
standardisation, equalised-learning-rate scales), and writes one safetensors file per model with its config and
provenance in the metadata. Nothing downloads: the user fetches the checkpoints on a machine with internet.
"""
from __future__ import annotations

import argparse
import time
from functools import partial
from pathlib import Path

from dystream_ros.errors import DataError
from dystream_ros.face.published_weights import convert_published_renderer
from dystream_ros.model.published import PublishedConfig
from dystream_ros.model.published_checkpoint import convert_published_generator

GENERATOR_FILE = 'generator.safetensors'
RENDERER_FILE = 'renderer.safetensors'


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``dystream convert-official``."""
    parser.add_argument('--generator', type=Path, default=None,
                        help="the published generator checkpoint (robinwitch/DyStream: checkpoints/last.ckpt)")
    parser.add_argument('--generator-config', type=Path, default=None,
                        help="the generator's sizes, for a checkpoint that is not the published full size: a "
                             'generator_config.json in the layout of the official reference (default: 768 wide, '
                             '12 layers, two 8-layer wav2vec2-base encoders)')
    parser.add_argument('--renderer', type=Path, default=None, help='the published renderer checkpoint')
    parser.add_argument('--out', type=Path, required=True,
                        help=f'folder to write {GENERATOR_FILE} and {RENDERER_FILE} into')


def run(args: argparse.Namespace) -> int:
    """Convert what was given; say where each file went and how long it took."""
    if args.generator is None and args.renderer is None:
        msg = 'nothing to convert: give --generator, --renderer or both'
        raise DataError(msg)
    args.out.mkdir(parents=True, exist_ok=True)
    generator_config = (PublishedConfig.from_reference_file(args.generator_config) if args.generator_config
                        else PublishedConfig())
    for name, source, convert, file_name in (
            ('generator', args.generator, partial(convert_published_generator, config=generator_config),
             GENERATOR_FILE),
            ('renderer', args.renderer, convert_published_renderer, RENDERER_FILE)):
        if source is None:
            continue
        if not source.is_file():
            msg = f'{name} checkpoint {source} does not exist'
            raise DataError(msg)
        started = time.monotonic()
        print(f'{name}: reading {source} ({source.stat().st_size / 1e6:.1f} MB)', flush=True)
        out = convert(source, args.out / file_name, progress=lambda line: print(f'  {line}', flush=True))
        print(f'{name}: wrote {out} ({out.stat().st_size / 1e6:.1f} MB) in {time.monotonic() - started:.1f} s',
              flush=True)
    return 0
