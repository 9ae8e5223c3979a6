"""The stylised face moves as commanded: mouth area with jawOpen, eyes with eyeBlink, face centre with the pose."""
from __future__ import annotations

import numpy as np
import pytest

from dystream_ros.errors import ConfigError, StreamError
from dystream_ros.face.motion import motion_frame, neutral_motion
from dystream_ros.face.renderers import Renderer, make_renderer
from dystream_ros.face.stylised import StylisedConfig, StylisedFace

# Pure, distinct colours so that each part can be counted in the picture.
MOUTH = (0, 255, 0)
TEETH = (0, 0, 255)
TONGUE = (255, 0, 255)
SCLERA = (255, 255, 0)
IRIS = (0, 255, 255)
PUPIL = (255, 0, 0)
CONFIG = StylisedConfig(mouth_rgb=MOUTH, teeth_rgb=TEETH, tongue_rgb=TONGUE, sclera_rgb=SCLERA, iris_rgb=IRIS,
                        pupil_rgb=PUPIL)


@pytest.fixture(scope='module')
def face() -> StylisedFace:
    return StylisedFace(CONFIG)


def _count(image: np.ndarray, *colours: tuple[int, int, int], tol: int = 60) -> np.ndarray:
    """Mask of pixels within ``tol`` (L1) of any of the colours."""
    mask = np.zeros(image.shape[:2], bool)
    for colour in colours:
        mask |= np.abs(image.astype(int) - colour).sum(axis=2) < tol
    return mask


def test_is_a_renderer_with_the_configured_size_and_background():
    small = StylisedFace(StylisedConfig(size=256, background_rgb=(1, 2, 3)))
    image = small.render(neutral_motion())
    assert isinstance(small, Renderer) and small.size == 256
    assert image.shape == (256, 256, 3) and image.dtype == np.uint8
    assert tuple(image[0, 0]) == (1, 2, 3)


def test_neutral_motion_gives_one_still_frame(face):
    first = face.render(neutral_motion())
    for _ in range(3):
        assert np.array_equal(face.render(neutral_motion()), first)
    assert np.array_equal(face.render(np.full(58, np.nan)), first)  # NaN counts as neutral


def test_mouth_area_rises_monotonically_with_jaw_open(face):
    areas = [int(_count(face.render(motion_frame(jawOpen=j)), MOUTH, TEETH, TONGUE).sum())
             for j in np.linspace(0.0, 1.0, 11)]
    assert areas[0] == 0  # closed lips
    assert all(b > a for a, b in zip(areas, areas[1:])), areas
    assert areas[-1] > 0.02 * CONFIG.size ** 2  # wide open: more than 2 % of the picture


def test_eyes_close_with_eye_blink(face):
    visible = [int(_count(face.render(motion_frame(eyeBlinkLeft=b, eyeBlinkRight=b)), SCLERA, IRIS, PUPIL).sum())
               for b in np.linspace(0.0, 1.0, 11)]
    assert all(b < a for a, b in zip(visible, visible[1:])), visible
    assert visible[-1] == 0 and visible[0] > 0.01 * CONFIG.size ** 2


def test_one_eye_winks_alone(face):
    image = face.render(motion_frame(eyeBlinkLeft=1.0))  # the subject's left eye is on the image right
    eyes = _count(image, SCLERA, IRIS, PUPIL)
    half = CONFIG.size // 2
    assert eyes[:, :half].sum() > 0 and eyes[:, half:].sum() == 0


def _centroid(image: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(_count(image, IRIS, PUPIL))
    return np.array([xs.mean(), ys.mean()])


def test_face_centre_moves_with_yaw_and_pitch(face):
    xs = [_centroid(face.render(motion_frame(headYaw=y)))[0] for y in np.linspace(-0.6, 0.6, 9)]
    assert all(b > a for a, b in zip(xs, xs[1:])), xs  # positive yaw: towards the avatar's left = image right
    assert xs[-1] - xs[0] > 0.15 * CONFIG.size
    ys = [_centroid(face.render(motion_frame(headPitch=p)))[1] for p in np.linspace(-0.5, 0.5, 7)]
    assert all(b > a for a, b in zip(ys, ys[1:])), ys  # positive pitch: nose down


def test_roll_tilts_the_eye_line(face):
    image = face.render(motion_frame(headRoll=0.3))
    ys, xs = np.nonzero(_count(image, PUPIL))
    left_half = xs < CONFIG.size // 2
    # Positive roll lowers the avatar's right ear: its right eye (image left) goes down.
    assert ys[left_half].mean() > ys[~left_half].mean() + 10


def test_gaze_moves_the_irises(face):
    rest = _centroid(face.render(neutral_motion()))
    looking = _centroid(face.render(motion_frame(eyeLookOutLeft=1.0, eyeLookInRight=1.0)))
    assert looking[0] - rest[0] > 5  # both look to the subject's left: image right


def test_rejects_wrong_shapes_and_configs(face):
    with pytest.raises(StreamError, match='58'):
        face.render(np.zeros(57))
    with pytest.raises(ConfigError, match='size'):
        StylisedConfig(size=8)
    with pytest.raises(ConfigError, match='unknown renderer'):
        make_renderer('cartoon')
