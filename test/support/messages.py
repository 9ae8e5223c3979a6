"""One non-trivial instance of each dystream_ros message, built the same way in every test process."""
from __future__ import annotations

import numpy as np
from builtin_interfaces.msg import Duration, Time
from geometry_msgs.msg import Quaternion, Vector3
from std_msgs.msg import Header

from dystream_ros.msg import AudioData, AudioDataStamped, AudioInfo, FaceMotion
from dystream_ros.units import SAMPLE_RATE_HZ

# topic -> message type, in the order the tests publish them
TOPICS = {
    'self_audio': AudioDataStamped,
    'partner_audio': AudioData,
    'audio_info': AudioInfo,
    'face/motion': FaceMotion,
}


def sample_messages() -> dict[str, object]:
    """Return topic -> message, with every field set to a value that is not its default."""
    pcm = (np.sin(np.linspace(0.0, 40.0, 640)) * 12000).astype('<i2').tobytes()  # 40 ms of S16LE
    stamp = Time(sec=1_732_500_000, nanosec=123_456_789)
    names = ['jawOpen', 'eyeBlinkLeft', 'eyeBlinkRight', 'mouthSmileLeft']
    return {
        'self_audio': AudioDataStamped(header=Header(stamp=stamp, frame_id='robot_voice'), audio=AudioData(data=pcm)),
        'partner_audio': AudioData(data=pcm[::-1]),
        'audio_info': AudioInfo(channels=1, sample_rate=SAMPLE_RATE_HZ, sample_format='S16LE', bitrate=256000,
                                coding_format='WAVE'),
        'face/motion': FaceMotion(
            header=Header(stamp=stamp, frame_id='avatar_head'),
            frame_index=4242,
            blendshape_names=names,
            blendshape_weights=[0.75, 0.125, 0.25, 0.5],
            head_rotation=Quaternion(x=0.0, y=0.0998, z=0.0, w=0.995),
            head_translation=Vector3(x=0.01, y=-0.02, z=0.005),
            activity=FaceMotion.ACTIVITY_SPEAKING,
            self_voice_activity=0.875,
            partner_voice_activity=0.0625,
            latency=Duration(sec=0, nanosec=87_000_000),
        ),
    }
