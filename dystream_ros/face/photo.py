"""Photo avatar: one portrait, warped per frame by the blendshapes and head pose. CPU only, no neural renderer.

At construction the portrait (any size, face anywhere) is cropped square around its face and resized to the
render size, its landmarks are found with the FaceLandmarker, and :func:`~dystream_ros.face.photo_rig.build_rig`
turns them into a deformation rig, and :func:`~dystream_ros.face.photo_matte.build_matte` cuts the person out of
the backdrop. Each frame then

1. moves the rig points: ``rest + weights @ basis``, then the head rotation about the pivot and the translation,
   blended by each point's rigidity;
2. rasterises the deformed triangles, far to near, into a label image at half resolution and evaluates each
   pixel's affine map back into the portrait (a piecewise-affine backward warp); the displacement is upsampled,
   scaled by the matte's head weight (the clothes and the backdrop stay still) and applied with one ``cv2.remap``;
   the person's outline goes through the same warp and lays the head over the matte's backdrop plate, which shows
   where a turn uncovers it;
3. paints what a warp cannot show: the mouth interior (cavity, the portrait's own teeth riding on their lips or
   synthetic ones, tongue; in the colour of the portrait's light, in the shadow of the lips at its rim, with a soft
   border) inside the deformed inner-lip contour, faded in as the lips part, and for blinks the lid skin and lash
   line over the closing eye, faded in from half closed.

Head turns use 80 % of the landmarks' depth relief (``DEPTH_RELIEF``), and near the face outline a depth eased
towards the outline's (``PhotoRig.turn_depth``): a single photo cannot show the side of the head that a turn reveals,
the full relief stretches the near cheek visibly, and the steep depth at the outline smears the cheek's edge into
streaks. A viewer (and the FaceLandmarker) then reads less turn from the picture than the warp applies: about 90 % of
a pitch and 70 % of a yaw. So each avatar calibrates itself when built: it renders a turn of ``CALIBRATION_RAD`` each
way about each axis, tracks it back, and scales the commanded rotation by the inverse of what it read
(``rotation_gain``, at most ``MAX_ROTATION_GAIN``), so that a nod or a turn is seen as far as commanded. The warp
approaches ``MAX_ROTATION_RAD`` softly: warped further than about 25 degrees, the far cheek folds over its outline
with a hard edge, so a turn of up to 10 degrees is seen as commanded and a larger one less (20 degrees as about 16,
30 as about 19).
Portraits with glasses blink poorly (the frame above the eye is dragged down with the lid).

A lid closed or a jaw opened in proportion to the command is seen late: a half-closed lid still reads as an open
eye, a small opening as a closed mouth. So the avatar also calibrates its blinks and jaw when built (``READBACK``):
it renders them from rest to full, tracks them over a few head turns, and renders each command as the value that is
read back that fraction of the way from rest to full.

The portrait is the avatar's neutral face: neutral motion returns it unchanged (up to interpolation rounding),
so choose a photo with a neutral expression, closed mouth and open eyes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from dystream_ros.errors import DataError, StreamError
from dystream_ros.face import landmarks as lm
from dystream_ros.face.images import check_rgb
from dystream_ros.face.motion import BLENDSHAPES, MOTION_DIM, ROTATION, TRANSLATION, index_of, rpy_to_matrix
from dystream_ros.face.photo_matte import PhotoMatte, build_matte
from dystream_ros.face.photo_rig import CANTHI_M, VIEW_DISTANCE_M, PhotoRig, build_rig

if TYPE_CHECKING:
    from dystream_ros.face.tracker import FaceTracker

# Head frame (x forward, y left, z up) -> image space (x right, y down, depth away from the viewer).
HEAD_TO_IMAGE = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, -1.0], [-1.0, 0.0, 0.0]])
MAX_ROTATION_RAD = np.radians([35.0, 30.0, 35.0])  # pitch, yaw, roll: a warp approaches these softly (tanh)
MAX_TRANSLATION_M = 0.1
# The mouth interior under white light; each portrait tints it with the colour of its own light (LIGHT_TINT of it).
MOUTH_RGB = {'cavity': np.array([72.0, 26.0, 30.0]), 'tongue': np.array([176.0, 84.0, 90.0]),
             'teeth': np.array([232.0, 226.0, 214.0])}
LIGHT_TINT = 0.5
MOUTH_FEATHER = 0.012  # softness of the mouth interior's border, in units of the outer eye-corner distance
MOUTH_RIM = 0.04  # width of the shadow that the lips cast into the mouth, in the same units
SLIVER = 0.4  # a triangle pressed below this fraction of its rest area is a fold (see _backward_affines)
DEPTH_RELIEF = 0.8  # fraction of the landmarks' depth used by head rotation (see PhotoAvatar.deform)
CALIBRATION_RAD = np.radians(12.0)  # the turn about each axis that calibrates the rotation gain
MAX_ROTATION_GAIN = np.array([2.0, 2.0, 2.0])  # pitch, yaw, roll
# Blendshapes rendered so that the tracker reads them back in proportion to the command (_calibrate_readback), each
# with the least slope of that proportion: the jaw's is 1 (a commanded opening c read as c, as far as the rig opens),
# the lids' none (a full blink read as the fullest blink the rig shows)
READBACK = {('eyeBlinkLeft', 'eyeBlinkRight'): 0.0, ('jawOpen',): 1.0}
READBACK_KNOTS = np.linspace(0.0, 1.0, 6)  # the values rendered and tracked to calibrate each
READBACK_YAW_RAD = np.radians([-8.0, 0.0, 8.0])  # each at these head turns (a turned mouth is read as more open)
MIN_READBACK = 0.1  # a full value read back as less than this much more than the rest value is not calibrated
_READBACK_INDICES = {names: [index_of(name) for name in names] for names in READBACK}
_INNER_LIPS = lm.closed_contour(lm.LIPS_UPPER_INNER, lm.LIPS_LOWER_INNER)


@dataclass(frozen=True)
class PhotoConfig:
    """Photo avatar settings."""

    size: int = 512  # output is size x size pixels
    face_fraction: float = 0.42  # face height (forehead to chin) as a fraction of the output height
    grid_stride: int = 2  # the warp is evaluated every grid_stride pixels and upsampled (1 = exact, slower)
    # Colours of the mouth interior (the teeth are drawn when the portrait shows none); None: MOUTH_RGB in the colour
    # of the portrait's light.
    cavity_rgb: tuple[int, int, int] | None = None
    teeth_rgb: tuple[int, int, int] | None = None
    tongue_rgb: tuple[int, int, int] | None = None


def _crop_portrait(image: np.ndarray, landmarks: np.ndarray, config: PhotoConfig) -> tuple[np.ndarray, np.ndarray]:
    """Return the square crop around the face at the render size and the 2x3 affine image -> crop."""
    h, w = image.shape[:2]
    pts = landmarks[:, :2] * np.array([w, h])
    face_h = float(np.linalg.norm(pts[lm.CHIN] - pts[lm.FOREHEAD]))
    centre = pts[list(lm.FACE_OVAL)].mean(axis=0) - np.array([0.0, 0.08 * face_h])  # leave room for hair
    scale = config.face_fraction * config.size / max(face_h, 1.0)
    affine = np.array([[scale, 0.0, config.size / 2 - scale * centre[0]],
                       [0.0, scale, config.size / 2 - scale * centre[1]]])
    interpolation = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_CUBIC
    crop = cv2.warpAffine(image, affine, (config.size, config.size), flags=interpolation,
                          borderMode=cv2.BORDER_REFLECT_101)
    return crop, affine


def _find_face(tracker: FaceTracker, image: np.ndarray) -> np.ndarray | None:
    """Return the landmarks (478, 3) of the largest face, normalised to ``image``, or None.

    The detector works on a downscaled copy of the whole image, so a face that is small in a large photo is also
    searched for in overlapping windows (half and quarter of the short side), each upscaled.
    """
    found = tracker.track(image)
    if found is not None:
        return found.landmarks
    h, w = image.shape[:2]
    for fraction in (0.5, 0.25):
        side = int(min(h, w) * fraction)
        if side < 48:
            break
        best: tuple[float, np.ndarray] | None = None
        for y in range(0, max(h - side, 0) + 1, side // 2):
            for x in range(0, max(w - side, 0) + 1, side // 2):
                window = cv2.resize(image[y:y + side, x:x + side], (384, 384), interpolation=cv2.INTER_CUBIC)
                face = tracker.track(window)
                if face is not None and (best is None or face.area > best[0]):
                    pts = face.landmarks * np.array([side / w, side / h, side / w], np.float32)
                    best = (face.area, pts + np.array([x / w, y / h, 0.0], np.float32))
        if best is not None:
            return best[1]
    return None


class PhotoAvatar:
    """The photo avatar renderer (see the module docstring).

    Args:
        portrait: (H, W, 3) uint8 RGB photo with one clearly visible face (the largest is used).
        config: render settings.

    Raises:
        DataError: if no face is found in the portrait.
    """

    def __init__(self, portrait: np.ndarray, config: PhotoConfig | None = None) -> None:
        from dystream_ros.face.tracker import FaceTracker  # mediapipe: needed only to build the avatar

        self.config = config or PhotoConfig()
        portrait = check_rgb(portrait, 'portrait')
        with FaceTracker(video=False, max_faces=2) as tracker:
            landmarks = _find_face(tracker, portrait)
            if landmarks is None:
                msg = 'no face found in the portrait'
                raise DataError(msg)
            self.base, _ = _crop_portrait(portrait, landmarks, self.config)
            refined = tracker.track(self.base)  # landmarks again, at the render resolution
            if refined is None:
                msg = 'the face was lost after cropping the portrait'
                raise DataError(msg)
            self.portrait_motion = refined.motion  # the portrait's own expression and pose, as tracked
            size = self.config.size
            landmarks_px = refined.landmarks_px(size, size)
            self.rig: PhotoRig = build_rig(landmarks_px, size)
            self.matte: PhotoMatte = build_matte(self.base, landmarks_px, self.rig.scale_px, self.rig.ey)
            self._prepare()
            self.rotation_gain = self._calibrate_rotation(tracker)
            for names, least_slope in READBACK.items():
                self.readback[names] = self._calibrate_readback(tracker, names, least_slope)

    @property
    def size(self) -> int:
        """Output images are ``size`` x ``size`` pixels."""
        return self.config.size

    def _prepare(self) -> None:
        size, stride = self.config.size, self.config.grid_stride
        grid = (size + stride - 1) // stride
        centres = np.arange(grid, dtype=np.float32) * stride + (stride - 1) / 2.0
        self._gx, self._gy = np.meshgrid(centres, centres)
        self._grid = grid
        self._labels = np.empty((grid, grid), np.int32)
        full = np.arange(size, dtype=np.float32)
        self._fx, self._fy = np.meshgrid(full, full)
        self._basis = self.rig.basis.reshape(self.rig.basis.shape[0], -1)
        self._basis3 = self.rig.basis.astype(np.float64)
        self._rest = self.rig.points.astype(np.float64)
        self._turn_offset = np.zeros_like(self._rest)
        self._turn_offset[:, 2] = self.rig.turn_depth - self._rest[:, 2]
        self._rest_tri = self._rest[self.rig.triangles, :2]  # (F, 3, 2)
        rest_h = np.concatenate([self._rest_tri, np.ones((len(self._rest_tri), 3, 1))], axis=2)
        self._rest_det = np.abs(np.linalg.det(rest_h))
        self._inner = np.asarray(_INNER_LIPS)
        up, lo = np.asarray(lm.LIPS_UPPER_INNER[1:-1]), np.asarray(lm.LIPS_LOWER_INNER[1:-1])
        self._lip_pairs = (up, lo)
        self._rest_gap = float(np.max(np.linalg.norm(self._rest[lo, :2] - self._rest[up, :2], axis=1)))
        self._px_per_m = self.rig.scale_px / CANTHI_M
        self._prepare_mouth()
        self._prepare_lids()
        self.readback: dict[tuple[str, ...], np.ndarray] = {}  # identity and no gain until calibrated
        self.rotation_gain = np.ones((2, 3))

    def _calibrate_readback(self, tracker: FaceTracker, names: tuple[str, ...], least_slope: float) -> np.ndarray:
        """The value to render for each of ``READBACK_KNOTS`` commanded values of the blendshapes ``names``.

        A lid or a jaw moved in proportion to the command is read back late: the tracker sees little of the first
        half of a blink (0.5 is read as about a quarter of a full one) or of a jaw opening (0.2 as an eighth), and
        most of the rest. So the avatar renders the knots, tracks them, and renders a command c as the value that is
        read as rest + c (full - rest): a straight line from rest to the full value. Where that line is flatter than
        ``least_slope``, it is rest + c ``least_slope`` up to the full value: the full jaw is read as only about
        0.5, and a mouth is seen open from an absolute 0.05, so the jaw's is 1 (c read as c; this needs a mouth that
        narrows as it opens, see ``photo_rig.JAW_NARROW``, or the tracker reads the wide openings as the head pitched
        by 3 to 5 degrees). What is read is the mean over the head turns of a conversation (``READBACK_YAW_RAD``):
        the tracker reads a mouth as more open when the head is turned (0.1 as 0.06 facing the camera, 0.09 turned by
        8 degrees), and a curve made facing it opens a turned mouth too far. Identity where the tracker sees too little
        of the full value (less than ``MIN_READBACK`` more than at rest, as for a blink behind glasses) or loses the
        face.
        """
        indices = _READBACK_INDICES[names]
        seen = []
        for value in READBACK_KNOTS:
            seen_turned = []
            for yaw in READBACK_YAW_RAD:
                motion = np.zeros(MOTION_DIM)
                motion[indices] = value
                motion[ROTATION.start + 1] = yaw
                face = tracker.track(self.render(motion))
                if face is None:
                    return READBACK_KNOTS
                seen_turned.append(face.motion[indices].mean())
            seen.append(float(np.mean(seen_turned)))
        seen = np.maximum.accumulate(np.array(seen))  # monotone, so that it can be inverted
        if seen[-1] - seen[0] < MIN_READBACK:
            return READBACK_KNOTS
        slope = max(seen[-1] - seen[0], least_slope)
        wanted = np.minimum(seen[0] + READBACK_KNOTS * slope, seen[-1])  # a straight line, as far as the rig goes
        strictly = seen + np.arange(len(seen)) * 1e-6  # np.interp needs increasing knots
        return np.interp(wanted, strictly, READBACK_KNOTS)

    def _weights(self, motion: np.ndarray) -> np.ndarray:
        """The blendshape weights (52,) to render for a clean motion frame: clipped to [0, 1], the calibrated ones
        through their read-back curves (:meth:`_calibrate_readback`)."""
        weights = np.clip(motion[BLENDSHAPES], 0.0, 1.0)
        for names, rendered in self.readback.items():
            indices = _READBACK_INDICES[names]
            weights[indices] = np.interp(weights[indices], READBACK_KNOTS, rendered)
        return weights

    def _calibrate_rotation(self, tracker: FaceTracker) -> np.ndarray:
        """The gain (2, 3) for a positive and a negative turn about each axis (pitch, yaw, roll) that makes the
        tracker read back the commanded turn: ``CALIBRATION_RAD`` over the turn read between the rest pose and a
        render turned by it, in [1, ``MAX_ROTATION_GAIN``] (1 where a render is lost)."""
        gain = np.ones((2, 3))
        rest = tracker.track(self.render(np.zeros(MOTION_DIM)))
        for axis in np.flatnonzero(MAX_ROTATION_GAIN > 1.0):
            for row, sign in enumerate((1.0, -1.0)):
                motion = np.zeros(MOTION_DIM)
                motion[ROTATION.start + axis] = sign * CALIBRATION_RAD
                turned = tracker.track(self.render(motion))
                if rest is None or turned is None:
                    continue
                seen = sign * (turned.motion[ROTATION.start + axis] - rest.motion[ROTATION.start + axis])
                if seen > 0:
                    gain[row, axis] = np.clip(CALIBRATION_RAD / seen, 1.0, MAX_ROTATION_GAIN[axis])
        return gain

    # ------------------------------------------------------------------------------------------------------------

    @staticmethod
    def _clean(motion: np.ndarray) -> np.ndarray:
        """A (58,) motion frame as float64 with NaN and infinite entries as 0; StreamError if it is not (58,)."""
        motion = np.nan_to_num(np.asarray(motion, np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        if motion.shape != (MOTION_DIM,):
            msg = f'motion must have shape ({MOTION_DIM},), got {motion.shape}'
            raise StreamError(msg)
        return motion

    def deform(self, motion: np.ndarray) -> np.ndarray:
        """Return the rig points (P, 3) for a (58,) motion frame (pixels; NaN entries count as 0)."""
        motion = self._clean(motion)
        return self._deformed(motion, self._weights(motion))

    def _deformed(self, motion: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """The rig points (P, 3) of a clean motion frame and its blendshape weights to render."""
        points = self._rest + (weights @ self._basis).reshape(self._rest.shape)
        turn = motion[ROTATION]
        turn = turn * np.where(turn >= 0.0, self.rotation_gain[0], self.rotation_gain[1])
        pitch, yaw, roll = MAX_ROTATION_RAD * np.tanh(turn / MAX_ROTATION_RAD)
        tx, ty, tz = np.clip(motion[TRANSLATION], -MAX_TRANSLATION_M, MAX_TRANSLATION_M)
        rotation = HEAD_TO_IMAGE @ rpy_to_matrix(roll, pitch, yaw) @ HEAD_TO_IMAGE.T
        pivot = self.rig.pivot.astype(np.float64)
        scale = 1.0 + tx / VIEW_DISTANCE_M
        # Rotate with the depth relief damped: one photo cannot show the side of the head that a turn reveals,
        # so a full-depth turn stretches the near cheek and folds the far one visibly.
        # The cheek's edge turns with its depth eased (PhotoRig.turn_depth), so that the side a turn reveals widens
        # over the whole cheek, not in a streak at its edge; the depth is given back after the turn.
        relief = (points + self._turn_offset - pivot) * np.array([1.0, 1.0, DEPTH_RELIEF])
        moved = pivot + scale * relief @ rotation.T
        moved[:, 2] = pivot[2] + (moved[:, 2] - pivot[2]) / DEPTH_RELIEF - self._turn_offset[:, 2]
        moved[:, 0] += ty * self._px_per_m
        moved[:, 1] -= tz * self._px_per_m
        rigidity = self.rig.rigidity[:, None].astype(np.float64)
        return points + rigidity * (moved - points)

    def _backward_affines(self, dst_tri: np.ndarray) -> np.ndarray:
        """(F, 3, 2) deformed triangles -> (F + 1, 6) affine maps destination pixel -> portrait pixel (+ identity)."""
        f = len(dst_tri)
        dst_h = np.concatenate([dst_tri, np.ones((f, 3, 1))], axis=2)  # (F, 3, 3)
        det = np.linalg.det(dst_h)  # twice the signed area
        ok = np.abs(det) > np.maximum(SLIVER * self._rest_det, 1e-6)
        coeffs = np.zeros((f + 1, 6))
        coeffs[-1] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)  # label -1: outside the rig, identity
        solved = np.linalg.solve(dst_h[ok], self._rest_tri[ok])  # (n, 3, 2): [x y 1] @ m = source
        coeffs[:-1][ok] = np.concatenate([solved[:, :, 0], solved[:, :, 1]], axis=1)
        # A triangle squeezed to a sliver (a pucker folds the skin at the nasolabial folds) would show its whole
        # texture pressed into a line of specks: it shows the portrait around its rest spot instead, moved along.
        sliver = np.flatnonzero(~ok)
        if len(sliver):
            shift = (self._rest_tri[sliver] - dst_tri[sliver]).mean(axis=1)
            coeffs[sliver] = np.column_stack([np.ones(len(sliver)), np.zeros(len(sliver)), shift[:, 0],
                                              np.zeros(len(sliver)), np.ones(len(sliver)), shift[:, 1]])
        return coeffs.astype(np.float32)

    def _warp_maps(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        tri = points[self.rig.triangles]  # (F, 3, 3)
        coeffs = self._backward_affines(tri[:, :, :2])
        order = np.argsort(-tri[:, :, 2].mean(axis=1))  # far (large depth) first, near ones painted over them
        stride = self.config.grid_stride
        fixed = np.round((tri[:, :, :2] - (stride - 1) / 2.0) / stride * 16.0).astype(np.int32)  # 4 fraction bits
        labels = self._labels
        labels.fill(-1)
        for t in order.tolist():
            cv2.fillConvexPoly(labels, fixed[t], t, lineType=cv2.LINE_8, shift=4)
        c = coeffs[labels]  # (g, g, 6)
        gx, gy = self._gx, self._gy
        dx = c[..., 0] * gx + c[..., 1] * gy + c[..., 2] - gx
        dy = c[..., 3] * gx + c[..., 4] * gy + c[..., 5] - gy
        size = self.config.size
        if stride > 1:
            dx = cv2.resize(dx, (size, size), interpolation=cv2.INTER_LINEAR)
            dy = cv2.resize(dy, (size, size), interpolation=cv2.INTER_LINEAR)
        weight = self.matte.head_weight  # the body and the background stay where they are
        return self._fx + weight * dx, self._fy + weight * dy

    def _prepare_mouth(self) -> None:
        """Cut the portrait's own mouth interior (teeth, if the lips are parted) into an upper and a lower half."""
        up, lo = self._lip_pairs
        rest = self._rest[:, :2]
        self._teeth_visible = self._rest_gap > 0.04 * self.rig.scale_px
        contour = rest[self._inner]
        x0, y0 = np.floor(contour.min(axis=0)).astype(int) - 2
        x1, y1 = np.ceil(contour.max(axis=0)).astype(int) + 3
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, self.size), min(y1, self.size)
        self._mouth_origin = np.array([x0, y0], np.float64)
        self._mouth_patch = self.base[y0:y1, x0:x1].copy()
        mid = 0.5 * (rest[up] + rest[lo])
        corners = rest[[lm.LIPS_UPPER_INNER[0], lm.LIPS_UPPER_INNER[-1]]]
        halves = []
        for lip in (up, lo):
            polygon = np.concatenate([corners[:1], rest[lip], corners[1:], mid[::-1]])
            mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
            cv2.fillPoly(mask, [np.round((polygon - self._mouth_origin) * 16).astype(np.int32)], 255, cv2.LINE_AA, 4)
            halves.append(mask)
        self._mouth_halves = halves
        self._mouth_colours = self._colours_from_portrait()

    def _colours_from_portrait(self) -> dict[str, np.ndarray]:
        """Cavity, tongue and synthetic teeth colours (RGB float) in the colour of the portrait's light, read from
        its skin (see PhotoConfig)."""
        face = np.round(self._rest[:lm.NUM_LANDMARKS, :2]).astype(int).clip(0, self.size - 1)  # mostly skin
        skin = np.median(self.base[face[:, 1], face[:, 0]].astype(float), axis=0)
        light = 1.0 - LIGHT_TINT + LIGHT_TINT * skin / max(float(skin.mean()), 1.0)
        chosen = {'cavity': self.config.cavity_rgb, 'tongue': self.config.tongue_rgb, 'teeth': self.config.teeth_rgb}
        return {name: np.asarray(rgb, float) if rgb is not None else np.clip(MOUTH_RGB[name] * light, 0.0, 255.0)
                for name, rgb in chosen.items()}

    @staticmethod
    def _similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
        """Least-squares 2D similarity (rotation, uniform scale, translation) src -> dst as a 2x3 matrix."""
        src_c, dst_c = src - src.mean(axis=0), dst - dst.mean(axis=0)
        a = np.sum(src_c * dst_c) / max(np.sum(src_c ** 2), 1e-9)
        b = np.sum(src_c[:, 0] * dst_c[:, 1] - src_c[:, 1] * dst_c[:, 0]) / max(np.sum(src_c ** 2), 1e-9)
        m = np.array([[a, -b], [b, a]])
        return np.column_stack([m, dst.mean(axis=0) - src.mean(axis=0) @ m.T])

    def _draw_tongue(self, interior: np.ndarray, lower_lip_centre: np.ndarray, out: float) -> None:
        """Draw the tongue as an ellipse behind the lower lip; ``out`` in [0, 1] pushes it forward and up."""
        s, ey = self.rig.scale_px, self.rig.ey
        centre = np.round((lower_lip_centre - ey * (0.01 + 0.08 * out) * s) * 16).astype(int)
        axes = (int((0.2 - 0.03 * out) * s * 16), int((0.06 + 0.05 * out) * s * 16))
        angle = float(np.degrees(np.arctan2(self.rig.ex[1], self.rig.ex[0])))
        colour = tuple(float(c) for c in self._mouth_colours['tongue'])
        cv2.ellipse(interior, (int(centre[0]), int(centre[1])), axes, angle, 0, 360, colour, -1, cv2.LINE_AA, 4)

    def _paint_mouth(self, image: np.ndarray, points: np.ndarray, motion: np.ndarray) -> None:
        """Paint the mouth interior inside the deformed inner-lip contour, faded in as the lips part."""
        up, lo = self._lip_pairs
        gap = float(np.max(np.linalg.norm(points[lo, :2] - points[up, :2], axis=1)))
        alpha = np.clip((gap - self._rest_gap - 0.5) / 2.5, 0.0, 1.0)
        if alpha <= 0.0:
            return
        contour = points[self._inner, :2]
        x0, y0 = np.floor(contour.min(axis=0)).astype(int) - 2
        x1, y1 = np.ceil(contour.max(axis=0)).astype(int) + 3
        size = self.config.size
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, size), min(y1, size)
        if x1 - x0 < 2 or y1 - y0 < 2:
            return
        roi_w, roi_h = x1 - x0, y1 - y0
        offset = np.array([x0, y0], np.float64)

        def fixed(pts: np.ndarray) -> np.ndarray:
            return np.round((pts - offset) * 16.0).astype(np.int32)

        s, ey = self.rig.scale_px, self.rig.ey
        shade = np.linspace(1.0, 0.6, roi_h, dtype=np.float32)[:, None, None]  # darker towards the throat
        cavity = self._mouth_colours['cavity'].astype(np.float32)
        interior = (cavity * shade).astype(np.uint8) + np.zeros((1, roi_w, 1), np.uint8)
        upper, lower = points[list(lm.LIPS_UPPER_INNER), :2], points[list(lm.LIPS_LOWER_INNER), :2]
        tongue_out = float(np.clip(motion[index_of('tongueOut')], 0.0, 1.0))
        self._draw_tongue(interior, lower[5] - offset, 0.0)
        if self._teeth_visible:  # the portrait's own teeth, riding on their lips
            rest = self._rest[:, :2]
            for lip, half in zip((up, lo), self._mouth_halves):
                m = self._similarity(rest[lip], points[lip, :2])
                m[:, 2] += m[:, :2] @ self._mouth_origin - offset  # patch coordinates -> ROI coordinates
                patch = cv2.warpAffine(self._mouth_patch, m, (roi_w, roi_h), flags=cv2.INTER_LINEAR)
                a = cv2.warpAffine(half, m, (roi_w, roi_h), flags=cv2.INTER_LINEAR)[..., None] / np.float32(255)
                interior = (interior * (1.0 - a) + patch * a).astype(np.uint8)
        else:  # synthetic incisors under the upper lip and a hint of the lower ones
            teeth = self._mouth_colours['teeth']
            top = upper[2:-2]
            cv2.fillPoly(interior, [fixed(np.concatenate([top, top[::-1] + ey * 0.08 * s]))],
                         tuple(int(c) for c in 0.9 * teeth), cv2.LINE_AA, 4)
            cv2.fillPoly(interior, [fixed(np.concatenate([top[1:-1], top[-2:0:-1] + ey * 0.065 * s]))],
                         tuple(int(c) for c in teeth), cv2.LINE_AA, 4)
            gaps = [fixed(np.stack([p, p + ey * 0.075 * s])) for p in top[1:-1]]  # between the incisors
            cv2.polylines(interior, gaps, False, tuple(int(c) for c in 0.7 * teeth), 1, cv2.LINE_AA, 4)
            bottom = lower[3:-3]
            cv2.fillPoly(interior, [fixed(np.concatenate([bottom, bottom[::-1] - ey * 0.035 * s]))],
                         tuple(int(c) for c in 0.75 * teeth), cv2.LINE_AA, 4)
        if tongue_out > 0.0:  # in front of the lower teeth
            self._draw_tongue(interior, lower[5] - offset, tongue_out)
        # Shade towards the mouth corners: the sides of the mouth are deeper and in shadow.
        corners = contour[[0, len(lm.LIPS_UPPER_INNER) - 1]] - offset
        along = (np.arange(roi_w, dtype=np.float32) - 0.5 * corners[:, 0].sum()) / max(np.ptp(corners[:, 0]) / 2, 1.0)
        interior = (interior * np.clip(1.0 - 0.6 * along ** 2, 0.3, 1.0)[None, :, None]).astype(np.uint8)
        mask = np.zeros((roi_h, roi_w), np.uint8)
        cv2.fillPoly(mask, [fixed(contour)], 255, cv2.LINE_AA, 4)
        # The lips overhang the cavity: its rim lies in their shadow, and its border is soft, not a cut.
        cover = mask.astype(np.float32) / 255.0
        rim = np.clip(1.0 - cv2.GaussianBlur(cover, (0, 0), MOUTH_RIM * s), 0.0, 1.0)
        interior = interior * (1.0 - 0.6 * rim)[..., None]
        a = cv2.GaussianBlur(cover, (0, 0), MOUTH_FEATHER * s)[..., None] * alpha
        roi = image[y0:y1, x0:x1]
        roi[:] = (roi * (1.0 - a) + interior * a + 0.5).astype(np.uint8)

    def _prepare_lids(self) -> None:
        """Per eye: upper-lid landmarks, blink basis index and lid skin colour.

        The colour is the brighter half of the skin between the brow and the eye (the brow bone and lid, without
        the crease, lashes and brow hairs, which are darker).
        """
        self._lids = []
        for side, upper, brow in (('Left', lm.LEFT_EYE_UPPER, lm.LEFT_BROW_LOWER),
                                  ('Right', lm.RIGHT_EYE_UPPER, lm.RIGHT_BROW_LOWER)):
            lid, brow_pts = self._rest[list(upper), :2], self._rest[list(brow), :2]
            polygon = np.concatenate([lid, brow_pts[np.argsort(-brow_pts[:, 0] * np.sign(lid[-1, 0] - lid[0, 0]))]])
            mask = np.zeros(self.base.shape[:2], np.uint8)
            cv2.fillPoly(mask, [np.round(polygon).astype(np.int32)], 255)
            pixels = self.base[mask > 0].astype(np.float64)
            if len(pixels) < 10:
                skin = np.median(self.base.reshape(-1, 3), axis=0).astype(np.float64)
            else:
                luma = pixels @ np.array([0.299, 0.587, 0.114])
                skin = pixels[luma >= np.median(luma)].mean(axis=0)
            self._lids.append((np.asarray(upper), index_of(f'eyeBlink{side}'), skin))

    def _paint_lids(self, image: np.ndarray, points: np.ndarray, weights: np.ndarray) -> None:
        """Cover the part of the eye that a closing lid hides with lid skin and a lash line.

        The warp alone stretches the thin skin above the lashes, which in most photos is dark (crease, lashes,
        shadow) and does not read as a closed eye.
        """
        s, ey = self.rig.scale_px, self.rig.ey.astype(np.float64)
        for upper, k, skin in self._lids:
            blink = float(weights[k])
            alpha = float(np.clip((blink - 0.25) / 0.5, 0.0, 1.0)) * 0.9  # a little texture shows through
            if alpha <= 0.0:
                continue
            lash = points[upper, :2]
            opened = lash - blink * self._basis3[k, upper, :2]  # where the lid is with the eye open
            polygon = np.concatenate([lash, opened[::-1] - ey * 0.03 * s])
            x0, y0 = np.floor(polygon.min(axis=0)).astype(int) - 3
            x1, y1 = np.ceil(polygon.max(axis=0)).astype(int) + 4
            x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, self.size), min(y1, self.size)
            if x1 - x0 < 2 or y1 - y0 < 2:
                continue
            origin = np.array([x0, y0], np.float64)
            mask = np.zeros((y1 - y0, x1 - x0), np.float32)
            cv2.fillPoly(mask, [np.round((polygon - origin) * 16).astype(np.int32)], 1.0, cv2.LINE_AA, 4)
            mask = cv2.GaussianBlur(mask, (0, 0), max(0.6, 0.012 * s))[..., None] * alpha
            roi = image[y0:y1, x0:x1]
            shade = np.linspace(1.0, 0.86, y1 - y0, dtype=np.float32)[:, None, None]  # the lid curves under
            lid = np.broadcast_to(skin.astype(np.float32) * shade, roi.shape)
            blended = roi * (1.0 - mask) + lid * mask
            roi[:] = blended.astype(np.uint8)
            thickness = max(1, int(round(0.012 * s)))
            lash_colour = tuple(float(c) * 0.45 for c in skin)
            lash_layer = roi.copy()
            cv2.polylines(lash_layer, [np.round((_smooth_curve(lash, self.rig.ex) - origin) * 16).astype(np.int32)],
                          False, lash_colour, thickness, cv2.LINE_AA, 4)
            roi[:] = (roi * (1.0 - alpha) + lash_layer * alpha).astype(np.uint8)

    def render(self, motion: np.ndarray) -> np.ndarray:
        """Render one (58,) motion frame as a (size, size, 3) uint8 RGB image."""
        clean = self._clean(motion)
        weights = self._weights(clean)
        points = self._deformed(clean, weights)
        map_x, map_y = self._warp_maps(points)
        image = cv2.remap(self.base, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        person = cv2.remap(self.matte.person, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        image = cv2.blendLinear(image, self.matte.plate, person, 1.0 - person)  # the head over the still backdrop
        self._paint_lids(image, points, weights)
        self._paint_mouth(image, points, clean)
        return image


def _smooth_curve(points: np.ndarray, along: np.ndarray, samples: int = 16) -> np.ndarray:
    """Least-squares parabola through (N, 2) points, in the frame of the unit vector ``along``; (samples, 2)."""
    across = np.array([-along[1], along[0]])
    u, v = points @ along, points @ across
    coeffs = np.polyfit(u - u.mean(), v, 2)
    uu = np.linspace(u.min(), u.max(), samples)
    vv = np.polyval(coeffs, uu - u.mean())
    return np.outer(uu, along) + np.outer(vv, across)
