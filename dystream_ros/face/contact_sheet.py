"""Contact sheet of both renderers over a range of expressions: ``docs/faces.png``.

``python -m dystream_ros.face.contact_sheet [--out docs/faces.png] [--portrait IMAGE] [--tile 256]``

Each column is one motion frame; the stylised face is drawn above the photo avatar (the public-domain astronaut
portrait from scikit-image unless ``--portrait`` is given) so that the two can be compared.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from dystream_ros.face.motion import motion_frame
from dystream_ros.face.renderers import make_renderer

# (label, motion): visemes, expressions, gaze and head pose.
EXPRESSIONS: tuple[tuple[str, dict[str, float]], ...] = (
    ('neutral', {}),
    ('"ah" jawOpen .7', {'jawOpen': 0.7, 'mouthLowerDownLeft': 0.3, 'mouthLowerDownRight': 0.3}),
    ('"oo" pucker', {'jawOpen': 0.2, 'mouthPucker': 0.9, 'mouthFunnel': 0.6}),
    ('"ee" stretch', {'jawOpen': 0.15, 'mouthStretchLeft': 0.6, 'mouthStretchRight': 0.6,
                      'mouthSmileLeft': 0.3, 'mouthSmileRight': 0.3}),
    ('smile', {'mouthSmileLeft': 0.9, 'mouthSmileRight': 0.9, 'cheekSquintLeft': 0.5, 'cheekSquintRight': 0.5}),
    ('blink', {'eyeBlinkLeft': 1.0, 'eyeBlinkRight': 1.0}),
    ('surprise', {'browInnerUp': 0.9, 'browOuterUpLeft': 0.8, 'browOuterUpRight': 0.8, 'eyeWideLeft': 0.7,
                  'eyeWideRight': 0.7, 'jawOpen': 0.35}),
    ('frown', {'browDownLeft': 0.9, 'browDownRight': 0.9, 'mouthFrownLeft': 0.8, 'mouthFrownRight': 0.8,
               'eyeSquintLeft': 0.4, 'eyeSquintRight': 0.4}),
    ('look left', {'eyeLookOutLeft': 0.9, 'eyeLookInRight': 0.9}),
    ('yaw +0.3 rad', {'headYaw': 0.3}),
    ('yaw -0.3 rad', {'headYaw': -0.3}),
    ('pitch +0.25, roll', {'headPitch': 0.25, 'headRoll': 0.2, 'jawOpen': 0.3}),
)


def contact_sheet(renderers: list, frames: Sequence[tuple[str, np.ndarray]] | None = None, tile: int = 256,
                  columns: int = 6) -> np.ndarray:
    """Return the RGB sheet: blocks of ``columns`` labelled motion frames (:data:`EXPRESSIONS` when None), one row
    per renderer in each block."""
    if frames is None:
        frames = [(label, motion_frame(**values)) for label, values in EXPRESSIONS]
    label_h = max(18, tile // 9)
    blocks = []
    for start in range(0, len(frames), columns):
        chunk = frames[start:start + columns]
        band = np.full((label_h, tile * columns, 3), 24, np.uint8)
        for i, (label, _) in enumerate(chunk):
            scale = tile / 420
            (w, h), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_DUPLEX, scale, 1)
            cv2.putText(band, label, (i * tile + (tile - w) // 2, (label_h + h) // 2), cv2.FONT_HERSHEY_DUPLEX,
                        scale, (235, 235, 235), 1, cv2.LINE_AA)
        rows = [band]
        for renderer in renderers:
            row = np.full((tile, tile * columns, 3), 24, np.uint8)
            for i, (_, motion) in enumerate(chunk):
                image = renderer.render(motion)
                row[:, i * tile:(i + 1) * tile] = cv2.resize(image, (tile, tile), interpolation=cv2.INTER_AREA)
            rows.append(row)
        blocks.append(np.concatenate(rows))
    return np.concatenate(blocks)


def write_png(path: Path, rgb: np.ndarray) -> Path:
    """Write an RGB image as a compressed PNG (folders made as needed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    return path


def main(argv: list[str] | None = None) -> int:
    """Write the contact sheet."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', type=Path, default=Path('docs/faces.png'))
    parser.add_argument('--portrait', default=None, help='portrait image for the photo avatar')
    parser.add_argument('--tile', type=int, default=256, help='tile size in pixels')
    args = parser.parse_args(argv)
    renderers = [make_renderer('stylised'), make_renderer('photo', portrait=args.portrait)]
    sheet = contact_sheet(renderers, tile=args.tile)
    write_png(args.out, sheet)
    print(f'wrote {args.out} ({sheet.shape[1]}x{sheet.shape[0]})')
    return 0


if __name__ == '__main__':
    sys.exit(main())
