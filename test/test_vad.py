"""Voice activity: on for speech at any microphone level, off for silence and steady noise."""
from __future__ import annotations

import numpy as np

from dystream_ros.audio.vad import VoiceActivity, voice_activity
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
    assert active[50 + 75:].sum() == 0  # noise within 3 s


def test_room_noise_is_not_speech_after_a_stream_starts_or_after_a_dropout() -> None:
    # -45 dBFS of steady room noise; the stream starts 1 s late and drops out for 2 s in the middle: the silence
    # filled in for the missing audio is not heard, so it does not pull the noise floor down
    rng = np.random.default_rng(2)
    detector = VoiceActivity()
    active = []
    for k in range(25 * 20):
        noise = rng.normal(0, 10 ** (-45 / 20), 640).astype(np.float32)
        missing = k < 25 or 250 <= k < 300
        frame = np.zeros(640, np.float32) if missing else noise
        active.append(detector.update(frame, heard=np.full(640, not missing)) > 0)
    active = np.array(active)
    assert not active[:25].any() and not active[250:300].any()
    assert active[25:250].sum() <= 50 and active[300:].sum() <= 50  # settled within 2 s of each (re)start
    assert not active[25 + 50:250].any() and not active[300 + 50:].any()
