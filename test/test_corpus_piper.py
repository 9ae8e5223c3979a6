"""The natural voice of the training corpus: piper, force-aligned, so the teacher's mouth moves with its speech."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import uniform_filter1d

from dystream_ros.data import corpus
from dystream_ros.data.real_speech import align
from dystream_ros.data.teacher import MOUTH_NAMES, mouth_track
from dystream_ros.data.tts import Phone, Voice, synthesize
from dystream_ros.errors import DataError
from dystream_ros.face.motion import get_values

TEXTS = ['Could you tell me where the library is?', 'It opens at ten thirty and closes at six in the evening.']


def _speaking_10ms(audio: np.ndarray) -> np.ndarray:
    """10 ms frames within 35 dB of the loudest one: where the voice is."""
    n = len(audio) // 160
    energy_db = 10 * np.log10(np.mean(audio[: n * 160].reshape(n, 160) ** 2, axis=1) + 1e-12)
    return energy_db > energy_db.max() - 35


@pytest.fixture(scope='module')
def utterances() -> list:
    return synthesize(TEXTS, Voice('piper', 'joe', rate_wpm=185, noise_scale=0.6), align)


def test_piper_phones_lie_inside_the_audio_and_cover_its_speech(utterances: list) -> None:
    for utterance in utterances:
        phones = utterance.phones
        assert len(phones) >= 20
        assert all(0 <= p.start_s < p.end_s <= utterance.duration_s + 1e-6 for p in phones)
        assert all(a.end_s <= b.start_s + 1e-6 for a, b in zip(phones, phones[1:]))  # in order, no overlap
        durations_ms = np.array([p.end_s - p.start_s for p in phones]) * 1000
        assert durations_ms.min() >= 9.9 and np.median(durations_ms) < 150 and durations_ms.max() < 400
        speaking = _speaking_10ms(utterance.audio)
        covered = np.zeros_like(speaking)
        for p in phones:
            covered[int(p.start_s * 100):int(np.ceil(p.end_s * 100))] = True
        assert covered[speaking].mean() > 0.9  # the phones cover the voice
        assert speaking[covered].mean() > 0.7  # and mostly the voice (a stop's closure is quiet but a phone)


def test_reference_mouth_opens_while_piper_speaks_and_rests_in_its_pauses(utterances: list) -> None:
    for utterance in utterances:
        pad_s = 0.5  # silence either side, as between turns
        audio = np.concatenate([np.zeros(8000, np.float32), utterance.audio, np.zeros(8000, np.float32)])
        phones = [Phone(p.symbol, p.start_s + pad_s, p.end_s + pad_s) for p in utterance.phones]
        num_frames = len(audio) // 640
        jaw = mouth_track(phones, num_frames)[:, MOUTH_NAMES.index('jawOpen')]
        speaking = _speaking_10ms(audio)[: num_frames * 4].reshape(num_frames, 4).mean(axis=1)
        assert np.corrcoef(jaw, uniform_filter1d(speaking, 3))[0, 1] > 0.5
        assert jaw[speaking > 0.5].mean() > 0.1
        quiet = np.convolve(speaking > 0, np.ones(5), mode='same') == 0  # no voice within 80 ms
        assert quiet.sum() >= 15 and jaw[quiet].max() < 0.05


def test_piper_says_the_same_text_the_same_way_and_its_settings_change_it() -> None:
    voice = Voice('piper', 'joe', rate_wpm=170, noise_scale=0.7)
    first, again = (synthesize([TEXTS[0]], voice, align)[0] for _ in range(2))
    assert np.array_equal(first.audio, again.audio) and first.phones == again.phones
    faster = synthesize([TEXTS[0]], Voice('piper', 'joe', rate_wpm=210, noise_scale=0.7), align)[0]
    assert faster.duration_s < first.duration_s - 0.1
    other = synthesize([TEXTS[0]], Voice('piper', 'joe', rate_wpm=170, noise_scale=0.5), align)[0]
    assert not np.array_equal(other.audio[: len(first.audio)], first.audio[: len(other.audio)])


def test_piper_without_an_aligner_is_refused() -> None:
    with pytest.raises(DataError, match='aligner'):
        synthesize(TEXTS[:1], Voice('piper', 'joe'))
    with pytest.raises(DataError, match='piper voice'):
        synthesize(TEXTS[:1], Voice('piper', 'nobody'), align)


def test_piper_speaks_in_training_only() -> None:
    rng = np.random.default_rng(0)
    train = [corpus._random_voice('train', rng).engine for _ in range(1000)]
    heldout = [corpus._random_voice('heldout', rng).engine for _ in range(1000)]
    assert 0.33 < train.count('piper') / 1000 < 0.47
    assert 'piper' not in heldout


def test_every_training_word_is_in_the_aligners_dictionary() -> None:
    # a word PocketSphinx does not know makes the alignment fail, and with it the whole corpus run
    import pocketsphinx

    dictionary = Path(pocketsphinx.get_model_path()) / 'en-us' / 'cmudict-en-us.dict'
    known = {line.split()[0] for line in dictionary.read_text().splitlines() if line.strip()}
    topic = corpus._TOPICS['train']
    texts = [text for values in topic.values() for text in values] + corpus._BACKCHANNELS + corpus._PIPER_LAUGHS
    words = {w for text in texts for w in re.sub(r"[^a-z']+", ' ', re.sub(r'\{\w+\}', ' ', text.lower())).split()}
    assert len(words) > 100 and not words - known, sorted(words - known)


def _first_conversation_with_piper(seed: int) -> int:
    for index in range(50):
        rng = np.random.default_rng([seed, index, 0])  # corpus.conversation's generator: its voices come first
        if any(corpus._random_voice('train', rng).engine == 'piper' for _ in range(2)):
            return index
    msg = 'no piper voice in 50 conversations'
    raise AssertionError(msg)


def test_a_piper_side_of_a_conversation_gets_a_mouth_that_follows_its_voice() -> None:
    samples = corpus.conversation(_first_conversation_with_piper(5), 'train', 5, 12.0)
    piper_samples = [s for s in samples if s.speaker.startswith('piper:joe')]
    assert piper_samples
    for sample in piper_samples:
        jaw = get_values(sample.motion, 'jawOpen')[:, 0]
        own = np.sqrt(np.mean(sample.self_audio.reshape(sample.num_frames, 640) ** 2, axis=1))
        assert np.corrcoef(jaw, uniform_filter1d(own, 3))[0, 1] > 0.5
        silent = np.convolve(own > 0.05 * own.max(), np.ones(5), mode='same') == 0
        assert silent.sum() > 10 and np.mean(jaw[silent] < 0.05) > 0.95
