"""One voice's way in: message bytes -> mono float32 -> 16 kHz -> placed on the engine clock by its stamps.

:class:`VoiceInput` chains the :class:`~dystream_ros.audio.formats.Decoder`, the
:class:`~dystream_ros.audio.resample.Resampler` and the voice's one
:class:`~dystream_ros.audio.timeline.StreamTimeline`, carries each message's stamp through the resampler's delay,
counts what had to be repaired, and measures how late the stream's audio arrives after its stamps (a USB array
behind a driver buffer delivers 250 ms after capture), so the engine waits as long as this voice needs. The engine
reads the timeline; the bag tools and the speaker (audio_player_node) use the same placement.
"""
from __future__ import annotations

from collections import Counter, deque

from dystream_ros.audio.formats import AudioFormat, AudioIssue, Decoder
from dystream_ros.audio.resample import Resampler
from dystream_ros.audio.timeline import StreamTimeline
from dystream_ros.units import NS_PER_S, SAMPLE_RATE_HZ

DELAY_WINDOW = 100  # messages behind the delivery delay (1 s of 10 ms messages)


class VoiceInput:
    """One input stream: decoder -> resampler -> timeline, and what went wrong on the way."""

    def __init__(self, audio_format: AudioFormat, epoch_ns: int, capacity_s: float) -> None:
        self.decoder = Decoder(audio_format)
        self.resampler = Resampler(audio_format.sample_rate_hz)
        self.timeline = StreamTimeline(epoch_ns, capacity_s=capacity_s)
        self.issues: Counter[AudioIssue] = Counter()
        self._arrivals: deque[tuple[int, int]] = deque(maxlen=512)  # (written_until after a write, arrival_ns)
        self._delays_ns: deque[int] = deque(maxlen=DELAY_WINDOW)  # arrival - engine time of the chunk's end

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
        if len(data) // self.decoder.format.frame_bytes * SAMPLE_RATE_HZ > self.timeline.capacity * rate:
            # no live stream sends that (a bug, a wrong topic): refused before decoding it, which would hold the node
            # up for seconds while the audio behind it waits
            self.issues.update([AudioIssue.TOO_LARGE])
            return [AudioIssue.TOO_LARGE]
        samples, issues = self.decoder.decode(data)
        inputs_before, outputs_before = self.resampler.inputs_seen, self.resampler.outputs_made
        resampled = self.resampler.process(samples)
        if len(resampled):
            first_ns = None  # unstamped: the timeline plays it from its arrival
            if stamp_ns is not None:
                # the stamp of the first output sample: its time in the input, less the resampling filter's delay
                first_ns = stamp_ns + round((outputs_before / SAMPLE_RATE_HZ - self.resampler.delay_s
                                             - inputs_before / rate) * NS_PER_S)
            issues += self.timeline.write(first_ns, resampled, arrival_ns, shared_offset_ns)
            self._arrivals.append((self.timeline.written_until, arrival_ns))
            if stamp_ns is not None and AudioIssue.CLOCK_JUMP not in issues:
                self._delays_ns.append(arrival_ns - self.timeline.time_of(self.timeline.last_placed_end))
        self.issues.update(issues)
        return issues

    @property
    def delivery_delay_ns(self) -> int:
        """How late after its sound the audio of this voice has arrived lately (the latest of the last messages: a
        frame that waits this long loses none of them; 0 for audio that comes on time or early, and unstamped)."""
        return max(max(self._delays_ns, default=0), 0)

    def active(self, now_ns: int, inactive_after_ns: int) -> bool:
        """Whether the voice published within ``inactive_after_ns`` of ``now_ns``."""
        last = self.timeline.last_arrival_ns
        return last is not None and now_ns - last <= inactive_after_ns

    def arrival_of(self, sample_index: int) -> int | None:
        """When the audio up to ``sample_index`` arrived, if it has."""
        return next((arrival for written, arrival in self._arrivals if written >= sample_index), None)
