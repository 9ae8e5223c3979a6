"""The one image layout of the face room: RGB, (height, width, 3), uint8; checked where images come in."""
from __future__ import annotations

import numpy as np

from dystream_ros.errors import DataError


def check_rgb(image: np.ndarray, what: str = 'image') -> np.ndarray:
    """``image`` as an array; DataError naming ``what`` unless it is an (H, W, 3) uint8 RGB image."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        msg = f'the {what} must be an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}'
        raise DataError(msg)
    return image
