"""Benchmark of the DyStream streaming step: milliseconds per 40 ms frame, against a recompute baseline.

``dystream bench model [--json]`` measures, per model size and backend, one streamed frame: both encoder steps
(640 new samples per stream), the transformer token of each CFG branch with its KV cache, and the whole Euler/CFG
sampling of the head. The baseline, measured in the same run, is the paper code's inference loop (OFF-M:497-608):
per frame it re-runs the transformer over the whole ``context_frames`` window, one forward per CFG branch with all
five branches, then samples the head with the five branches batched; it uses the same encoder steps, so the ratio
isolates the KV cache and the batched, pruned CFG. Weights are random (speed only); one thread unless ``--threads``.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from collections import deque
from pathlib import Path

import numpy as np
import torch

from dystream_ros.apps.bench import MachineLoad
from dystream_ros.audio import crop
from dystream_ros.model import DyStream, Guidance, ModelConfig
from dystream_ros.model.config import AUDIO_FRONTENDS
from dystream_ros.model.dystream import frame_position
from dystream_ros.model.sampler import BRANCHES, euler_sample, sigma_schedule
from dystream_ros.model.transformer import cache_slot, rope_at
from dystream_ros.runtime.frames import frame_end
from dystream_ros.runtime.generator import StreamingGenerator
from dystream_ros.units import SAMPLE_RATE_HZ, SAMPLES_PER_FRAME

TARGETS = {'tiny_onnx_ms_per_frame_max': 5.0, 'official_speedup_vs_recompute_min': 20.0}


def random_model(name: str, seed: int = 0, audio_frontend: str | None = None) -> DyStream:
    """Random weights of a named size (with another audio front-end if given); the zero-initialised head layers
    get small random values too."""
    torch.manual_seed(seed)
    config = ModelConfig.preset(name)
    model = DyStream(config.replace(audio_frontend=audio_frontend) if audio_frontend else config)
    with torch.no_grad():
        for param_name, param in model.named_parameters():
            if param_name.startswith('head.'):
                param.add_(0.02 * torch.randn_like(param))
    return model.eval()


def voice(frames: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = frames * SAMPLES_PER_FRAME
    t = np.arange(n) / SAMPLE_RATE_HZ
    return (0.2 * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t + seed)) * rng.standard_normal(n)).astype(np.float32)


def time_streaming(gen: StreamingGenerator, warmup: int, frames: int) -> list[float]:
    """Wall time (ms) of ``step`` for each frame after ``warmup`` frames (the engine's read is not included)."""
    total = warmup + frames + gen.config.pre_frames + 2
    self_audio, partner = voice(total, 1), voice(total, 2)
    gen.reset()
    times = []
    for i in range(warmup + frames):
        span = slice(gen.input_start(i), frame_end(gen, i))
        start = time.perf_counter()
        gen.step(i, crop(self_audio, span.start, span.stop), crop(partner, span.start, span.stop))
        elapsed = time.perf_counter() - start
        if i >= warmup:
            times.append(1000.0 * elapsed)
    return times


class RecomputeBaseline:
    """The paper code's per-frame computation on our modules: full-window recompute, one forward per branch."""

    def __init__(self, model: DyStream) -> None:
        cfg = model.config
        self.model, self.cfg = model, cfg
        every = {'uncond': 1.0 - 2.0, 'anchor': 0.0, 'self': 0.5, 'partner': 0.5, 'all': 1.0}  # 0.5/0.5/0/1
        self.guidance = Guidance(tuple(BRANCHES), tuple(BRANCHES.values()), tuple(every[n] for n in BRANCHES))
        self.sigmas = sigma_schedule(cfg.steps, cfg.sigma_min)
        with torch.inference_mode():
            (state_self, feat_self), (state_partner, feat_partner) = (model.self_encoder.silence(),
                                                                      model.partner_encoder.silence())
        self.encoder_state = {'self': state_self, 'partner': state_partner}
        silence = (feat_self, feat_partner)
        anchor = model.default_anchor()[None]
        self.anchor = anchor
        window = cfg.context_frames
        self.motion = deque([anchor] * window, maxlen=window)  # tokens: the last W motions
        self.feats = deque([silence] * window, maxlen=window)  # audio of the frame each token predicts
        self.generator = torch.Generator().manual_seed(0)
        self.parts: dict[str, list[float]] = {'encoders': [], 'transformer': [], 'head': []}  # ms per frame

    @torch.inference_mode()
    def frame(self, self_audio: np.ndarray, partner: np.ndarray) -> torch.Tensor:
        """One frame the paper-code way; the same encoder steps as ours."""
        model, cfg = self.model, self.cfg
        t0 = time.perf_counter()
        feat_self, self.encoder_state['self'] = model.self_encoder.step(torch.from_numpy(self_audio)[None],
                                                                         self.encoder_state['self'])
        feat_partner, self.encoder_state['partner'] = model.partner_encoder.step(torch.from_numpy(partner)[None],
                                                                                 self.encoder_state['partner'])
        self.feats.append((feat_self, feat_partner))  # the newest token predicts this frame
        motion = model.normalize(torch.cat(list(self.motion)))[None]  # (1, W, D)
        fs = torch.cat([f[0] for f in self.feats])[None]  # (1, W, Da)
        fp = torch.cat([f[1] for f in self.feats])[None]
        anchor = model.normalize(self.anchor)
        t1 = time.perf_counter()
        conds = []
        for mask in self.guidance.mask_tensor():  # one forward over the whole window per CFG branch
            audio, anchor_emb = model.transformer.condition(fs, fp, anchor, mask[None])
            out, _ = model.transformer(motion, audio, anchor_emb)
            conds.append(out[:, -1])
        t2 = time.perf_counter()
        noise = torch.randn(1, cfg.motion_dim, generator=self.generator)
        x0 = euler_sample(model.head, torch.cat(conds), noise, self.guidance.coefficient_tensor(), self.sigmas)
        result = model.denormalize(x0)
        self.motion.append(result)
        t3 = time.perf_counter()
        for name, seconds in (('encoders', t1 - t0), ('transformer', t2 - t1), ('head', t3 - t2)):
            self.parts[name].append(1000.0 * seconds)
        return result


@torch.inference_mode()
def time_cached_parts(model: DyStream, frames: int) -> dict[str, list[float]]:
    """The torch backend's step split the same way: encoders, KV-cached transformer token, head sampling."""
    cfg = model.config
    guidance = Guidance.from_config(cfg)
    masks, coefficients = guidance.mask_tensor(), guidance.coefficient_tensor()
    sigmas = sigma_schedule(cfg.steps, cfg.sigma_min)
    states = [model.self_encoder.silence()[0], model.partner_encoder.silence()[0]]
    anchor = model.default_anchor()[None]
    cache = model.prefix_cache(anchor, model.self_encoder.silence()[1], model.partner_encoder.silence()[1], masks)
    time_mods = [model.head.time_modulation(torch.full((1,), s)) for s in sigmas[:-1]]
    self_audio, partner = voice(frames + 2, 3), voice(frames + 2, 4)
    parts: dict[str, list[float]] = {'encoders': [], 'transformer': [], 'head': []}
    prev, branches = anchor, masks.shape[0]
    for i in range(frames):
        chunk = slice(i * SAMPLES_PER_FRAME, i * SAMPLES_PER_FRAME + cfg.encoder_window_samples)
        t0 = time.perf_counter()
        feat_self, states[0] = model.self_encoder.step(torch.from_numpy(self_audio[chunk])[None], states[0])
        feat_partner, states[1] = model.partner_encoder.step(torch.from_numpy(partner[chunk])[None], states[1])
        t1 = time.perf_counter()
        audio, anchor_emb = model.transformer.condition(feat_self[:, None].expand(branches, 1, -1),
                                                        feat_partner[:, None].expand(branches, 1, -1),
                                                        model.normalize(anchor).expand(branches, -1), masks)
        position = frame_position(cfg, i)
        cond = model.transformer.step(model.normalize(prev)[:, None].expand(branches, 1, -1), audio, anchor_emb,
                                      cache, rope_at(position, cfg), cache_slot(position, cfg))
        t2 = time.perf_counter()
        x0 = euler_sample(model.head, cond[:, 0], torch.randn(1, cfg.motion_dim), coefficients, sigmas, time_mods)
        prev = model.denormalize(x0)
        t3 = time.perf_counter()
        for name, seconds in (('encoders', t1 - t0), ('transformer', t2 - t1), ('head', t3 - t2)):
            parts[name].append(1000.0 * seconds)
    return parts


def time_baseline(model: DyStream, warmup: int, frames: int) -> tuple[list[float], dict[str, list[float]]]:
    base = RecomputeBaseline(model)
    total = warmup + frames
    self_audio, partner = voice(total + 2, 1), voice(total + 2, 2)  # the last window reaches past its frame
    window = model.config.encoder_window_samples
    times = []
    for i in range(total):
        chunk = slice(i * SAMPLES_PER_FRAME, i * SAMPLES_PER_FRAME + window)
        start = time.perf_counter()
        base.frame(self_audio[chunk], partner[chunk])
        elapsed = time.perf_counter() - start
        if i >= warmup:
            times.append(1000.0 * elapsed)
    return times, {name: values[warmup:] for name, values in base.parts.items()}


def summary(times: list[float]) -> dict[str, float | int]:
    ordered = sorted(times)
    return {'ms_per_frame': round(statistics.median(ordered), 3),
            'p90_ms': round(ordered[int(0.9 * (len(ordered) - 1))], 3), 'frames': len(ordered)}


def bench_config(name: str, backends: list[str], frames: int, baseline_frames: int, warmup: int,
                 onnx_root: Path, log: bool, audio_frontend: str | None = None) -> dict[str, object]:
    model = random_model(name, audio_frontend=audio_frontend)
    cfg = model.config
    result: dict[str, object] = {'params': model.num_parameters(), 'context_frames': cfg.context_frames,
                                 'steps': cfg.steps, 'lookahead_ms': cfg.lookahead_ms,
                                 'audio_frontend': cfg.audio_frontend}
    if log:
        print(f'[{name}] {model.num_parameters() / 1e6:.1f} M parameters: baseline ...', file=sys.stderr)
    baseline_times, baseline_parts = time_baseline(model, min(warmup, 5), baseline_frames)
    baseline = summary(baseline_times)
    result['baseline_recompute'] = {**baseline, 'branches': len(BRANCHES), 'forwards_per_frame': len(BRANCHES)}
    # Where the time goes (torch, medians in ms): the head runs the same sampling in both, the transformer not.
    cached_parts = time_cached_parts(model, baseline_frames)
    result['breakdown_torch_ms'] = {
        'recompute': {k: round(statistics.median(v), 3) for k, v in baseline_parts.items()},
        'cached': {k: round(statistics.median(v[min(warmup, 5):] or v), 3) for k, v in cached_parts.items()}}
    parts = result['breakdown_torch_ms']
    result['transformer_speedup_vs_recompute'] = round(parts['recompute']['transformer'] /
                                                       parts['cached']['transformer'], 1)
    per_backend = {}
    for backend in backends:
        if log:
            print(f'[{name}] {backend} ...', file=sys.stderr)
        start = time.perf_counter()
        gen = StreamingGenerator(model, backend=backend, onnx_dir=onnx_root / name, num_threads=1)
        setup_s = time.perf_counter() - start
        stats = summary(time_streaming(gen, warmup, frames))
        per_backend[backend] = {**stats, 'speedup_vs_recompute': round(baseline['ms_per_frame'] /
                                                                       stats['ms_per_frame'], 2),
                                'providers': gen.providers, 'branches': len(gen.guidance.names),
                                'setup_s': round(setup_s, 1)}
    result['backends'] = per_backend
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='dystream bench model', description=__doc__.splitlines()[0])
    parser.add_argument('--json', action='store_true', help='print one JSON object')
    parser.add_argument('--configs', default='tiny,base,official', help='comma-separated sizes')
    parser.add_argument('--backends', default='torch,onnx', help='comma-separated backends')
    parser.add_argument('--official-backends', default='torch,onnx',
                        help='backends for the official size (its ONNX export takes ~40 s, 1.1 GB and 3.5 GB RAM)')
    parser.add_argument('--frames', type=int, default=200, help='timed frames per backend (median reported)')
    parser.add_argument('--baseline-frames', type=int, default=30, help='timed frames of the baseline')
    parser.add_argument('--warmup', type=int, default=20, help='untimed frames first')
    parser.add_argument('--threads', type=int, default=1, help='torch and ONNX Runtime intra-op threads')
    parser.add_argument('--onnx-dir', type=Path, default=None, help='where to export (default: a temp folder)')
    parser.add_argument('--audio-frontend', choices=AUDIO_FRONTENDS, default=None,
                        help="every size with this audio front-end instead of its preset's")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    report: dict[str, object] = {
        'threads': args.threads, 'machine': platform.processor() or platform.machine(),
        'torch': torch.__version__, 'frame_ms': 40.0, 'targets': TARGETS, 'configs': {}}
    with MachineLoad() as load, tempfile.TemporaryDirectory(prefix='dystream_bench_') as tmp:
        onnx_root = args.onnx_dir or Path(tmp)
        for name in args.configs.split(','):
            backends = (args.official_backends if name == 'official' else args.backends).split(',')
            report['configs'][name] = bench_config(name, [b for b in backends if b], args.frames,
                                                   args.baseline_frames, args.warmup, onnx_root, not args.json,
                                                   args.audio_frontend)
    report['machine_load'] = load.figures()
    configs = report['configs']
    checks = {}
    if 'tiny' in configs and 'onnx' in configs['tiny']['backends']:
        checks['tiny_onnx_ms_per_frame'] = configs['tiny']['backends']['onnx']['ms_per_frame'] <= \
            TARGETS['tiny_onnx_ms_per_frame_max']
    if 'official' in configs:
        best = max(b['speedup_vs_recompute'] for b in configs['official']['backends'].values())
        checks['official_speedup_vs_recompute'] = best >= TARGETS['official_speedup_vs_recompute_min']
    report['targets_met'] = checks
    if args.json:
        print(json.dumps(report))
    else:
        for name, entry in configs.items():
            base = entry['baseline_recompute']['ms_per_frame']
            print(f'{name:9s} {entry["audio_frontend"]:12s} {entry["params"] / 1e6:7.1f} M  '
                  f'baseline {base:9.2f} ms/frame  breakdown (torch) {entry["breakdown_torch_ms"]}')
            for backend, stats in entry['backends'].items():
                print(f'          {backend:6s} {stats["ms_per_frame"]:8.2f} ms/frame (p90 {stats["p90_ms"]:.2f})'
                      f'  x{stats["speedup_vs_recompute"]:.1f} vs recompute  {stats["providers"]}')
        print(f'targets met: {checks}')
        print(load.line())
    return 0


if __name__ == '__main__':
    sys.exit(main())
