"""Render benchmark: milliseconds per 512x512 frame of each renderer on one CPU thread.

``dystream bench render [--json] [--frames N] [--size PX] [--portrait IMAGE]``

Each renderer draws the same seeded sequence of varied motion (speech-like jaw and lips, blinks, brows, gaze,
head turns up to about 20 degrees); the figure is the median wall time of ``render()`` per frame after a short
warm-up, with ``cv2.setNumThreads(1)``. The baseline is the straightforward photo warp this project started from
(one ``cv2.warpAffine`` per mesh triangle of the same rig, as measured in shared/offline_assets.md), run on the same
frames; ``speedup_vs_baseline`` is its time over the photo avatar's. The budget is 15 ms per frame.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

for _var in ('OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'MKL_NUM_THREADS'):  # before numpy loads, if it has not
    os.environ.setdefault(_var, '1')

import cv2  # noqa: E402
import numpy as np  # noqa: E402

BUDGET_MS = 15.0


def varied_motion(num_frames: int, seed: int = 0) -> np.ndarray:
    """A seeded (T, 58) sequence at 25 fps that exercises every part of the face."""
    from dystream_ros.face.motion import MOTION_DIM, NUM_BLENDSHAPES, index_of

    rng = np.random.default_rng(seed)
    t = np.arange(num_frames) / 25.0
    motion = np.zeros((num_frames, MOTION_DIM), np.float32)
    for k in range(NUM_BLENDSHAPES):  # slow random drift of every blendshape in [0, 0.4]
        phase, hz = rng.uniform(0, 2 * np.pi), rng.uniform(0.1, 0.6)
        motion[:, k] = 0.2 + 0.2 * np.sin(2 * np.pi * hz * t + phase)
    motion[:, index_of('jawOpen')] = np.clip(0.35 + 0.35 * np.sin(2 * np.pi * 3.0 * t), 0, 1)  # syllables
    blink = (np.arange(num_frames) % 90) < 5
    motion[blink, index_of('eyeBlinkLeft')] = 1.0
    motion[blink, index_of('eyeBlinkRight')] = 1.0
    for name, amp, hz in (('headPitch', 0.15, 0.3), ('headYaw', 0.35, 0.2), ('headRoll', 0.1, 0.25)):
        motion[:, index_of(name)] = amp * np.sin(2 * np.pi * hz * t + rng.uniform(0, 2 * np.pi))
    motion[:, index_of('headY')] = 0.01 * np.sin(2 * np.pi * 0.15 * t)
    return motion


def time_frames(render, motion: np.ndarray, warmup: int = 5) -> list[float]:
    """Wall time in ms of each ``render(frame)`` call after ``warmup`` untimed calls."""
    for frame in motion[:warmup]:
        render(frame)
    times = []
    for frame in motion:
        start = time.perf_counter()
        render(frame)
        times.append((time.perf_counter() - start) * 1e3)
    return times


def per_triangle_baseline(avatar) -> callable:
    """The naive piecewise-affine warp of the photo avatar's rig: one warpAffine + mask per triangle."""
    rest = avatar.rig.points[:, :2].astype(np.float32)
    size = avatar.size

    def render(frame: np.ndarray) -> np.ndarray:
        points = avatar.deform(frame)[:, :2].astype(np.float32)
        out = avatar.base.copy()
        for tri in avatar.rig.triangles:
            dst = points[tri]
            x0, y0 = np.floor(dst.min(axis=0)).astype(int)
            x1, y1 = np.ceil(dst.max(axis=0)).astype(int) + 1
            x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, size), min(y1, size)
            if x1 <= x0 or y1 <= y0:
                continue
            m = cv2.getAffineTransform((dst - [x0, y0]).astype(np.float32), rest[tri])
            patch = cv2.warpAffine(avatar.base, m, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                   borderMode=cv2.BORDER_REFLECT)
            mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
            cv2.fillConvexPoly(mask, np.round(dst - [x0, y0]).astype(np.int32), 1)
            out[y0:y1, x0:x1][mask > 0] = patch[mask > 0]
        return out

    return render


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the figures (one JSON object with --json)."""
    parser = argparse.ArgumentParser(prog='dystream bench render', description=__doc__.splitlines()[0])
    parser.add_argument('--json', action='store_true', help='print one JSON object')
    parser.add_argument('--frames', type=int, default=240, help='timed frames per renderer (default %(default)s)')
    parser.add_argument('--baseline-frames', type=int, default=20, help='timed frames of the slow baseline')
    parser.add_argument('--size', type=int, default=512, help='output size in pixels')
    parser.add_argument('--portrait', default=None, help='portrait for the photo avatar (default: astronaut)')
    parser.add_argument('--renderers', default='stylised,photo', help='comma-separated renderers')
    args = parser.parse_args(argv)

    from dystream_ros.apps.bench import MachineLoad
    from dystream_ros.face.renderers import make_renderer

    cv2.setNumThreads(1)
    motion = varied_motion(args.frames)
    report: dict = {'size': args.size, 'frames': args.frames, 'threads': 1, 'budget_ms': BUDGET_MS,
                    'cpu': _cpu_name(), 'renderers': {}}
    photo = None
    with MachineLoad() as load:
        for kind in args.renderers.split(','):
            start = time.perf_counter()
            renderer = make_renderer(kind, size=args.size, portrait=args.portrait if kind == 'photo' else None)
            build_s = time.perf_counter() - start
            times = time_frames(renderer.render, motion)
            report['renderers'][kind] = {'ms_per_frame': round(float(np.median(times)), 3),
                                         'p95_ms': round(float(np.percentile(times, 95)), 3),
                                         'max_ms': round(float(np.max(times)), 3), 'build_s': round(build_s, 3),
                                         'within_budget': bool(np.median(times) <= BUDGET_MS)}
            if kind == 'photo':
                photo = renderer
        if photo is not None and args.baseline_frames > 0:
            times = time_frames(per_triangle_baseline(photo), motion[:args.baseline_frames], warmup=1)
            base_ms = float(np.median(times))
            report['baseline'] = {'name': 'photo warp, one cv2.warpAffine per triangle',
                                  'ms_per_frame': round(base_ms, 3), 'frames': args.baseline_frames}
            report['speedup_vs_baseline'] = round(base_ms / report['renderers']['photo']['ms_per_frame'], 2)
    report['machine_load'] = load.figures()
    if args.json:
        print(json.dumps(report))
    else:
        for kind, figures in report['renderers'].items():
            print(f'{kind:>9}: {figures["ms_per_frame"]:7.2f} ms/frame median, p95 {figures["p95_ms"]:.2f} ms '
                  f'({args.size}x{args.size}, 1 thread, budget {BUDGET_MS:.0f} ms)')
        if 'baseline' in report:
            print(f' baseline: {report["baseline"]["ms_per_frame"]:7.2f} ms/frame ({report["baseline"]["name"]}); '
                  f'photo avatar is {report["speedup_vs_baseline"]:.1f}x faster')
        print(load.line())
    return 0 if all(r['within_budget'] for r in report['renderers'].values()) else 1


def _cpu_name() -> str:
    try:
        with open('/proc/cpuinfo', encoding='utf-8') as info:
            for line in info:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return 'unknown'


if __name__ == '__main__':
    sys.exit(main())
