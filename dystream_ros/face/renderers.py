"""The renderer interface (motion frame -> RGB image) and a factory for the two renderers.

Both renderers take a (58,) motion frame (see :mod:`dystream_ros.face.motion`) and return a new
(size, size, 3) uint8 RGB image; NaN or infinite entries count as neutral, blendshapes are clipped to [0, 1] and
the head pose to what the renderer can show. Neither keeps state between frames: the same motion always gives
the same picture, so neutral motion gives a still neutral face.
"""
from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from dystream_ros.errors import ConfigError, DataError

RENDERERS = ('stylised', 'photo')


@runtime_checkable
class Renderer(Protocol):
    """Turns one motion frame into one RGB image."""

    @property
    def size(self) -> int:
        """Output images are ``size`` x ``size`` pixels."""
        ...

    def render(self, motion: np.ndarray) -> np.ndarray:
        """Return the (size, size, 3) uint8 RGB image of a (58,) motion frame."""
        ...


def default_portrait() -> np.ndarray:
    """Return the public-domain astronaut portrait bundled with scikit-image (Eileen Collins, NASA), RGB uint8."""
    from skimage import data  # imported here: only the photo avatar's default needs scikit-image

    return np.ascontiguousarray(data.astronaut())


def load_portrait(path: Path) -> np.ndarray:
    """Read a portrait image file as RGB uint8; raise DataError naming the file if it cannot be read."""
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        msg = f'cannot read portrait image {path}'
        raise DataError(msg)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def make_renderer(kind: str = 'stylised', size: int = 512, portrait: np.ndarray | Path | str | None = None,
                  ) -> Renderer:
    """Build a renderer.

    Args:
        kind: ``'stylised'`` (the default avatar, no real person) or ``'photo'`` (warps a portrait).
        size: output size in pixels.
        portrait: for ``'photo'``: an RGB uint8 image or an image file; the astronaut portrait when None.

    Raises:
        ConfigError: for an unknown kind. DataError: if the portrait cannot be read or has no face.
    """
    if kind == 'stylised':
        from dystream_ros.face.stylised import StylisedConfig, StylisedFace

        return StylisedFace(StylisedConfig(size=size))
    if kind == 'photo':
        from dystream_ros.face.photo import PhotoAvatar, PhotoConfig

        if portrait is None:
            image = default_portrait()
        elif isinstance(portrait, (str, Path)):
            image = load_portrait(Path(portrait))
        else:
            image = np.asarray(portrait)
        return PhotoAvatar(image, PhotoConfig(size=size))
    msg = f'unknown renderer {kind!r}: choose one of {", ".join(RENDERERS)}'
    raise ConfigError(msg)
