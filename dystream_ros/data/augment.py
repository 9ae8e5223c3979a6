"""What the real world does to a voice before a robot hears it, as seeded changes to 16 kHz float32 clips.

A model trained on clean TTS learns clean TTS; a robot hears people through a room, a cheap microphone, a noisy hall,
a gain set too low or too high, sometimes a phone line. ``Augmenter`` applies a random subset of these to a clip, in
the order the sound meets them (``AUGMENTATIONS``), drawing everything from the caller's generator: the same
generator state gives the same result. Every change keeps the clip's length but 'rate', and every result is finite
float32 in [-1, 1].
"""
from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction

import numpy as np
from scipy.signal import fftconvolve, lfilter, resample_poly

from dystream_ros.errors import DataError
from dystream_ros.units import SAMPLE_RATE_HZ

AUGMENTATIONS = ('rate', 'reverb', 'noise', 'eq', 'level', 'telephone', 'codec')
"""Every kind, in the order a chain applies them: speaker, room, microphone, gain, transmission."""

_RATE_RANGE = (0.85, 1.15)  # speaking-rate factor
_RATE_DENOMINATOR = 40  # the factor is rounded to a fraction with this denominator at most, for resample_poly
_SNR_DB_RANGE = (3.0, 30.0)  # speech to noise power
_NOISE_COLOURS = ('white', 'pink', 'babble')
_BABBLE_TALKERS = (3, 7)  # how many voices (at least, at most + 1) a babble mixes
_SHELF_GAIN_DB, _PEAK_GAIN_DB = 6.0, 6.0  # microphone EQ: at most this much boost or cut
_PEAK_LEVEL_DBFS = (-35.0, -3.0)
_RMS_LEVEL_DBFS = (-45.0, -15.0)  # the same loudness range as the peak one: speech peaks ~12 dB above its RMS
_SILENT_RMS = 1e-3  # -60 dBFS: the level noise is set against when a clip has no speech at all
_MU = 255  # G.711 mu-law
_FRAME_SAMPLES = 320  # 20 ms, for measuring speech power


# ---------------------------------------------------------------------------------------------------------------
# the parts: each a plain function of a clip and its parameters

def room_impulse_response(rng: np.random.Generator) -> np.ndarray:
    """A synthetic room: direct sound plus exponentially decaying diffuse reflections (RT60 0.15 to 0.6 s)."""
    rt60 = rng.uniform(0.15, 0.6)
    n = int(rt60 * SAMPLE_RATE_HZ)
    t = np.arange(n) / SAMPLE_RATE_HZ
    tail = rng.normal(0.0, 1.0, n) * np.exp(-6.9 * t / rt60) * rng.uniform(0.05, 0.3)
    tail[: int(0.003 * SAMPLE_RATE_HZ)] = 0.0  # first reflections arrive a few ms after the direct sound
    tail[0] = 1.0
    return tail.astype(np.float32)


def pink_noise(rng: np.random.Generator, n: int) -> np.ndarray:
    """Pinkish background noise (fans, traffic), unit RMS."""
    white = rng.normal(0.0, 1.0, n)
    noise = lfilter([0.049922, -0.095993, 0.050612, -0.004408], [1.0, -2.494956, 2.017265, -0.522189], white)
    return (noise / (np.std(noise) + 1e-9)).astype(np.float32)


def speech_rms(audio: np.ndarray) -> float:
    """RMS of the speech in a clip: of its 20 ms frames within 40 dB of the loudest, so pauses do not count."""
    n = len(audio) // _FRAME_SAMPLES * _FRAME_SAMPLES
    if n == 0:
        return float(np.sqrt(np.mean(audio.astype(np.float64) ** 2))) if len(audio) else 0.0
    power = np.mean(audio[:n].astype(np.float64).reshape(-1, _FRAME_SAMPLES) ** 2, axis=1)
    return float(np.sqrt(np.mean(power[power >= power.max() * 1e-4])))


def change_rate(audio: np.ndarray, factor: float) -> np.ndarray:
    """The clip spoken ``factor`` times as fast (and as much higher, a tape played faster): about
    ``len(audio) / factor`` samples long. ``factor`` is rounded to a fraction with a denominator of at most 40."""
    fraction = Fraction(factor).limit_denominator(_RATE_DENOMINATOR)
    return resample_poly(audio, fraction.denominator, fraction.numerator).astype(np.float32)


def reverberate(audio: np.ndarray, impulse_response: np.ndarray) -> np.ndarray:
    """The clip played in a room (``room_impulse_response``), cut to its length, at its original peak."""
    wet = fftconvolve(audio, impulse_response)[: len(audio)]
    return (wet * _peak(audio) / (_peak(wet) + 1e-12)).astype(np.float32)


def add_noise(audio: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``noise`` (as long as the clip) added ``snr_db`` below the clip's speech power (``speech_rms``)."""
    reference = max(speech_rms(audio), _SILENT_RMS)
    gain = reference * 10 ** (-snr_db / 20) / (float(np.sqrt(np.mean(noise.astype(np.float64) ** 2))) + 1e-12)
    return (audio + noise * gain).astype(np.float32)


def babble(speech: np.ndarray, rng: np.random.Generator, n: int, talkers: int) -> np.ndarray:
    """``talkers`` stretches of ``speech`` played at once from random points, reversed so no word stands out
    (a crowded hall), ``n`` samples, unit RMS."""
    reversed_speech = np.resize(speech[::-1].astype(np.float32), max(n, len(speech)))  # np.resize repeats it
    mix = np.zeros(n, np.float32)
    for _ in range(talkers):
        mix += np.roll(reversed_speech, int(rng.integers(len(reversed_speech))))[:n]
    return mix / (float(np.sqrt(np.mean(mix.astype(np.float64) ** 2))) + 1e-9)


def biquad(kind: str, f0_hz: float, gain_db: float, q: float = 0.7071) -> tuple[np.ndarray, np.ndarray]:
    """Coefficients (b, a) of a 'peak', 'low_shelf' or 'high_shelf' filter at 16 kHz (R. Bristow-Johnson's audio
    EQ cookbook): ``gain_db`` at ``f0_hz`` for a peak of width ``q``, below or above ``f0_hz`` for a shelf."""
    amp = 10 ** (gain_db / 40)
    w0 = 2 * np.pi * f0_hz / SAMPLE_RATE_HZ
    cos, alpha = np.cos(w0), np.sin(w0) / (2 * q)
    if kind == 'peak':
        b = [1 + alpha * amp, -2 * cos, 1 - alpha * amp]
        a = [1 + alpha / amp, -2 * cos, 1 - alpha / amp]
    elif kind == 'low_shelf':
        root = 2 * np.sqrt(amp) * alpha
        b = [amp * ((amp + 1) - (amp - 1) * cos + root), 2 * amp * ((amp - 1) - (amp + 1) * cos),
             amp * ((amp + 1) - (amp - 1) * cos - root)]
        a = [(amp + 1) + (amp - 1) * cos + root, -2 * ((amp - 1) + (amp + 1) * cos),
             (amp + 1) + (amp - 1) * cos - root]
    elif kind == 'high_shelf':
        root = 2 * np.sqrt(amp) * alpha
        b = [amp * ((amp + 1) + (amp - 1) * cos + root), -2 * amp * ((amp - 1) + (amp + 1) * cos),
             amp * ((amp + 1) + (amp - 1) * cos - root)]
        a = [(amp + 1) - (amp - 1) * cos + root, 2 * ((amp - 1) - (amp + 1) * cos),
             (amp + 1) - (amp - 1) * cos - root]
    else:
        msg = f'unknown filter kind {kind!r}: use peak, low_shelf or high_shelf'
        raise DataError(msg)
    return np.array(b) / a[0], np.array(a) / a[0]


def microphone_eq(audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The colour of a random microphone: a low shelf, a high shelf and a resonance, each a few dB up or down."""
    filters = [biquad('low_shelf', rng.uniform(80, 400), rng.uniform(-_SHELF_GAIN_DB, _SHELF_GAIN_DB)),
               biquad('high_shelf', rng.uniform(2000, 6000), rng.uniform(-_SHELF_GAIN_DB, _SHELF_GAIN_DB)),
               biquad('peak', rng.uniform(300, 5000), rng.uniform(-_PEAK_GAIN_DB, _PEAK_GAIN_DB),
                      rng.uniform(0.7, 3.0))]
    out = audio.astype(np.float64)
    for b, a in filters:
        out = lfilter(b, a, out)
    return out.astype(np.float32)


def set_level(audio: np.ndarray, level_dbfs: float, measure: str) -> np.ndarray:
    """The clip scaled so its 'peak' or its speech 'rms' (``speech_rms``) is at ``level_dbfs``; what goes past
    full scale is clipped, as a microphone preamplifier set too hot clips it."""
    current = _peak(audio) if measure == 'peak' else speech_rms(audio)
    if current == 0.0:
        return audio.astype(np.float32)
    return np.clip(audio * (10 ** (level_dbfs / 20) / current), -1.0, 1.0).astype(np.float32)


def mu_law_codec(audio: np.ndarray) -> np.ndarray:
    """The clip sent as 8 kHz 8-bit mu-law (G.711, a phone call or a cheap VoIP link) and back to 16 kHz: nothing
    above 4 kHz survives, and quiet sounds come back with quantisation noise."""
    narrow = np.clip(resample_poly(audio.astype(np.float64), 1, 2), -1.0, 1.0)
    companded = np.sign(narrow) * np.log1p(_MU * np.abs(narrow)) / np.log1p(_MU)
    companded = np.round((companded + 1) / 2 * 255) / 255 * 2 - 1  # the 8 bits on the wire
    expanded = np.sign(companded) * np.expm1(np.abs(companded) * np.log1p(_MU)) / _MU
    return resample_poly(expanded, 2, 1)[: len(audio)].astype(np.float32)


def telephone(audio: np.ndarray) -> np.ndarray:
    """The clip through a telephone's band (about 300 to 3400 Hz), as the audio rooms' ``telephone_band`` gives it."""
    from dystream_ros.audio.bandwidth import telephone_band

    return np.asarray(telephone_band(audio), np.float32)


def _peak(audio: np.ndarray) -> float:
    return float(np.max(np.abs(audio))) if len(audio) else 0.0


def _bounded(audio: np.ndarray) -> np.ndarray:
    """Finite float32 in [-1, 1]: non-finite samples become silence and a clip past full scale is turned down."""
    out = np.nan_to_num(np.asarray(audio, np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    peak = _peak(out)
    return out / peak if peak > 1.0 else out


# ---------------------------------------------------------------------------------------------------------------
# the entry point

class Augmenter:
    """Applies a random subset of ``kinds`` to a clip, each with its probability, with random settings.

    Args:
        kinds: which of ``AUGMENTATIONS`` may be applied. 'rate' changes the clip's length (by 1 / factor, 0.85 to
            1.15): leave it out where the audio must stay in step with motion, which training's own speed
            perturbation keeps in step. 'telephone' needs ``dystream_ros.audio.bandwidth``.
        p: the probability of each kind, one for all or one per kind.
        babble_speech: other people's speech (16 kHz) to make babble noise from; without it, babble is made from
            the clip itself, reversed and shifted.

    Raises:
        DataError: for a kind not in ``AUGMENTATIONS`` or a probability outside [0, 1].
    """

    def __init__(self, kinds: tuple[str, ...], p: float | Mapping[str, float] = 0.5,
                 babble_speech: np.ndarray | None = None) -> None:
        unknown = sorted(set(kinds) - set(AUGMENTATIONS))
        if unknown:
            msg = f'unknown augmentations {unknown}: choose from {AUGMENTATIONS}'
            raise DataError(msg)
        self.probabilities = {kind: float(p[kind] if isinstance(p, Mapping) else p)
                              for kind in AUGMENTATIONS if kind in kinds}
        if not all(0.0 <= value <= 1.0 for value in self.probabilities.values()):
            msg = f'augmentation probabilities must be in [0, 1], got {self.probabilities}'
            raise DataError(msg)
        self.babble_speech = babble_speech

    def __call__(self, audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The clip (16 kHz mono) changed by the kinds that ``rng`` picks, as finite float32 in [-1, 1]."""
        out = _bounded(audio)
        for kind, probability in self.probabilities.items():
            if rng.random() < probability and len(out):
                out = _bounded(self._apply(kind, out, rng))
        return out

    def _apply(self, kind: str, audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if kind == 'rate':
            return change_rate(audio, rng.uniform(*_RATE_RANGE))
        if kind == 'reverb':
            return reverberate(audio, room_impulse_response(rng))
        if kind == 'noise':
            return add_noise(audio, self._noise(audio, rng), rng.uniform(*_SNR_DB_RANGE))
        if kind == 'eq':
            return microphone_eq(audio, rng)
        if kind == 'level':
            measure = str(rng.choice(['peak', 'rms']))
            return set_level(audio, rng.uniform(*(_PEAK_LEVEL_DBFS if measure == 'peak' else _RMS_LEVEL_DBFS)),
                             measure)
        if kind == 'telephone':
            return telephone(audio)
        return mu_law_codec(audio)

    def _noise(self, audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Unit-RMS noise as long as ``audio``: white (hiss), pink (fans, traffic) or babble (other people)."""
        n = len(audio)
        colour = str(rng.choice(_NOISE_COLOURS))
        if colour == 'white':
            return rng.normal(0.0, 1.0, n).astype(np.float32)
        if colour == 'pink':
            return pink_noise(rng, n)
        speech = self.babble_speech if self.babble_speech is not None else audio
        return babble(speech, rng, n, int(rng.integers(*_BABBLE_TALKERS)))
