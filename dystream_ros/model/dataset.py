"""Training windows for DyStream: random (context + 1)-frame motion windows with their aligned audio spans.

A window of frames ``s .. s + N`` trains tokens ``s .. s + N - 1`` to predict frames ``s + 1 .. s + N`` (paper code
DS:51-154, MAIN:171-219). Each token's audio feature is that of the frame it predicts, so the audio span is
:func:`~dystream_ros.model.audio_encoder.encoder_audio_span` of frames ``s + 1 .. s + N``: the encoder's left
context and the lookahead included, silence outside the clip, exactly what the streaming encoder would see.
Windows that contain a frame where the tracker lost the face (``valid`` False, or any non-finite value) are never
drawn. Each window comes with its speaker's rest pose, the anchor of models trained with ``anchor='rest'``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from dystream_ros.data.sample import SAMPLE_RATE_HZ, Sample, list_samples, read_sample
from dystream_ros.errors import DataError
from dystream_ros.model.audio_encoder import encoder_audio_span
from dystream_ros.model.config import ModelConfig

REST_FRACTION = 0.2  # a speaker's rest pose: the mean of the fifth of their frames with the mouth most closed


def rest_pose(motion: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
    """The rest pose (D,) of one speaker's valid frames (T, D): mouth closed, their usual head pose and expression;
    the mean of all frames if the motion has no ``jawOpen``."""
    if 'jawOpen' not in names or len(motion) == 0:
        return motion.mean(axis=0)
    jaw = motion[:, names.index('jawOpen')]
    closed = jaw <= np.quantile(jaw, REST_FRACTION)
    return motion[closed].mean(axis=0)


def _crop(audio: np.ndarray, start: int, end: int) -> np.ndarray:
    """audio[start:end], zeros outside the clip."""
    out = np.zeros(end - start, np.float32)
    lo, hi = max(start, 0), min(end, audio.shape[0])
    if hi > lo:
        out[lo - start:hi - start] = audio[lo:hi]
    return out


class WindowDataset:
    """All samples of a folder in memory, and random windows of ``window_frames`` frames from them."""

    def __init__(self, root: Path, config: ModelConfig, window_frames: int) -> None:
        if config.sample_rate_hz != SAMPLE_RATE_HZ:
            msg = f'samples are {SAMPLE_RATE_HZ} Hz but the model expects {config.sample_rate_hz} Hz'
            raise DataError(msg)
        self.config = config
        self.window_frames = window_frames
        self.samples: list[Sample] = [read_sample(folder) for folder in list_samples(root)]
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
            msg = (f'no sample in {root} has {window_frames} consecutive valid frames '
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
        motion, own, partner = [], [], []
        for sample_index, first in picks:
            sample = self.samples[sample_index]
            motion.append(sample.motion[first:first + self.window_frames])
            offset = int(first) * self.config.samples_per_frame
            own.append(_crop(sample.self_audio, offset + start, offset + end))
            partner.append(_crop(sample.partner_audio, offset + start, offset + end))
        return (torch.from_numpy(np.stack(motion)), torch.from_numpy(np.stack(own)),
                torch.from_numpy(np.stack(partner)), torch.from_numpy(self.rest_poses[picks[:, 0]]))
