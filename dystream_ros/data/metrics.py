"""Proxy metrics of a talking face, on motion in the face motion space at 25 fps (no lip-sync network needed).

No SyncNet weights can be had offline, so lip sync is measured against a reference mouth opening (from phoneme
timing), and listening behaviour against voice activity. Each function documents what a good value is.
"""
from __future__ import annotations

import numpy as np

from dystream_ros.face.motion import get_values

MAX_LAG_FRAMES = 5  # lip-sync lag search range, +-200 ms
CLOSED_JAW = 0.1  # jawOpen below this counts as a closed mouth
SEEN_OPEN_JAW = 0.05  # jawOpen that MediaPipe tracks from a rendered face above this: the mouth is seen open


def mouth_opening(motion: np.ndarray) -> np.ndarray:
    """How open the mouth is per frame (T,): the jawOpen weight."""
    return get_values(motion, 'jawOpen')[..., 0]


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation; 0 when either signal is constant (a still mouth does not correlate with speech)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.std() < 1e-8 or b.std() < 1e-8:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def lipsync_corr(predicted_mouth: np.ndarray, reference_mouth: np.ndarray) -> float:
    """Correlation of the predicted mouth opening with the reference, in [-1, 1]; higher is better."""
    n = min(len(predicted_mouth), len(reference_mouth))
    return pearson(predicted_mouth[:n], reference_mouth[:n])


def lipsync_lag_frames(predicted_mouth: np.ndarray, reference_mouth: np.ndarray) -> int:
    """The shift (frames) that best aligns prediction and reference; positive means the prediction is late."""
    n = min(len(predicted_mouth), len(reference_mouth))
    p, r = predicted_mouth[:n], reference_mouth[:n]
    scores = {lag: pearson(p[lag:], r[:n - lag]) if lag >= 0 else pearson(p[:n + lag], r[-lag:])
              for lag in range(-MAX_LAG_FRAMES, MAX_LAG_FRAMES + 1)}
    return max(scores, key=lambda lag: (scores[lag], -abs(lag)))


def silence_closed(predicted_mouth: np.ndarray, speaking: np.ndarray) -> float:
    """Fraction of frames where the face does not speak that have the mouth closed; higher is better."""
    n = min(len(predicted_mouth), len(speaking))
    quiet = ~np.asarray(speaking[:n], bool)
    if not quiet.any():
        return float('nan')
    return float(np.mean(predicted_mouth[:n][quiet] < CLOSED_JAW))


def open_in_speech(tracked_mouth: np.ndarray, speaking: np.ndarray) -> float:
    """Fraction of speech frames in which the tracked mouth is seen open (> ``SEEN_OPEN_JAW``); higher is better."""
    n = min(len(tracked_mouth), len(speaking))
    speech = np.asarray(speaking[:n], bool)
    return float(np.mean(tracked_mouth[:n][speech] > SEEN_OPEN_JAW)) if speech.any() else float('nan')


def closed_in_silence(tracked_mouth: np.ndarray, silent: np.ndarray) -> float:
    """Fraction of silent frames in which the tracked mouth is seen closed (<= ``SEEN_OPEN_JAW``); higher is better."""
    n = min(len(tracked_mouth), len(silent))
    quiet = np.asarray(silent[:n], bool)
    return float(np.mean(tracked_mouth[:n][quiet] <= SEEN_OPEN_JAW)) if quiet.any() else float('nan')


def listening_nod_ratio(head_pitch: np.ndarray, self_active: np.ndarray, partner_active: np.ndarray) -> float:
    """Head-pitch motion energy while only the partner speaks over that while nobody speaks; > 1 means the face
    reacts to its partner (a listener nods), 1 that it ignores them. ``head_pitch``: one angle per frame."""
    pitch = np.asarray(head_pitch, float)
    energy = np.abs(np.diff(pitch, prepend=pitch[0]))
    n = min(len(energy), len(self_active), len(partner_active))
    own, heard = np.asarray(self_active[:n], bool), np.asarray(partner_active[:n], bool)
    listening, nobody = heard & ~own, ~heard & ~own
    if listening.sum() < 10 or nobody.sum() < 10:
        return float('nan')
    return float(energy[:n][listening].mean() / max(energy[:n][nobody].mean(), 1e-9))


PHRASE_GAP_FRAMES = 3  # pauses shorter than this (120 ms) are inside a phrase, not at its end
NOD_WINDOW_FRAMES = (15, 10)  # a listener's nod at a phrase end: from 0.6 s before it to 0.4 s after
VISIBLE_NOD_DEG = 4.0  # head pitch peak to peak that a person sees from across a room


def phrase_ends(partner_active: np.ndarray, self_active: np.ndarray) -> list[int]:
    """Frames where a phrase of the partner ends while the face itself is silent around it (the moments a listener
    nods, the end of the partner's turn included when the face answers after ``NOD_WINDOW_FRAMES``): the last frame
    of each run of partner speech, runs joined across pauses under ``PHRASE_GAP_FRAMES``."""
    heard = activity_with_hangover(partner_active, PHRASE_GAP_FRAMES - 1)
    own = np.asarray(self_active, bool)
    before, after = NOD_WINDOW_FRAMES
    ends = np.flatnonzero(heard[:-1] & ~heard[1:]) - (PHRASE_GAP_FRAMES - 1)
    return [int(e) for e in ends if e >= before and e + after <= len(own) and not own[e - before:e + after].any()]


def nod_depths_deg(head_pitch: np.ndarray, ends: list[int]) -> np.ndarray:
    """Head pitch peak to peak (degrees) around each phrase end (``NOD_WINDOW_FRAMES``); ``head_pitch`` in
    radians, one per frame. A listener who nods visibly scores at least ``VISIBLE_NOD_DEG`` at most phrase ends."""
    before, after = NOD_WINDOW_FRAMES
    pitch = np.degrees(np.asarray(head_pitch, float))
    return np.array([np.ptp(pitch[e - before:e + after]) for e in ends if e + after <= len(pitch)])


def seed_diversity(motions: list[np.ndarray]) -> float:
    """Mean absolute difference between motion generated with different seeds (> 0: the sampler is not
    collapsed onto one output)."""
    n = min(len(m) for m in motions)
    pairs = [(a, b) for i, a in enumerate(motions) for b in motions[i + 1:]]
    return float(np.mean([np.abs(a[:n] - b[:n]).mean() for a, b in pairs]))


def statistics_drift(motion: np.ndarray, window_frames: int) -> float:
    """Change of the motion statistics between the first and the last window: the mean over dimensions of
    |mean difference| + |std difference|, in units of the whole stream's std; ~0 means no drift."""
    first, last = motion[:window_frames], motion[-window_frames:]
    scale = motion.std(axis=0) + 1e-6
    change = (np.abs(first.mean(0) - last.mean(0)) + np.abs(first.std(0) - last.std(0))) / scale
    return float(change.mean())


def activity_with_hangover(active: np.ndarray, hangover_frames: int = 12) -> np.ndarray:
    """Extend each active frame by ``hangover_frames`` (a voice is 'active' until shortly after it stops)."""
    active = np.asarray(active, bool)
    return np.convolve(active, np.ones(hangover_frames + 1), mode='full')[:len(active)] > 0
