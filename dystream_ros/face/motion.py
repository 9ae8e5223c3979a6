"""The motion space: one frame of face motion as a (58,) float32 vector, the single source of truth for its layout.

Layout (``MOTION_NAMES``)::

    [0:52]   the 52 ARKit blendshape weights in [0, 1]: MediaPipe FaceLandmarker's 51 (its order, without its
             ``_neutral`` entry) followed by ARKit's ``tongueOut``, which MediaPipe does not estimate (always 0
             from the tracker; the renderers draw it)
    [52:55]  head rotation: headPitch, headYaw, headRoll in radians
    [55:58]  head translation: headX, headY, headZ in metres

Head pose is expressed in the avatar's head frame at rest, as in ROS (REP 103) and ``FaceMotion.msg``: x forward
(out of the face, towards the viewer), y to the avatar's own left, z up. The rotation is
``R = Rz(yaw) @ Ry(pitch) @ Rx(roll)`` (ROS fixed-axis roll-pitch-yaw), so positive pitch tips the nose down,
positive yaw turns the face to the avatar's left (the viewer's right) and positive roll lowers the avatar's right
ear towards its right shoulder. The translation is the offset of the head from its rest position. All zeros is
the neutral face looking straight ahead.

Left/Right in blendshape names are the subject's sides (MediaPipe's and ARKit's convention), so ``eyeBlinkLeft``
closes the eye that appears on the right of an unmirrored image.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from dystream_ros.errors import DataError

# MediaPipe FaceLandmarker blendshape categories 1..51 (category 0, "_neutral", is dropped), in its output order.
MEDIAPIPE_BLENDSHAPE_NAMES: tuple[str, ...] = (
    'browDownLeft', 'browDownRight', 'browInnerUp', 'browOuterUpLeft', 'browOuterUpRight',
    'cheekPuff', 'cheekSquintLeft', 'cheekSquintRight',
    'eyeBlinkLeft', 'eyeBlinkRight', 'eyeLookDownLeft', 'eyeLookDownRight', 'eyeLookInLeft', 'eyeLookInRight',
    'eyeLookOutLeft', 'eyeLookOutRight', 'eyeLookUpLeft', 'eyeLookUpRight', 'eyeSquintLeft', 'eyeSquintRight',
    'eyeWideLeft', 'eyeWideRight',
    'jawForward', 'jawLeft', 'jawOpen', 'jawRight',
    'mouthClose', 'mouthDimpleLeft', 'mouthDimpleRight', 'mouthFrownLeft', 'mouthFrownRight', 'mouthFunnel',
    'mouthLeft', 'mouthLowerDownLeft', 'mouthLowerDownRight', 'mouthPressLeft', 'mouthPressRight', 'mouthPucker',
    'mouthRight', 'mouthRollLower', 'mouthRollUpper', 'mouthShrugLower', 'mouthShrugUpper', 'mouthSmileLeft',
    'mouthSmileRight', 'mouthStretchLeft', 'mouthStretchRight', 'mouthUpperUpLeft', 'mouthUpperUpRight',
    'noseSneerLeft', 'noseSneerRight',
)
BLENDSHAPE_NAMES: tuple[str, ...] = (*MEDIAPIPE_BLENDSHAPE_NAMES, 'tongueOut')  # the 52 ARKit names
ROTATION_NAMES: tuple[str, ...] = ('headPitch', 'headYaw', 'headRoll')  # radians
TRANSLATION_NAMES: tuple[str, ...] = ('headX', 'headY', 'headZ')  # metres
POSE_NAMES: tuple[str, ...] = (*ROTATION_NAMES, *TRANSLATION_NAMES)
MOTION_NAMES: tuple[str, ...] = (*BLENDSHAPE_NAMES, *POSE_NAMES)

NUM_BLENDSHAPES = len(BLENDSHAPE_NAMES)  # 52
MOTION_DIM = len(MOTION_NAMES)  # 58
BLENDSHAPES = slice(0, NUM_BLENDSHAPES)
ROTATION = slice(NUM_BLENDSHAPES, NUM_BLENDSHAPES + 3)
TRANSLATION = slice(NUM_BLENDSHAPES + 3, MOTION_DIM)
POSE = slice(NUM_BLENDSHAPES, MOTION_DIM)
INDEX: Mapping[str, int] = {name: i for i, name in enumerate(MOTION_NAMES)}

# The numbers are in MediaPipe's camera frame (x right, y up, z towards the viewer); the head frame is
# x forward, y left, z up. MEDIAPIPE_TO_HEAD maps the first onto the second (a proper rotation, det +1).
MEDIAPIPE_TO_HEAD = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
CM_PER_M = 100.0


def index_of(name: str) -> int:
    """Return the position of ``name`` in a motion vector; raise KeyError listing a few valid names otherwise."""
    try:
        return INDEX[name]
    except KeyError:
        msg = f'{name!r} is not a motion dimension (e.g. {", ".join(MOTION_NAMES[:3])}, ..., {POSE_NAMES[0]})'
        raise KeyError(msg) from None


def neutral_motion(num_frames: int | None = None) -> np.ndarray:
    """Return the neutral frame (58,), or ``num_frames`` of them (T, 58): no expression, head at rest."""
    shape = (MOTION_DIM,) if num_frames is None else (int(num_frames), MOTION_DIM)
    return np.zeros(shape, np.float32)


def motion_frame(**values: float) -> np.ndarray:
    """Return a neutral frame (58,) with the named dimensions set, e.g. ``motion_frame(jawOpen=0.5, headYaw=0.2)``."""
    frame = neutral_motion()
    for name, value in values.items():
        frame[index_of(name)] = value
    return frame


def get_values(motion: np.ndarray, *names: str) -> np.ndarray:
    """Return the named dimensions of a (58,) frame or (T, 58) sequence, last axis in the order of ``names``."""
    return np.asarray(motion)[..., [index_of(n) for n in names]]


def set_values(motion: np.ndarray, **values: float | np.ndarray) -> np.ndarray:
    """Set named dimensions in place in a (58,) frame or (T, 58) sequence and return it."""
    for name, value in values.items():
        motion[..., index_of(name)] = value
    return motion


def check_motion(motion: np.ndarray) -> np.ndarray:
    """Return ``motion`` as float32 after checking that its last axis is MOTION_DIM long; raise DataError if not."""
    motion = np.asarray(motion, np.float32)
    if motion.ndim not in (1, 2) or motion.shape[-1] != MOTION_DIM:
        msg = f'motion must have shape ({MOTION_DIM},) or (T, {MOTION_DIM}), got {motion.shape}'
        raise DataError(msg)
    return motion


# ----------------------------------------------------------------------------------------------------------------
# Rotations. Angles in radians, quaternions as (x, y, z, w) like geometry_msgs/Quaternion.

def rpy_to_matrix(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """Return the (3, 3) rotation ``Rz(yaw) @ Ry(pitch) @ Rx(roll)``."""
    cr, sr, cp, sp, cy, sy = np.cos(roll), np.sin(roll), np.cos(pitch), np.sin(pitch), np.cos(yaw), np.sin(yaw)
    return np.array([
        [cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
        [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
        [-sp, cp * sr, cp * cr],
    ])


def matrix_to_rpy(rotation: np.ndarray) -> tuple[float, float, float]:
    """Return (roll, pitch, yaw) of a (3, 3) rotation, the inverse of :func:`rpy_to_matrix` for |pitch| < pi/2."""
    r = np.asarray(rotation, float)
    pitch = float(np.arcsin(np.clip(-r[2, 0], -1.0, 1.0)))
    roll = float(np.arctan2(r[2, 1], r[2, 2]))
    yaw = float(np.arctan2(r[1, 0], r[0, 0]))
    return roll, pitch, yaw


def rpy_to_quaternion(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """Return the unit quaternion (x, y, z, w) of ``Rz(yaw) @ Ry(pitch) @ Rx(roll)``."""
    cr, sr = np.cos(roll / 2), np.sin(roll / 2)
    cp, sp = np.cos(pitch / 2), np.sin(pitch / 2)
    cy, sy = np.cos(yaw / 2), np.sin(yaw / 2)
    return np.array([
        sr * cp * cy - cr * sp * sy,
        cr * sp * cy + sr * cp * sy,
        cr * cp * sy - sr * sp * cy,
        cr * cp * cy + sr * sp * sy,
    ])


def quaternion_to_rpy(quaternion: np.ndarray) -> tuple[float, float, float]:
    """Return (roll, pitch, yaw) of a quaternion (x, y, z, w); it need not be normalised."""
    x, y, z, w = np.asarray(quaternion, float) / np.linalg.norm(quaternion)
    roll = float(np.arctan2(2 * (w * x + y * z), 1 - 2 * (x * x + y * y)))
    pitch = float(np.arcsin(np.clip(2 * (w * y - z * x), -1.0, 1.0)))
    yaw = float(np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z)))
    return roll, pitch, yaw


def head_quaternion(motion: np.ndarray) -> np.ndarray:
    """Return the head rotation of a (58,) frame as a quaternion (x, y, z, w), for ``FaceMotion.head_rotation``."""
    pitch, yaw, roll = (float(v) for v in np.asarray(motion)[ROTATION])
    return rpy_to_quaternion(roll, pitch, yaw)


def pose_from_mediapipe(matrix: np.ndarray) -> np.ndarray:
    """Return (pitch, yaw, roll, x, y, z) from a MediaPipe facial transformation matrix.

    Args:
        matrix: (4, 4) from ``FaceLandmarkerResult.facial_transformation_matrixes``: canonical face model (cm) to
            MediaPipe's camera frame (cm; x right, y up, z towards the viewer).

    Returns:
        (6,) float: the head rotation relative to facing the camera (radians, head frame) and the head position
        in the camera, in metres along the head frame's axes at rest (x is minus the distance to the camera).
    """
    m = np.asarray(matrix, float)
    rotation = MEDIAPIPE_TO_HEAD @ m[:3, :3] @ MEDIAPIPE_TO_HEAD.T
    roll, pitch, yaw = matrix_to_rpy(rotation)
    translation = MEDIAPIPE_TO_HEAD @ m[:3, 3] / CM_PER_M
    return np.array([pitch, yaw, roll, *translation])


# ----------------------------------------------------------------------------------------------------------------
# Normalisation statistics.
