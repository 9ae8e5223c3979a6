"""Audio in: message bytes -> mono float32 -> 16 kHz -> each voice on the engine clock, and who speaks (no rclpy)."""
from dystream_ros.audio.formats import AudioFormat, AudioIssue, Decoder
from dystream_ros.audio.resample import Resampler
from dystream_ros.audio.timeline import StreamTimeline, crop
from dystream_ros.audio.voice import VoiceInput

__all__ = ['AudioFormat', 'AudioIssue', 'Decoder', 'Resampler', 'StreamTimeline', 'VoiceInput', 'crop']
