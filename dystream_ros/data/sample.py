"""One training sample on disk: a face's motion at 25 fps and the two voices it heard, 16 kHz mono.

A sample is a folder::

    <root>/<sample_id>/motion.npz    motion (T, D) float32, names (D,) str, fps () int,
                                     valid (T,) bool (False where the tracker lost the face),
                                     speaker () str (optional: who speaks as the face, '' if unknown)
    <root>/<sample_id>/self.wav      the face's own voice, 16 kHz mono
    <root>/<sample_id>/partner.wav   the other person's voice, 16 kHz mono (optional: absent means silence)

``dystream extract`` (real video) and ``dystream corpus`` (synthetic conversations) write it; ``dystream train``
and ``dystream eval`` read it, so real and synthetic data mix freely.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile

from dystream_ros.data.tts import to_16k
from dystream_ros.errors import DataError
from dystream_ros.units import FPS, SAMPLE_RATE_HZ


@dataclass
class Sample:
    """A sample in memory. Audio is float32 in [-1, 1]; ``partner_audio`` is zeros when the file is absent."""

    sample_id: str
    motion: np.ndarray  # (T, D) float32
    names: tuple[str, ...]  # (D,)
    valid: np.ndarray  # (T,) bool
    self_audio: np.ndarray  # (S,) float32
    partner_audio: np.ndarray  # (S,) float32
    speaker: str = ''  # the face's voice (a TTS voice label in the corpus); reports group by it; '' if unknown

    @property
    def num_frames(self) -> int:
        """Number of motion frames (25 per second)."""
        return int(self.motion.shape[0])


def write_sample(root: Path, sample: Sample) -> Path:
    """Write ``sample`` below ``root`` and return its folder."""
    folder = Path(root) / sample.sample_id
    folder.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        folder / 'motion.npz',
        motion=np.asarray(sample.motion, np.float32),
        names=np.asarray(sample.names, dtype=str),
        fps=np.int64(FPS),
        valid=np.asarray(sample.valid, bool),
        speaker=np.asarray(sample.speaker, dtype=str),
    )
    soundfile.write(folder / 'self.wav', np.asarray(sample.self_audio, np.float32), SAMPLE_RATE_HZ, subtype='PCM_16')
    if np.any(sample.partner_audio):
        soundfile.write(folder / 'partner.wav', np.asarray(sample.partner_audio, np.float32), SAMPLE_RATE_HZ,
                        subtype='PCM_16')
    return folder


def _read_wav(path: Path) -> tuple[np.ndarray, int]:
    """(samples (S, channels) float32, rate) of an audio file; DataError naming the file if it cannot be read."""
    try:
        audio, rate = soundfile.read(path, dtype='float32', always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError) as exc:
        msg = f'cannot read audio file {path}: {exc}'
        raise DataError(msg) from None
    return audio, int(rate)


def read_audio(path: Path) -> np.ndarray:
    """Read a 16 kHz mono wav as float32; raise DataError naming the file if it is anything else."""
    audio, rate = _read_wav(path)
    if rate != SAMPLE_RATE_HZ or audio.shape[1] != 1:
        msg = f'{path}: expected {SAMPLE_RATE_HZ} Hz mono, got {rate} Hz with {audio.shape[1]} channels'
        raise DataError(msg)
    return audio[:, 0]


def read_any_audio(path: Path) -> np.ndarray:
    """Read an audio file of any rate and channel count as 16 kHz mono float32 (channels averaged)."""
    audio, rate = _read_wav(path)
    return to_16k(audio.mean(axis=1), rate)


def read_sample(folder: Path) -> Sample:
    """Read the sample stored in ``folder``; raise DataError naming the file that is missing or malformed."""
    folder = Path(folder)
    motion_path = folder / 'motion.npz'
    if not motion_path.is_file():
        msg = f'{folder} is not a sample: {motion_path.name} is missing'
        raise DataError(msg)
    with np.load(motion_path) as npz:
        if int(npz['fps']) != FPS:
            msg = f'{motion_path}: motion must be {FPS} fps, got {int(npz["fps"])}'
            raise DataError(msg)
        motion = npz['motion'].astype(np.float32)
        names = tuple(str(n) for n in npz['names'])
        valid = npz['valid'].astype(bool)
        speaker = str(npz['speaker']) if 'speaker' in npz else ''
    if motion.ndim != 2 or motion.shape[1] != len(names) or valid.shape != (motion.shape[0],):
        msg = f'{motion_path}: inconsistent shapes motion {motion.shape}, names {len(names)}, valid {valid.shape}'
        raise DataError(msg)
    self_audio = read_audio(folder / 'self.wav')
    partner_path = folder / 'partner.wav'
    partner_audio = read_audio(partner_path) if partner_path.is_file() else np.zeros_like(self_audio)
    return Sample(folder.name, motion, names, valid, self_audio, partner_audio, speaker)


def list_samples(root: Path) -> list[Path]:
    """Return the sample folders below ``root``, sorted by name; raise DataError if there are none."""
    folders = sorted(p.parent for p in Path(root).glob('*/motion.npz'))
    if not folders:
        msg = f'no samples (*/motion.npz) found in {root}'
        raise DataError(msg)
    return folders
