"""One voice's way in: message bytes -> mono float32 -> 16 kHz -> placed on the engine clock by its stamps.

:class:`VoiceInput` chains the :class:`~dystream_ros.audio.formats.Decoder`, the
:class:`~dystream_ros.audio.resample.Resampler` and the voice's one
:class:`~dystream_ros.audio.timeline.StreamTimeline`, carries each message's stamp through the resampler's delay,
and counts what had to be repaired. The engine reads the timeline; the bag tools use the same placement offline.
"""
from __future__ import annotations

from collections import Counter, deque

from dystream_ros.audio.formats import AudioFormat, AudioIssue, Decoder
from dystream_ros.audio.resample import Resampler
from dystream_ros.audio.timeline import StreamTimeline
from dystream_ros.units import NS_PER_S, SAMPLE_RATE_HZ


class VoiceInput:
    """One input stream: decoder -> resampler -> timeline, and what went wrong on the way."""

    def __init__(self, audio_format: AudioFormat, epoch_ns: int, capacity_s: float) -> None:
        self.decoder = Decoder(audio_format)
        self.resampler = Resampler(audio_format.sample_rate_hz)
        self.timeline = StreamTimeline(epoch_ns, capacity_s=capacity_s)
        self.issues: Counter[AudioIssue] = Counter()
        self._arrivals: deque[tuple[int, int]] = deque(maxlen=512)  # (written_until after a write, arrival_ns)

    @property
    def audio_format(self) -> AudioFormat:
        """The format the bytes are decoded with."""
        return self.decoder.format

    def set_format(self, audio_format: AudioFormat) -> list[AudioIssue]:
        """Decode with ``audio_format`` from now on (an AudioInfo message, or a parameter)."""
        issues = self.decoder.set_format(audio_format)
        if issues:
            self.resampler = Resampler(audio_format.sample_rate_hz)
        return issues

    def push(self, data: bytes, stamp_ns: int | None, arrival_ns: int,
             shared_offset_ns: int | None = None) -> list[AudioIssue]:
        """Add one message: its bytes, the stamp of its first sample (None: unstamped) and when it arrived.

        ``shared_offset_ns`` is the other voice's timeline offset (see :meth:`StreamTimeline.write`). Returns what
        had to be repaired.
        """
        rate = self.decoder.format.sample_rate_hz
        samples, issues = self.decoder.decode(data)
        if stamp_ns is None:  # plain AudioData: assume the chunk was captured just before it arrived
            stamp_ns = arrival_ns - len(samples) * NS_PER_S // rate
        inputs_before, outputs_before = self.resampler.inputs_seen, self.resampler.outputs_made
        resampled = self.resampler.process(samples)
        if len(resampled):
            # the stamp of the first output sample: its time in the input, less the resampling filter's delay
            first_ns = stamp_ns + round((outputs_before / SAMPLE_RATE_HZ - self.resampler.delay_s
                                         - inputs_before / rate) * NS_PER_S)
            issues += self.timeline.write(first_ns, resampled, arrival_ns, shared_offset_ns)
            self._arrivals.append((self.timeline.written_until, arrival_ns))
        self.issues.update(issues)
        return issues

    def active(self, now_ns: int, inactive_after_ns: int) -> bool:
        """Whether the voice published within ``inactive_after_ns`` of ``now_ns``."""
        last = self.timeline.last_arrival_ns
        return last is not None and now_ns - last <= inactive_after_ns

    def arrival_of(self, sample_index: int) -> int | None:
        """When the audio up to ``sample_index`` arrived, if it has."""
        return next((arrival for written, arrival in self._arrivals if written >= sample_index), None)
