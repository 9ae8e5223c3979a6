"""``dystream ablate-lookahead``: how much future audio the mouth needs (the paper's Table 3, on our model).

DyStream's Table 3 trains and runs the same model with 0, 20, 40 and 60 ms of lookahead and reports lip sync for
each. This command does the same here: one training per lookahead with the same recipe, seed and data
(``--recipe``: ``make lookahead-ablation`` passes the shipped model's first stage), then each model
scored on the validation split (held-out voices and texts, seed 2000: never the reported conversations), streamed
as the node streams, as recorded and at telephone bandwidth, over several sampler seeds. The lookahead is the same
in training and inference, as in the paper.

Output folder: ``lookahead_<L>ms/`` (a ``dystream train`` folder each; a finished one made with the same recipe and
data is reused, so an interrupted run continues), ``ablation.json``, ``ablation.md`` (the table) and
``ablation.png`` (lip sync by lookahead).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from dystream_ros.errors import ConfigError

LOOKAHEADS_MS = (0, 20, 40, 60)  # the paper's Table 3
POLL_S = 60.0  # seconds between progress lines while the trainings run


def _run_folder(out: Path, lookahead_ms: int) -> Path:
    return out / f'lookahead_{lookahead_ms}ms'


def _trained_steps(folder: Path) -> int:
    """The last step logged by the training in ``folder`` (0 when none)."""
    log = folder / 'train_log.jsonl'
    if not log.is_file():
        return 0
    lines = log.read_text().splitlines()
    return json.loads(lines[-1])['step'] if lines else 0


def _train_command(data: list[Path], folder: Path, lookahead_ms: int, steps: int, recipe: list[str]) -> list[str]:
    return [sys.executable, '-m', 'dystream_ros.cli', 'train', *map(str, data), '--out', str(folder),
            '--steps', str(steps), '--lookahead-ms', str(lookahead_ms), '--no-progress', *recipe]


def _finished(folder: Path, command: list[str], steps: int) -> bool:
    """Whether ``folder`` holds a training made by ``command`` (its recipe and data) that reached ``steps``."""
    made_by = folder / 'command.json'
    return ((folder / 'model.safetensors').is_file() and made_by.is_file()
            and json.loads(made_by.read_text())[1:] == command[1:] and _trained_steps(folder) >= steps)


def train_all(data: list[Path], out: Path, lookaheads: list[int], steps: int, jobs: int,
              recipe: list[str]) -> None:
    """Train one model per lookahead, ``jobs`` at a time (one core each), printing progress every POLL_S seconds.

    Each training is a ``dystream train`` process with ``OMP_NUM_THREADS=1``, its output in ``train.out`` of its
    folder. Raises ConfigError naming the log of a training that fails."""
    commands = {la: _train_command(data, _run_folder(out, la), la, steps, recipe) for la in lookaheads}
    pending = [la for la in lookaheads if not _finished(_run_folder(out, la), commands[la], steps)]
    for la in sorted(set(lookaheads) - set(pending)):
        print(f'lookahead {la} ms: already trained ({steps} steps)', file=sys.stderr)
    running: dict[int, subprocess.Popen] = {}
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    started = last_report = time.monotonic()
    while pending or running:
        while pending and len(running) < jobs:
            la = pending.pop(0)
            folder = _run_folder(out, la)
            folder.mkdir(parents=True, exist_ok=True)
            (folder / 'train_log.jsonl').unlink(missing_ok=True)  # a fresh run logs from step 1
            (folder / 'command.json').write_text(json.dumps(commands[la]))  # another recipe trains afresh
            with (folder / 'train.out').open('w') as log:
                running[la] = subprocess.Popen(commands[la], stdout=log, stderr=subprocess.STDOUT, env=env)
            print(f'lookahead {la} ms: training started ({folder})', file=sys.stderr)
        time.sleep(1.0)
        report = time.monotonic() - last_report >= POLL_S
        last_report = time.monotonic() if report else last_report
        for la, process in list(running.items()):
            folder = _run_folder(out, la)
            if process.poll() is None:
                if report:
                    print(f'lookahead {la} ms: step {_trained_steps(folder)}/{steps} '
                          f'({(time.monotonic() - started) / 60:.0f} min)', file=sys.stderr)
                continue
            del running[la]
            if process.returncode != 0:
                for other in running.values():
                    other.terminate()
                    other.wait()
                msg = f'training with lookahead {la} ms failed (exit {process.returncode}); see {folder / "train.out"}'
                raise ConfigError(msg)
            print(f'lookahead {la} ms: trained', file=sys.stderr)


def _validation_clips(count: int, seconds: float) -> dict[str, list[Any]]:
    """The validation conversations as recorded and with both voices cut to telephone bandwidth."""
    from dystream_ros.apps.evaluate import VALIDATION_SEED, heldout_clips
    from dystream_ros.apps.rendered_eval import BANDWIDTHS

    clips = heldout_clips(count, seconds, VALIDATION_SEED)
    return {band: clips if cut is None else
            [dataclasses.replace(c, self_audio=cut(c.self_audio), partner_audio=cut(c.partner_audio)) for c in clips]
            for band, cut in BANDWIDTHS.items()}


def score(model: Path, clips: dict[str, list[Any]], seeds: int) -> dict[str, Any]:
    """One model's lip sync on the validation clips of each bandwidth (one process, one thread)."""
    import torch

    from dystream_ros.apps.evaluate import lipsync_over_seeds
    from dystream_ros.runtime.generator import StreamingGenerator

    torch.set_num_threads(1)
    generator = StreamingGenerator(model, seed=0)
    return {'lookahead_ms': generator.config.lookahead_ms,
            **{band: lipsync_over_seeds(generator, band_clips, seeds) for band, band_clips in clips.items()}}


def score_all(out: Path, lookaheads: list[int], jobs: int, count: int, seconds: float,
              seeds: int) -> list[dict[str, Any]]:
    """Score every trained model, ``jobs`` at a time, on the same clips (made once here: espeak-ng carries state
    from one utterance to the next, so clips made again in a worker could differ); checks that each model holds
    the lookahead it was trained for."""
    print(f'scoring {len(lookaheads)} models on {count} validation conversations of {seconds:.0f} s, {seeds} '
          f'sampler seeds, as recorded and at telephone band', file=sys.stderr)
    clips = _validation_clips(count, seconds)
    models = [_run_folder(out, la) / 'model.safetensors' for la in lookaheads]
    rows = []
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        scored = pool.map(score, models, [clips] * len(models), [seeds] * len(models))
        for la, row in zip(lookaheads, scored):  # in order, each as soon as it is done
            if row['lookahead_ms'] != la:
                msg = f'{_run_folder(out, la)} holds a model with lookahead {row["lookahead_ms"]} ms, not {la}'
                raise ConfigError(msg)
            print(f'lookahead {la} ms: lip sync {row["recorded"]["lipsync_corr"]} recorded, '
                  f'{row["telephone"]["lipsync_corr"]} telephone', file=sys.stderr)
            rows.append(row)
    return rows


def table_lines(report: dict[str, Any]) -> list[str]:
    """The ablation as a markdown table (the model card carries it)."""
    lines = ['| lookahead | lip sync, recorded (seed range) | lip sync, telephone band | lag in frames, recorded / '
             'telephone | silent frames closed, recorded / telephone |', '|---|---|---|---|---|']
    for row in report['rows']:
        rec, tel = row['recorded'], row['telephone']
        spread = rec.get('lipsync_corr_seed_range', 0.0)
        lines.append(f'| {row["lookahead_ms"]} ms | {rec["lipsync_corr"]:.3f} ({spread:.3f}) | '
                     f'{tel["lipsync_corr"]:.3f} | {rec["lipsync_lag_frames"]} / {tel["lipsync_lag_frames"]} | '
                     f'{rec["silence_closed"]:.3f} / {tel["silence_closed"]:.3f} |')
    return lines


def plot(report: dict[str, Any], path: Path) -> Path:
    """Lip sync by lookahead, as recorded and at telephone band."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    lookaheads = [row['lookahead_ms'] for row in report['rows']]
    for band, style in (('recorded', 'o-'), ('telephone', 's--')):
        ax.plot(lookaheads, [row[band]['lipsync_corr'] for row in report['rows']], style, label=band)
    ax.set_xticks(lookaheads)
    ax.set_xlabel('lookahead (ms), in training and inference')
    ax.set_ylabel('lip sync (jawOpen vs reference)')
    ax.set_title(f'validation split, {report["steps"]} training steps each', fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``dystream ablate-lookahead``."""
    parser.add_argument('data', type=Path, nargs='+', help='folders of training samples (dystream corpus)')
    parser.add_argument('--out', type=Path, required=True, help='folder for the trainings and the results')
    parser.add_argument('--lookahead-ms', type=int, nargs='+', default=list(LOOKAHEADS_MS),
                        help='lookaheads to compare (default: the paper\'s 0 20 40 60)')
    parser.add_argument('--steps', type=int, default=2000, help='training steps of each model')
    parser.add_argument('--jobs', type=int, default=2, help='trainings (and scorings) at once, one core each')
    parser.add_argument('--clips', type=int, default=8, help='validation conversations')
    parser.add_argument('--seconds', type=float, default=30.0, help='length of each validation conversation')
    parser.add_argument('--seeds', type=int, default=2, help='sampler seeds per conversation')
    parser.add_argument('--recipe', default='',
                        help='the dystream train flags every training shares, as one string (--recipe="--config '
                             'tiny ..."; not --out, --steps or --lookahead-ms)')


def run(args: argparse.Namespace) -> int:
    """Train, score, and write ablation.json, ablation.md and ablation.png into --out."""
    recipe = shlex.split(args.recipe)
    reserved = {'--out', '--steps', '--lookahead-ms'} & {flag.split('=')[0] for flag in recipe}
    if reserved:
        msg = f'--recipe may not set {", ".join(sorted(reserved))}: the ablation sets them'
        raise ConfigError(msg)
    if args.steps < 1 or args.jobs < 1 or args.clips < 1 or args.seeds < 1:
        msg = '--steps, --jobs, --clips and --seeds must be at least 1'
        raise ConfigError(msg)
    lookaheads = sorted(set(args.lookahead_ms))
    train_all(args.data, args.out, lookaheads, args.steps, args.jobs, recipe)
    report = {'steps': args.steps, 'recipe': recipe, 'data': [str(d) for d in args.data],
              'validation': {'clips': args.clips, 'seconds': args.seconds, 'sampler_seeds': args.seeds},
              'rows': score_all(args.out, lookaheads, args.jobs, args.clips, args.seconds, args.seeds)}
    (args.out / 'ablation.json').write_text(json.dumps(report, indent=2))
    (args.out / 'ablation.md').write_text('\n'.join(table_lines(report)) + '\n')
    plot(report, args.out / 'ablation.png')
    print('\n'.join(table_lines(report)))
    return 0
