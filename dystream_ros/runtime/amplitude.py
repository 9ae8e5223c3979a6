"""The baseline every learned face must beat: a jaw that opens with the loudness of the robot's own voice.

This is what cheap robots ship (an RMS meter on the TTS output drives the mouth). It has no lookahead, ignores the
partner, never blinks or nods, and keeps the head still. It is a :class:`~dystream_ros.runtime.frames.Generator`,
so the node, the evaluation and the benchmarks run it through the same pipeline as the model.
"""
from __future__ import annotations

import numpy as np

from dystream_ros.face.motion import MOTION_NAMES, index_of, neutral_motion
from dystream_ros.runtime.frames import MotionFrame, check_step_audio, stream_clip
from dystream_ros.units import SAMPLES_PER_FRAME

_QUIET_DB, _LOUD_DB = -50.0, -15.0  # levels that map to a closed and a fully open jaw
_MAX_JAW = 0.6
_SMOOTHING = 0.5  # one-pole smoothing of the jaw from frame to frame


class AmplitudeGenerator:
    """Self-voice RMS of each frame's 640 samples -> jawOpen."""

    lookahead_ms = 0
    motion_space = 'face'
    motion_names = MOTION_NAMES
    providers = ['numpy']

    def __init__(self) -> None:
        self._jaw = index_of('jawOpen')
        self.stage_ms: dict[str, float] = {}  # nothing worth timing apart: the engine times the whole step
        self.reset()

    def reset(self, first_frame: int = 0) -> None:  # noqa: ARG002 (every frame is computed from its own audio)
        """Start a new stream: the jaw closed."""
        self._level = 0.0

    def shed(self, light: bool) -> bool:  # noqa: ARG002
        """Nothing to shed: a frame is one RMS."""
        return False

    def input_start(self, frame: int) -> int:
        """The frame's own samples, nothing before or after."""
        return frame * SAMPLES_PER_FRAME

    def step(self, frame: int, self_audio: np.ndarray, partner_audio: np.ndarray) -> MotionFrame:
        """The jaw of ``frame`` from its 640 samples of the robot's voice (the partner is not listened to)."""
        check_step_audio(self, frame, self_audio, 'self')
        check_step_audio(self, frame, partner_audio, 'partner')
        level_db = 20 * np.log10(np.sqrt(np.mean(self_audio.astype(np.float64) ** 2)) + 1e-9)
        target = _MAX_JAW * float(np.clip((level_db - _QUIET_DB) / (_LOUD_DB - _QUIET_DB), 0.0, 1.0))
        self._level = _SMOOTHING * self._level + (1 - _SMOOTHING) * target
        motion = neutral_motion()
        motion[self._jaw] = self._level
        return MotionFrame(frame, motion)

    def generate(self, self_audio: np.ndarray, partner_audio: np.ndarray | None = None) -> np.ndarray:
        """Offline: motion (T, 58) for whole clips."""
        frames = [frame.motion for frame in stream_clip(self, self_audio, partner_audio)]
        return np.stack(frames) if frames else neutral_motion(0)
