"""Real human speech for evaluation, with a reference mouth from a forced phoneme alignment, all offline.

The recordings come from Debian packages, grouped by speaker (:data:`SPEAKER_SETS`): from ``pocketsphinx-testdata``
the LibriVox readings and the 'cards' commands (each with a transcription file) and a TIDIGITS digit string (its
digits are its file name), and the recorded voice prompts of ``alsa-utils`` (their words are their file names).
PocketSphinx's English acoustic model (inside the ``pocketsphinx`` wheel) aligns each transcription to its audio;
the corpus teacher's viseme model turns the aligned phonemes into the reference mouth opening.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dystream_ros.data.sample import read_any_audio
from dystream_ros.data.teacher import MOUTH_NAMES, mouth_track
from dystream_ros.data.tts import Phone
from dystream_ros.errors import DataError
from dystream_ros.units import FPS, SAMPLE_RATE_HZ, SAMPLES_PER_FRAME

POCKETSPHINX_DATA_DIR = Path('/usr/share/pocketsphinx/test/data')
LIBRIVOX_DIR = POCKETSPHINX_DATA_DIR / 'librivox'
CARDS_DIR = POCKETSPHINX_DATA_DIR / 'cards'
TIDIGITS_RAW = POCKETSPHINX_DATA_DIR / 'tidigits' / 'dhd.2934z.raw'  # 16 kHz S16LE without a header
ALSA_SOUNDS_DIR = Path('/usr/share/sounds/alsa')
SPEAKER_SETS = {  # clip name prefix -> what the recordings are; each set is one speaker
    'librivox': 'LibriVox reading of Sense and Sensibility: read speech, one reader',
    'cards': "PocketSphinx 'cards' test: another speaker naming playing cards",
    'tidigits': 'TIDIGITS: another speaker reading a digit string',
    'alsa': "alsa-utils voice prompts ('Front center' and the like): another speaker, two words each",
}
_TIDIGITS_WORDS = {'1': 'one', '2': 'two', '3': 'three', '4': 'four', '5': 'five', '6': 'six', '7': 'seven',
                   '8': 'eight', '9': 'nine', 'z': 'zero', 'o': 'oh'}
_ALIGN_FRAME_S = 0.01  # PocketSphinx reports alignments in 10 ms frames
_SILENCES = {'SIL', '+NSN+', '+SPN+', '+BREATH+', '+UM+', '+NOISE+'}


@dataclass
class RealClip:
    """A recording of real speech with its words, aligned phonemes and reference mouth opening at 25 fps."""

    name: str
    audio: np.ndarray  # 16 kHz mono float32
    text: str
    phones: list[Phone]

    @property
    def speaker_set(self) -> str:
        """The key of :data:`SPEAKER_SETS` the clip belongs to."""
        return self.name.split('/')[0]

    @property
    def num_frames(self) -> int:
        """Motion frames the clip spans."""
        return len(self.audio) // SAMPLES_PER_FRAME

    def reference_mouth(self) -> np.ndarray:
        """The reference jaw opening (num_frames,) from the aligned phonemes."""
        return mouth_track(self.phones, self.num_frames)[:, MOUTH_NAMES.index('jawOpen')]

    def speaking(self) -> np.ndarray:
        """Frames (num_frames,) inside an aligned phoneme."""
        active = np.zeros(self.num_frames, bool)
        for phone in self.phones:
            active[int(phone.start_s * FPS):int(np.ceil(phone.end_s * FPS))] = True
        return active


def align(audio: np.ndarray, text: str) -> list[Phone]:
    """Force-align ``text`` to 16 kHz ``audio`` with PocketSphinx; return the phonemes (ARPAbet, silences out)."""
    from pocketsphinx import Decoder

    pcm = (np.clip(audio, -1, 1) * 32767).astype('<i2').tobytes()
    decoder = Decoder(samprate=SAMPLE_RATE_HZ, bestpath=False, loglevel='FATAL')
    decoder.set_align_text(text.lower())
    for _ in range(2):  # first pass: word alignment; second: phonemes within it
        decoder.start_utt()
        decoder.process_raw(pcm, full_utt=True)
        decoder.end_utt()
        if _ == 0:
            decoder.set_alignment()
    alignment = decoder.get_alignment()
    if alignment is None:
        msg = f'PocketSphinx could not align {text!r}'
        raise DataError(msg)
    return [Phone(p.name, p.start * _ALIGN_FRAME_S, (p.start + p.duration) * _ALIGN_FRAME_S)
            for word in alignment for p in word if p.name not in _SILENCES]


def _transcribed(folder: Path, transcription: Path, set_name: str) -> list[RealClip]:
    """The clips of a PocketSphinx test transcription (lines ``<s> words </s> (file id)``) that have their wav."""
    clips = []
    if transcription.is_file():
        for line in transcription.read_text().splitlines():
            match = re.fullmatch(r'<s>(.*)</s> \((\S+)\)', line.strip())
            if match and (folder / f'{match[2]}.wav').is_file():
                audio = read_any_audio(folder / f'{match[2]}.wav')
                text = ' '.join(match[1].split())
                clips.append(RealClip(f'{set_name}/{match[2]}', audio, text, align(audio, text)))
    return clips


def real_clips() -> list[RealClip]:
    """Every real recording found on this machine, aligned; raise DataError if the packages are missing."""
    clips = _transcribed(LIBRIVOX_DIR, LIBRIVOX_DIR / 'transcription', 'librivox')
    clips += _transcribed(CARDS_DIR, CARDS_DIR / 'cards.transcription', 'cards')
    if TIDIGITS_RAW.is_file():
        audio = np.fromfile(TIDIGITS_RAW, '<i2').astype(np.float32) / 32768
        text = ' '.join(_TIDIGITS_WORDS[c] for c in TIDIGITS_RAW.stem.split('.')[1])
        clips.append(RealClip(f'tidigits/{TIDIGITS_RAW.stem}', audio, text, align(audio, text)))
    for path in sorted(ALSA_SOUNDS_DIR.glob('*.wav')):
        if path.stem == 'Noise':
            continue
        audio = read_any_audio(path)
        text = path.stem.replace('_', ' ')
        clips.append(RealClip(f'alsa/{path.stem}', audio, text, align(audio, text)))
    if not clips:
        msg = ('no real speech found: install the Debian packages pocketsphinx-testdata and alsa-utils '
               '(`make setup` does)')
        raise DataError(msg)
    return clips
