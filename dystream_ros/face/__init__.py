"""Face motion and faces: the motion space, face tracking and the renderers.

``motion`` is the single source of truth for a motion frame's layout (52 ARKit blendshapes + head pose).
``tracker`` turns video into motion (MediaPipe FaceLandmarker), the renderers turn motion into an RGB face image
(``stylised``: the default robot face; ``photo``: a warped portrait). Only ``tracker`` (and the photo avatar's
constructor, through it) imports mediapipe; OpenCV is imported by the modules that draw.
"""
from __future__ import annotations

from dystream_ros.face.motion import (
                                      BLENDSHAPE_NAMES,
                                      MOTION_DIM,
                                      MOTION_NAMES,
                                      POSE_NAMES,
                                      get_values,
                                      head_quaternion,
                                      index_of,
                                      motion_frame,
                                      neutral_motion,
                                      set_values,
)
from dystream_ros.face.renderers import RENDERERS, Renderer, make_renderer

__all__ = [
    'BLENDSHAPE_NAMES', 'MOTION_DIM', 'MOTION_NAMES', 'POSE_NAMES', 'RENDERERS', 'Renderer', 'get_values',
    'head_quaternion', 'index_of', 'make_renderer', 'motion_frame', 'neutral_motion', 'set_values',
]
