"""The neck mapper: commands stay within position, velocity and acceleration limits whatever the input."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dystream_ros.errors import ConfigError, StreamError
from dystream_ros.face.motion import motion_frame
from dystream_ros.neck.mapping import MIN_DT_S, NeckConfig, NeckJoint, NeckMapper

wild = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.floats(-4.0, 4.0), st.just(0.0))
wild_dt = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.floats(1e-4, 0.1), st.just(0.0),
                    st.just(1e-300), st.just(1e6))


@st.composite
def neck_configs(draw):
    joints = []
    for i, axis in enumerate(draw(st.lists(st.sampled_from(['pitch', 'yaw', 'roll']), min_size=1, max_size=3))):
        lo = draw(st.floats(-3.0, 0.5))
        hi = lo + draw(st.floats(0.01, 3.0))
        joints.append(NeckJoint(f'j{i}', axis, gain=draw(st.floats(-2.0, 2.0)), offset_rad=draw(st.floats(-4.0, 4.0)),
                                min_rad=lo, max_rad=hi, max_velocity_rad_s=draw(st.floats(0.01, 10.0)),
                                max_acceleration_rad_s2=draw(st.floats(0.01, 100.0))))
    return NeckConfig(tuple(joints), smoothing_s=draw(st.floats(0.0, 1.0)), max_dt_s=draw(st.floats(0.01, 0.5)))


@settings(max_examples=300, deadline=None)
@given(neck_configs(), st.lists(st.tuples(st.tuples(wild, wild, wild), wild_dt), min_size=1, max_size=60))
def test_commands_never_exceed_a_limit(config, steps):
    neck = NeckMapper(config)
    lo = np.array([j.min_rad for j in config.joints])
    hi = np.array([j.max_rad for j in config.joints])
    vmax = np.array([j.max_velocity_rad_s for j in config.joints])
    amax = np.array([j.max_acceleration_rad_s2 for j in config.joints])
    position, velocity = neck.positions, np.zeros(len(lo))
    assert np.all((position >= lo) & (position <= hi))
    for pose, dt in steps:
        command = neck.step(pose, dt)
        p = command.positions
        assert np.all(np.isfinite(p)) and np.all((p >= lo) & (p <= hi))
        if not (math.isfinite(dt) and dt >= MIN_DT_S):  # no time passed: the command holds
            assert np.array_equal(p, position)
            assert command.input_ok == (math.isfinite(dt) and bool(np.all(np.isfinite(pose))))
            continue
        dt_eff = min(dt, config.max_dt_s)
        v = (p - position) / dt_eff
        assert np.all(np.abs(v) <= vmax * (1 + 1e-9) + 1e-12)
        assert np.all(np.abs(v - velocity) <= amax * dt_eff * (1 + 1e-6) + 1e-9)
        assert command.input_ok == bool(np.all(np.isfinite(pose)))
        position, velocity = p, v


def test_reaches_the_target_and_maps_axes_with_gain_and_offset():
    joints = (NeckJoint('turn', 'yaw', gain=1.0, min_rad=-1.0, max_rad=1.0),
              NeckJoint('tilt', 'pitch', gain=-0.5, offset_rad=0.1, min_rad=-1.0, max_rad=1.0))
    neck = NeckMapper(NeckConfig(joints, smoothing_s=0.1))
    for _ in range(200):
        command = neck.step(motion_frame(headYaw=0.4, headPitch=0.2), 0.04)
    assert command.names == ('turn', 'tilt')
    assert command.positions == pytest.approx([0.4, 0.1 - 0.5 * 0.2], abs=1e-3)
    for _ in range(200):
        command = neck.step([0.0, 5.0, 0.0], 0.04)  # far beyond the limit
    assert command.positions[0] == pytest.approx(1.0, abs=1e-6)


def test_nan_pose_holds_the_last_good_pose_and_is_reported():
    neck = NeckMapper()
    for _ in range(100):
        neck.step([0.0, 0.5, 0.0], 0.04)
    settled = neck.positions
    command = neck.step([np.nan, np.inf, 0.0], 0.04)
    assert not command.input_ok and neck.rejected_inputs == 1
    assert command.positions == pytest.approx(settled, abs=1e-3)


def test_pal_defaults_and_reset():
    neck = NeckMapper()
    assert neck.names == ('head_1_joint', 'head_2_joint')
    for _ in range(50):
        neck.step([0.3, 0.3, 0.0], 0.04)
    assert neck.positions[1] < 0  # head pitch down -> head_2_joint negative (PAL: positive looks up)
    neck.reset()
    assert np.array_equal(neck.positions, np.zeros(2))


def test_config_validation_and_lists():
    with pytest.raises(ConfigError, match='axis'):
        NeckJoint('a', 'twist')
    with pytest.raises(ConfigError, match='min_rad < max_rad'):
        NeckJoint('a', 'yaw', min_rad=1.0, max_rad=0.0)
    with pytest.raises(ConfigError, match='finite'):
        NeckJoint('a', 'yaw', gain=float('nan'))
    with pytest.raises(ConfigError, match='unique'):
        NeckConfig((NeckJoint('a', 'yaw'), NeckJoint('a', 'pitch')))
    with pytest.raises(ConfigError, match='same length'):
        NeckConfig.from_lists(['a'], ['yaw', 'pitch'], [1.0], [0.0], [-1.0], [1.0], [1.0], [1.0])
    config = NeckConfig.from_lists(['a', 'b'], ['yaw', 'roll'], [1.0, -1.0], [0.0, 0.1], [-1.0, -0.5], [1.0, 0.5],
                                   [2.0, 1.0], [5.0, 4.0], smoothing_s=0.0)
    assert config.joints[1] == NeckJoint('b', 'roll', -1.0, 0.1, -0.5, 0.5, 1.0, 4.0)
    with pytest.raises(StreamError, match='pitch, yaw, roll'):
        NeckMapper(config).step(np.zeros(5), 0.04)
