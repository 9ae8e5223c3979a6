"""The deformation rig of the photo avatar: how each blendshape and the head pose move a portrait's landmarks.

Built once from the 478 landmarks of a portrait (pixels, with MediaPipe's relative depth):

* rig points: the landmarks plus two rings around the face: ``ring1`` (hair and neck, 1.3x the face outline from
  its centre, moves with the head) and ``ring2`` (2.2x, fixed: the background beyond it never moves);
* triangles: MediaPipe's canonical face mesh (the eye openings re-triangulated as fans around the iris centres,
  so that the gaze can move) plus strips between the outline and the rings;
* a linear blendshape basis ``basis[k]`` (P, 3): the displacement of every rig point at weight 1 of blendshape k.
  Each blendshape is a rule written in a face frame (unit ``s`` = the distance between the outer eye corners,
  axes along and across the eye line): a few driver landmarks move, neighbours follow with a Gaussian falloff.
  The jaw drops each mandible point in proportion to its depth in front of the ear axis, so the chin moves most,
  and draws the mouth corners in;
* the depth that a head turn uses (``turn_depth``): the landmarks' own, eased towards the face outline's over a band
  inside it (see :func:`_turn_depth`).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from dystream_ros.face import landmarks as lm
from dystream_ros.face.assets import canonical_mesh
from dystream_ros.face.motion import BLENDSHAPE_NAMES, NUM_BLENDSHAPES

RING1_SCALE = 1.3  # hair/neck ring, as a multiple of the face outline's distance from the face centre
RING2_SCALE = 2.2  # fixed ring: nothing beyond it moves
JAW_DROP = 0.36  # chin drop at jawOpen = 1, in units of the outer eye-corner distance (about 3 cm)
JAW_NARROW = 0.05  # how far each mouth corner moves in at jawOpen = 1, in the same units
OUTLINE_BAND = 0.35  # width of the band inside the face outline whose depth is eased for turns, eye-corner units
CANTHI_M = 0.089  # distance between the outer eye corners of MediaPipe's canonical face, metres
VIEW_DISTANCE_M = 0.6  # assumed camera distance, converts headX (towards the viewer) to a scale change


@dataclass(frozen=True)
class PhotoRig:
    """Rig points, triangles and deformation basis of one portrait (pixel units of the render size)."""

    points: np.ndarray  # (P, 3) float32 rest positions: x, y pixels, depth (more negative = nearer the viewer)
    triangles: np.ndarray  # (F, 3) int32
    mouth_triangles: np.ndarray  # (F,) bool: inside the inner lip contour (covered by the mouth interior)
    basis: np.ndarray  # (52, P, 3) float32 displacement per unit blendshape weight
    rigidity: np.ndarray  # (P,) float32 in [0, 1]: how much a point follows the head pose
    turn_depth: np.ndarray  # (P,) float32: the depth a head turn moves each point by (see _turn_depth)
    pivot: np.ndarray  # (3,) head rotation centre
    scale_px: float  # s: outer eye corner distance in pixels
    ex: np.ndarray  # (2,) unit vector from the subject's right eye to the left eye (image)
    ey: np.ndarray  # (2,) unit vector from the eyes towards the chin (image)


def _star_ring(centre: np.ndarray, outline: np.ndarray, scale: float, size: int) -> np.ndarray:
    ring = centre + scale * (outline - centre)
    return np.clip(ring, 0.0, size - 1.0)


def _strip(inner: list[int], outer: list[int]) -> list[tuple[int, int, int]]:
    """Triangles joining two closed loops with the same number of points (a quad strip, two triangles a quad)."""
    n = len(inner)
    tris: list[tuple[int, int, int]] = []
    for i in range(n):
        j = (i + 1) % n
        tris.append((inner[i], outer[i], outer[j]))
        tris.append((inner[i], outer[j], inner[j]))
    return tris


def _eye_fan(upper: tuple[int, ...], lower: tuple[int, ...], centre: int) -> list[tuple[int, int, int]]:
    loop = lm.closed_contour(upper, lower)
    return [(loop[i], loop[(i + 1) % len(loop)], centre) for i in range(len(loop))]


class _RuleBook:
    """Writes the blendshape rules in the face frame; collects the basis."""

    def __init__(self, points: np.ndarray, num_landmarks: int, scale: float, ex: np.ndarray, ey: np.ndarray):
        self.p = points
        self.n = num_landmarks
        self.s = scale
        self.ex, self.ey = ex, ey
        self.basis = np.zeros((NUM_BLENDSHAPES, len(points), 3), np.float32)
        origin = points[[lm.RIGHT_EYE_OUTER, lm.LEFT_EYE_OUTER], :2].mean(axis=0)
        rel = points[:, :2] - origin
        self.a = rel @ ex / scale  # across the face, + towards the subject's left
        self.b = rel @ ey / scale  # down the face, + towards the chin

    def vec(self, da: float | np.ndarray, db: float | np.ndarray, dd: float | np.ndarray = 0.0) -> np.ndarray:
        """Face-frame displacement(s) in units of s -> pixel displacement(s) (..., 3)."""
        da, db, dd = np.broadcast_arrays(np.asarray(da, float), np.asarray(db, float), np.asarray(dd, float))
        xy = da[..., None] * self.ex + db[..., None] * self.ey
        return np.concatenate([xy, dd[..., None]], axis=-1) * self.s

    def add(self, name: str, drivers: list[int] | tuple[int, ...], disp: np.ndarray, *, sigma: float = 0.0,
            receivers: np.ndarray | None = None, gain: float = 1.0) -> None:
        """Move ``drivers`` by ``disp`` (pixels, (len, 3) or (3,)) at weight 1 of ``name``; spread to ``receivers``.

        A receiver j moves by sum_i g_ij d_i / max(1, sum_i g_ij) * gain with g_ij = exp(-|p_i - p_j|^2 / 2 sigma^2)
        (sigma in units of s): close to one driver it follows it, far from all it stays.
        """
        k = BLENDSHAPE_NAMES.index(name)
        drivers = list(drivers)
        disp = np.broadcast_to(np.asarray(disp, np.float32), (len(drivers), 3))
        if sigma > 0.0:
            mask = np.ones(len(self.p), bool) if receivers is None else receivers.copy()
            mask[drivers] = False
            targets = np.flatnonzero(mask)
            d2 = np.sum((self.p[targets, None, :2] - self.p[None, drivers, :2]) ** 2, axis=-1)
            g = np.exp(-d2 / (2.0 * (sigma * self.s) ** 2))
            self.basis[k, targets] += gain * (g @ disp) / np.maximum(1.0, g.sum(axis=1, keepdims=True))
        self.basis[k, drivers] += disp

    def mask(self, indices: list[int] | tuple[int, ...] | np.ndarray, landmarks_only: bool = True) -> np.ndarray:
        m = np.zeros(len(self.p), bool)
        m[list(indices)] = True
        if landmarks_only:
            m[self.n:] = False
        return m

    def region(self, *, a_min: float = -9.0, a_max: float = 9.0, b_min: float = -9.0, b_max: float = 9.0,
               landmarks_only: bool = True) -> np.ndarray:
        m = (self.a >= a_min) & (self.a <= a_max) & (self.b >= b_min) & (self.b <= b_max)
        if landmarks_only:
            m[self.n:] = False
        return m


def _jaw_rules(book: _RuleBook, points: np.ndarray, pivot: np.ndarray, ring1: list[int]) -> None:
    """jawOpen, jawLeft/Right, jawForward, mouthClose: the mandible and lower lip."""
    upper_lip = set(lm.LIPS_UPPER_OUTER) | set(lm.LIPS_UPPER_INNER)
    lower_lip = (set(lm.LIPS_LOWER_OUTER) | set(lm.LIPS_LOWER_INNER)) - upper_lip
    corners = set(lm.LIPS_UPPER_OUTER[::10]) | set(lm.LIPS_UPPER_INNER[::10])
    corner_b = book.b[[lm.MOUTH_CORNER_RIGHT, lm.MOUTH_CORNER_LEFT]].mean()
    below = book.b - corner_b  # s units below the mouth-corner line
    weight = np.clip(below / 0.3, 0.0, 1.0)
    weight = weight * weight * (3 - 2 * weight)  # smoothstep: skin beside the mouth follows the jaw partly
    # The lower lip opens like an ellipse: fully in the middle, less towards the corners.
    lower_idx = np.asarray(sorted(lower_lip))
    for contour in (lm.LIPS_LOWER_OUTER, lm.LIPS_LOWER_INNER):  # each relative to its own corners
        corner_a = book.a[[contour[0], contour[-1]]]
        inside = np.asarray(contour[1:-1])
        along = np.clip(np.abs(2.0 * book.a[inside] - corner_a.sum()) / max(np.ptp(corner_a), 1e-6), 0.0, 1.0)
        weight[inside] = 0.4 + 0.6 * np.sqrt(1.0 - along ** 2)
    weight[list(upper_lip)] = 0.0
    weight[list(corners)] = 0.4
    weight[book.n:] = 0.0
    # The mandible turns about the ear axis: a point drops in proportion to how far in front of the hinge it is
    # (MediaPipe's depth), so the chin drops most and the jaw corners little. The lips move as one piece so that
    # their inner and outer contours do not cross.
    forward = np.clip(pivot[2] - points[:, 2], 0.0, None)
    drop_b = JAW_DROP * book.s * forward / max(forward[lm.CHIN], 1e-6)
    drop_d = 0.3 * drop_b * ((points[:, :2] - pivot[:2]) @ book.ey) / max(forward[lm.CHIN], 1e-6)  # and back
    drop_b[lower_idx] = drop_b[lower_idx].mean()
    drop_d[lower_idx] = drop_d[lower_idx].mean()
    disp = np.zeros_like(points)
    disp[:, :2] = drop_b[:, None] * book.ey
    disp[:, 2] = drop_d
    jaw = np.flatnonzero(weight > 0.0)
    book.add('jawOpen', jaw, disp[jaw] * weight[jaw, None])
    # The mouth narrows as the jaw drops: its corners move in. A mouth opened as wide as it is at rest is read by the
    # FaceLandmarker as the head pitched down, by about 3 degrees at a `jawOpen` read as 0.4.
    corners_in = [lm.MOUTH_CORNER_RIGHT, lm.LIPS_UPPER_INNER[0], lm.MOUTH_CORNER_LEFT, lm.LIPS_UPPER_INNER[-1]]
    book.add('jawOpen', corners_in, book.vec(JAW_NARROW * np.array([1.0, 1.0, -1.0, -1.0]), 0.0), sigma=0.12)
    # The hair/neck ring below the chin follows part of the way, so the skin under the chin stretches, not folds.
    k = BLENDSHAPE_NAMES.index('jawOpen')
    for ring_point, outline_point in zip(ring1, lm.FACE_OVAL):
        book.basis[k, ring_point] = 0.7 * book.basis[k, outline_point]
    lips = np.flatnonzero(np.isin(np.arange(book.n), sorted(lower_lip)))
    book.add('mouthClose', lips, -disp[lips] * weight[lips, None])
    for name, side in (('jawLeft', 1.0), ('jawRight', -1.0)):
        book.add(name, jaw, book.vec(0.1 * side * weight[jaw], 0.0))
    book.add('jawForward', jaw, book.vec(0.0, 0.02 * weight[jaw], -0.1 * weight[jaw]))


def _lip_rules(book: _RuleBook) -> None:
    """Mouth corners and lips."""
    upper = sorted(set(lm.LIPS_UPPER_OUTER[1:-1]) | set(lm.LIPS_UPPER_INNER[1:-1]))
    lower = sorted(set(lm.LIPS_LOWER_OUTER[1:-1]) | set(lm.LIPS_LOWER_INNER[1:-1]))
    all_lips = sorted(set(upper) | set(lower) | {61, 291, 78, 308})
    skin = book.region(b_min=book.b[2] + 0.03) & ~book.mask(all_lips)  # below the nose (2: subnasale)
    lips_and_skin = skin | book.mask(all_lips)
    mouth_centre_a = book.a[[13, 14]].mean()
    for side, sign in (('Left', 1.0), ('Right', -1.0)):
        corner = [lm.MOUTH_CORNER_LEFT, 308] if sign > 0 else [lm.MOUTH_CORNER_RIGHT, 78]
        side_upper = [i for i in upper if (book.a[i] - mouth_centre_a) * sign > 0.0]
        side_lower = [i for i in lower if (book.a[i] - mouth_centre_a) * sign > 0.0]
        rec = lips_and_skin.copy()
        book.add(f'mouthSmile{side}', corner, book.vec(0.08 * sign, -0.07), sigma=0.15, receivers=rec)
        book.add(f'mouthFrown{side}', corner, book.vec(0.02 * sign, 0.09), sigma=0.2, receivers=rec)
        book.add(f'mouthStretch{side}', corner, book.vec(0.10 * sign, 0.04), sigma=0.2, receivers=rec)
        book.add(f'mouthDimple{side}', corner, book.vec(0.05 * sign, -0.01, 0.03), sigma=0.15, receivers=rec)
        book.add(f'mouthUpperUp{side}', side_upper, book.vec(0.0, -0.06), sigma=0.12, receivers=skin)
        book.add(f'mouthLowerDown{side}', side_lower, book.vec(0.0, 0.07), sigma=0.12, receivers=skin)
        press = [i for i in lm.LIPS_UPPER_OUTER[1:-1] if (book.a[i] - mouth_centre_a) * sign > 0]
        book.add(f'mouthPress{side}', press, book.vec(0.0, 0.02))
        press_low = [i for i in lm.LIPS_LOWER_OUTER[1:-1] if (book.a[i] - mouth_centre_a) * sign > 0]
        book.add(f'mouthPress{side}', press_low, book.vec(0.0, -0.02))
        book.add(f'mouth{side}', all_lips, book.vec(0.12 * sign, 0.0), sigma=0.25, receivers=skin)
        nose = [64, 48, 219] if sign < 0 else [294, 278, 439]
        book.add(f'noseSneer{side}', nose, book.vec(0.0, -0.035), sigma=0.12,
                 receivers=book.region(b_min=book.b[lm.NOSE_TIP] - 0.1, b_max=book.b[2] + 0.2))
    corners = [lm.MOUTH_CORNER_RIGHT, lm.MOUTH_CORNER_LEFT]
    inward = np.array([1.0, -1.0])  # the right corner moves towards the subject's left, and vice versa
    book.add('mouthPucker', corners, book.vec(0.13 * inward, 0.0, -0.05), sigma=0.2, receivers=lips_and_skin)
    book.add('mouthFunnel', corners, book.vec(0.08 * inward, 0.0), sigma=0.2, receivers=lips_and_skin)
    book.add('mouthFunnel', list(lm.LIPS_UPPER_INNER[2:-2]), book.vec(0.0, -0.03))
    book.add('mouthFunnel', list(lm.LIPS_LOWER_INNER[2:-2]), book.vec(0.0, 0.05))
    book.add('mouthRollUpper', list(lm.LIPS_UPPER_OUTER[2:-2]), book.vec(0.0, 0.025))
    book.add('mouthRollLower', list(lm.LIPS_LOWER_OUTER[2:-2]), book.vec(0.0, -0.025))
    book.add('mouthShrugUpper', upper, book.vec(0.0, -0.03), sigma=0.1, receivers=skin)
    book.add('mouthShrugLower', lower + [lm.CHIN, 17, 18, 200, 199], book.vec(0.0, -0.04), sigma=0.15, receivers=skin)
    cheeks = [50, 280, 205, 425, 187, 411]
    away = np.sign(book.a[cheeks] - mouth_centre_a)
    book.add('cheekPuff', cheeks, book.vec(0.05 * away, 0.0, -0.03), sigma=0.2, receivers=skin)


def _eye_rules(book: _RuleBook) -> None:
    """Lids, gaze and brows."""
    eyes = (
        ('Left', lm.LEFT_EYE_UPPER, lm.LEFT_EYE_LOWER, lm.LEFT_IRIS_CENTER, lm.LEFT_IRIS, lm.LEFT_BROW_LOWER,
         lm.LEFT_BROW_UPPER, 1.0),
        ('Right', lm.RIGHT_EYE_UPPER, lm.RIGHT_EYE_LOWER, lm.RIGHT_IRIS_CENTER, lm.RIGHT_IRIS, lm.RIGHT_BROW_LOWER,
         lm.RIGHT_BROW_UPPER, -1.0),
    )
    for side, upper, lower, iris_c, iris, brow_low, brow_up, sign in eyes:
        up, lo = list(upper[1:-1]), list(lower[1:-1])
        gap = book.p[lo] - book.p[up]  # (7, 3) per column, lid to lid
        eye_a = book.a[list(upper) + list(lower)]
        near = book.region(a_min=eye_a.min() - 0.25, a_max=eye_a.max() + 0.25)
        eye_b = book.b[iris_c]
        eye_pts = book.mask(list(upper) + list(lower) + [iris_c, *iris])
        above = near & (book.b < eye_b) & ~eye_pts
        below = near & (book.b > eye_b) & ~eye_pts
        meet = 0.8  # the upper lid travels most of the way
        closed_line = book.p[up] + meet * gap
        # The lid skin up to the brow slides down with the lid, so the crease lands on the lash line.
        lid_skin = above & ~book.mask(list(brow_low) + list(brow_up))
        book.add(f'eyeBlink{side}', up, meet * gap * 1.02, sigma=0.16, receivers=lid_skin, gain=0.9)
        book.add(f'eyeBlink{side}', lo, -(1.0 - meet) * gap * 1.02, sigma=0.1, receivers=below, gain=0.5)
        centre_target = closed_line[len(up) // 2] - book.p[iris_c]
        book.add(f'eyeBlink{side}', [iris_c, *iris], centre_target)
        book.add(f'eyeSquint{side}', lo, -0.3 * gap, sigma=0.1, receivers=below, gain=0.6)
        book.add(f'eyeSquint{side}', up, 0.12 * gap)
        book.add(f'cheekSquint{side}', lo, -0.15 * gap, sigma=0.2, receivers=below, gain=0.8)
        book.add(f'eyeWide{side}', up, -0.3 * gap, sigma=0.1, receivers=above, gain=0.5)
        width = np.ptp(eye_a)
        height = float(np.linalg.norm(gap[len(up) // 2, :2])) / book.s
        out = sign  # looking out: towards the subject's own side
        book.add(f'eyeLookOut{side}', [iris_c, *iris], book.vec(0.28 * width * out, 0.0))
        book.add(f'eyeLookIn{side}', [iris_c, *iris], book.vec(-0.28 * width * out, 0.0))
        book.add(f'eyeLookUp{side}', [iris_c, *iris], book.vec(0.0, -0.3 * height))
        book.add(f'eyeLookUp{side}', up, book.vec(0.0, -0.15 * height))
        book.add(f'eyeLookDown{side}', [iris_c, *iris], book.vec(0.0, 0.3 * height))
        book.add(f'eyeLookDown{side}', up, book.vec(0.0, 0.25 * height))
        brow = list(brow_low) + list(brow_up)
        forehead = book.region(b_max=eye_b) & ~eye_pts  # brow points that are not drivers follow too
        inner_first = brow_low[0] if sign > 0 else brow_low[-1]
        inner = [i for i in brow if abs(book.a[i] - book.a[inner_first]) < 0.12]
        outer = [i for i in brow if abs(book.a[i] - book.a[inner_first]) > 0.22]
        book.add(f'browDown{side}', brow, book.vec(-0.03 * sign, 0.09), sigma=0.15, receivers=forehead, gain=0.8)
        book.add(f'browOuterUp{side}', outer, book.vec(0.0, -0.1), sigma=0.15, receivers=forehead, gain=0.8)
        book.add('browInnerUp', inner, book.vec(0.0, -0.1), sigma=0.15, receivers=forehead, gain=0.8)


def _turn_depth(points: np.ndarray, num_landmarks: int, scale: float, ring1: list[int]) -> np.ndarray:
    """The depth (P,) that a head turn moves each rig point by: the landmarks' own, eased towards the depth of
    the nearest point of the face outline over a band ``OUTLINE_BAND`` wide inside it (landmarks outside the outline
    take its depth); the hair ring halfway between the ears' depth and its outline point's.

    Near the outline a face curves away from the camera: MediaPipe's depth climbs by about 0.6 eye-corner distances
    over the last 0.1, where the photo shows the side of the cheek foreshortened into a thin band. Turned with that
    depth, the band is stretched threefold on the side the turn reveals and the cheek's edge is smeared into streaks.
    Eased, the same widening is spread over the whole band (about 1.5-fold): the outline and the nose move as before,
    and the tracker reads more of the turn from the same warp (the avatar calibrates its gain to that). The hair
    ring at the ears' depth stays back while the forehead's outline, 0.9 nearer, comes forward: tilted back, the
    head pressed the fringe into a fold of bright hair; halfway, it is not.
    """
    depth = points[:, 2].astype(np.float64).copy()
    outline = points[list(lm.FACE_OVAL)].astype(np.float64)
    start, step = outline, np.roll(outline, -1, axis=0) - outline  # the outline's segments
    xy = points[:num_landmarks, :2].astype(np.float64)
    t = np.clip(np.einsum('nsk,sk->ns', xy[:, None] - start[None, :, :2], step[:, :2])
                / np.maximum(np.sum(step[:, :2] ** 2, axis=1), 1e-9), 0.0, 1.0)  # (N, segments)
    gap = np.linalg.norm(xy[:, None] - start[None, :, :2] - t[..., None] * step[None, :, :2], axis=-1)
    nearest = np.argmin(gap, axis=1)
    rows = np.arange(num_landmarks)
    outline_depth = start[nearest, 2] + t[rows, nearest] * step[nearest, 2]
    polygon = outline[:, None, :2].astype(np.float32)
    inside = np.array([cv2.pointPolygonTest(polygon, (float(x), float(y)), False) > 0 for x, y in xy])
    ease = np.clip(np.where(inside, gap[rows, nearest], 0.0) / (OUTLINE_BAND * scale), 0.0, 1.0)
    ease = ease * ease * (3 - 2 * ease)  # smoothstep: 0 on the outline, 1 from the band's inner edge
    depth[:num_landmarks] = outline_depth + ease * (depth[:num_landmarks] - outline_depth)
    depth[ring1] = 0.5 * (depth[ring1] + outline[:, 2])
    return depth


def build_rig(landmarks_px: np.ndarray, size: int) -> PhotoRig:
    """Build the rig of a portrait from its (478, 3) landmarks in pixels of the (size, size) render.

    Args:
        landmarks_px: x, y in pixels and MediaPipe's depth scaled like x (``FaceObservation.landmarks_px``).
        size: render size in pixels (the portrait has been cropped to it).
    """
    lmk = np.asarray(landmarks_px, np.float64)
    n = len(lmk)
    oval = np.asarray(lm.FACE_OVAL)
    centre = lmk[oval, :2].mean(axis=0)
    ring1 = _star_ring(centre, lmk[oval, :2], RING1_SCALE, size)
    ring2 = _star_ring(centre, lmk[oval, :2], RING2_SCALE, size)
    ear_depth = lmk[[lm.RIGHT_EAR_SIDE, lm.LEFT_EAR_SIDE], 2].mean()
    ring_pts = np.concatenate([ring1, ring2])
    points = np.concatenate([lmk, np.column_stack([ring_pts, np.full(len(ring_pts), ear_depth)])])
    ring1_idx = list(range(n, n + len(oval)))
    ring2_idx = list(range(n + len(oval), n + 2 * len(oval)))

    eye_sets = [set(lm.RIGHT_EYE_UPPER) | set(lm.RIGHT_EYE_LOWER), set(lm.LEFT_EYE_UPPER) | set(lm.LEFT_EYE_LOWER)]
    face_tris = [tuple(t) for t in canonical_mesh().triangles if not any(set(t) <= e for e in eye_sets)]
    face_tris += _eye_fan(lm.RIGHT_EYE_UPPER, lm.RIGHT_EYE_LOWER, lm.RIGHT_IRIS_CENTER)
    face_tris += _eye_fan(lm.LEFT_EYE_UPPER, lm.LEFT_EYE_LOWER, lm.LEFT_IRIS_CENTER)
    triangles = np.asarray(face_tris + _strip(list(oval), ring1_idx) + _strip(ring1_idx, ring2_idx), np.int32)
    inner_lips = set(lm.LIPS_UPPER_INNER) | set(lm.LIPS_LOWER_INNER)
    mouth = np.array([set(t.tolist()) <= inner_lips for t in triangles])

    ex = lmk[lm.LEFT_EYE_OUTER, :2] - lmk[lm.RIGHT_EYE_OUTER, :2]
    scale = float(np.linalg.norm(ex))
    ex = ex / scale
    ey = np.array([-ex[1], ex[0]])
    pivot = np.array([*lmk[[lm.RIGHT_EAR_SIDE, lm.LEFT_EAR_SIDE], :2].mean(axis=0), ear_depth + 0.15 * scale])

    book = _RuleBook(points, n, scale, ex, ey)
    _jaw_rules(book, points, pivot, ring1_idx)
    _lip_rules(book)
    _eye_rules(book)

    # Head pose: the face and ring1 turn with the head; the neck end of ring1 only partly; ring2 stays.
    rigidity = np.zeros(len(points), np.float32)
    rigidity[:n] = 1.0
    chin_b = book.b[lm.CHIN]
    ring_b = book.b[ring1_idx]
    rigidity[ring1_idx] = np.clip(1.0 - 0.5 * (ring_b - book.b[lm.NOSE_TIP]) / max(chin_b - book.b[lm.NOSE_TIP], 1e-6),
                                  0.5, 1.0)
    return PhotoRig(points.astype(np.float32), triangles, mouth, book.basis, rigidity,
                    _turn_depth(points, n, scale, ring1_idx).astype(np.float32), pivot.astype(np.float32), scale,
                    ex.astype(np.float32), ey.astype(np.float32))
