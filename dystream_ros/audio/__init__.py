"""Audio in: message bytes -> mono float32 -> 16 kHz -> each stream placed on the engine clock (no rclpy here)."""
from dystream_ros.audio.formats import AudioFormat, AudioIssue, Decoder
from dystream_ros.audio.resample import Resampler
from dystream_ros.audio.timeline import StreamTimeline, crop

__all__ = ['AudioFormat', 'AudioIssue', 'Decoder', 'Resampler', 'StreamTimeline', 'crop']
