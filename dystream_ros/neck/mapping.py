"""Neck: head pose of the avatar -> neck joint positions that never break the joints' limits.

Each joint follows one rotation axis of the head pose (``pitch``, ``yaw`` or ``roll``, radians in the head frame of
:mod:`dystream_ros.face.motion`) times a gain (its sign maps the avatar's convention onto the joint's), plus an
offset. The target is low-pass filtered, then the joint moves towards it under three limits that hold for every
output, whatever the input (NaN, infinities, huge angles, odd time steps):

* position: ``min_rad <= q <= max_rad``;
* velocity: ``|q_k - q_(k-1)| / dt <= max_velocity_rad_s``;
* acceleration: ``|v_k - v_(k-1)| / dt <= max_acceleration_rad_s2``, with v the velocity of the last step.

The acceleration limit is kept near the position limits by braking in time: a step's velocity v is only allowed
if ``q + v dt + v^2 / (2 a)`` stays within the limits, which guarantees that the joint can always stop before a
limit (decelerating at ``a`` each step covers at most ``v^2 / (2 a)``), so there is always an admissible step.

Defaults are PAL robots' joint names (TIAGo, ARI: ``head_1_joint`` turns the head, ``head_2_joint`` tilts it)
with conservative limits; set them from your robot's URDF. ``head_2_joint`` gets gain -1 because on those robots
a positive tilt looks up, while a positive head pitch looks down.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from dystream_ros.errors import ConfigError, StreamError
from dystream_ros.face.motion import MOTION_DIM, ROTATION

AXES = ('pitch', 'yaw', 'roll')  # the order of the rotation in a motion frame
MIN_DT_S = 1e-4  # shorter steps hold the command: a position cannot resolve the motion of a vanishing step


@dataclass(frozen=True)
class NeckJoint:
    """One neck joint and the head rotation axis it follows."""

    name: str
    axis: str  # 'pitch', 'yaw' or 'roll'
    gain: float = 1.0  # joint angle per radian of head rotation; negative flips the direction
    offset_rad: float = 0.0  # joint angle for the head at rest
    min_rad: float = -1.0
    max_rad: float = 1.0
    max_velocity_rad_s: float = 1.5
    max_acceleration_rad_s2: float = 6.0

    def __post_init__(self) -> None:
        numbers = (self.gain, self.offset_rad, self.min_rad, self.max_rad, self.max_velocity_rad_s,
                   self.max_acceleration_rad_s2)
        if self.axis not in AXES:
            msg = f'neck joint {self.name!r}: axis must be one of {AXES}, got {self.axis!r}'
            raise ConfigError(msg)
        if not all(math.isfinite(v) for v in numbers):
            msg = f'neck joint {self.name!r}: all numbers must be finite, got {numbers}'
            raise ConfigError(msg)
        if not self.min_rad < self.max_rad or self.max_velocity_rad_s <= 0 or self.max_acceleration_rad_s2 <= 0:
            msg = (f'neck joint {self.name!r}: need min_rad < max_rad and positive velocity and acceleration limits, '
                   f'got [{self.min_rad}, {self.max_rad}], {self.max_velocity_rad_s}, {self.max_acceleration_rad_s2}')
            raise ConfigError(msg)


def _pal_head() -> tuple[NeckJoint, ...]:
    return (
        NeckJoint('head_1_joint', 'yaw', gain=1.0, min_rad=-1.2, max_rad=1.2),
        NeckJoint('head_2_joint', 'pitch', gain=-1.0, min_rad=-0.9, max_rad=0.7),
    )


@dataclass(frozen=True)
class NeckConfig:
    """The neck's joints and the smoothing of their targets."""

    joints: tuple[NeckJoint, ...] = field(default_factory=_pal_head)
    smoothing_s: float = 0.12  # time constant of the low-pass on the targets; 0 disables it
    max_dt_s: float = 0.2  # longer steps (a stall) count as this long, so a pause never allows a jump

    def __post_init__(self) -> None:
        names = [j.name for j in self.joints]
        if not names or len(set(names)) != len(names):
            msg = f'the neck needs at least one joint and unique joint names, got {names}'
            raise ConfigError(msg)
        if not (math.isfinite(self.smoothing_s) and self.smoothing_s >= 0) or not (
                math.isfinite(self.max_dt_s) and self.max_dt_s > 0):
            msg = f'smoothing_s must be >= 0 and max_dt_s > 0, got {self.smoothing_s} and {self.max_dt_s}'
            raise ConfigError(msg)

    @classmethod
    def from_lists(cls, names: Sequence[str], axes: Sequence[str], gains: Sequence[float],
                   offsets_rad: Sequence[float], min_rad: Sequence[float], max_rad: Sequence[float],
                   max_velocity_rad_s: Sequence[float], max_acceleration_rad_s2: Sequence[float],
                   smoothing_s: float = 0.12) -> NeckConfig:
        """Build the config from parallel lists, one entry per joint (the shape of ROS array parameters)."""
        columns = (names, axes, gains, offsets_rad, min_rad, max_rad, max_velocity_rad_s, max_acceleration_rad_s2)
        if len({len(c) for c in columns}) != 1:
            msg = f'neck parameter lists must have the same length, got {[len(c) for c in columns]}'
            raise ConfigError(msg)
        joints = tuple(NeckJoint(str(n), str(a), float(g), float(o), float(lo), float(hi), float(v), float(acc))
                       for n, a, g, o, lo, hi, v, acc in zip(*columns))
        return cls(joints, smoothing_s)


@dataclass(frozen=True)
class NeckCommand:
    """The joint command of one step."""

    names: tuple[str, ...]
    positions: np.ndarray  # (J,) rad, within the position limits
    velocities: np.ndarray  # (J,) rad/s, the velocity of this step
    input_ok: bool  # False when the pose or dt was not finite (the last good pose was used)


class NeckMapper:
    """Maps head pose to neck joint positions, one :meth:`step` per motion frame (see the module docstring)."""

    def __init__(self, config: NeckConfig | None = None) -> None:
        self.config = config or NeckConfig()
        joints = self.config.joints
        self.names = tuple(j.name for j in joints)
        self._axis = np.array([AXES.index(j.axis) for j in joints])
        self._gain = np.array([j.gain for j in joints])
        self._offset = np.array([j.offset_rad for j in joints])
        self._lo = np.array([j.min_rad for j in joints])
        self._hi = np.array([j.max_rad for j in joints])
        self._vmax = np.array([j.max_velocity_rad_s for j in joints])
        self._amax = np.array([j.max_acceleration_rad_s2 for j in joints])
        self.rejected_inputs = 0  # steps whose pose or dt was not finite
        self.reset()

    def reset(self, start_rad: np.ndarray | Sequence[float] | None = None) -> None:
        """Stand still at ``start_rad`` (J,), by default at rest (the offsets); clipped to the limits.

        A mapper that replaces another (new limits or gains at run time) starts where the joints are.
        """
        start = self._offset if start_rad is None else np.asarray(start_rad, np.float64)
        self._position = np.clip(start, self._lo, self._hi)
        self._velocity = np.zeros_like(self._position)
        self._target = self._position.copy()
        self._pose = np.zeros(3)

    @property
    def positions(self) -> np.ndarray:
        """The last commanded joint positions (J,), radians."""
        return self._position.copy()

    def step(self, pose: np.ndarray | Sequence[float], dt_s: float) -> NeckCommand:
        """Advance by ``dt_s`` seconds towards the neck pose for ``pose`` and return the command.

        Args:
            pose: head rotation (pitch, yaw, roll) in radians, or a whole (58,) motion frame.
            dt_s: time since the previous step, seconds. A non-finite value or one below ``MIN_DT_S`` moves nothing.

        Raises:
            StreamError: if ``pose`` has neither 3 nor 58 entries.
        """
        pose = np.asarray(pose, np.float64).reshape(-1)
        if pose.shape[0] == MOTION_DIM:
            pose = pose[ROTATION]
        elif pose.shape[0] != 3:
            msg = f'pose must be (pitch, yaw, roll) or a ({MOTION_DIM},) motion frame, got {pose.shape[0]} values'
            raise StreamError(msg)
        input_ok = bool(np.all(np.isfinite(pose))) and math.isfinite(dt_s)
        if np.all(np.isfinite(pose)):
            self._pose = pose  # NaN or inf keeps the last good pose
        if not input_ok:
            self.rejected_inputs += 1
        if not (math.isfinite(dt_s) and dt_s >= MIN_DT_S):  # no (measurable) time passes: hold the command
            return NeckCommand(self.names, self._position.copy(), self._velocity.copy(), input_ok)
        dt = min(float(dt_s), self.config.max_dt_s)
        with np.errstate(over='ignore', invalid='ignore'):
            raw = self._offset + self._gain * self._pose[self._axis]
        raw = np.clip(np.nan_to_num(raw, nan=0.0), self._lo, self._hi)
        tau = self.config.smoothing_s
        alpha = 1.0 if tau == 0.0 else 1.0 - math.exp(-dt / tau)
        self._target = self._target + alpha * (raw - self._target)

        p, v, a = self._position, self._velocity, self._amax
        # Largest speeds towards each limit from which the joint can still brake in time (see module docstring).
        room_hi = np.maximum(self._hi - p, 0.0)
        room_lo = np.maximum(p - self._lo, 0.0)
        brake_hi = a * (np.sqrt(dt * dt + 2.0 * room_hi / a) - dt)
        brake_lo = -a * (np.sqrt(dt * dt + 2.0 * room_lo / a) - dt)
        v_lo = np.maximum.reduce([v - a * dt, -self._vmax, brake_lo])
        v_hi = np.minimum.reduce([v + a * dt, self._vmax, brake_hi])
        wanted = (self._target - p) / dt
        v_new = np.minimum(np.maximum(wanted, v_lo), v_hi)
        p_new = np.clip(p + v_new * dt, self._lo, self._hi)
        self._velocity = (p_new - p) / dt
        self._position = p_new
        return NeckCommand(self.names, p_new.copy(), self._velocity.copy(), input_ok)
