"""Real-world degradations for training audio: each does what its name says, and a chain is seeded and safe."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import freqz, welch

from dystream_ros.data import augment
from dystream_ros.data.augment import AUGMENTATIONS, Augmenter
from dystream_ros.data.tts import Voice, synthesize
from dystream_ros.errors import DataError

RATE = 16000
WITHOUT_TELEPHONE = tuple(k for k in AUGMENTATIONS if k != 'telephone')  # its band-pass lives in the audio room


@pytest.fixture(scope='module')
def speech() -> np.ndarray:
    """A few seconds of speech with pauses, at -6 dBFS peak."""
    utterances = synthesize(['Could you tell me where the library is?', 'It opens at ten thirty.'],
                            Voice('espeak', 'en-us+f2'))
    audio = np.concatenate([np.zeros(4000, np.float32), utterances[0].audio, np.zeros(8000, np.float32),
                            utterances[1].audio])
    return (audio / np.abs(audio).max() * 0.5).astype(np.float32)


def _band_energy(audio: np.ndarray, low_hz: float, high_hz: float) -> float:
    freqs, power = welch(audio, RATE, nperseg=1024)
    return float(power[(freqs >= low_hz) & (freqs < high_hz)].sum())


def _tone(freq_hz: float, seconds: float = 1.0, amplitude: float = 0.5) -> np.ndarray:
    return (amplitude * np.sin(2 * np.pi * freq_hz * np.arange(int(seconds * RATE)) / RATE)).astype(np.float32)


def _dominant_hz(audio: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    return float(np.fft.rfftfreq(len(audio), 1 / RATE)[np.argmax(spectrum)])


def test_codec_removes_everything_above_4_khz_and_keeps_the_voice_band() -> None:
    noise = np.random.default_rng(0).uniform(-0.5, 0.5, RATE).astype(np.float32)
    out = augment.mu_law_codec(noise)
    assert len(out) == len(noise) and out.dtype == np.float32
    assert _band_energy(noise, 4200, 8000) > 0.4 * _band_energy(noise, 0, 8000)
    assert _band_energy(out, 4200, 8000) < 0.01 * _band_energy(out, 0, 8000)
    tone = _tone(1000.0)
    error = augment.mu_law_codec(tone)[800:-800] - tone[800:-800]  # edges: the resampler's filter settling
    assert 10 * np.log10(np.mean(tone ** 2) / np.mean(error ** 2)) > 25  # 8-bit mu-law: ~38 dB for a loud tone


@pytest.mark.parametrize('level_dbfs', [-35.0, -20.0, -3.0])
def test_level_sets_the_peak(speech: np.ndarray, level_dbfs: float) -> None:
    out = augment.set_level(speech, level_dbfs, 'peak')
    assert 20 * np.log10(np.abs(out).max()) == pytest.approx(level_dbfs, abs=0.01)


def test_level_sets_the_speech_rms_and_clips_what_goes_past_full_scale(speech: np.ndarray) -> None:
    out = augment.set_level(speech, -30.0, 'rms')
    assert 20 * np.log10(augment.speech_rms(out)) == pytest.approx(-30.0, abs=0.01)
    # the pauses do not count: the clip's plain RMS is lower than its speech RMS
    assert np.sqrt(np.mean(out ** 2)) < augment.speech_rms(out)
    hot = augment.set_level(speech, -3.0, 'rms')
    assert np.abs(hot).max() == 1.0 and np.mean(np.abs(hot) == 1.0) > 0.001


@pytest.mark.parametrize('colour', ['white', 'pink', 'babble'])
@pytest.mark.parametrize('snr_db', [3.0, 15.0, 30.0])
def test_noise_is_added_at_the_asked_speech_to_noise_ratio(speech: np.ndarray, colour: str, snr_db: float) -> None:
    rng = np.random.default_rng(1)
    noise = {'white': lambda: rng.normal(0, 1, len(speech)), 'pink': lambda: augment.pink_noise(rng, len(speech)),
             'babble': lambda: augment.babble(speech, rng, len(speech), 4)}[colour]()
    out = augment.add_noise(speech, noise, snr_db)
    added = out - speech
    measured = 20 * np.log10(augment.speech_rms(speech) / np.sqrt(np.mean(added.astype(np.float64) ** 2)))
    assert measured == pytest.approx(snr_db, abs=0.1)


def test_babble_sounds_like_speech_not_like_hiss(speech: np.ndarray) -> None:
    crowd = augment.babble(speech, np.random.default_rng(2), 3 * RATE, 5)
    assert len(crowd) == 3 * RATE and np.sqrt(np.mean(crowd ** 2)) == pytest.approx(1.0, rel=1e-3)
    # speech has most of its energy below 1 kHz; white noise has 1/8 of it there
    assert _band_energy(crowd, 0, 1000) > 0.4 * _band_energy(crowd, 0, 8000)


@pytest.mark.parametrize(('kind', 'probe_hz'), [('peak', 1000.0), ('low_shelf', 0.0), ('high_shelf', 7999.0)])
@pytest.mark.parametrize('gain_db', [-6.0, 4.0])
def test_eq_filters_have_their_gain_where_they_act(kind: str, probe_hz: float, gain_db: float) -> None:
    b, a = augment.biquad(kind, 1000.0, gain_db, q=1.5)
    _, response = freqz(b, a, worN=[probe_hz], fs=RATE)
    assert 20 * np.log10(np.abs(response[0])) == pytest.approx(gain_db, abs=0.1)
    _, far = freqz(b, a, worN=[7999.0 if kind == 'low_shelf' else 20.0], fs=RATE)  # and not far from it
    assert abs(20 * np.log10(np.abs(far[0]))) < 0.5


def test_microphone_eq_colours_the_sound_by_a_few_db(speech: np.ndarray) -> None:
    noise = np.random.default_rng(3).normal(0, 0.1, 2 * RATE).astype(np.float32)
    for seed in range(5):
        out = augment.microphone_eq(noise, np.random.default_rng(seed))
        freqs, before = welch(noise, RATE, nperseg=512)
        _, after = welch(out, RATE, nperseg=512)
        change_db = 10 * np.log10(after[1:-1] / before[1:-1])
        assert np.abs(change_db).max() < 19  # three filters of at most 6 dB each, plus the estimate's scatter
        assert np.abs(change_db).max() > 1  # and it does change the sound


def test_reverb_leaves_a_tail_after_the_sound_stops_and_keeps_length_and_peak() -> None:
    clip = np.zeros(RATE, np.float32)
    clip[:1600] = _tone(500.0, 0.1)
    out = augment.reverberate(clip, augment.room_impulse_response(np.random.default_rng(4)))
    assert len(out) == len(clip) and np.abs(out).max() == pytest.approx(np.abs(clip).max(), rel=1e-5)
    tail = np.sqrt(np.mean(out[1700:3200] ** 2)) / np.sqrt(np.mean(out[:1600] ** 2))
    assert tail > 0.01  # the room still rings 100 ms after the tone; the dry clip is silent there


def test_rate_change_shortens_the_clip_and_raises_the_pitch_by_the_factor() -> None:
    out = augment.change_rate(_tone(400.0), 1.25)
    assert len(out) == RATE * 4 // 5
    assert _dominant_hz(out) == pytest.approx(500.0, abs=2.0)
    assert len(augment.change_rate(_tone(400.0), 0.9)) == pytest.approx(RATE / 0.9, abs=1)


def test_telephone_keeps_only_the_telephone_band() -> None:
    pytest.importorskip('dystream_ros.audio.bandwidth', reason='the audio room does not have telephone_band yet')
    noise = np.random.default_rng(5).uniform(-0.5, 0.5, RATE).astype(np.float32)
    out = augment.telephone(noise)
    assert len(out) == len(noise)
    assert _band_energy(out, 3800, 8000) < 0.01 * _band_energy(out, 0, 8000)
    assert _band_energy(out, 0, 150) < 0.01 * _band_energy(out, 0, 8000)


def test_augmenter_is_the_same_for_the_same_generator_state(speech: np.ndarray) -> None:
    augmenter = Augmenter(WITHOUT_TELEPHONE, p=0.5)
    runs = [augmenter(speech, np.random.default_rng(seed)) for seed in (7, 7, 8)]
    assert np.array_equal(runs[0], runs[1])
    assert len(runs[0]) != len(runs[2]) or not np.array_equal(runs[0], runs[2])


def test_augmenter_output_is_finite_float32_in_range_and_keeps_length_without_rate(speech: np.ndarray) -> None:
    broken = speech * 3.0  # past full scale
    broken[100:110] = np.nan
    broken[200] = np.inf
    keeping = Augmenter(tuple(k for k in WITHOUT_TELEPHONE if k != 'rate'), p=0.6)
    with_rate = Augmenter(('rate',), p=1.0)
    for seed in range(40):
        for clip in (speech, broken, np.zeros(RATE, np.float32), speech[:100]):
            out = keeping(clip, np.random.default_rng(seed))
            assert out.dtype == np.float32 and len(out) == len(clip)
            assert np.isfinite(out).all() and np.abs(out).max() <= 1.0
        stretched = with_rate(speech, np.random.default_rng(seed))
        assert np.isfinite(stretched).all() and len(speech) / 1.16 < len(stretched) < len(speech) / 0.84


def test_augmenter_applies_each_kind_with_its_probability(speech: np.ndarray) -> None:
    assert np.array_equal(Augmenter(WITHOUT_TELEPHONE, p=0.0)(speech, np.random.default_rng(0)), speech)
    codec_always = Augmenter(('codec', 'noise'), p={'codec': 1.0, 'noise': 0.0})
    out = codec_always(speech, np.random.default_rng(0))
    assert _band_energy(out, 4200, 8000) < 0.01 * _band_energy(out, 0, 8000)
    noisy = Augmenter(('noise',), p=0.3)
    changed = [not np.array_equal(noisy(speech, np.random.default_rng(seed)), speech) for seed in range(200)]
    assert 0.2 < np.mean(changed) < 0.4


def test_augmenter_babble_comes_from_the_speech_it_is_given(speech: np.ndarray) -> None:
    whistle = _tone(3000.0, 2.0)  # a stand-in for other people that is easy to recognise in the result
    augmenter = Augmenter(('noise',), p=1.0, babble_speech=whistle)
    added = [augmenter(speech, np.random.default_rng(seed)) - speech for seed in range(30)]
    from_whistle = [abs(_dominant_hz(a) - 3000.0) < 5 for a in added]
    assert 3 <= sum(from_whistle) <= 20  # babble is one of three noise colours


def test_augmenter_refuses_unknown_kinds_and_bad_probabilities() -> None:
    with pytest.raises(DataError, match='unknown augmentations'):
        Augmenter(('reverb', 'underwater'))
    with pytest.raises(DataError, match=r'in \[0, 1\]'):
        Augmenter(('reverb',), p=1.5)
