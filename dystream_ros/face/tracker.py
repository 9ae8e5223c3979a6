"""Face tracking: an RGB image in, a motion frame out, with MediaPipe's Tasks FaceLandmarker.

The landmarker reports 478 landmarks, 52 blendshape scores (``_neutral`` + 51 ARKit names) and a 4x4 facial
transformation matrix per face; :class:`FaceTracker` keeps the largest face and converts it to the motion layout of
:mod:`dystream_ros.face.motion`. The model is the ``face_landmarker.task`` shipped in ``dystream_ros/assets``.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import numpy as np

from dystream_ros.errors import ConfigError, DataError, StreamError
from dystream_ros.face.assets import landmarker_model_path
from dystream_ros.face.images import check_rgb
from dystream_ros.face.motion import BLENDSHAPES, INDEX, POSE, neutral_motion, pose_from_mediapipe


@dataclass(frozen=True)
class FaceObservation:
    """One tracked face."""

    motion: np.ndarray  # (58,) float32; translation absolute (head position in the camera, metres, head axes)
    landmarks: np.ndarray  # (478, 3) float32: x, y in [0, 1] of image width/height, z in units of image width
    matrix: np.ndarray  # (4, 4) MediaPipe facial transformation matrix (cm)
    area: float  # bounding-box area of the landmarks, as a fraction of the image
    faces: int = 1  # faces detected in the image (this is the largest)

    def landmarks_px(self, width: int, height: int) -> np.ndarray:
        """Return (478, 3) landmarks in pixels (z scaled like x: more negative is closer to the camera)."""
        return self.landmarks * np.array([width, height, width], np.float32)


def largest_face(faces: Sequence[Sequence[object]]) -> tuple[int, float]:
    """Return the index and landmark bounding-box area of the largest face in MediaPipe's ``face_landmarks``."""
    best, best_area = 0, -1.0
    for i, face in enumerate(faces):
        xs = [float(p.x) for p in face]  # type: ignore[attr-defined]
        ys = [float(p.y) for p in face]  # type: ignore[attr-defined]
        area = (max(xs) - min(xs)) * (max(ys) - min(ys))
        if area > best_area:
            best, best_area = i, area
    return best, best_area


class FaceTracker:
    """MediaPipe FaceLandmarker with blendshapes and head pose, keeping the largest face.

    Use as a context manager or call :meth:`close`: mediapipe 1.2 logs an error when the landmarker is only
    garbage-collected.

    Args:
        video: VIDEO running mode (temporal tracking; :meth:`track` needs increasing timestamps) when True,
            IMAGE mode (each image on its own) when False.
        max_faces: faces detected per image; the largest one is returned.
        min_confidence: detection, presence and tracking confidence thresholds in [0, 1].
        model_path: a ``face_landmarker.task``; the shipped one when None.
    """

    def __init__(self, *, video: bool = True, max_faces: int = 4, min_confidence: float = 0.5,
                 model_path: Path | None = None) -> None:
        if max_faces < 1 or not 0.0 <= min_confidence <= 1.0:
            msg = f'max_faces must be >= 1 and min_confidence in [0, 1], got {max_faces} and {min_confidence}'
            raise ConfigError(msg)
        import mediapipe as mp  # heavy: imported only when a tracker is built
        from mediapipe.tasks import python as mp_tasks
        from mediapipe.tasks.python import vision

        self._mp = mp
        self.video = video
        path = landmarker_model_path() if model_path is None else Path(model_path)
        if not path.is_file():
            msg = f'face landmarker model not found: {path}'
            raise DataError(msg)
        options = vision.FaceLandmarkerOptions(
            base_options=mp_tasks.BaseOptions(model_asset_path=str(path)),
            running_mode=vision.RunningMode.VIDEO if video else vision.RunningMode.IMAGE,
            num_faces=max_faces,
            min_face_detection_confidence=min_confidence,
            min_face_presence_confidence=min_confidence,
            min_tracking_confidence=min_confidence,
            output_face_blendshapes=True,
            output_facial_transformation_matrixes=True,
        )
        self._landmarker = vision.FaceLandmarker.create_from_options(options)
        self._last_timestamp_ms = -1

    def track(self, rgb: np.ndarray, timestamp_ms: int | None = None) -> FaceObservation | None:
        """Track the largest face in an image.

        Args:
            rgb: (H, W, 3) uint8 RGB image.
            timestamp_ms: frame time, strictly increasing between calls (VIDEO mode only; ignored otherwise).

        Returns:
            The largest face, or None when there is none.

        Raises:
            DataError: on a wrong image shape or dtype. StreamError: on a non-increasing timestamp, or after
                :meth:`close`.
        """
        if self._landmarker is None:
            msg = 'FaceTracker is closed'
            raise StreamError(msg)
        rgb = check_rgb(rgb, 'frame')
        image = self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb))
        if self.video:
            if timestamp_ms is None or int(timestamp_ms) <= self._last_timestamp_ms:
                msg = f'VIDEO mode needs increasing timestamps: got {timestamp_ms} after {self._last_timestamp_ms}'
                raise StreamError(msg)
            self._last_timestamp_ms = int(timestamp_ms)
            result = self._landmarker.detect_for_video(image, int(timestamp_ms))
        else:
            result = self._landmarker.detect(image)
        if not result.face_landmarks:
            return None
        best, best_area = largest_face(result.face_landmarks)
        landmarks = np.array([[p.x, p.y, p.z] for p in result.face_landmarks[best]], np.float32)
        motion = neutral_motion()
        for category in result.face_blendshapes[best]:
            index = INDEX.get(category.category_name)
            if index is not None and index < BLENDSHAPES.stop:
                motion[index] = category.score
        matrix = np.asarray(result.facial_transformation_matrixes[best], np.float32).reshape(4, 4)
        motion[POSE] = pose_from_mediapipe(matrix)
        return FaceObservation(motion, landmarks, matrix, best_area, len(result.face_landmarks))

    def close(self) -> None:
        """Release the landmarker; further :meth:`track` calls raise StreamError."""
        if self._landmarker is not None:
            self._landmarker.close()
            self._landmarker = None

    def __enter__(self) -> FaceTracker:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()
