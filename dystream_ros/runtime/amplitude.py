"""The baseline every learned face must beat: a jaw that opens with the loudness of the robot's own voice.

This is what cheap robots ship (an RMS meter on the TTS output drives the mouth). It has no lookahead, ignores the
partner, never blinks or nods, and keeps the head still. It has the generator interface of
``StreamingGenerator`` so the node, the evaluation and the benchmarks can run it through the same pipeline.
"""
from __future__ import annotations

import numpy as np

from dystream_ros.face.motion import MOTION_NAMES, index_of, neutral_motion
from dystream_ros.model.streaming import MotionFrame

_QUIET_DB, _LOUD_DB = -50.0, -15.0  # levels that map to a closed and a fully open jaw
_MAX_JAW = 0.6
_SMOOTHING = 0.5  # one-pole smoothing of the jaw from frame to frame


class AmplitudeGenerator:
    """Self-voice RMS -> jawOpen, one frame per 640 samples of each stream, final as soon as they arrive."""

    samples_per_frame = 640
    lookahead_samples = 0
    motion_names = MOTION_NAMES
    providers = ['numpy']
    stage_ms: dict[str, float] = {}  # nothing worth timing apart: the engine times the whole pull

    def __init__(self) -> None:
        self._jaw = index_of('jawOpen')
        self.reset()

    def reset(self, anchor: np.ndarray | None = None, seed: int | None = None) -> None:  # noqa: ARG002
        """Start a new stream (the anchor and seed of the learned model mean nothing here)."""
        self._self_audio = np.zeros(0, np.float32)
        self._partner_samples = 0
        self._frames = 0
        self._level = 0.0

    def push_self(self, samples: np.ndarray) -> None:
        """Append samples of the robot's own voice."""
        self._self_audio = np.concatenate([self._self_audio, np.asarray(samples, np.float32)])

    def push_partner(self, samples: np.ndarray) -> None:
        """The partner's voice only paces the frames: this baseline does not listen."""
        self._partner_samples += len(samples)

    def pull(self) -> list[MotionFrame]:
        """Every frame for which both streams have their 640 samples."""
        frames = []
        n = self.samples_per_frame
        while len(self._self_audio) >= n and self._partner_samples >= (self._frames + 1) * n:
            chunk, self._self_audio = self._self_audio[:n], self._self_audio[n:]
            level_db = 20 * np.log10(np.sqrt(np.mean(chunk.astype(np.float64) ** 2)) + 1e-9)
            target = _MAX_JAW * float(np.clip((level_db - _QUIET_DB) / (_LOUD_DB - _QUIET_DB), 0.0, 1.0))
            self._level = _SMOOTHING * self._level + (1 - _SMOOTHING) * target
            motion = neutral_motion()
            motion[self._jaw] = self._level
            frames.append(MotionFrame(self._frames, motion, self._frames * n, (self._frames + 1) * n))
            self._frames += 1
        return frames

    def generate(self, self_audio: np.ndarray, partner_audio: np.ndarray | None = None) -> np.ndarray:
        """Offline: motion (T, 58) for whole clips."""
        self.reset()
        self.push_self(self_audio)
        self.push_partner(np.zeros(len(self_audio)) if partner_audio is None else partner_audio)
        frames = self.pull()
        return np.stack([f.motion for f in frames]) if frames else neutral_motion(0)
