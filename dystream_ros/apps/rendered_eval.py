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
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import numpy as np

from dystream_ros.apps.video import stream_motion
from dystream_ros.audio.bandwidth import telephone_band
from dystream_ros.data import metrics
from dystream_ros.data.real_speech import SPEAKER_SETS, real_clips
from dystream_ros.face.motion import get_values
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


class RenderedFace:
    """Renders motion with one renderer and tracks each picture back; keeps the time each part took."""

    def __init__(self, renderer: Renderer | None = None) -> None:
        self.renderer = make_renderer('photo') if renderer is None else renderer
        self.seconds = {'render': 0.0, 'track': 0.0}
        self.frames = 0
        self.lost_frames = 0  # frames in which the tracker found no face

    def tracked(self, motion: np.ndarray) -> np.ndarray:
        """The tracked motion (T, 58) of motion (T, 58) rendered as one video; NaN rows where no face was found.
        Its head pose is the tracker's: the portrait's own pose plus the commanded one."""
        seen = np.full(motion.shape, np.nan, np.float32)
        with FaceTracker(video=True, max_faces=1) as tracker:
            for frame, pose in enumerate(motion):
                start = time.perf_counter()
                image = self.renderer.render(pose)
                rendered = time.perf_counter()
                observation = tracker.track(image, frame * _FRAME_MS)
                self.seconds['render'] += rendered - start
                self.seconds['track'] += time.perf_counter() - rendered
                if observation is None:
                    self.lost_frames += 1
                else:
                    seen[frame] = observation.motion
        self.frames += len(motion)
        return seen

    def tracked_jaw(self, motion: np.ndarray) -> np.ndarray:
        """The tracked ``jawOpen`` (T,); a frame without a face counts as a shut mouth (the user sees no mouth
        move)."""
        return np.nan_to_num(metrics.mouth_opening(self.tracked(motion)), nan=0.0)


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
                    mouth: RenderedFace | None = None,
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
    mouth = RenderedFace() if mouth is None else mouth
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


class Conversation(Protocol):
    """A conversation seen from the face's side (``evaluate.Clip`` is one): both voices and who speaks when."""

    name: str
    self_audio: np.ndarray  # (N,) 16 kHz
    partner_audio: np.ndarray  # (N,) 16 kHz
    self_active: np.ndarray  # (T,) bool per frame
    partner_active: np.ndarray  # (T,) bool per frame
    teacher: np.ndarray | None  # (T, 58) the corpus teacher's motion, if any


def _degrees(motion: np.ndarray, name: str) -> np.ndarray:
    return np.degrees(get_values(motion, name)[:, 0])


def rendered_listening(clips: list[Conversation], generator: Generator, seed: int = 0,
                       face: RenderedFace | None = None) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Listening as a user sees it: the nods of the face at the partner's phrase ends, tracked from the photo.

    Each conversation goes through ``generator`` in streaming mode (both voices), every frame is rendered and tracked
    back, and the head pitch peak to peak around each phrase end of the partner (:func:`metrics.phrase_ends`) is
    measured as commanded and as seen; the corpus teacher's nods are the reference. What is seen is also compared
    with what was commanded over every frame: the head pitch and yaw (after removing the portrait's own pose) and
    the correlation of ``jawOpen`` and of the blinks.

    Returns:
        The report (JSON-able) and the traces of the first conversation for :func:`plot_listening`.
    """
    face = RenderedFace() if face is None else face
    depths: dict[str, list[float]] = {'commanded': [], 'seen': [], 'teacher': []}
    errors: dict[str, list[np.ndarray]] = {'headPitch': [], 'headYaw': []}
    followed: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {'jawOpen': ([], []), 'eyeBlink': ([], [])}
    traces: dict[str, np.ndarray] = {}
    for clip in clips:
        if hasattr(generator, 'seed'):
            generator.seed = seed
        motion = np.stack(list(stream_motion(generator, clip.self_audio, clip.partner_audio)))
        motion = motion[:len(clip.partner_active)]
        seen = face.tracked(motion)
        ends = metrics.phrase_ends(clip.partner_active[:len(motion)], clip.self_active[:len(motion)])
        depths['commanded'] += list(metrics.nod_depths_deg(get_values(motion, 'headPitch')[:, 0], ends))
        depths['seen'] += list(metrics.nod_depths_deg(get_values(seen, 'headPitch')[:, 0], ends))
        if clip.teacher is not None:
            depths['teacher'] += list(metrics.nod_depths_deg(get_values(clip.teacher, 'headPitch')[:, 0], ends))
        for name, error in errors.items():
            difference = _degrees(seen, name) - _degrees(motion, name)
            error.append(np.abs(difference - np.nanmedian(difference)))
        for name, (commanded, tracked) in followed.items():
            names = ('eyeBlinkLeft', 'eyeBlinkRight') if name == 'eyeBlink' else (name,)
            commanded.append(get_values(motion, *names).mean(axis=1))
            tracked.append(get_values(seen, *names).mean(axis=1))
        if not traces:
            traces = {'motion': motion, 'commanded': _degrees(motion, 'headPitch'), 'seen': _degrees(seen, 'headPitch'),
                      'partner_active': clip.partner_active[:len(motion)],
                      'self_active': clip.self_active[:len(motion)], 'ends': np.array(ends, int)}
    report: dict[str, Any] = {'clips': len(clips), 'phrase_ends': len(depths['seen'])}
    for source, values in depths.items():
        values_array = np.array(values, float)
        if len(values_array):
            report[source] = {'median_deg': round(float(np.nanmedian(values_array)), 1),
                              'visible_share': round(float(np.mean(values_array >= metrics.VISIBLE_NOD_DEG)), 2)}
    report['pose_error_deg'] = {name: {'median': round(float(np.nanmedian(np.concatenate(e))), 2),
                                       'p90': round(float(np.nanpercentile(np.concatenate(e), 90)), 2)}
                                for name, e in errors.items()}
    report['seen_corr'] = {}
    for name, (commanded, tracked) in followed.items():
        both = np.concatenate(commanded), np.concatenate(tracked)
        found = np.isfinite(both[1])
        report['seen_corr'][name] = round(metrics.pearson(both[0][found], both[1][found]), 3)
    return report, traces


def plot_listening(traces: dict[str, np.ndarray], folder: Path) -> Path:
    """``eval_listening.png``: the head pitch commanded and seen on the photo through one conversation, with the
    partner's speech shaded and its phrase ends marked."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    t = np.arange(len(traces['commanded'])) / FPS
    fig, ax = plt.subplots(figsize=(12, 3.2))
    for name, active, colour in (('partner speaks', traces['partner_active'], 'tab:green'),
                                 ('face speaks', traces['self_active'], 'tab:orange')):
        ax.fill_between(t, 0, 1, where=active, transform=ax.get_xaxis_transform(), color=colour, alpha=0.15,
                        label=name, step='mid')
    base = np.nanmedian(traces['seen'] - traces['commanded'])
    ax.plot(t, traces['commanded'], color='k', lw=1.2, label='head pitch commanded')
    ax.plot(t, traces['seen'] - base, color='tab:blue', lw=1.0, label='tracked from the photo (offset removed)')
    for end in traces['ends']:
        ax.axvline(end / FPS, color='tab:green', lw=0.8, ls='--')
    ax.set_xlabel('s')
    ax.set_ylabel('head pitch (deg, + nose down)')
    ax.set_title('Listening as seen: the head pitch at the partner\'s phrase ends (dashed)')
    ax.legend(loc='upper right', fontsize=8, ncol=4)
    fig.tight_layout()
    path = folder / 'eval_listening.png'
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def conversation_frames(traces: dict[str, np.ndarray], count: int = 6) -> list[tuple[str, np.ndarray]]:
    """``count`` frames of the face speaking (across its longest run of speech) and ``count`` of it listening (around
    the phrase end where it nods deepest), labelled with their time, from the traces of :func:`rendered_listening`."""
    motion, speaking = traces['motion'], traces['self_active']
    starts = np.flatnonzero(np.diff(np.concatenate([[0], speaking.astype(int), [0]])) == 1)
    stops = np.flatnonzero(np.diff(np.concatenate([[0], speaking.astype(int), [0]])) == -1)
    longest = int(np.argmax(stops - starts))
    spoken = np.linspace(starts[longest], stops[longest] - 1, count).astype(int)
    before, after = metrics.NOD_WINDOW_FRAMES
    ends = traces['ends']
    deepest = ends[int(np.argmax(metrics.nod_depths_deg(np.radians(traces['commanded']), list(ends))))]
    heard = np.linspace(deepest - before, deepest + after - 1, count).astype(int)
    return ([(f'speaking {i / FPS:.1f} s', motion[i]) for i in spoken]
            + [(f'listening {(i - deepest) / FPS:+.1f} s', motion[i]) for i in heard])


def listening_lines(report: dict[str, Any]) -> list[str]:
    """The section of docs/eval.md on listening as a user sees it."""
    lines = ['## Listening as a user sees it (rendered, tracked back)', '',
             f'{report["clips"]} held-out conversations in streaming mode with both voices; every frame rendered with',
             'the photo avatar and tracked back. At each of the partner\'s phrase ends with the face silent around it',
             f'({report["phrase_ends"]} in all), the head pitch peak to peak from 0.6 s before to 0.4 s after: its',
             f'median, and the share of phrase ends with a nod of at least {metrics.VISIBLE_NOD_DEG:.0f} degrees',
             '(visible from across a room). The corpus teacher is what the model was trained to do.', '',
             '| nods at phrase ends | median (deg) | share >= 4 deg |', '|---|---|---|']
    for source, label in (('seen', 'model, tracked from the photo'), ('commanded', 'model, commanded'),
                          ('teacher', 'corpus teacher, commanded')):
        if source in report:
            lines.append(f'| {label} | {report[source]["median_deg"]} | {report[source]["visible_share"]} |')
    error, corr = report['pose_error_deg'], report['seen_corr']
    lines += ['', 'What the tracker reads back from the photo against what was commanded, every frame: head pitch',
              f'{error["headPitch"]["median"]} deg off at the median ({error["headPitch"]["p90"]} at the 90th '
              f'percentile), yaw {error["headYaw"]["median"]} deg ({error["headYaw"]["p90"]}), the portrait\'s own '
              f'pose removed; `jawOpen` correlates {corr["jawOpen"]}, the blinks {corr["eyeBlink"]}.', '',
              '![listening](eval_listening.png)', '']
    return lines


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
