"""Raw audio message bytes -> float32 mono samples, whatever the publisher sends, and what was wrong with it.

Publishers in the audio_common world send interleaved PCM in one of a few encodings, at any rate, in chunks of
any size, sometimes with a byte count that is not a whole number of frames. A :class:`Decoder` reads every message
from a sample boundary (a stray byte at the end of one message is dropped, so it cannot shift every later sample into
noise), keeps the channels asked for (a microphone array's beamformed channel, not its playback reference) and mixes
them to mono, and reports every problem it repairs as an :class:`AudioIssue`, so the node can log each kind once and
count it in diagnostics.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np
from scipy.signal import lfilter

from dystream_ros.errors import ConfigError

# sample_format (GStreamer notation, as in AudioInfo) -> numpy dtype and full scale
ENCODINGS: dict[str, tuple[np.dtype, float]] = {
    'S16LE': (np.dtype('<i2'), 32768.0),
    'S32LE': (np.dtype('<i4'), 2147483648.0),
    'F32LE': (np.dtype('<f4'), 1.0),
}
MIN_RATE_HZ, MAX_RATE_HZ = 8000, 48000
MAX_CHANNELS = 8


class AudioIssue(enum.Enum):
    """Something wrong with incoming audio that the pipeline repaired; the value says what to fix."""

    PARTIAL_FRAME = ('byte count is not a whole number of sample frames (the incomplete frame at the end was dropped; '
                     'the next message is read from its first byte)')
    NOT_FINITE = 'NaN or infinite samples (replaced by silence)'
    CLIPPED = 'samples at full scale: the input gain is too high'
    DC_OFFSET = 'a constant (DC) offset in the signal: check the microphone or its driver'
    EMPTY = 'an empty message (ignored)'
    TOO_LARGE = 'a message longer than the whole audio buffer (dropped; the audio around it is kept)'
    TOO_EARLY = ('audio stamped further ahead than the buffer holds (dropped): stamp audio with the time it will be '
                 'played, or send it unstamped')
    GAP = 'a gap in the stamps (filled with silence)'
    OVERLAP = 'a duplicated or overlapping message (dropped the repeated part)'
    LATE = 'audio arrived after its frame was generated (dropped)'
    CLOCK_JUMP = 'the stamps jumped backwards or far forwards (e.g. a bag looping): re-synchronised'
    FORMAT_CHANGED = 'the audio format changed mid-stream (decoding with the new one)'
    RATE_MISMATCH = ('read as declared, the audio does not fit the time between its stamps: the declared sample '
                     'rate or channel count is wrong (fix AudioInfo or the node\'s *_sample_rate / *_channels), or '
                     'the stamps are not capture times')


@dataclass(frozen=True)
class AudioFormat:
    """How the bytes of one audio stream are laid out (the fields of AudioInfo that matter)."""

    sample_rate_hz: int = 16000
    channels: int = 1
    sample_format: str = 'S16LE'
    channel_select: tuple[int, ...] = ()  # interleaved channels mixed to mono (0-based); empty: all of them

    def __post_init__(self) -> None:
        if self.sample_format not in ENCODINGS:
            msg = f'sample_format {self.sample_format!r} is not supported; use one of {", ".join(ENCODINGS)}'
            raise ConfigError(msg)
        if not MIN_RATE_HZ <= self.sample_rate_hz <= MAX_RATE_HZ:
            msg = f'sample rate {self.sample_rate_hz} Hz is outside {MIN_RATE_HZ}..{MAX_RATE_HZ} Hz'
            raise ConfigError(msg)
        if not 1 <= self.channels <= MAX_CHANNELS:
            msg = f'{self.channels} channels: expected 1 to {MAX_CHANNELS} (interleaved)'
            raise ConfigError(msg)
        object.__setattr__(self, 'channel_select', tuple(int(c) for c in self.channel_select))
        bad = [c for c in self.channel_select if not 0 <= c < self.channels]
        if bad or len(set(self.channel_select)) != len(self.channel_select):
            msg = (f'channel_select {list(self.channel_select)}: expected distinct channel indices in '
                   f'0..{self.channels - 1} (the stream has {self.channels} interleaved channels)')
            raise ConfigError(msg)

    @property
    def frame_bytes(self) -> int:
        """Bytes of one multi-channel sample frame."""
        return ENCODINGS[self.sample_format][0].itemsize * self.channels


_DC_POLE = 0.999  # DC blocker y[n] = x[n] - x[n-1] + a*y[n-1]: -3 dB below 3 Hz at 16 kHz, nothing audible lost


class Decoder:
    """Decodes one stream's messages.

    Each message is decoded on its own from its first byte (publishers put whole sample frames in a message; one
    that does not is an error in that message alone). The only state is the DC blocker's memory, so the output of
    whole-frame messages does not depend on how the publisher chunks the audio.
    """

    def __init__(self, audio_format: AudioFormat) -> None:
        self.format = audio_format
        self._dc_state = np.zeros(1)

    def set_format(self, audio_format: AudioFormat) -> list[AudioIssue]:
        """Switch to a new format (from an AudioInfo message or a parameter)."""
        if audio_format == self.format:
            return []
        self.format, self._dc_state = audio_format, np.zeros(1)
        return [AudioIssue.FORMAT_CHANGED]

    def decode(self, data: bytes) -> tuple[np.ndarray, list[AudioIssue]]:
        """Return the mono samples (float32, full scale 1.0) in ``data`` and the issues repaired on the way."""
        issues: list[AudioIssue] = []
        if not data:
            return np.zeros(0, np.float32), [AudioIssue.EMPTY]
        dtype, full_scale = ENCODINGS[self.format.sample_format]
        usable = len(data) - len(data) % self.format.frame_bytes
        if usable != len(data):
            issues.append(AudioIssue.PARTIAL_FRAME)
        frames = np.frombuffer(bytes(data[:usable]), dtype).reshape(-1, self.format.channels)
        if self.format.channel_select:
            frames = frames[:, list(self.format.channel_select)]
        samples = frames.astype(np.float32).mean(axis=1) / np.float32(full_scale)
        if dtype.kind == 'f':
            finite = np.isfinite(samples)
            if not finite.all():
                issues.append(AudioIssue.NOT_FINITE)
                samples = np.where(finite, samples, np.float32(0.0))
            samples = np.clip(samples, -1.0, 1.0)
        if samples.size:
            if np.mean(np.abs(samples) >= 0.999) > 0.001:
                issues.append(AudioIssue.CLIPPED)
            if samples.size >= 160 and abs(float(samples.mean())) > 0.1:
                issues.append(AudioIssue.DC_OFFSET)
            filtered, self._dc_state = lfilter([1.0, -1.0], [1.0, -_DC_POLE], samples, zi=self._dc_state)
            samples = filtered.astype(np.float32)
        return samples, issues
