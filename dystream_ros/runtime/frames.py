"""The generator contract: what the engine asks of anything that turns two voices into motion frames.

A generator is stepped one frame at a time with the audio that frame needs, read from the voices' timelines by the
engine (one buffer per voice: the generator keeps no audio). Frame ``t`` covers samples ``[640 t, 640 (t + 1))``
of the engine clock and may see ``lookahead_ms`` of audio past its end; ``input_start(t)`` says where the audio it
reads begins: for DyStream the window of its newest encoder frame (the samples before it went into the encoder
state at earlier steps), for the amplitude baseline the frame's own start.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from dystream_ros.audio import crop
from dystream_ros.errors import StreamError
from dystream_ros.units import SAMPLE_RATE_HZ, SAMPLES_PER_FRAME

if TYPE_CHECKING:
    from collections.abc import Iterator


@dataclass(frozen=True)
class MotionFrame:
    """One generated frame: raw motion (motion_dim,) float32 of frame ``index`` (25 per second)."""

    index: int
    motion: np.ndarray


class Generator(Protocol):
    """Steps motion one frame at a time (``StreamingGenerator`` or the amplitude baseline)."""

    lookahead_ms: int  # audio past a frame's end that it needs
    motion_space: str  # 'face': face/motion.py's blendshapes and head pose; 'latent': the published renderer's
    providers: list[str]  # what runs it: 'torch:cpu', ONNX Runtime providers, 'numpy'
    stage_ms: dict[str, float]  # after step: its time per stage (e.g. encoder), if it times any

    def input_start(self, frame: int) -> int: ...  # noqa: D102 (see the module docstring)
    def step(self, frame: int, self_audio: np.ndarray, partner_audio: np.ndarray) -> MotionFrame: ...  # noqa: D102
    def reset(self, first_frame: int = 0) -> None: ...  # noqa: D102
    def shed(self, light: bool) -> bool: ...  # noqa: D102 (fewer Euler steps while light; False: nothing to shed)


def lookahead_samples(generator: Generator) -> int:
    """The generator's lookahead in samples of the engine clock."""
    return generator.lookahead_ms * SAMPLE_RATE_HZ // 1000


def frame_end(generator: Generator, frame: int) -> int:
    """End (exclusive) of the audio that ``frame`` needs: its last sample plus the lookahead."""
    return (frame + 1) * SAMPLES_PER_FRAME + lookahead_samples(generator)


def check_step_audio(generator: Generator, frame: int, audio: np.ndarray, stream: str) -> None:
    """Raise StreamError unless ``audio`` is exactly the 1-D float span ``step(frame)`` reads."""
    expected = frame_end(generator, frame) - generator.input_start(frame)
    if audio.ndim != 1 or audio.dtype != np.float32 or audio.shape[0] != expected:
        msg = (f'{stream} audio of frame {frame} must be {expected} float32 samples at {SAMPLE_RATE_HZ} Hz '
               f'(from sample {generator.input_start(frame)}), got {audio.dtype} with shape {audio.shape}')
        raise StreamError(msg)


def check_clip(audio: np.ndarray, stream: str) -> np.ndarray:
    """A whole clip of one voice as float32; StreamError unless it is 1-D finite float samples."""
    audio = np.asarray(audio)
    if audio.ndim != 1 or not np.issubdtype(audio.dtype, np.floating):
        msg = (f'{stream} audio must be 1-D float samples at {SAMPLE_RATE_HZ} Hz in [-1, 1], got {audio.dtype} with '
               f'shape {audio.shape} (convert int16 PCM with / 32768)')
        raise StreamError(msg)
    if not np.all(np.isfinite(audio)):
        msg = f'{stream} audio contains NaN or infinite samples'
        raise StreamError(msg)
    return audio.astype(np.float32, copy=False)


def stream_clip(generator: Generator, self_audio: np.ndarray, partner_audio: np.ndarray | None = None,
                frames: int | None = None) -> Iterator[MotionFrame]:
    """Step ``generator`` through whole clips from a reset, as the engine would live; silence past their end.

    ``frames`` defaults to the frames that are final given the clip length (those whose lookahead it holds).
    """
    self_audio = check_clip(self_audio, 'self')
    partner_audio = np.zeros_like(self_audio) if partner_audio is None else check_clip(partner_audio, 'partner')
    if frames is None:
        length = min(len(self_audio), len(partner_audio))
        frames = max(0, (length - lookahead_samples(generator)) // SAMPLES_PER_FRAME)
    generator.reset()
    for frame in range(frames):
        start, end = generator.input_start(frame), frame_end(generator, frame)
        yield generator.step(frame, crop(self_audio, start, end), crop(partner_audio, start, end))
