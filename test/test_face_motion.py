"""The motion space: layout, named access, rotation conventions and normalisation statistics."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dystream_ros.errors import DataError
from dystream_ros.face import motion as fm


def test_layout_is_52_arkit_blendshapes_then_rotation_then_translation():
    assert fm.MOTION_DIM == 58 and len(set(fm.MOTION_NAMES)) == 58
    assert fm.BLENDSHAPE_NAMES[-1] == 'tongueOut' and len(fm.BLENDSHAPE_NAMES) == 52
    assert fm.MOTION_NAMES[fm.ROTATION] == ('headPitch', 'headYaw', 'headRoll')
    assert fm.MOTION_NAMES[fm.TRANSLATION] == ('headX', 'headY', 'headZ')


def test_blendshape_order_is_mediapipes_without_neutral():
    from mediapipe.tasks.python.vision.face_landmarker import Blendshapes

    def camel(enum_name: str) -> str:
        head, *rest = enum_name.lower().split('_')
        return head + ''.join(word.capitalize() for word in rest)

    mediapipe_names = [camel(b.name) for b in sorted(Blendshapes, key=int) if b.name != 'NEUTRAL']
    assert tuple(mediapipe_names) == fm.MEDIAPIPE_BLENDSHAPE_NAMES


def test_named_access_reads_and_writes_frames_and_sequences():
    frame = fm.motion_frame(jawOpen=0.5, headYaw=0.2)
    assert frame.shape == (58,) and frame.dtype == np.float32
    assert fm.get_values(frame, 'jawOpen', 'headYaw') == pytest.approx([0.5, 0.2])
    seq = fm.neutral_motion(4)
    fm.set_values(seq, eyeBlinkLeft=np.array([0.0, 0.3, 0.6, 1.0]))
    assert fm.get_values(seq, 'eyeBlinkLeft')[:, 0] == pytest.approx([0.0, 0.3, 0.6, 1.0])
    assert np.count_nonzero(seq) == 3


def test_unknown_name_raises_key_error():
    with pytest.raises(KeyError, match='not a motion dimension'):
        fm.index_of('jawOpenn')


def test_check_motion_rejects_wrong_width():
    with pytest.raises(DataError, match='58'):
        fm.check_motion(np.zeros((3, 57)))


angles = st.floats(-1.4, 1.4, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(angles, angles, angles)
def test_rpy_matrix_and_quaternion_round_trip(roll, pitch, yaw):
    r = fm.rpy_to_matrix(roll, pitch, yaw)
    assert r @ r.T == pytest.approx(np.eye(3), abs=1e-12)
    assert fm.matrix_to_rpy(r) == pytest.approx((roll, pitch, yaw), abs=1e-9)
    q = fm.rpy_to_quaternion(roll, pitch, yaw)
    assert np.linalg.norm(q) == pytest.approx(1.0)
    assert fm.quaternion_to_rpy(q) == pytest.approx((roll, pitch, yaw), abs=1e-9)
    x, y, z, w = q  # the quaternion rotates vectors like the matrix
    qm = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                   [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                   [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
    assert qm == pytest.approx(r, abs=1e-12)


def test_sign_conventions_of_the_head_frame():
    forward, left = np.array([1.0, 0, 0]), np.array([0, 1.0, 0])
    assert (fm.rpy_to_matrix(0, 0.3, 0) @ forward)[2] < 0  # positive pitch: nose down
    assert (fm.rpy_to_matrix(0, 0, 0.3) @ forward)[1] > 0  # positive yaw: face turns to its left
    assert (fm.rpy_to_matrix(0.3, 0, 0) @ left)[2] > 0  # positive roll: left ear up


def _mp_matrix(rotation: np.ndarray, translation_cm: np.ndarray) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3], m[:3, 3] = rotation, translation_cm
    return m


def test_pose_from_mediapipe_matrix():
    a = 0.25
    turn_left = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])  # nose to camera +x
    pose = fm.pose_from_mediapipe(_mp_matrix(turn_left, np.array([5.0, 2.0, -70.0])))
    pitch, yaw, roll, x, y, z = pose
    assert (pitch, roll) == pytest.approx((0.0, 0.0), abs=1e-9)
    assert yaw == pytest.approx(a)  # the subject's left is the camera's +x
    assert (x, y, z) == pytest.approx((-0.70, 0.05, 0.02))
    nod = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])  # face normal tips down
    assert fm.pose_from_mediapipe(_mp_matrix(nod, np.zeros(3)))[0] == pytest.approx(a)


def test_head_quaternion_of_a_frame():
    frame = fm.motion_frame(headYaw=0.4)
    assert fm.head_quaternion(frame) == pytest.approx([0, 0, np.sin(0.2), np.cos(0.2)])
