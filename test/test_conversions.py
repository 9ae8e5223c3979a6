"""Our numpy -> sensor_msgs/Image conversion, checked against an independent decoder (rosbags-image)."""
from __future__ import annotations

import numpy as np
import pytest
from rclpy.serialization import deserialize_message, serialize_message
from rosbags.image import message_to_cvimage
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from dystream_ros.errors import DataError
from dystream_ros.nodes.conversions import image_message, stamp_ns, time_message


@pytest.mark.parametrize('shape', [(512, 512, 3), (480, 640, 3), (1, 7, 3)])
def test_image_message_decodes_to_the_same_pixels_with_rosbags_image(shape: tuple[int, int, int]) -> None:
    rgb = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    header = Header(stamp=time_message(1_732_500_000_040_000_000), frame_id='face')
    message = deserialize_message(serialize_message(image_message(rgb, header)), Image)  # as a subscriber sees it
    assert (message.height, message.width, message.encoding, message.step) == (shape[0], shape[1], 'rgb8',
                                                                                shape[1] * 3)
    np.testing.assert_array_equal(message_to_cvimage(message, 'rgb8'), rgb)
    np.testing.assert_array_equal(message_to_cvimage(message, 'bgr8'), rgb[..., ::-1])
    assert stamp_ns(message.header.stamp) == 1_732_500_000_040_000_000


def test_a_non_rgb_array_is_refused_with_its_shape() -> None:
    with pytest.raises(DataError, match=r'\(4, 4\) float64'):
        image_message(np.zeros((4, 4)), Header())
