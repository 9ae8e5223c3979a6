"""The shipped FaceLandmarker model, its canonical mesh, our landmark groups and the tracker wrapper."""
from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from skimage import data

from dystream_ros.errors import DataError, StreamError
from dystream_ros.face import landmarks as lm
from dystream_ros.face.assets import canonical_mesh, landmarker_model_path
from dystream_ros.face.motion import BLENDSHAPES, get_values
from dystream_ros.face.tracker import FaceTracker, largest_face


def test_shipped_model_is_the_recorded_file():
    path = landmarker_model_path(check_hash=True)
    assert path.stat().st_size == 3758596
    assert (path.parent / 'NOTICE.md').read_text().count('Apache') >= 2


def test_canonical_mesh_is_read_from_the_bundle():
    mesh = canonical_mesh()
    assert mesh.vertices.shape == (468, 3) and mesh.triangles.shape == (898, 3)
    assert mesh.vertices[lm.LEFT_EYE_OUTER, 0] > 0 > mesh.vertices[lm.RIGHT_EYE_OUTER, 0]  # x: subject's left
    assert mesh.vertices[lm.FOREHEAD, 1] > mesh.vertices[lm.CHIN, 1]  # y up
    assert mesh.vertices[lm.NOSE_TIP, 2] > np.percentile(mesh.vertices[:, 2], 99)  # z out of the face


def _edges(name: str) -> set[frozenset[int]]:
    from mediapipe.tasks.python.vision import FaceLandmarksConnections

    return {frozenset((c.start, c.end)) for c in getattr(FaceLandmarksConnections, name)}


def _path_edges(*paths: tuple[int, ...], closed: bool = False) -> set[frozenset[int]]:
    edges = set()
    for path in paths:
        pairs = zip(path, path[1:] + (path[:1] if closed else ()))
        edges |= {frozenset(p) for p in pairs}
    return edges


@pytest.mark.parametrize(('name', 'paths', 'closed'), [
    ('FACE_LANDMARKS_FACE_OVAL', (lm.FACE_OVAL,), True),
    ('FACE_LANDMARKS_LIPS', (lm.LIPS_UPPER_OUTER, lm.LIPS_LOWER_OUTER, lm.LIPS_UPPER_INNER, lm.LIPS_LOWER_INNER),
     False),
    ('FACE_LANDMARKS_LEFT_EYE', (lm.LEFT_EYE_UPPER, lm.LEFT_EYE_LOWER), False),
    ('FACE_LANDMARKS_RIGHT_EYE', (lm.RIGHT_EYE_UPPER, lm.RIGHT_EYE_LOWER), False),
    ('FACE_LANDMARKS_LEFT_EYEBROW', (lm.LEFT_BROW_LOWER, lm.LEFT_BROW_UPPER), False),
    ('FACE_LANDMARKS_RIGHT_EYEBROW', (lm.RIGHT_BROW_LOWER, lm.RIGHT_BROW_UPPER), False),
    ('FACE_LANDMARKS_LEFT_IRIS', (lm.LEFT_IRIS,), True),
    ('FACE_LANDMARKS_RIGHT_IRIS', (lm.RIGHT_IRIS,), True),
])
def test_landmark_groups_match_mediapipes_connections(name, paths, closed):
    assert _path_edges(*paths, closed=closed) == _edges(name)


@pytest.fixture(scope='module')
def astronaut_face():
    with FaceTracker(video=False) as tracker:
        return tracker.track(data.astronaut())


def test_tracker_finds_the_astronaut_with_plausible_motion(astronaut_face):
    face = astronaut_face
    assert face is not None and face.landmarks.shape == (478, 3)
    px = face.landmarks_px(512, 512)
    assert 150 < px[lm.NOSE_TIP, 0] < 300 and 60 < px[lm.NOSE_TIP, 1] < 200  # her face is upper middle
    assert px[lm.RIGHT_IRIS_CENTER, 0] < px[lm.LEFT_IRIS_CENTER, 0]  # subject's right eye on the image left
    weights = face.motion[BLENDSHAPES]
    assert np.all((weights >= 0) & (weights <= 1)) and weights[-1] == 0.0  # tongueOut is not estimated
    assert get_values(face.motion, 'mouthSmileLeft')[0] > 0.3  # she smiles
    pitch, yaw, roll = np.degrees(get_values(face.motion, 'headPitch', 'headYaw', 'headRoll'))
    assert abs(yaw) < 10 and abs(roll) < 10 and 5 < pitch < 25  # facing the camera, head slightly down
    assert -0.9 < get_values(face.motion, 'headX')[0] < -0.4  # 0.4 to 0.9 m from the camera


def test_tracker_returns_none_without_a_face():
    with FaceTracker(video=False) as tracker:
        assert tracker.track(np.full((240, 320, 3), 128, np.uint8)) is None


def test_tracker_enforces_its_contract():
    tracker = FaceTracker(video=True)
    image = np.zeros((64, 64, 3), np.uint8)
    tracker.track(image, 10)
    with pytest.raises(StreamError, match='increasing timestamps'):
        tracker.track(image, 10)
    with pytest.raises(DataError, match='uint8 RGB'):
        tracker.track(image.astype(np.float32), 20)
    tracker.close()
    with pytest.raises(StreamError, match='closed'):
        tracker.track(image, 30)


@pytest.mark.parametrize('big_left', [False, True])
def test_tracker_keeps_the_largest_face(big_left):
    head = data.astronaut()[20:280, 100:360]  # 260 px around her head
    small = cv2.resize(head, (180, 180), interpolation=cv2.INTER_AREA)
    canvas = np.full((300, 560, 3), 200, np.uint8)
    big_x, small_x = (10, 370) if big_left else (290, 10)
    canvas[20:280, big_x:big_x + 260] = head
    canvas[60:240, small_x:small_x + 180] = small
    with FaceTracker(video=False, max_faces=4) as tracker:
        face = tracker.track(canvas)
    assert face.faces == 2
    assert big_x < face.landmarks_px(560, 300)[lm.NOSE_TIP, 0] < big_x + 260


def test_largest_face_is_chosen_by_landmark_extent_not_order():
    def face(x0, size):
        return [SimpleNamespace(x=x, y=y) for x in (x0, x0 + size) for y in (0.1, 0.1 + size)]

    assert largest_face([face(0.0, 0.1), face(0.5, 0.3), face(0.2, 0.2)]) == (1, pytest.approx(0.09))
