"""Training windows for DyStream: random (context + 1)-frame motion windows with their aligned audio spans.

A window of frames ``s .. s + N`` trains tokens ``s .. s + N - 1`` to predict frames ``s + 1 .. s + N`` (paper code
DS:51-154, MAIN:171-219). Each token's audio feature is that of the frame it predicts, so the audio span is
:func:`~dystream_ros.model.audio_encoder.encoder_audio_span` of frames ``s + 1 .. s + N``: the encoder's left
context and the lookahead included, silence outside the clip, exactly what the streaming encoder would see.
Windows that contain a frame where the tracker lost the face (``valid`` False, or any non-finite value) are never
drawn. Each window comes with its speaker's rest pose, the anchor of models trained with ``anchor='rest'``.

Speed perturbation (``max_speed_change`` > 0, off by default): each window may be played faster or slower by a
factor within 1 +- ``max_speed_change``, in steps of 0.05 (0.1: 0.9, 0.95, .., 1.1). Its audio is resampled (pitch
and formants move with the speed, as a shorter or longer vocal tract would move them) and its motion resampled on
the same time base, so sound and mouth stay aligned. Like Kaldi's 0.9/1.0/1.1 speed perturbation, it shows the model
more voices than the corpus has.

Augmentation (``augment``, off by default): each window's two voices go, each on its own, through what the world does
to audio before a robot hears it (telephone and codec bandwidth, microphone EQ, rooms, noise, levels: see
:mod:`dystream_ros.data.augment`), so that a model trained on a clean synthetic corpus hears real microphones.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from scipy.signal import resample_poly

from dystream_ros.audio import crop
from dystream_ros.data.sample import Sample, list_samples, read_sample
from dystream_ros.errors import DataError
from dystream_ros.model.audio_encoder import encoder_audio_span
from dystream_ros.model.config import ModelConfig
from dystream_ros.units import SAMPLE_RATE_HZ

REST_FRACTION = 0.2  # a speaker's rest pose: the mean of the fifth of their frames with the mouth most closed
SPEED_STEPS = 20  # speed factors are multiples of 1/20: 0.9, 0.95, 1.0, 1.05, 1.1
RESAMPLE_MARGIN = 8  # extra source audio on each side of a resampled span, in resampler periods (edge effects)


def rest_pose(motion: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
    """The rest pose (D,) of one speaker's valid frames (T, D): mouth closed, their usual head pose and expression;
    the mean of all frames if the motion has no ``jawOpen``."""
    if 'jawOpen' not in names or len(motion) == 0:
        return motion.mean(axis=0)
    jaw = motion[:, names.index('jawOpen')]
    closed = jaw <= np.quantile(jaw, REST_FRACTION)
    return motion[closed].mean(axis=0)


def _speed_changed(audio: np.ndarray, source_start: int, length: int, numerator: int) -> np.ndarray:
    """``length`` samples of ``audio`` played ``numerator / SPEED_STEPS`` times as fast, starting at sample
    ``source_start``; zeros outside the clip. Output sample j is the source at ``source_start + j * factor``."""
    margin = RESAMPLE_MARGIN * numerator  # source samples; maps to RESAMPLE_MARGIN * SPEED_STEPS output samples
    source = crop(audio, source_start - margin, source_start + -(-length * numerator // SPEED_STEPS) + margin
                   + numerator)
    skip = RESAMPLE_MARGIN * SPEED_STEPS
    return resample_poly(source, SPEED_STEPS, numerator)[skip:skip + length].astype(np.float32)


def _frames_at(motion: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Motion (T, D) linearly interpolated at fractional frame ``positions`` (N,) inside [0, T - 1]."""
    lower = np.floor(positions).astype(np.int64)
    upper = np.minimum(lower + 1, len(motion) - 1)
    weight = (positions - lower)[:, None].astype(np.float32)
    return motion[lower] * (1 - weight) + motion[upper] * weight


class WindowDataset:
    """All samples of one or more folders in memory, and random windows of ``window_frames`` frames from them."""

    def __init__(self, root: Path | Sequence[Path], config: ModelConfig, window_frames: int,
                 max_speed_change: float = 0.0,
                 augment: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None) -> None:
        if config.sample_rate_hz != SAMPLE_RATE_HZ:
            msg = f'samples are {SAMPLE_RATE_HZ} Hz but the model expects {config.sample_rate_hz} Hz'
            raise DataError(msg)
        if not 0.0 <= max_speed_change < 0.5:
            msg = f'max_speed_change must be in [0, 0.5), got {max_speed_change}'
            raise DataError(msg)
        self.config = config
        self.window_frames = window_frames
        self.augment = augment
        change = round(max_speed_change * SPEED_STEPS)
        self.speed_numerators = np.arange(SPEED_STEPS - change, SPEED_STEPS + change + 1)  # factor = n / SPEED_STEPS
        roots = [root] if isinstance(root, Path) else list(root)
        self.samples: list[Sample] = [read_sample(folder) for r in roots for folder in list_samples(r)]
        names = self.samples[0].names
        for sample in self.samples:
            if sample.motion.shape[1] != config.motion_dim:
                msg = (f'sample {sample.sample_id} has {sample.motion.shape[1]} motion dimensions, the model '
                       f'{config.motion_dim}')
                raise DataError(msg)
            if sample.names != names:
                msg = (f'sample {sample.sample_id} names its motion dimensions differently from '
                       f'{self.samples[0].sample_id}')
                raise DataError(msg)
        self.motion_names = names
        for sample in self.samples:  # a frame with a NaN or infinite value counts as lost, like valid=False
            sample.valid = sample.valid & np.all(np.isfinite(sample.motion), axis=1)
        self.rest_poses = np.stack([rest_pose(s.motion[s.valid], names) for s in self.samples]).astype(np.float32)
        # (sample index, first frame) of every window made only of valid frames.
        starts = []
        for i, sample in enumerate(self.samples):
            invalid = np.concatenate([[0], np.cumsum(~sample.valid)])  # invalid frames before each index
            first = np.arange(max(0, sample.num_frames - window_frames + 1))
            ok = first[invalid[first + window_frames] - invalid[first] == 0]
            starts.append(np.stack([np.full_like(ok, i), ok], axis=1))
        self.windows = np.concatenate(starts) if starts else np.zeros((0, 2), np.int64)
        if self.windows.shape[0] == 0:
            msg = (f'no sample in {", ".join(map(str, roots))} has {window_frames} consecutive valid frames '
                   f'({window_frames / config.fps:.2f} s), the training window')
            raise DataError(msg)

    def __len__(self) -> int:
        return int(self.windows.shape[0])

    def motion_stats(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-dimension mean and std (raw units) over every valid frame, and the mean rest pose of the samples."""
        frames = np.concatenate([s.motion[s.valid] for s in self.samples]).astype(np.float64)
        return (frames.mean(axis=0).astype(np.float32), frames.std(axis=0).astype(np.float32),
                self.rest_poses.mean(axis=0))

    def batch(self, rng: np.random.Generator, batch_size: int
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Random windows: motion (B, N + 1, D), self audio (B, S), partner audio (B, S) and the speaker's rest
        pose (B, D), float32."""
        picks = self.windows[rng.integers(0, len(self), batch_size)]
        start, end = encoder_audio_span(self.config, 1, self.window_frames - 1)  # relative to the window's frame 0
        motion, self_audio, partner = [], [], []
        for sample_index, first in picks:
            sample = self.samples[sample_index]
            offset = int(first) * self.config.samples_per_frame
            numerator = self._speed_numerator(rng, sample, int(first))
            if numerator == SPEED_STEPS:
                motion.append(sample.motion[first:first + self.window_frames])
                audio = [crop(a, offset + start, offset + end) for a in (sample.self_audio, sample.partner_audio)]
            else:
                factor = numerator / SPEED_STEPS
                motion.append(_frames_at(sample.motion, first + factor * np.arange(self.window_frames)))
                source_start = offset + round(start * factor)
                audio = [_speed_changed(a, source_start, end - start, numerator)
                         for a in (sample.self_audio, sample.partner_audio)]
            if self.augment is not None:
                audio = [self.augment(a, rng) for a in audio]
            self_audio.append(audio[0])
            partner.append(audio[1])
        return (torch.from_numpy(np.stack(motion)), torch.from_numpy(np.stack(self_audio)),
                torch.from_numpy(np.stack(partner)), torch.from_numpy(self.rest_poses[picks[:, 0]]))

    def _speed_numerator(self, rng: np.random.Generator, sample: Sample, first: int) -> int:
        """A random speed (as ``SPEED_STEPS`` times its factor) for a window; 1x where a faster window would run
        past the sample's end or into frames where the face was lost."""
        if len(self.speed_numerators) == 1:
            return SPEED_STEPS  # no perturbation: no random draw, so older runs replay exactly
        numerator = int(rng.choice(self.speed_numerators))
        last = first + int(np.ceil(numerator / SPEED_STEPS * (self.window_frames - 1)))
        if last >= sample.num_frames or not sample.valid[first:last + 1].all():
            return SPEED_STEPS
        return numerator
