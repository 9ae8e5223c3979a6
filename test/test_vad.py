"""Voice activity: on for speech at any microphone level, off for silence and steady noise."""
from __future__ import annotations

import numpy as np

from dystream_ros.audio.vad import voice_activity
from dystream_ros.data.tts import Voice, synthesize


def _speech_in_noise(speech_db: float, noise_db: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    utterances = synthesize(['Good morning, could you tell me where the meeting room is?',
                             'It is on the second floor, next to the big window.'], Voice('espeak', 'en-us+f2'))
    pieces, truth = [np.zeros(32000, np.float32)], [np.zeros(50, bool)]
    for utterance in utterances:
        audio = utterance.audio / np.sqrt(np.mean(utterance.audio**2)) * 10 ** (speech_db / 20)
        pad = (-len(audio)) % 640
        pieces += [np.pad(audio, (0, pad)), np.zeros(48000, np.float32)]
        truth += [np.ones((len(audio) + pad) // 640, bool), np.zeros(75, bool)]
    audio = np.concatenate(pieces)
    audio = audio + rng.normal(0, 10 ** (noise_db / 20), len(audio)).astype(np.float32)
    return audio.astype(np.float32), np.concatenate(truth)


def test_speech_is_detected_at_loud_and_quiet_levels_and_silence_is_not() -> None:
    for speech_db, noise_db in ((-18.0, -60.0), (-38.0, -62.0), (-25.0, -45.0)):
        audio, truth = _speech_in_noise(speech_db, noise_db)
        active = voice_activity(audio) > 0
        assert active[truth].mean() > 0.85, (speech_db, noise_db)
        # silence well away from speech (beyond the hangover)
        far = np.convolve(truth, np.ones(21), mode='same') == 0
        assert active[far].mean() < 0.05, (speech_db, noise_db)


def test_a_fan_switched_on_is_not_taken_for_speech_for_long() -> None:
    rng = np.random.default_rng(1)
    audio = np.concatenate([rng.normal(0, 10 ** (-65 / 20), 16000 * 2),
                            rng.normal(0, 10 ** (-35 / 20), 16000 * 30)]).astype(np.float32)
    active = voice_activity(audio) > 0
    assert active[:50].sum() == 0
    assert active[-25 * 10:].sum() == 0  # adapted within 20 s
