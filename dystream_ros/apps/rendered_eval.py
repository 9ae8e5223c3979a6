"""Real speech scored as a user sees it: the face rendered, tracked back with MediaPipe, its mouth against the voice.

Each clip is spoken by the face (the self voice; the partner is silent) and goes through a system in streaming
mode, 40 ms at a time as in the node. Every motion frame is rendered with the photo avatar (the default portrait)
and the picture is tracked back with the FaceLandmarker (a fresh tracker per clip in video mode, frames 40 ms apart,
as a viewer would see the clip); the tracked ``jawOpen`` is what a user sees of the mouth. It is scored against the
clip's reference mouth (a forced alignment of its words) with the figures of :func:`score_tracked_mouth`, on the
audio as recorded and cut to telephone bandwidth. The model and the amplitude mouth go through the same renderer
and tracker, so what rendering or tracking loses, both lose.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from dystream_ros.apps.video import stream_motion
from dystream_ros.audio.bandwidth import telephone_band
from dystream_ros.data import metrics
from dystream_ros.data.real_speech import SPEAKER_SETS, real_clips
from dystream_ros.face.motion import index_of
from dystream_ros.face.renderers import make_renderer
from dystream_ros.face.tracker import FaceTracker
from dystream_ros.units import FPS, SAMPLE_RATE_HZ

if TYPE_CHECKING:
    from dystream_ros.data.real_speech import RealClip
    from dystream_ros.face.renderers import Renderer
    from dystream_ros.runtime.frames import Generator

SPEECH_HANGOVER = 2  # frames: the lips may close until 80 ms after the last phoneme, so those frames are not silence
BANDWIDTHS: dict[str, Callable[[np.ndarray], np.ndarray] | None] = {'recorded': None, 'telephone': telephone_band}
FIGURES = ('lipsync_corr', 'lipsync_lag_frames', 'open_in_speech', 'closed_in_silence')
_FRAME_MS = 1000 // FPS


class SpeechClip(NamedTuple):
    """A recording spoken by the face, with what its mouth should do; a plain tuple of these four works too."""

    name: str
    audio: np.ndarray  # (N,) 16 kHz mono float32
    reference_mouth: np.ndarray  # (T,) reference jaw opening at 25 fps
    speaking: np.ndarray  # (T,) bool: frames inside a spoken phoneme


def speaker_sets(clips: Iterable[RealClip] | None = None) -> dict[str, list[SpeechClip]]:
    """The real recordings (all of :func:`real_clips` when None) grouped by speaker, keys of ``SPEAKER_SETS``."""
    sets: dict[str, list[SpeechClip]] = {}
    for clip in real_clips() if clips is None else clips:
        sets.setdefault(clip.speaker_set, []).append(
            SpeechClip(clip.name, clip.audio, clip.reference_mouth(), clip.speaking()))
    return sets


class RenderedMouth:
    """Renders motion with one renderer and tracks each picture back; keeps the time each part took."""

    def __init__(self, renderer: Renderer | None = None) -> None:
        self.renderer = make_renderer('photo') if renderer is None else renderer
        self._jaw = index_of('jawOpen')
        self.seconds = {'render': 0.0, 'track': 0.0}
        self.frames = 0
        self.lost_frames = 0  # frames in which the tracker found no face

    def tracked_jaw(self, motion: np.ndarray) -> np.ndarray:
        """The tracked ``jawOpen`` (T,) of motion (T, 58) rendered as one video; a frame without a face counts as
        a shut mouth (the user sees no mouth move)."""
        jaw = np.zeros(len(motion), np.float32)
        with FaceTracker(video=True, max_faces=1) as tracker:
            for frame, pose in enumerate(motion):
                start = time.perf_counter()
                image = self.renderer.render(pose)
                rendered = time.perf_counter()
                seen = tracker.track(image, frame * _FRAME_MS)
                self.seconds['render'] += rendered - start
                self.seconds['track'] += time.perf_counter() - rendered
                if seen is None:
                    self.lost_frames += 1
                else:
                    jaw[frame] = seen.motion[self._jaw]
        self.frames += len(motion)
        return jaw


def score_tracked_mouth(jaw: np.ndarray, clip: SpeechClip) -> dict[str, float]:
    """The figures of one clip from the tracked mouth (see ``dystream_ros.data.metrics``): correlation and lag
    against the reference, the share of speech frames seen open and of silent frames (beyond the hangover) seen shut."""
    silent = ~metrics.activity_with_hangover(clip.speaking, SPEECH_HANGOVER)
    return {'lipsync_corr': metrics.lipsync_corr(jaw, clip.reference_mouth),
            'lipsync_lag_frames': metrics.lipsync_lag_frames(jaw, clip.reference_mouth),
            'open_in_speech': metrics.open_in_speech(jaw, clip.speaking),
            'closed_in_silence': metrics.closed_in_silence(jaw, silent)}


def _mean(figures: list[dict[str, float]]) -> dict[str, float | int | None]:
    """The mean of each figure (the lag: the median; None where no clip has it, e.g. no silence)."""
    out: dict[str, float | int | None] = {}
    for key in FIGURES:
        values = np.array([f[key] for f in figures if f[key] is not None], float)
        values = values[np.isfinite(values)]
        if not len(values):
            out[key] = None
        elif key == 'lipsync_lag_frames':
            out[key] = int(np.median(values))
        else:
            out[key] = round(float(values.mean()), 3)
    return out


def rendered_scores(sets: dict[str, list[SpeechClip]], systems: dict[str, Generator], seed: int = 0,
                    mouth: RenderedMouth | None = None,
                    ) -> tuple[dict[str, Any], dict[tuple[str, str, str, str], np.ndarray]]:
    """Score every clip of every set with every system, as recorded and at telephone bandwidth.

    Args:
        sets: set name -> clips (``SpeechClip`` or plain (name, audio, reference_mouth, speaking) tuples).
        systems: system name -> generator (e.g. ``{'model': StreamingGenerator(...), 'amplitude': ...}``).
        seed: sampler seed of a model (the same for every clip).
        mouth: the renderer and tracker; the photo avatar when None.

    Returns:
        The report (JSON-able: per set its clips, their figures and the set means, for each bandwidth and system;
        ``all``: the mean over the sets, each speaker counted once; the time taken) and the traces (the tracked jaw
        of each clip: (set, bandwidth, system, clip name) -> (T,)).
    """
    mouth = RenderedMouth() if mouth is None else mouth
    started, generate_s = time.perf_counter(), 0.0
    before = {'frames': mouth.frames, 'lost': mouth.lost_frames, **mouth.seconds}  # mouth may have rendered before
    report: dict[str, Any] = {'sets': {}}
    traces: dict[tuple[str, str, str, str], np.ndarray] = {}
    for set_name, clips in sets.items():
        clips = [SpeechClip(*clip) for clip in clips]
        entry: dict[str, Any] = {
            'description': SPEAKER_SETS.get(set_name, ''), 'clips': len(clips),
            'seconds': round(sum(len(c.audio) for c in clips) / SAMPLE_RATE_HZ, 1),
            'speech_frames': int(sum(np.sum(c.speaking) for c in clips)),
            'silent_frames': int(sum(np.sum(~metrics.activity_with_hangover(c.speaking, SPEECH_HANGOVER))
                                     for c in clips)),
            'per_clip': {c.name: {} for c in clips}}
        for bandwidth, channel in BANDWIDTHS.items():
            entry[bandwidth] = {}
            for system, generator in systems.items():
                figures = []
                for clip in clips:
                    audio = clip.audio if channel is None else channel(clip.audio)
                    if hasattr(generator, 'seed'):
                        generator.seed = seed  # a model samples its motion: every clip from the same seed
                    begin = time.perf_counter()
                    motion = np.stack(list(stream_motion(generator, audio, np.zeros_like(audio))))
                    generate_s += time.perf_counter() - begin
                    jaw = mouth.tracked_jaw(motion[:len(clip.reference_mouth)])
                    traces[set_name, bandwidth, system, clip.name] = jaw
                    figures.append(score_tracked_mouth(jaw, clip))
                    entry['per_clip'][clip.name].setdefault(bandwidth, {})[system] = _mean(figures[-1:])
                entry[bandwidth][system] = _mean(figures)
        report['sets'][set_name] = entry
    report['all'] = {bandwidth: {system: _mean([s[bandwidth][system] for s in report['sets'].values()])
                                 for system in systems} for bandwidth in BANDWIDTHS}
    frames = mouth.frames - before['frames']
    ms_per_frame = 1000 / max(frames, 1)
    report['timing'] = {'seconds': round(time.perf_counter() - started, 1), 'frames_rendered': frames,
                        'frames_without_a_face': mouth.lost_frames - before['lost'],
                        'render_ms_per_frame': round((mouth.seconds['render'] - before['render']) * ms_per_frame, 1),
                        'track_ms_per_frame': round((mouth.seconds['track'] - before['track']) * ms_per_frame, 1),
                        'generate_ms_per_frame': round(generate_s * ms_per_frame, 1)}
    return report, traces


def rendered_real_speech(model: Path | None = None, backend: str = 'torch',
                         sets: dict[str, list[SpeechClip]] | None = None, seed: int = 0,
                         plots: Path | None = None, amplitude: bool = True, **guidance: float) -> dict[str, Any]:
    """The rendered real-speech report of a model next to the amplitude mouth (see :func:`rendered_scores`).

    Args:
        model: weights (.safetensors); the shipped ones when None.
        backend: ``'torch'`` or ``'onnx'``.
        sets: set name -> clips; every real recording on this machine, grouped by speaker, when None.
        seed: the model's sampler seed.
        plots: a folder for the pictures of :func:`plot` (listed in the report's ``plots``), none when None.
        amplitude: score the amplitude mouth too (False halves the time when comparing models: its figures do
            not depend on the model).
        guidance: cfg_* weights instead of those stored with the model.
    """
    import torch

    from dystream_ros.runtime.amplitude import AmplitudeGenerator
    from dystream_ros.runtime.generator import StreamingGenerator

    torch.set_num_threads(1)  # one core: the figures should not depend on what else the machine runs
    systems: dict[str, Generator] = {'model': StreamingGenerator(model, backend=backend, seed=seed, **guidance)}
    if amplitude:
        systems['amplitude'] = AmplitudeGenerator()
    sets = speaker_sets() if sets is None else sets
    report, traces = rendered_scores(sets, systems, seed)
    if plots is not None:
        report['plots'] = [str(path) for path in plot(sets, traces, plots)]
    return report


def plot(sets: dict[str, list[SpeechClip]], traces: dict[tuple[str, str, str, str], np.ndarray],
         folder: Path) -> list[Path]:
    """One picture per set: the tracked jaw of each system against the reference on its longest clip, as recorded
    and at telephone bandwidth; return the files written (``eval_rendered_<set>.png``)."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for set_name, clips in sets.items():
        clip = max((SpeechClip(*c) for c in clips), key=lambda c: len(c.reference_mouth))
        fig, axes = plt.subplots(len(BANDWIDTHS), 1, figsize=(12, 2.6 * len(BANDWIDTHS)), sharex=True)
        for ax, bandwidth in zip(axes, BANDWIDTHS):
            t = np.arange(len(clip.reference_mouth)) / FPS
            ax.plot(t, clip.reference_mouth, 'k', linewidth=1.5, label='reference (forced alignment)')
            for (s, b, system, name), jaw in traces.items():
                if (s, b, name) == (set_name, bandwidth, clip.name):
                    ax.plot(t[:len(jaw)], jaw, 'C0' if system == 'model' else 'C7', label=f'{system}, tracked')
            ax.axhline(metrics.SEEN_OPEN_JAW, color='red', linestyle=':', linewidth=0.8)
            ax.set_title(f'{clip.name} ({bandwidth}): jawOpen tracked from the rendered photo avatar', fontsize=9)
            ax.legend(loc='upper right', fontsize=7)
        axes[-1].set_xlabel('seconds')
        fig.tight_layout()
        written.append(folder / f'eval_rendered_{set_name}.png')
        fig.savefig(written[-1], dpi=80)
        plt.close(fig)
    return written


TARGETS = (  # issue 14's bar on the mean over speakers: (text, test of the report's 'all')
    ('model lipsync_corr >= amplitude + 0.05, as recorded',
     lambda a: a['recorded']['model']['lipsync_corr'] >= a['recorded']['amplitude']['lipsync_corr'] + 0.05),
    ('model lipsync_corr >= amplitude + 0.05, telephone band',
     lambda a: a['telephone']['model']['lipsync_corr'] >= a['telephone']['amplitude']['lipsync_corr'] + 0.05),
    ('model lipsync_corr drops by <= 0.05 from recorded to telephone band',
     lambda a: a['recorded']['model']['lipsync_corr'] - a['telephone']['model']['lipsync_corr'] <= 0.05),
    ('model open_in_speech >= 0.85 on both',
     lambda a: min(a[b]['model']['open_in_speech'] for b in BANDWIDTHS) >= 0.85),
    ('model closed_in_silence >= 0.9 on both',
     lambda a: min(a[b]['model']['closed_in_silence'] for b in BANDWIDTHS) >= 0.9),
    ('model abs(lipsync_lag_frames) <= 1 on both',
     lambda a: max(abs(a[b]['model']['lipsync_lag_frames']) for b in BANDWIDTHS) <= 1),
)


def _pair(figures: dict[str, Any], key: str) -> str:
    """'model / amplitude' of one figure ('-' where a clip has no such frames)."""
    values = (figures[system][key] for system in ('model', 'amplitude'))
    return ' / '.join('-' if value is None else str(value) for value in values)


def report_lines(report: dict[str, Any]) -> list[str]:
    """The section of docs/eval.md on the rendered real speech (a report of both the model and the amplitude
    mouth): set means, targets, every clip, the plots."""
    timing = report['timing']
    head = '| lipsync_corr | lipsync_lag_frames | open_in_speech | closed_in_silence |'
    silent = sum(entry['silent_frames'] for entry in report['sets'].values())
    lines = ['## Real speech as a user sees it (rendered, tracked back)', '',
             'Each clip is spoken by the face and generated in streaming mode; every frame is rendered with the',
             "photo avatar (the default portrait) and tracked back with MediaPipe's FaceLandmarker, and the tracked",
             '`jawOpen` is scored against the forced-alignment reference, on the audio as recorded and cut to',
             'telephone bandwidth (300-3400 Hz at 8 kHz, `dystream_ros.audio.bandwidth`). The amplitude mouth is',
             'rendered and tracked the same way; the model samples with seed 0. `open_in_speech`: share of speech',
             'frames with the tracked `jawOpen` > 0.05; `closed_in_silence`: share of silent frames (from 80 ms',
             f'after a phoneme; {silent} frames in all, mostly at the ends of the clips) with it <= 0.05.', '',
             f'{timing["frames_rendered"]} frames rendered and tracked in {timing["seconds"]} s: render',
             f'{timing["render_ms_per_frame"]} ms, track {timing["track_ms_per_frame"]} ms, generate',
             f'{timing["generate_ms_per_frame"]} ms a frame; {timing["frames_without_a_face"]} frames without a face.',
             '', 'Each cell: **model / amplitude**.', '',
             '| speakers | clips | seconds | bandwidth ' + head, '|---' * 8 + '|']
    for set_name, entry in report['sets'].items():
        for bandwidth in BANDWIDTHS:
            lines.append(f'| {set_name} | {entry["clips"]} | {entry["seconds"]} | {bandwidth} | '
                         + ' | '.join(_pair(entry[bandwidth], key) for key in FIGURES) + ' |')
    for bandwidth in BANDWIDTHS:
        lines.append(f'| **mean over speakers** | | | {bandwidth} | '
                     + ' | '.join(_pair(report['all'][bandwidth], key) for key in FIGURES) + ' |')
    lines += ['', 'Speakers: ' + '; '.join(f'{name}: {entry["description"]}'
                                           for name, entry in report['sets'].items()) + '.', '',
              '| target (mean over speakers) | model meets it |', '|---|---|']
    lines += [f'| {text} | {"yes" if test(report["all"]) else "**no**"} |' for text, test in TARGETS]
    lines += ['', 'Every clip:', '', '| clip | bandwidth ' + head, '|---' * 6 + '|']
    for entry in report['sets'].values():
        for clip, by_bandwidth in entry['per_clip'].items():
            lines += [f'| {clip} | {bandwidth} | ' + ' | '.join(_pair(by_bandwidth[bandwidth], key) for key in FIGURES)
                      + ' |' for bandwidth in BANDWIDTHS]
    for name in report['sets']:
        lines += ['', f'![{name}](eval_rendered_{name}.png)']
    return [*lines, '']
