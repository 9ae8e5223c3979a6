"""Named groups of MediaPipe FaceLandmarker's 478 landmarks (468 mesh vertices + 10 iris points).

Left/Right are the subject's sides. Contours run from the subject's right to left corner, so the upper and lower
lists of a lid or lip pair up point by point. ``test_face_landmarks.py`` checks every group against the connection
lists in ``mediapipe.tasks.python.vision.FaceLandmarksConnections``.
"""
from __future__ import annotations

NUM_LANDMARKS = 478
NUM_MESH_VERTICES = 468

# Closed outline of the face, clockwise in the image starting at the top of the forehead.
FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152, 148,
             176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109)

LIPS_UPPER_OUTER = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291)
LIPS_LOWER_OUTER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291)
LIPS_UPPER_INNER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
LIPS_LOWER_INNER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
MOUTH_CORNER_RIGHT = 61  # outer corners
MOUTH_CORNER_LEFT = 291

RIGHT_EYE_UPPER = (33, 246, 161, 160, 159, 158, 157, 173, 133)  # outer corner 33 ... inner corner 133
RIGHT_EYE_LOWER = (33, 7, 163, 144, 145, 153, 154, 155, 133)
LEFT_EYE_UPPER = (362, 398, 384, 385, 386, 387, 388, 466, 263)  # inner corner 362 ... outer corner 263
LEFT_EYE_LOWER = (362, 382, 381, 380, 374, 373, 390, 249, 263)

RIGHT_BROW_LOWER = (46, 53, 52, 65, 55)  # outer ... inner
RIGHT_BROW_UPPER = (70, 63, 105, 66, 107)
LEFT_BROW_LOWER = (285, 295, 282, 283, 276)  # inner ... outer
LEFT_BROW_UPPER = (336, 296, 334, 293, 300)

RIGHT_IRIS_CENTER = 468
RIGHT_IRIS = (469, 470, 471, 472)
LEFT_IRIS_CENTER = 473
LEFT_IRIS = (474, 475, 476, 477)

NOSE_TIP = 1
CHIN = 152
FOREHEAD = 10
RIGHT_EYE_OUTER, LEFT_EYE_OUTER = 33, 263
RIGHT_EAR_SIDE, LEFT_EAR_SIDE = 234, 454  # face-oval points level with the ears


def closed_contour(upper: tuple[int, ...], lower: tuple[int, ...]) -> tuple[int, ...]:
    """Return the outline of an eye or lip as one closed loop: ``upper`` then ``lower`` reversed, corners once."""
    return (*upper, *reversed(lower[1:-1]))
