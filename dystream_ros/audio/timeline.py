"""One audio stream placed on the engine's clock by its stamps, whatever the publisher gets wrong.

The engine asks "what did this stream sound like between sample i and j of my clock?"; a :class:`StreamTimeline`
answers from the chunks it was given, with silence where nothing arrived, and says which samples were heard at all
(so that voice activity does not learn from filled-in silence).

Where a chunk goes:

- **Stamps on the engine's clock** (within ``trust_past_s`` before and ``trust_future_s`` after the chunk's arrival:
  a microphone stamping capture times, a TTS stamping the time its utterance will be played) are taken as they are.
  A microphone whose audio arrives 250 ms after its stamps is known to be late by that much (the engine waits for
  it), and a TTS utterance stamped 0.5 s ahead is placed 0.5 s ahead (the engine shows its frames then).
- **Stamps from another clock** (an old bag, simulated time) map to the engine's clock through an offset fixed by
  the first chunk (a live chunk ends when it arrives) and re-fixed when the stamps stop following each other (a bag
  looping, a publisher restarting). Chunks may arrive faster than real time (a bag replayed as fast as possible):
  they are placed by their stamps.
- **No stamp** (plain AudioData): the chunk plays from its arrival, chained after the audio still playing, so a
  TTS burst sent faster than real time is laid end to end from the arrival of its first chunk.

Publishers jitter: a chunk within ``jitter_tolerance_s`` of where the previous one ended is taken as contiguous.
The samples live in a ring buffer of ``capacity_s``: a minute-long utterance in one message fits.
"""
from __future__ import annotations

from collections import deque

import numpy as np

from dystream_ros.audio.formats import AudioIssue
from dystream_ros.units import NS_PER_S, SAMPLE_RATE_HZ


def crop(audio: np.ndarray, start: int, end: int) -> np.ndarray:
    """``audio[start:end]`` as a new float32 array, where indices outside ``audio`` read as silence."""
    out = np.zeros(end - start, np.float32)
    lo, hi = max(start, 0), min(end, len(audio))
    if hi > lo:
        out[lo - start:hi - start] = audio[lo:hi]
    return out


class RateCheck:
    """Whether a stream's audio, read at its declared format, fills the time between its stamps.

    A publisher that declares the wrong sample rate or channel count (48 kHz sent as 16 kHz, stereo as mono) sends
    messages a fixed factor longer or shorter than the time between their stamps, so every message looks like an
    overlap or a gap. A real gap (a pause in publishing) is one odd step among regular ones: the check wants the same
    factor in most of the last ``window`` messages before it reports. Steps longer than ``max_step_s`` are pauses
    between utterances (a TTS that publishes each sentence whole), not the pace of a stream, and are not counted.
    """

    def __init__(self, window: int = 25, tolerance: float = 0.15, max_step_s: float = 0.5) -> None:
        self.tolerance = tolerance
        self.max_step_ns = int(max_step_s * NS_PER_S)
        self._ratios: deque[float] = deque(maxlen=window)  # message duration / time to the next stamp
        self._previous: tuple[int, int] | None = None  # (stamp, duration) of the previous message
        self.ratio = 1.0  # audio time per stamp time, as last measured in a mismatch: 3.0 for 48 kHz read as 16 kHz

    def add(self, stamp_ns: int, duration_ns: int) -> bool:
        """Note one message; True when the last ``window`` messages show a mismatch (then once per window)."""
        previous, self._previous = self._previous, (stamp_ns, duration_ns)
        if previous is None or not 0 < stamp_ns - previous[0] <= self.max_step_ns:  # first, out of order, a pause
            return False
        self._ratios.append(previous[1] / (stamp_ns - previous[0]))
        if len(self._ratios) < (self._ratios.maxlen or 0):
            return False
        ratios = np.array(self._ratios)
        ratio = float(np.median(ratios))
        if abs(ratio - 1.0) <= self.tolerance or np.mean(np.abs(ratios / ratio - 1.0) <= 0.1) < 0.8:
            return False
        self.ratio = ratio
        self._ratios.clear()
        return True


class StreamTimeline:
    """A ring buffer of one 16 kHz stream on the engine clock (sample index 0 = ``epoch_ns``)."""

    def __init__(self, epoch_ns: int, capacity_s: float = 120.0, jitter_tolerance_s: float = 0.02,
                 resync_threshold_s: float = 0.5, trust_past_s: float = 2.0, trust_future_s: float = 30.0) -> None:
        self.epoch_ns = int(epoch_ns)
        self.capacity = int(capacity_s * SAMPLE_RATE_HZ)
        self.jitter = int(jitter_tolerance_s * SAMPLE_RATE_HZ)
        self.resync_threshold_ns = int(resync_threshold_s * NS_PER_S)
        self.trust_past_ns, self.trust_future_ns = int(trust_past_s * NS_PER_S), int(trust_future_s * NS_PER_S)
        self._samples = np.zeros(self.capacity, np.float32)  # sample i lives at i % capacity
        self._heard = np.zeros(self.capacity, bool)  # whether sample i came from a message (not filled silence)
        self.written_until = 0  # end (exclusive) of the newest audio written
        self.written_from: int | None = None  # start of the earliest audio written
        self.consumed_until = 0  # the engine has generated frames from everything before this index
        self.last_arrival_ns: int | None = None
        self.on_engine_clock = False  # the newest chunk was placed on the engine's clock (its stamp, or unstamped)
        self.unstamped = False  # the newest chunk had no stamp
        self.last_placed_end = 0  # where the newest chunk ended on the engine clock (before any of it was dropped)
        self._offset_ns: int | None = None  # stamps from another clock: engine time = stamp + offset
        self._last_stamp_end_ns = 0  # stream clock: where the previous chunk ended
        self.rate_check = RateCheck()
        self._chunk_stamps: deque[tuple[int, int, int]] = deque(maxlen=4096)  # (start, end, stamp of start)

    def index_of(self, engine_time_ns: int) -> int:
        """The sample index of an engine time."""
        return round((engine_time_ns - self.epoch_ns) * SAMPLE_RATE_HZ / NS_PER_S)

    def time_of(self, index: int) -> int:
        """The engine time (ns) of a sample index."""
        return self.epoch_ns + index * NS_PER_S // SAMPLE_RATE_HZ

    @property
    def offset_ns(self) -> int | None:
        """Engine time - stamp: 0 for stamps on the engine's clock, None before the first stamped chunk."""
        return self._offset_ns

    def write(self, stamp_ns: int | None, samples: np.ndarray, arrival_ns: int,
              shared_offset_ns: int | None = None) -> list[AudioIssue]:
        """Place ``samples`` (16 kHz, the first one at ``stamp_ns`` on the stream's own clock, or None for an
        unstamped chunk) that arrived at ``arrival_ns`` (engine clock). Return what had to be repaired.

        ``shared_offset_ns`` is another stream's offset: if this stream's first stamps from another clock agree with
        it (they come from the same clock), both streams are placed by their stamps alone, so a voice that reaches
        us later than the other (a network microphone) is known to be late instead of being shifted in time.
        """
        n = len(samples)
        if n == 0:
            return [AudioIssue.EMPTY]
        if n > self.capacity:
            # longer than the whole buffer: no live stream sends that (a bug, a wrong topic); placing it would
            # push the stream minutes ahead of the clock, so it is dropped and the audio around it is kept
            return [AudioIssue.TOO_LARGE]
        if stamp_ns is None:
            start, stamp_ns, issues = self._place_unstamped(arrival_ns), None, []
        else:
            start, issues = self._place_stamped(stamp_ns, n, arrival_ns, shared_offset_ns)
        keep_from = max(self.consumed_until, self.written_from or 0)  # the oldest audio not used yet
        if self.written_until > keep_from and start + n - self.capacity > keep_from:
            return [*issues, AudioIssue.TOO_EARLY]  # it would overwrite audio the engine has not used yet
        self.last_arrival_ns = int(arrival_ns)
        self.last_placed_end = start + n
        if stamp_ns is None:
            stamp_ns = self.time_of(start)
        if abs(start - self.written_until) <= self.jitter:
            start = self.written_until  # stamp jitter: contiguous
        elif start > self.written_until:
            if self.written_from is not None and not self.unstamped:  # unstamped: a pause between utterances
                issues.append(AudioIssue.GAP)
        elif start + n <= self.written_until and start >= self.consumed_until:
            # an out-of-order chunk filling a hole is fine; one that repeats audio already here is dropped
            if np.any(self.heard(start, start + n)):
                return [*issues, AudioIssue.OVERLAP]
        else:
            skip = min(self.written_until, start + n) - start
            issues.append(AudioIssue.LATE if start < self.consumed_until else AudioIssue.OVERLAP)
            samples, start, stamp_ns = samples[skip:], start + skip, stamp_ns + skip * NS_PER_S // SAMPLE_RATE_HZ
        if start < self.consumed_until:  # the part before what the engine used is late
            late = self.consumed_until - start
            samples, start, stamp_ns = samples[late:], self.consumed_until, stamp_ns + late * NS_PER_S // SAMPLE_RATE_HZ
            if AudioIssue.LATE not in issues:
                issues.append(AudioIssue.LATE)
        if len(samples):
            self._store(start, samples)
            self._chunk_stamps.append((start, start + len(samples), stamp_ns))
        return issues

    def _place_unstamped(self, arrival_ns: int) -> int:
        """Where an unstamped chunk starts: after the audio still playing, or at its arrival."""
        self.on_engine_clock, self.unstamped = True, True
        arrival = self.index_of(arrival_ns)
        if self.written_from is not None and self.written_until >= arrival - self.jitter:
            return self.written_until  # chained after what is still playing (a TTS burst)
        return max(arrival, self.consumed_until)

    def _place_stamped(self, stamp_ns: int, n: int, arrival_ns: int,
                       shared_offset_ns: int | None) -> tuple[int, list[AudioIssue]]:
        """Where a stamped chunk starts on the engine clock, and whether its stamps misbehave."""
        issues: list[AudioIssue] = []
        self.unstamped = False
        duration_ns = n * NS_PER_S // SAMPLE_RATE_HZ
        if self.rate_check.add(stamp_ns, duration_ns):
            issues.append(AudioIssue.RATE_MISMATCH)
        was_on_engine_clock = self.on_engine_clock
        self.on_engine_clock = -self.trust_past_ns <= stamp_ns - arrival_ns <= self.trust_future_ns
        if self.on_engine_clock:
            self._offset_ns = 0
        elif self._offset_ns is None:  # the first chunk from another clock: a live chunk ends when it arrives
            self._offset_ns = arrival_ns - duration_ns - stamp_ns
            if shared_offset_ns is not None and abs(shared_offset_ns - self._offset_ns) <= self.resync_threshold_ns:
                self._offset_ns = shared_offset_ns
        elif was_on_engine_clock or self._clock_jumped(stamp_ns, arrival_ns):
            # continue right after the newest audio instead of leaving a hole or overwriting
            issues.append(AudioIssue.CLOCK_JUMP)
            self._offset_ns = self.time_of(self.written_until) - stamp_ns
        self._last_stamp_end_ns = stamp_ns + duration_ns
        return self.index_of(stamp_ns + self._offset_ns), issues

    def _clock_jumped(self, stamp_ns: int, arrival_ns: int) -> bool:
        """The stamps went back (a bag looping, a publisher restarting) or leapt forward further than the time
        that passed between arrivals (a clock reset). A real pause in publishing leaps as far as the arrivals."""
        stamp_step = stamp_ns - self._last_stamp_end_ns
        arrival_step = arrival_ns - (self.last_arrival_ns or arrival_ns)
        return stamp_step < -self.resync_threshold_ns or stamp_step > arrival_step + self.resync_threshold_ns

    def _store(self, start: int, samples: np.ndarray) -> None:
        end = start + len(samples)
        if start > self.written_until:  # the hole before this chunk is silence, not audio a lap older
            self._ring_write(self.written_until, np.zeros(min(start - self.written_until, self.capacity), np.float32),
                             heard=False)
        self._ring_write(start, samples, heard=True)
        self.written_until = max(self.written_until, end)
        self.written_from = start if self.written_from is None else min(self.written_from, start)

    def _ring_write(self, start: int, samples: np.ndarray, *, heard: bool) -> None:
        positions = np.arange(start, start + len(samples)) % self.capacity
        self._samples[positions] = samples
        self._heard[positions] = heard

    def _ring_span(self, start: int, end: int) -> tuple[np.ndarray, int, int]:
        """Ring positions of the samples of ``[start, end)`` still held, and where they sit in that span."""
        if self.written_from is None:
            return np.zeros(0, np.int64), 0, 0
        lo, hi = max(start, self.written_until - self.capacity, self.written_from), min(end, self.written_until)
        if hi <= lo:
            return np.zeros(0, np.int64), 0, 0
        return np.arange(lo, hi) % self.capacity, lo - start, hi - start

    def read(self, start: int, end: int) -> np.ndarray:
        """Samples ``[start, end)`` of the engine clock; silence where no audio arrived (or it is too old)."""
        out = np.zeros(end - start, np.float32)
        positions, lo, hi = self._ring_span(start, end)
        out[lo:hi] = self._samples[positions]
        return out

    def heard(self, start: int, end: int) -> np.ndarray:
        """Which samples of ``[start, end)`` came from a message (False for silence filled into gaps or not yet
        arrived)."""
        out = np.zeros(end - start, bool)
        positions, lo, hi = self._ring_span(start, end)
        out[lo:hi] = self._heard[positions]
        return out

    def consume(self, until: int) -> None:
        """Tell the timeline that audio before ``until`` has been used: anything arriving for it later is late."""
        self.consumed_until = max(self.consumed_until, until)

    def stamp_of(self, index: int) -> int | None:
        """The stream's own stamp (ns) of engine sample ``index``, or None before the first chunk.

        Counted from the stamp of the chunk that brought the sample, so a stamp goes from input to output as the
        publisher set it (jitter and all); where no chunk did (silence in a gap, or before the first), from the
        chunk before it (or the first one), so stamps stay continuous.
        """
        if not self._chunk_stamps:
            return None
        anchor = self._chunk_stamps[0]
        for chunk in reversed(self._chunk_stamps):  # newest first: the frames being made ask for recent samples
            if chunk[0] <= index:
                anchor = chunk
                break
        start, _, stamp = anchor
        return stamp + (index - start) * NS_PER_S // SAMPLE_RATE_HZ
