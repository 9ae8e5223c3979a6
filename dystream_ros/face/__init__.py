"""Face motion and faces: the motion space, face tracking, renderers and the neck.

``motion`` is the single source of truth for a motion frame's layout (52 ARKit blendshapes + head pose).
``tracker``/``extract`` turn video into motion (MediaPipe FaceLandmarker), the renderers turn motion into an RGB
face image, and ``neck`` turns head pose into safe neck joint commands. Heavy modules (mediapipe) are imported
only by ``tracker`` and by the photo avatar's constructor.
"""
from __future__ import annotations
