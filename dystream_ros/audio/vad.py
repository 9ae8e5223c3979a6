"""Who is speaking: a streaming voice activity detector per 40 ms frame, robust to microphone level and noise.

Energy against an adaptive noise floor, with hysteresis and a hangover, so a level change or a fan does not make
the face think someone speaks, and the pauses between words do not flicker the state. The floor learns only from
audio that was heard: silence filled into a gap or before a stream's first message would drop it to digital
silence, and room noise would then read as speech for half a minute. It feeds the speaking/listening state of
FaceMotion and the listening masks of the evaluation.
"""
from __future__ import annotations

from collections import deque

import numpy as np

from dystream_ros.units import SAMPLES_PER_FRAME

FRAME_SAMPLES = SAMPLES_PER_FRAME  # 40 ms
_FLOOR_DB = -80.0  # digital silence
_ON_DB, _OFF_DB = 12.0, 7.0  # above the noise floor to start / keep speech
_ABSOLUTE_MIN_DB = -55.0  # nothing quieter than this is speech, whatever the floor
_HANGOVER_FRAMES = 8  # 320 ms: pauses between words stay "speaking"
# The floor follows falling noise at once and rising noise slowly (3.75 dB/s, or 1.25 dB/s during speech, so a fan
# switched on is taken for speech for seconds, not for ever).
_FLOOR_RISE_DB_PER_FRAME = 0.15
_FLOOR_RISE_SPEAKING_DB_PER_FRAME = 0.05
# Minimum statistics: the floor is never more than _MIN_BIAS_DB below the quietest frame of the last 2.4 s. Speech
# has quieter frames than its vowels within that time; steady noise has not, so a fan is noise within 2.4 s.
_MIN_WINDOW_FRAMES = 60
_MIN_BIAS_DB = 3.0
_HEARD_FRACTION = 0.5  # a frame with less audio than this (the rest filled-in silence) is not listened to


def frame_level_db(frame: np.ndarray) -> float:
    """RMS level of one frame in dBFS (full scale 1.0)."""
    rms = float(np.sqrt(np.mean(np.square(frame, dtype=np.float64)))) if len(frame) else 0.0
    return max(20.0 * np.log10(rms + 1e-12), _FLOOR_DB)


class VoiceActivity:
    """Feed one 640-sample frame at a time; each call returns the activity of that frame in [0, 1]."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget the noise floor and the speaking state (a new stream)."""
        self.noise_floor_db: float | None = None  # the first frame's level; any pause lowers it at once
        self.speaking = False
        self._hangover = 0
        self._recent_db: deque[float] = deque(maxlen=_MIN_WINDOW_FRAMES)

    def update(self, frame: np.ndarray, heard: np.ndarray | None = None) -> float:
        """Return the voice activity of ``frame``: 0 silent, 1 clearly speaking, in between near the threshold.

        ``heard`` marks the samples that came from the stream (None: all); a frame mostly filled in with silence is
        silent and teaches the noise floor nothing.
        """
        if heard is not None and heard.mean() < _HEARD_FRACTION:
            self.speaking, self._hangover = False, 0
            return 0.0
        level = frame_level_db(frame if heard is None else frame[heard])
        self._recent_db.append(level)
        rise = _FLOOR_RISE_SPEAKING_DB_PER_FRAME if self.speaking else _FLOOR_RISE_DB_PER_FRAME
        floor = level if self.noise_floor_db is None else self.noise_floor_db
        self.noise_floor_db = max(min(level, floor + rise), min(self._recent_db) - _MIN_BIAS_DB)
        margin = level - self.noise_floor_db
        loud_enough = level > _ABSOLUTE_MIN_DB
        if loud_enough and margin > (_OFF_DB if self.speaking else _ON_DB):
            self.speaking, self._hangover = True, _HANGOVER_FRAMES
        elif self._hangover > 0:
            self._hangover -= 1
        else:
            self.speaking = False
        if not self.speaking:
            return 0.0
        return float(np.clip((margin - _OFF_DB) / (_ON_DB - _OFF_DB), 0.5, 1.0)) if loud_enough else 0.5


def voice_activity(audio: np.ndarray) -> np.ndarray:
    """Activity (num_frames,) of a whole 16 kHz clip, frame by frame as the streaming detector sees it."""
    detector = VoiceActivity()
    num_frames = len(audio) // FRAME_SAMPLES
    return np.array([detector.update(audio[i * FRAME_SAMPLES:(i + 1) * FRAME_SAMPLES])
                     for i in range(num_frames)], np.float32)
