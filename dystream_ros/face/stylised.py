"""Stylised robot face: the default avatar, a clean vector face drawn from the same motion as the photo avatar.

It depicts no real person. Features are laid out on a face plane (unit ``R``, the head radius), lifted onto a
sphere so that head rotation gives parallax (a yaw slides the features across the head, the ears go behind it),
rotated and translated by the head pose and drawn with anti-aliased OpenCV polygons at 1/16 pixel precision.

What each blendshape does: eyeBlink/eyeSquint/eyeWide/cheekSquint move the lids, eyeLook* moves the irises,
brow* bends the brows, jaw*/mouth* shape the lips and the mouth opening (with teeth and tongue, tongueOut pushes
the tongue out), mouthSmile/cheekSquint blush the cheeks, noseSneer lifts the nose. The motion is absolute:
neutral motion draws the neutral face, identically every time.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from dystream_ros.errors import ConfigError, StreamError
from dystream_ros.face.motion import INDEX, MOTION_DIM, ROTATION, TRANSLATION, rpy_to_matrix

_HEAD_TO_IMAGE = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, -1.0], [-1.0, 0.0, 0.0]])
_MAX_ROTATION_RAD = np.radians([40.0, 50.0, 40.0])  # pitch, yaw, roll
_MAX_TRANSLATION_M = 0.1
_HEAD_RADIUS_M = 0.09  # converts head translation to pixels
_N = 24  # samples along each curve (lids, lips)
_T = np.linspace(-1.0, 1.0, _N)  # curve parameter, subject's right (-1) to left (+1) in face-plane x
_BULGE = np.sqrt(1.0 - _T ** 2)
Colour = tuple[int, int, int]


@dataclass(frozen=True)
class StylisedConfig:
    """Size and colours (RGB) of the stylised face."""

    size: int = 512  # output is size x size pixels
    head_scale: float = 0.34  # head radius as a fraction of size
    background_rgb: Colour = (32, 40, 58)
    face_rgb: Colour = (236, 222, 204)
    shade_rgb: Colour = (206, 190, 174)  # the face's darker rim and the ears
    outline_rgb: Colour = (58, 52, 60)  # lash lines, brows, nose
    sclera_rgb: Colour = (250, 250, 252)
    iris_rgb: Colour = (52, 124, 180)
    pupil_rgb: Colour = (18, 22, 30)
    lip_rgb: Colour = (188, 106, 116)
    mouth_rgb: Colour = (72, 26, 36)
    teeth_rgb: Colour = (248, 246, 240)
    tongue_rgb: Colour = (226, 96, 110)
    blush_rgb: Colour = (240, 150, 150)

    def __post_init__(self) -> None:
        if self.size < 32 or not 0.1 <= self.head_scale <= 0.48:
            msg = f'size must be >= 32 and head_scale in [0.1, 0.48], got {self.size} and {self.head_scale}'
            raise ConfigError(msg)


class StylisedFace:
    """The stylised face renderer.

    Args:
        config: size and colours.
    """

    def __init__(self, config: StylisedConfig | None = None) -> None:
        self.config = config or StylisedConfig()
        size = self.config.size
        self._radius = self.config.head_scale * size
        self._centre = np.array([size / 2.0, size / 2.0 + 0.02 * size])
        self._background = np.empty((size, size, 3), np.uint8)
        self._background[:] = self.config.background_rgb

    @property
    def size(self) -> int:
        """Output images are ``size`` x ``size`` pixels."""
        return self.config.size

    # ------------------------------------------------------------------------------------------------------------
    # Geometry, in face-plane units of the head radius: x to the subject's left (image right), y down.

    def _project(self, xy: np.ndarray, lift: np.ndarray, rotation: np.ndarray, shift: np.ndarray) -> np.ndarray:
        """Face-plane points (N, 2) plus extra depth ``lift`` (N,) -> image pixels (N, 2) at 1/16 pixel (int32)."""
        r2 = np.clip(1.0 - xy[:, 0] ** 2 - (xy[:, 1] / 1.08) ** 2, 0.0, 1.0)
        depth = -(0.85 * np.sqrt(r2) + lift)  # towards the viewer is negative
        pts = np.column_stack([xy, depth]) * self._radius @ rotation.T
        return np.round((pts[:, :2] + self._centre + shift) * 16.0).astype(np.int32)

    def _eye(self, w: dict[str, float], side: str, sign: float) -> dict[str, np.ndarray]:
        wide = w[f'eyeWide{side}']
        cx, cy, rx, ry = 0.36 * sign, -0.08, 0.15 * (1.0 + 0.08 * wide), 0.17 * (1.0 + 0.22 * wide)
        blink, squint = w[f'eyeBlink{side}'], w[f'eyeSquint{side}']
        upper = np.clip(blink + 0.3 * squint + 0.2 * w[f'eyeLookDown{side}'], 0.0, 1.0)
        lower = np.clip(0.35 * squint + 0.3 * w[f'cheekSquint{side}'] + 0.12 * w[f'mouthSmile{side}'], 0.0, 0.5)
        lower = min(lower, 1.0 - upper)  # lids meet, never cross
        x = cx + rx * _T
        ellipse_half = ry * _BULGE
        # Lid edges follow the eye's outline: open, the upper lid is the top arc; closing, it sweeps down and the
        # lower lid rises a little to meet it in a gentle curve; the lids meet when upper + lower reaches 1.
        lid_y = cy - ellipse_half * (1.0 - 1.35 * upper)
        low_y = cy + ellipse_half * (1.0 - 0.65 * max(upper, 0.0) - 2.0 * lower)
        top = np.maximum(cy - ellipse_half, lid_y)
        bottom = np.maximum(np.minimum(cy + ellipse_half, low_y), top)
        look_x = (w[f'eyeLookOut{side}'] - w[f'eyeLookIn{side}']) * sign
        look_y = w[f'eyeLookDown{side}'] - w[f'eyeLookUp{side}']
        iris_c = np.array([cx + 0.55 * rx * look_x, cy + 0.45 * ry * look_y])
        circle = np.column_stack([np.cos(np.linspace(0, 2 * np.pi, _N, endpoint=False)),
                                  np.sin(np.linspace(0, 2 * np.pi, _N, endpoint=False))])
        hood = np.minimum(lid_y, cy - ellipse_half) - 0.12
        return {
            'opening': np.column_stack([np.concatenate([x, x[::-1]]), np.concatenate([top, bottom[::-1]])]),
            'iris': iris_c + 0.62 * rx * circle,
            'pupil': iris_c + 0.3 * rx * circle,
            'glint': iris_c + np.array([0.25 * rx, -0.3 * ry]) + 0.1 * rx * circle,
            'upper_lid': np.column_stack([np.concatenate([x, x[::-1]]), np.concatenate([lid_y, hood[::-1]])]),
            'lower_lid': np.column_stack([np.concatenate([x, x[::-1]]),
                                          np.concatenate([low_y, np.full(_N, cy + ry + 0.1)])]),
            'lash': np.column_stack([x, top]),
            'closed': np.array([upper + lower >= 0.98]),
        }

    def _brow(self, w: dict[str, float], side: str, sign: float) -> np.ndarray:
        t = np.linspace(0.0, 1.0, 7)  # inner (0) to outer (1)
        x = sign * (0.2 + 0.32 * t)
        y = -0.4 - 0.06 * np.sin(np.pi * t)  # a gentle arch
        y = y - 0.12 * w['browInnerUp'] * (1.0 - t) ** 1.5 - 0.11 * w[f'browOuterUp{side}'] * t ** 1.2
        y = y + w[f'browDown{side}'] * (0.08 - 0.03 * t)
        x = x - sign * 0.03 * w[f'browDown{side}'] * (1.0 - t)
        half = 0.028 * (1.0 - 0.55 * t) + 0.006  # thicker at the inner end
        centre = np.column_stack([x, y])
        return np.concatenate([centre - [0.0, 1.0] * half[:, None], (centre + [0.0, 1.0] * half[:, None])[::-1]])

    def _mouth(self, w: dict[str, float]) -> dict[str, np.ndarray]:
        jaw = w['jawOpen'] * (1.0 - 0.9 * w['mouthClose'])
        shift = 0.1 * (w['mouthLeft'] - w['mouthRight']) + 0.06 * (w['jawLeft'] - w['jawRight'])
        narrow = 0.45 * w['mouthPucker'] + 0.3 * w['mouthFunnel']
        half = {}
        corner_y = {}
        for side in ('Left', 'Right'):
            half[side] = 0.3 * (1.0 + 0.22 * w[f'mouthSmile{side}'] + 0.2 * w[f'mouthStretch{side}']
                                + 0.08 * w[f'mouthDimple{side}'] - narrow - 0.1 * w['cheekPuff'])
            corner_y[side] = (-0.1 * w[f'mouthSmile{side}'] + 0.09 * w[f'mouthFrown{side}']
                              + 0.03 * w[f'mouthStretch{side}'] + 0.05 * jaw)
        cx, cy = shift, 0.46 + 0.03 * w['jawForward']
        x = cx + np.where(_T < 0, _T * half['Right'], _T * half['Left'])
        line = cy + np.interp(_T, [-1.0, 1.0], [corner_y['Right'], corner_y['Left']])
        smile = 0.5 * (w['mouthSmileLeft'] + w['mouthSmileRight'])
        line = line + 0.05 * smile * (1.0 - _T ** 2)  # corners up, middle stays: a curved smile
        round_ = 0.5 + 0.4 * narrow  # rounder opening when puckered
        upper_up = 0.5 * (w['mouthUpperUpLeft'] + w['mouthUpperUpRight'])
        lower_down = 0.5 * (w['mouthLowerDownLeft'] + w['mouthLowerDownRight'])
        opening_top = line - (0.03 * upper_up + 0.03 * w['mouthFunnel'] - 0.015 * w['mouthShrugUpper']) * _BULGE
        depth = 0.42 * jaw + 0.05 * lower_down + 0.06 * w['mouthFunnel'] - 0.015 * w['mouthShrugLower']
        opening_bottom = np.maximum(line + max(depth, 0.0) * _BULGE ** round_, opening_top)
        press = 0.5 * (w['mouthPressLeft'] + w['mouthPressRight'])
        upper_lip = 0.055 * (1.0 - 0.7 * w['mouthRollUpper'] - 0.4 * press) * _BULGE ** 0.7
        lower_lip = 0.07 * (1.0 - 0.7 * w['mouthRollLower'] - 0.4 * press) * _BULGE ** 0.7
        teeth_bottom = np.minimum(opening_top + 0.06 * _BULGE, opening_bottom)
        inner = np.abs(_T) < 0.75
        tongue_top = np.maximum(opening_bottom - (0.08 + 0.12 * w['tongueOut']) * _BULGE, opening_top)
        tongue_bottom = opening_bottom + 0.16 * w['tongueOut'] * _BULGE
        outer_top = opening_top - upper_lip
        return {
            'lips': np.column_stack([np.concatenate([x, x[::-1]]),
                                     np.concatenate([outer_top, (opening_bottom + lower_lip)[::-1]])]),
            'opening': np.column_stack([np.concatenate([x, x[::-1]]),
                                        np.concatenate([opening_top, opening_bottom[::-1]])]),
            'teeth': np.column_stack([np.concatenate([x[inner], x[inner][::-1]]),
                                      np.concatenate([opening_top[inner], teeth_bottom[inner][::-1]])]),
            'tongue': np.column_stack([np.concatenate([x[inner], x[inner][::-1]]),
                                       np.concatenate([tongue_top[inner], tongue_bottom[inner][::-1]])]),
            'seam': np.column_stack([x, 0.5 * (opening_top + opening_bottom)]),
        }

    # ------------------------------------------------------------------------------------------------------------

    def render(self, motion: np.ndarray) -> np.ndarray:
        """Render one (58,) motion frame as a (size, size, 3) uint8 RGB image."""
        motion = np.asarray(motion, np.float64)
        if motion.shape != (MOTION_DIM,):
            msg = f'motion must have shape ({MOTION_DIM},), got {motion.shape}'
            raise StreamError(msg)
        motion = np.nan_to_num(motion, nan=0.0, posinf=0.0, neginf=0.0)
        w = {name: float(np.clip(motion[i], 0.0, 1.0)) for name, i in INDEX.items() if i < ROTATION.start}
        pitch, yaw, roll = np.clip(motion[ROTATION], -_MAX_ROTATION_RAD, _MAX_ROTATION_RAD)
        tx, ty, tz = np.clip(motion[TRANSLATION], -_MAX_TRANSLATION_M, _MAX_TRANSLATION_M)
        rotation = _HEAD_TO_IMAGE @ rpy_to_matrix(roll, pitch, yaw) @ _HEAD_TO_IMAGE.T
        px_per_m = self._radius / _HEAD_RADIUS_M
        shift = np.array([ty, -tz]) * px_per_m
        scale = 1.0 + tx / 0.6  # closer to the viewer looks bigger
        rotation = rotation * scale
        cfg = self.config
        img = self._background.copy()
        aa = cv2.LINE_AA

        def poly(points: np.ndarray, colour: Colour, lift: float | np.ndarray = 0.0) -> None:
            lifted = np.broadcast_to(np.asarray(lift, float), (len(points),))
            cv2.fillPoly(img, [self._project(points, lifted, rotation, shift)], colour, aa, 4)

        def line(points: np.ndarray, colour: Colour, thickness: float, lift: float = 0.0) -> None:
            pts = self._project(points, np.full(len(points), lift), rotation, shift)
            cv2.polylines(img, [pts], False, colour, max(1, int(round(thickness * self._radius))), aa, 4)

        # Ears sit on the sphere's equator: a yaw swings one behind the head and the other in front of it.
        angles = np.linspace(0, 2 * np.pi, 40, endpoint=False)
        ears = []
        for sign in (1.0, -1.0):
            ear = np.column_stack([sign * 1.0 + 0.1 * np.cos(angles), -0.02 + 0.2 * np.sin(angles), np.zeros(40)])
            ear = ear * self._radius @ rotation.T
            ears.append((float(ear[:, 2].mean()), np.round((ear[:, :2] + self._centre + shift) * 16).astype(np.int32)))
        for depth, ear in ears:
            if depth >= -0.05 * self._radius:  # behind or beside the head: drawn first, the head covers it
                cv2.fillPoly(img, [ear], cfg.shade_rgb, aa, 4)
        head = np.column_stack([np.cos(angles), 1.08 * np.sin(angles)])  # the silhouette: roll and translation
        rim = (np.column_stack([head, np.zeros(len(head))]) * self._radius) @ _roll_only(rotation).T
        cv2.fillPoly(img, [np.round((rim[:, :2] + self._centre + shift) * 16).astype(np.int32)], cfg.shade_rgb, aa, 4)
        inner = (np.column_stack([0.95 * head, np.zeros(len(head))]) * self._radius) @ _roll_only(rotation).T
        lit = self._centre + shift + np.array([-0.015, -0.02]) * self._radius  # light from the upper left
        cv2.fillPoly(img, [np.round((inner[:, :2] + lit) * 16).astype(np.int32)], cfg.face_rgb, aa, 4)
        for depth, ear in ears:
            if depth < -0.05 * self._radius:  # swung in front of the head's outline
                cv2.fillPoly(img, [ear], cfg.shade_rgb, aa, 4)

        smile = 0.5 * (w['mouthSmileLeft'] + w['mouthSmileRight'])
        blush = float(np.clip(0.25 + 0.5 * smile + 0.3 * 0.5 * (w['cheekSquintLeft'] + w['cheekSquintRight'])
                              + 0.3 * w['cheekPuff'], 0.0, 1.0))
        blush_colour = tuple(int(round(f + blush * 0.45 * (b - f))) for f, b in zip(cfg.face_rgb, cfg.blush_rgb))
        for sign in (1.0, -1.0):
            cheek = np.array([sign * 0.5, 0.24]) + np.column_stack([(0.13 + 0.04 * w['cheekPuff']) * np.cos(angles),
                                                                    0.08 * np.sin(angles)])
            poly(cheek, blush_colour)

        for side, sign in (('Left', 1.0), ('Right', -1.0)):
            eye = self._eye(w, side, sign)
            poly(eye['opening'], cfg.sclera_rgb, -0.03)
            poly(eye['iris'], cfg.iris_rgb, -0.02)
            poly(eye['pupil'], cfg.pupil_rgb, -0.02)
            poly(eye['glint'], cfg.sclera_rgb, -0.02)
            poly(eye['upper_lid'], cfg.face_rgb)
            poly(eye['lower_lid'], cfg.face_rgb)
            line(eye['lash'], cfg.outline_rgb, 0.035 if eye['closed'][0] else 0.025)
            poly(self._brow(w, side, sign), cfg.outline_rgb, 0.02)

        sneer = 0.5 * (w['noseSneerLeft'] + w['noseSneerRight'])
        nose = np.array([0.0, 0.16 - 0.03 * sneer]) + np.column_stack([0.075 * np.cos(angles), 0.05 * np.sin(angles)])
        poly(nose, cfg.shade_rgb, 0.18)

        mouth = self._mouth(w)
        poly(mouth['lips'], cfg.lip_rgb, 0.04)
        if np.ptp(mouth['opening'][:, 1]) > 1e-6 and np.any(mouth['opening'][_N:, 1][::-1] - mouth['opening'][:_N, 1]
                                                          > 0.004):
            poly(mouth['opening'], cfg.mouth_rgb, 0.04)
            poly(mouth['tongue'], cfg.tongue_rgb, 0.04)
            poly(mouth['teeth'], cfg.teeth_rgb, 0.04)
            if w['tongueOut'] > 0.0:  # out in front of the teeth
                poly(mouth['tongue'], cfg.tongue_rgb, 0.05)
        else:
            line(mouth['seam'], tuple(int(0.6 * c) for c in cfg.lip_rgb), 0.02, 0.04)  # closed lips
        return img


def _roll_only(rotation: np.ndarray) -> np.ndarray:
    """The in-image rotation (roll) and scale part of a 3x3 image-space rotation, for the head's silhouette."""
    scale = float(np.cbrt(abs(np.linalg.det(rotation))))
    angle = np.arctan2(rotation[1, 0] - rotation[0, 1], rotation[0, 0] + rotation[1, 1])
    c, s = np.cos(angle) * scale, np.sin(angle) * scale
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, scale]])
