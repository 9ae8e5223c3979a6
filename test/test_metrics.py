"""The evaluation's proxy metrics measure what they claim, on signals whose answer is known."""
from __future__ import annotations

import numpy as np
import pytest

from dystream_ros.data import metrics
from dystream_ros.data.real_speech import SPEAKER_SETS, real_clips
from dystream_ros.face.motion import neutral_motion


def _mouth(num_frames: int = 400, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(np.convolve(rng.random(num_frames), np.ones(4) / 4, mode='same') - 0.3, 0, 1)


def test_lipsync_corr_and_lag_find_a_delayed_copy() -> None:
    reference = _mouth()
    assert metrics.lipsync_corr(reference, reference) == pytest.approx(1.0)
    late = np.concatenate([np.zeros(2), reference[:-2]])  # the prediction lags by 2 frames (80 ms)
    assert metrics.lipsync_lag_frames(late, reference) == 2
    assert metrics.lipsync_lag_frames(reference[3:], reference) == -3
    assert metrics.lipsync_corr(np.zeros(400), reference) == 0.0
    assert abs(metrics.lipsync_corr(_mouth(seed=1), reference)) < 0.2


def test_silence_closed_counts_open_mouths_outside_speech() -> None:
    speaking = np.zeros(100, bool)
    speaking[20:60] = True
    mouth = np.zeros(100)
    mouth[20:60] = 0.5
    assert metrics.silence_closed(mouth, speaking) == 1.0
    mouth[70:76] = 0.4  # the mouth moves in 6 of the 60 silent frames
    assert metrics.silence_closed(mouth, speaking) == pytest.approx(0.9)


def test_open_in_speech_and_closed_in_silence_count_frames_against_the_seen_open_threshold() -> None:
    speaking = np.zeros(100, bool)
    speaking[20:60] = True
    tracked = np.full(100, 0.02)  # a mouth the tracker sees shut
    assert metrics.open_in_speech(tracked, speaking) == 0.0
    assert metrics.closed_in_silence(tracked, ~speaking) == 1.0
    tracked[20:50] = 0.3  # open in 30 of the 40 speech frames
    tracked[80:84] = 0.06  # and just open in 4 of the 60 silent ones
    assert metrics.open_in_speech(tracked, speaking) == pytest.approx(0.75)
    assert metrics.closed_in_silence(tracked, ~speaking) == pytest.approx(56 / 60)
    assert np.isnan(metrics.closed_in_silence(tracked, np.zeros(100, bool)))  # no silence: no figure


def test_listening_nod_ratio_is_high_for_nods_at_the_partner_and_one_for_indifference() -> None:
    t = np.arange(1000) / 25
    rng = np.random.default_rng(0)
    partner = (t % 10) < 5  # the partner speaks 5 s of every 10
    own = np.zeros_like(partner)
    idle = 0.01 * np.sin(2 * np.pi * 0.25 * t)  # head pitch, rad
    nodding = idle + partner * 0.1 * np.sin(2 * np.pi * 2 * t)
    assert metrics.listening_nod_ratio(nodding, own, partner) > 5
    noise = rng.normal(0, 0.01, 1000)
    assert metrics.listening_nod_ratio(noise, own, partner) == pytest.approx(1.0, abs=0.2)


def test_phrase_ends_are_where_the_partner_stops_and_the_face_is_silent_around_it() -> None:
    frames = 250  # 10 s
    partner, own = np.zeros(frames, bool), np.zeros(frames, bool)
    partner[25:75] = True  # a phrase, 1-3 s
    partner[77:100] = True  # 80 ms later it goes on (a pause inside the phrase), ends at 4 s
    partner[150:175] = True  # another phrase, ends at 7 s; the face answers 0.2 s later
    own[180:230] = True
    assert metrics.phrase_ends(partner, own) == [99]


def test_a_nod_at_a_phrase_end_is_measured_in_degrees_and_only_there() -> None:
    t = np.arange(250) / 25
    pitch = np.radians(0.5) * np.sin(2 * np.pi * 0.25 * t)  # breathing: 1 degree peak to peak
    nod = np.radians(8.0) * np.exp(-0.5 * ((t - 3.9) / 0.1) ** 2)  # an 8 degree nod 0.1 s before the end at 4 s
    depths = metrics.nod_depths_deg(pitch + nod, [99, 200])
    assert depths[0] == pytest.approx(8.0, abs=1.0) and depths[0] >= metrics.VISIBLE_NOD_DEG
    assert depths[1] < 1.1  # no nod at the second end: only the breathing


def test_seed_diversity_and_drift() -> None:
    base = neutral_motion(500) + np.random.default_rng(0).normal(0, 0.1, (500, 58)).astype(np.float32)
    assert metrics.seed_diversity([base, base]) == 0.0
    assert metrics.seed_diversity([base, base + 0.05]) == pytest.approx(0.05, rel=1e-3)
    assert metrics.statistics_drift(base, 100) < 0.3
    drifting = base + np.linspace(0, 1, 500)[:, None].astype(np.float32)
    assert metrics.statistics_drift(drifting, 100) > 1.0


def test_real_speech_is_aligned_offline_and_its_reference_mouth_follows_the_voice() -> None:
    clips = real_clips()
    assert len(clips) >= 10 and {c.speaker_set for c in clips} == set(SPEAKER_SETS)
    for clip in clips:
        assert len(clip.phones) >= 5, clip.name
        assert all(0 <= p.start_s < p.end_s <= len(clip.audio) / 16000 + 0.05 for p in clip.phones)
        assert 0.3 < clip.reference_mouth().max() <= 1.0
    envelope_corr = [metrics.pearson(c.reference_mouth(), np.sqrt(np.mean(
        c.audio[:c.num_frames * 640].reshape(-1, 640) ** 2, axis=1))) for c in clips]
    assert np.mean(envelope_corr) > 0.4
