"""The synthetic corpus: reproducible, held-out voices and texts, and a teacher that moves as a person would."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import uniform_filter1d

from dystream_ros.data import corpus
from dystream_ros.data.sample import list_samples, read_sample
from dystream_ros.data.teacher import MOUTH_NAMES, mouth_track
from dystream_ros.data.tts import Phone, Voice, synthesize
from dystream_ros.face.motion import MOTION_NAMES, get_values


def _envelope(audio: np.ndarray, num_frames: int) -> np.ndarray:
    return np.sqrt(np.mean(audio[: num_frames * 640].reshape(num_frames, 640) ** 2, axis=1))


@pytest.fixture(scope='module')
def samples() -> list:
    return [s for i in range(3) for s in corpus.conversation(i, 'train', seed=7, target_s=30.0)]


def test_same_seed_gives_the_same_conversation_up_to_the_tts_jitter() -> None:
    # espeak-ng jitters its own timing by a fraction of a millisecond from run to run, so audio and motion are
    # the same conversation but not bit-identical; what the seed decides (voices, texts, turns) is identical.
    scripts = [corpus._script('train', np.random.default_rng(5), 60.0) for _ in range(2)]
    assert scripts[0] == scripts[1]
    voices = [[corpus._random_voice('train', np.random.default_rng(s)) for s in range(20)] for _ in range(2)]
    assert voices[0] == voices[1]
    a, b = corpus.conversation(3, 'train', 11, 20.0), corpus.conversation(3, 'train', 11, 20.0)
    for x, y in zip(a, b):
        assert abs(x.num_frames - y.num_frames) <= 1
        n = min(x.num_frames, y.num_frames)
        jaw_x, jaw_y = get_values(x.motion[:n], 'jawOpen')[:, 0], get_values(y.motion[:n], 'jawOpen')[:, 0]
        assert np.corrcoef(jaw_x, jaw_y)[0, 1] > 0.95
    assert corpus._script('train', np.random.default_rng(6), 60.0) != scripts[0]


def _longest_speech_run_s(audio: np.ndarray, pause_frames: int = 8) -> float:
    """The longest stretch of speech (seconds) whose pauses are all shorter than ``pause_frames`` frames."""
    level = _envelope(audio, len(audio) // 640)
    speech = level > 0.1 * level.max()
    longest = run = gap = 0
    for active in speech:
        if active:
            run, gap = run + 1 + gap, 0
        elif run:
            gap += 1
            if gap >= pause_frames:
                run = gap = 0
        longest = max(longest, run)
    return longest / 25


def test_long_turns_speak_as_long_as_a_reader_without_changing_old_corpora() -> None:
    # single sentences (a median run of 1.3 s) taught a model that speech stops after two seconds, and it shut the
    # mouth on real readers; long turns go on for more sentences in one breath
    plain = corpus._script('train', np.random.default_rng(5), 120.0)
    assert corpus._script('train', np.random.default_rng(5), 120.0, long_turns=0.0) == plain
    long = corpus._script('train', np.random.default_rng(5), 120.0, long_turns=1.0)
    assert all(text.count('.') >= 2 for _, kind, text in long if kind != 'question')
    runs = {share: max(_longest_speech_run_s(s.self_audio)
                       for s in corpus.conversation(0, 'train', 7, 30.0, long_turns=share)) for share in (0.0, 1.0)}
    assert runs[1.0] > 4.0 and runs[1.0] > 1.5 * runs[0.0], runs


def test_heldout_split_shares_no_voice_and_no_sentence_with_train() -> None:
    rng = np.random.default_rng(0)
    train = {corpus._random_voice('train', rng).name for _ in range(500)}
    heldout = {corpus._random_voice('heldout', rng).name for _ in range(500)}
    assert len(train) > 20 and len(heldout) > 5
    assert not train & heldout
    assert not set(corpus._ESPEAK_TRAIN_VARIANTS) & set(corpus._ESPEAK_HELDOUT_VARIANTS)  # no shared timbre
    assert not set(corpus._ESPEAK_TRAIN) & set(corpus._ESPEAK_HELDOUT)  # and no shared accent
    train_text = ' '.join(t for _, _, t in corpus._script('train', rng, 3000.0))
    for _, _, text in corpus._script('heldout', rng, 300.0):
        assert text not in train_text


def test_espeak_phoneme_times_cover_the_speech() -> None:
    (utterance,) = synthesize(['Could you tell me where the library is?'], Voice('espeak', 'en-us+m3'))
    assert 20 < len(utterance.phones) < 40
    assert all(0 <= p.start_s < p.end_s <= utterance.duration_s + 1e-6 for p in utterance.phones)
    starts = [p.start_s for p in utterance.phones]
    assert starts == sorted(starts)


def test_mouth_opens_on_vowels_and_closes_on_bilabials_and_silence() -> None:
    phones = [Phone('m', 0.40, 0.52), Phone('ɑː', 0.52, 0.80), Phone('p', 0.80, 0.90), Phone('ɑː', 0.90, 1.2)]
    mouth = mouth_track(phones, 50)
    jaw = mouth[:, MOUTH_NAMES.index('jawOpen')]
    assert jaw[:8].max() < 0.01  # silence before speech
    assert jaw[16] > 0.35 and jaw[25] > 0.35  # the two vowels
    assert jaw[19:23].min() < 0.06  # the p between them: lips meet
    assert jaw[40:].max() < 0.01  # silence after


def test_teacher_mouth_follows_its_own_voice_not_the_partner(samples: list) -> None:
    for sample in samples:
        jaw = get_values(sample.motion, 'jawOpen')[:, 0]
        own = _envelope(sample.self_audio, sample.num_frames)
        heard = _envelope(sample.partner_audio, sample.num_frames)
        own_smooth = uniform_filter1d(own, 3)
        assert np.corrcoef(jaw, own_smooth)[0, 1] > 0.5
        # silent: no own voice within 80 ms either side (the lips lead and trail the sound a little)
        silent = np.convolve(own > 0.05 * own.max(), np.ones(5), mode='same') == 0
        assert np.mean(jaw[silent] < 0.05) > 0.95
        assert np.corrcoef(jaw, uniform_filter1d(heard, 3))[0, 1] < 0.3


def test_teacher_nods_while_listening_more_than_in_silence(samples: list) -> None:
    ratios = []
    for sample in samples:
        pitch = get_values(sample.motion, 'headPitch')[:, 0]
        motion_energy = np.abs(np.diff(pitch, prepend=pitch[0]))
        own = uniform_filter1d(_envelope(sample.self_audio, sample.num_frames), 13)
        heard = uniform_filter1d(_envelope(sample.partner_audio, sample.num_frames), 13)
        # voice activity with a 0.5 s hangover, as a VAD reports it
        heard_active = np.convolve(heard > 0.1 * heard.max(), np.ones(13), mode='full')[:len(heard)] > 0
        own_active = np.convolve(own > 0.1 * own.max(), np.ones(13), mode='full')[:len(own)] > 0
        listening, quiet = heard_active & ~own_active, ~heard_active & ~own_active
        if listening.sum() > 25 and quiet.sum() > 25:
            ratios.append(motion_energy[listening].mean() / motion_energy[quiet].mean())
    assert len(ratios) >= 3 and np.median(ratios) > 2.0, ratios


def test_corpus_command_writes_samples_that_training_reads(tmp_path: Path) -> None:
    # the installed command, as `make corpus` runs it: its worker processes re-import the launcher
    command = [str(Path(sys.prefix) / 'bin' / 'dystream'), 'corpus', '--out', str(tmp_path), '--hours', '0.01',
               '--seed', '3', '--split', 'heldout', '--conversation-seconds', '15', '--jobs', '2']
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / 'corpus.json').read_text())
    folders = list_samples(tmp_path)
    assert summary['samples'] == len(folders) >= 2 and summary['split'] == 'heldout'
    assert sum(summary['samples_per_voice'].values()) == summary['samples']
    sample = read_sample(folders[0])
    assert sample.names == MOTION_NAMES
    assert len(sample.self_audio) == len(sample.partner_audio) == sample.num_frames * 640
    assert sample.partner_audio.std() > 0 and np.isfinite(sample.motion).all()
    assert sample.speaker.startswith(('espeak:', 'festival:'))  # the voice travels with the sample, for reports
