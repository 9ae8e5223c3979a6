"""Looking at someone: a gaze target turns the eyes first and the head after, with the generated motion on top.

A target is a point in the head frame of :mod:`dystream_ros.face.motion` (x forward, y to the avatar's left, z up,
metres). Its direction sets a desired turn (yaw to the left, pitch down for a point below). The eyes get there
fast (``eye_time_s``) and the head follows more slowly (``head_time_s``) until it carries ``head_share`` of the
turn; as the head arrives the eyes come back towards the centre, as a person's do. The head's part stays within
``max_yaw_rad`` / ``max_pitch_rad`` (the neck's own limits still apply downstream), and the eyes take what the
head cannot, up to ``eye_range_rad``.

Each frame the generated motion is kept and the gaze is added to it: the head rotation, and the eye blendshapes
(``eyeLookOut``/``In`` for left-right, ``eyeLookUp``/``Down`` for up-down, one weight per ``eye_range_rad``), so
speech nods, glances and blinks still show. A target that is not refreshed for ``lost_after_s`` is lost, and the
face eases back to the generated gaze alone (``release_time_s``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dystream_ros.errors import ConfigError
from dystream_ros.face.motion import BLENDSHAPES, INDEX, neutral_motion, rpy_to_matrix
from dystream_ros.units import FPS, NS_PER_S

_PITCH, _YAW = INDEX['headPitch'], INDEX['headYaw']
MIN_DISTANCE_M = 0.05  # a target closer to the head than this gives no direction


@dataclass(frozen=True)
class GazeConfig:
    """How the eyes and the head turn to a target."""

    eye_range_rad: float = 0.35  # eye turn at a full eyeLook weight (about 20 degrees)
    head_share: float = 0.7  # part of the turn that the head carries once it has arrived
    eye_time_s: float = 0.05  # time constant of the eyes (they lead)
    head_time_s: float = 0.35  # time constant of the head (it follows)
    max_yaw_rad: float = 0.8  # the head's part of the turn, left and right
    max_pitch_rad: float = 0.4  # the head's part of the turn, up and down
    lost_after_s: float = 1.0  # a target not refreshed this long is lost
    release_time_s: float = 0.6  # time constant of the ease back to the generated gaze

    def __post_init__(self) -> None:
        values = (self.eye_range_rad, self.eye_time_s, self.head_time_s, self.max_yaw_rad, self.max_pitch_rad,
                  self.lost_after_s, self.release_time_s)
        if not all(math.isfinite(v) and v > 0 for v in values) or not 0.0 <= self.head_share <= 1.0:
            msg = f'gaze: times, ranges and limits must be positive and head_share in [0, 1], got {self}'
            raise ConfigError(msg)


def camera_point_in_head(point: tuple[float, float, float], camera_pose: list[float]) -> np.ndarray:
    """A point in a camera frame -> the head frame, the camera at ``camera_pose`` (x, y, z in metres, roll, pitch, yaw
    in radians, ROS fixed-axis) in the head frame."""
    x, y, z, roll, pitch, yaw = camera_pose
    return rpy_to_matrix(roll, pitch, yaw) @ np.asarray(point, float) + np.array([x, y, z])


class GazeController:
    """Adds the turn towards a target to each generated frame (see the module docstring). Plain Python: the node
    feeds it targets, the engine applies it to every frame in order."""

    def __init__(self, config: GazeConfig | None = None) -> None:
        self.config = config or GazeConfig()
        self._target: np.ndarray | None = None  # desired (yaw, pitch), radians
        self._target_ns = 0
        self.head = np.zeros(2)  # the head's part of the turn now: yaw, pitch
        self.eyes = np.zeros(2)  # the eyes' part of the turn now: yaw, pitch

    def set_target(self, point: np.ndarray, now_ns: int) -> bool:
        """Look at ``point`` (x, y, z in the head frame, metres) from ``now_ns`` on; False (and ignored) if it is
        not a finite point away from the head."""
        x, y, z = (float(v) for v in np.asarray(point, float).reshape(3))
        distance = math.sqrt(x * x + y * y + z * z)
        if not math.isfinite(distance) or distance < MIN_DISTANCE_M:
            return False
        self._target = np.array([math.atan2(y, x), math.atan2(-z, math.hypot(x, y))])
        self._target_ns = now_ns
        return True

    def looking(self, now_ns: int) -> bool:
        """Whether a target is held (set and refreshed within ``lost_after_s``)."""
        return self._target is not None and now_ns - self._target_ns <= self.config.lost_after_s * NS_PER_S

    def apply(self, motion: np.ndarray, now_ns: int, dt_s: float) -> np.ndarray:
        """Advance the eyes and the head by ``dt_s`` and return a copy of ``motion`` with the gaze added."""
        config = self.config
        limits = np.array([config.max_yaw_rad, config.max_pitch_rad])
        if self.looking(now_ns):
            assert self._target is not None
            head_goal = np.clip(config.head_share * self._target, -limits, limits)
            self.head += (head_goal - self.head) * (1.0 - math.exp(-dt_s / config.head_time_s))
            eye_goal = np.clip(self._target - self.head, -config.eye_range_rad, config.eye_range_rad)
            self.eyes += (eye_goal - self.eyes) * (1.0 - math.exp(-dt_s / config.eye_time_s))
        else:
            release = 1.0 - math.exp(-dt_s / config.release_time_s)
            self.head -= self.head * release
            self.eyes -= self.eyes * release
        out = np.array(motion, np.float32, copy=True)
        out[_YAW] += self.head[0]
        out[_PITCH] += self.head[1]
        yaw, pitch = self.eyes / config.eye_range_rad
        left, right = max(yaw, 0.0), max(-yaw, 0.0)  # towards the avatar's left / right
        for name, weight in (('eyeLookOutLeft', left), ('eyeLookInRight', left), ('eyeLookInLeft', right),
                             ('eyeLookOutRight', right), ('eyeLookDownLeft', max(pitch, 0.0)),
                             ('eyeLookDownRight', max(pitch, 0.0)), ('eyeLookUpLeft', max(-pitch, 0.0)),
                             ('eyeLookUpRight', max(-pitch, 0.0))):
            out[INDEX[name]] += weight
        out[BLENDSHAPES] = np.clip(out[BLENDSHAPES], 0.0, 1.0)
        return out


def gaze_frames(seconds: float = 4.0, count: int = 12) -> list[tuple[str, np.ndarray]]:
    """``count`` frames of a neutral face looking at a person who walks from 1.5 m to its left to 1.5 m to its right,
    1.5 m in front of it, in ``seconds``, labelled with the person's direction: the pictures of the README."""
    gaze, frames = GazeController(), []
    total = round(seconds * FPS)
    shown = set(np.linspace(0, total - 1, count).astype(int).tolist())
    for frame in range(total):
        side = 1.5 - 3.0 * frame / (total - 1)
        now_ns = frame * NS_PER_S // FPS
        gaze.set_target(np.array([1.5, side, 0.0]), now_ns)
        motion = gaze.apply(neutral_motion(), now_ns, 1.0 / FPS)
        if frame in shown:
            frames.append((f'person at {np.degrees(np.arctan2(side, 1.5)):+.0f} deg', motion))
    return frames
