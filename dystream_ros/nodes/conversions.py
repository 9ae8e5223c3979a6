"""numpy <-> ROS messages, in the few lines that the broken PyPI cv_bridge cannot be trusted with."""
from __future__ import annotations

import sys

import numpy as np
from builtin_interfaces.msg import Time
from sensor_msgs.msg import Image
from std_msgs.msg import Header

NS_PER_S = 1_000_000_000


def time_message(stamp_ns: int) -> Time:
    """builtin_interfaces/Time of a stamp in integer nanoseconds."""
    return Time(sec=int(stamp_ns // NS_PER_S), nanosec=int(stamp_ns % NS_PER_S))


def stamp_ns(time: Time) -> int:
    """Integer nanoseconds of a builtin_interfaces/Time."""
    return int(time.sec) * NS_PER_S + int(time.nanosec)


def image_message(rgb: np.ndarray, header: Header) -> Image:
    """sensor_msgs/Image (rgb8) of an (H, W, 3) uint8 array.

    The pixels go in as one ``bytes`` object: assigning the array itself makes rclpy copy it element by element,
    about 300 times slower for a 512x512 image.
    """
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        msg = f'expected an (H, W, 3) uint8 image, got {rgb.shape} {rgb.dtype}'
        raise ValueError(msg)
    height, width = rgb.shape[:2]
    image = Image(header=header, height=height, width=width, encoding='rgb8',
                  is_bigendian=int(sys.byteorder == 'big'), step=width * 3)
    image.data = np.ascontiguousarray(rgb).tobytes()
    return image
