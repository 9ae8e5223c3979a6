"""The few constants every room shares: the engine's sample rate and frame rate, time units, the two voices."""
from __future__ import annotations

SAMPLE_RATE_HZ = 16000  # every stream is resampled to 16 kHz mono before the model sees it
FPS = 25  # motion frames per second
SAMPLES_PER_FRAME = SAMPLE_RATE_HZ // FPS  # 640 samples = 40 ms
NS_PER_S = 1_000_000_000
STREAMS = ('self', 'partner')  # the robot's own voice, and the person it talks with
