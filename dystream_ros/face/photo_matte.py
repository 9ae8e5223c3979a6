"""The photo avatar's matte: which pixels of the portrait are the person, which of them move with the head, and what
the background looks like behind them. Built once per portrait, with no model: OpenCV's GrabCut, seeded by the face
landmarks.

A warp alone drags whatever lies near the face: turned, the head pulls the backdrop beside the hair and the collar
below the chin along with it. With the matte the avatar warps only the head (``head_weight`` scales the warp: 1 on
the head, easing to 0 down the neck, so shoulders and clothes stay put), carries the person's outline along with the
same warp, and lays the result over ``plate``: the portrait with the person replaced by the background around them,
which a turn uncovers where the head was.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from dystream_ros.face import landmarks as lm

GRABCUT_SIZE = 256  # GrabCut runs at this resolution (seconds at 512), its mask is upsampled
GRABCUT_ITERATIONS = 5
SURE_FACE = 0.95  # the face outline shrunk about its centre by this: certainly the person
LIKELY_HEAD = 1.45  # ... grown by this: probably the person (hair, ears)
FRINGE_PX = 3  # the person's outline is taken this much wide (pixels at the render size)
EDGE_PX = 1.5  # softness of the person's outline (Gaussian sigma, pixels)
MIN_ISLAND = 0.002  # person pieces smaller than this fraction of the image are GrabCut's noise, dropped
HAIR_REACH = 1.6  # the hair and the ears lie within the face outline grown about its centre by this
HEAD_BELOW_CHIN = 0.55  # the head reaches this far below the chin (the dropped jaw, a nod), in eye-corner units
NECK_EASE = 0.15  # sigma of the ease from the head to the still body, in eye-corner units


@dataclass(frozen=True)
class PhotoMatte:
    """Per-pixel layers of one portrait at the render size."""

    person: np.ndarray  # (H, W) float32 in [0, 1]: the person's alpha (1 inside, soft outline outside)
    head_weight: np.ndarray  # (H, W) float32 in [0, 1]: the share of the warp a pixel follows
    plate: np.ndarray  # (H, W, 3) uint8: the portrait with the person filled in from the background around them


def _polygon_mask(shape: tuple[int, int], polygon: np.ndarray) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    cv2.fillPoly(mask, [np.round(polygon).astype(np.int32)], 1)
    return mask


def _person_mask(image: np.ndarray, landmarks_px: np.ndarray) -> np.ndarray:
    """(H, W) uint8 0/1: GrabCut seeded with the face as certain, the hair ring and all below the chin as likely."""
    size = image.shape[0]
    k = GRABCUT_SIZE / size
    small = cv2.resize(image, (GRABCUT_SIZE, GRABCUT_SIZE), interpolation=cv2.INTER_AREA)
    oval = landmarks_px[list(lm.FACE_OVAL), :2] * k
    centre = oval.mean(axis=0)
    shape = (GRABCUT_SIZE, GRABCUT_SIZE)
    seeds = np.full(shape, cv2.GC_PR_BGD, np.uint8)
    chin_row = int(landmarks_px[lm.CHIN, 1] * k)
    seeds[chin_row:] = cv2.GC_PR_FGD  # the neck and the body
    seeds[_polygon_mask(shape, centre + LIKELY_HEAD * (oval - centre)) == 1] = cv2.GC_PR_FGD
    seeds[_polygon_mask(shape, centre + SURE_FACE * (oval - centre)) == 1] = cv2.GC_FGD
    seeds[:2], seeds[:, :2], seeds[:, -2:] = cv2.GC_BGD, cv2.GC_BGD, cv2.GC_BGD  # the frame's top and sides
    background_model, foreground_model = np.zeros((1, 65)), np.zeros((1, 65))
    cv2.grabCut(small, seeds, None, background_model, foreground_model, GRABCUT_ITERATIONS, cv2.GC_INIT_WITH_MASK)
    person = np.isin(seeds, (cv2.GC_FGD, cv2.GC_PR_FGD)).astype(np.uint8)
    person = cv2.morphologyEx(person, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(person, connectivity=4)
    small_pieces = np.flatnonzero(stats[:, cv2.CC_STAT_AREA] < MIN_ISLAND * GRABCUT_SIZE ** 2)
    person[np.isin(labels, small_pieces[small_pieces > 0])] = 0
    person = cv2.resize(person.astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR) >= 0.5
    # a margin of the backdrop goes with the person: the outline's blend of hair and backdrop moves with the hair
    margin = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * FRINGE_PX + 1, 2 * FRINGE_PX + 1))
    return cv2.dilate(person.astype(np.uint8), margin)


def _fill_from_around(image: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """``image`` with the pixels where ``hole`` is 1 replaced by the colours around them: a pull-push pyramid
    (averages of the known pixels over ever larger areas, filled back from coarse to fine), smooth and seamless."""
    known = (1 - hole).astype(np.float32)
    levels = [(image.astype(np.float32) * known[..., None], known)]
    while min(levels[-1][1].shape) > 4:
        colour, weight = levels[-1]
        levels.append((cv2.pyrDown(colour), cv2.pyrDown(weight)))
    colour, weight = levels[-1]
    filled = np.broadcast_to(colour.sum(axis=(0, 1)) / max(float(weight.sum()), 1e-6), colour.shape)
    for colour, weight in reversed(levels):
        coarse = cv2.resize(np.ascontiguousarray(filled), weight.shape[::-1], interpolation=cv2.INTER_LINEAR)
        mean = colour / np.maximum(weight, 1e-6)[..., None]
        trust = np.clip(4.0 * weight, 0.0, 1.0)[..., None]  # a level is trusted where enough known pixels fell
        filled = trust * mean + (1.0 - trust) * coarse
    out = image.copy()
    out[hole == 1] = np.clip(np.round(filled[hole == 1]), 0, 255).astype(np.uint8)
    return out


def build_matte(image: np.ndarray, landmarks_px: np.ndarray, scale_px: float, down: np.ndarray) -> PhotoMatte:
    """The matte of a (size, size, 3) uint8 portrait from its (478, 3) landmarks in pixels.

    Args:
        scale_px: the outer eye-corner distance in pixels (the rig's unit).
        down: (2,) unit vector from the eyes towards the chin in the image.
    """
    shape = image.shape[:2]
    person = _person_mask(image, landmarks_px)
    # The head: the person above a line a little below the chin, and the face outline stretched down to that line.
    rows, cols = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float32)
    chin = landmarks_px[lm.CHIN, :2]
    below_chin = ((cols - chin[0]) * down[0] + (rows - chin[1]) * down[1]) / scale_px
    oval = landmarks_px[list(lm.FACE_OVAL), :2]
    dropped = oval + HEAD_BELOW_CHIN * scale_px * down * np.clip((oval - oval.mean(axis=0)) @ down, 0, None)[:, None] \
        / max(float(np.max((oval - oval.mean(axis=0)) @ down)), 1.0)
    centre = oval.mean(axis=0)
    hair = _polygon_mask(shape, centre + HAIR_REACH * (oval - centre)) & (below_chin < 0.0)
    head = (person & hair) | _polygon_mask(shape, oval) | _polygon_mask(shape, dropped)
    eased = cv2.GaussianBlur(head.astype(np.float32), (0, 0), NECK_EASE * scale_px)
    head_weight = np.maximum(head.astype(np.float32), np.clip(2.0 * eased, 0.0, 1.0))
    soft = cv2.GaussianBlur(person.astype(np.float32), (0, 0), EDGE_PX)
    return PhotoMatte(person=np.maximum(person.astype(np.float32), soft), head_weight=head_weight,
                      plate=_fill_from_around(image, person))
