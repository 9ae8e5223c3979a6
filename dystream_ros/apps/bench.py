"""``dystream bench NAME [ARGS]``: run the benchmark ``bench/NAME.py`` and pass it ARGS (e.g. ``--json``).

The benchmarks live in the top-level ``bench/`` folder (installed to ``share/dystream_ros/apps/bench``); each one is a
script with ``main(argv) -> int`` that measures a baseline in the same run and prints the ratio.
"""
from __future__ import annotations

import argparse
import runpy

from dystream_ros.errors import ConfigError
from dystream_ros.resources import share_path


def available() -> list[str]:
    """Names of the benchmarks found in ``bench/``."""
    return sorted(p.stem for p in share_path('bench').glob('*.py') if not p.stem.startswith('_'))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the benchmark name and its pass-through arguments."""
    parser.add_argument('name', help=f'benchmark to run: {", ".join(available()) or "none installed"}')
    parser.add_argument('bench_args', nargs=argparse.REMAINDER, help='arguments for the benchmark, e.g. --json')


def run(args: argparse.Namespace) -> int:
    """Run ``bench/<name>.py``'s ``main`` with the remaining arguments."""
    path = share_path('bench', f'{args.name}.py')
    if not path.is_file():
        msg = f'no benchmark named {args.name!r} in {path.parent}; available: {", ".join(available()) or "none"}'
        raise ConfigError(msg)
    return int(runpy.run_path(str(path), run_name='dystream_bench')['main'](args.bench_args) or 0)
