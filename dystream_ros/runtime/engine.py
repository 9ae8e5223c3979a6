"""The face engine: two audio streams in, one face frame (motion, image, neck command) out every 40 ms.

Everything the node does except talking to ROS: audio bytes are decoded, resampled and placed on the engine clock
(``dystream_ros.audio``); frame ``t`` is generated as soon as both voices have delivered the audio it needs, its
40 ms plus the model's lookahead, or at its deadline with silence for a voice that stays quiet or late. A voice
that has not published for ``inactive_after_s`` is not waited for: a partner who never speaks, a robot that
does not talk, or no audio at all still give a live face at 25 Hz. When the engine falls behind, every frame's
motion is still generated in order (the motion stays continuous) but only the newest frame is rendered.

Times are integers in nanoseconds on the caller's clock (the node's ROS clock), so the engine runs the same under
simulated time, in tests and in benchmarks.
"""
from __future__ import annotations

import enum
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np

from dystream_ros.audio import AudioFormat, AudioIssue, Decoder, Resampler, StreamTimeline
from dystream_ros.audio.vad import VoiceActivity
from dystream_ros.face.motion import BLENDSHAPES

if TYPE_CHECKING:
    from dystream_ros.face.neck import NeckCommand
    from dystream_ros.model.streaming import MotionFrame

NS_PER_S = 1_000_000_000
RATE_HZ = 16000
STREAMS = ('self', 'partner')


class Activity(enum.IntEnum):
    """Who speaks during a frame; the values are FaceMotion's ACTIVITY_* constants."""

    SILENT = 0
    SPEAKING = 1
    LISTENING = 2
    OVERLAP = 3


class Generator(Protocol):
    """What the engine needs of a motion generator (``StreamingGenerator`` or the amplitude baseline)."""

    samples_per_frame: int
    lookahead_samples: int
    stage_ms: dict[str, float]  # after pull: its time per stage (e.g. encoder), if it times any

    def push_self(self, samples: np.ndarray) -> None: ...  # noqa: D102
    def push_partner(self, samples: np.ndarray) -> None: ...  # noqa: D102
    def pull(self) -> list[MotionFrame]: ...  # noqa: D102
    def reset(self) -> None: ...  # noqa: D102


class Renderer(Protocol):
    """Motion frame (motion_dim,) -> RGB image (H, W, 3) uint8."""

    def render(self, motion: np.ndarray) -> np.ndarray: ...  # noqa: D102


class Neck(Protocol):
    """Motion frame -> neck joint command, within the joints' limits whatever the input."""

    def step(self, pose: np.ndarray, dt_s: float) -> NeckCommand: ...  # noqa: D102


@dataclass(frozen=True)
class EngineConfig:
    """When frames are generated, and how long the engine waits for late audio."""

    fps: int = 25
    max_wait_ms: float = 40.0  # past a frame's lookahead, wait this long for late audio before using silence
    inactive_after_s: float = 0.5  # a voice silent on the topic this long is not waited for
    max_backlog_s: float = 2.0  # further behind than this, skip ahead (frames dropped) rather than catch up
    buffer_s: float = 10.0  # audio kept per voice


@dataclass
class FrameOutput:
    """One frame as the node publishes it."""

    index: int
    stamp_ns: int  # audio time of the frame's first sample, on the clock of the input stamps
    motion: np.ndarray  # (motion_dim,) raw motion
    activity: Activity
    self_activity: float
    partner_activity: float
    completed_ns: int  # engine clock: arrival of the audio that completed the frame (or its deadline)
    image: np.ndarray | None = None  # None when the render was dropped to keep up
    neck: NeckCommand | None = None  # joint positions and velocities, when a neck is configured
    stage_ms: dict[str, float] = field(default_factory=dict)


class _Voice:
    """One input stream: decoder -> resampler -> timeline, plus its voice activity and what went wrong."""

    def __init__(self, audio_format: AudioFormat, epoch_ns: int, config: EngineConfig) -> None:
        self.decoder = Decoder(audio_format)
        self.resampler = Resampler(audio_format.sample_rate_hz)
        self.timeline = StreamTimeline(epoch_ns, capacity_s=config.buffer_s)
        self.vad = VoiceActivity()
        self.issues: Counter[AudioIssue] = Counter()
        self.arrivals: deque[tuple[int, int]] = deque(maxlen=512)  # (written_until after a write, arrival_ns)
        self.messages = 0

    def set_format(self, audio_format: AudioFormat) -> list[AudioIssue]:
        issues = self.decoder.set_format(audio_format)
        if issues:
            self.resampler = Resampler(audio_format.sample_rate_hz)
        return issues

    def push(self, data: bytes, stamp_ns: int | None, arrival_ns: int,
             shared_offset_ns: int | None) -> list[AudioIssue]:
        self.messages += 1
        rate = self.decoder.format.sample_rate_hz
        samples, issues = self.decoder.decode(data)
        if stamp_ns is None:  # plain AudioData: assume the chunk was captured just before it arrived
            stamp_ns = arrival_ns - len(samples) * NS_PER_S // rate
        inputs_before, outputs_before = self.resampler.inputs_seen, self.resampler.outputs_made
        resampled = self.resampler.process(samples)
        if len(resampled):
            # the stamp of the first output sample: its time in the input, less the resampling filter's delay
            first_ns = stamp_ns + round((outputs_before / RATE_HZ - self.resampler.delay_s - inputs_before / rate)
                                        * NS_PER_S)
            issues += self.timeline.write(first_ns, resampled, arrival_ns, shared_offset_ns)
            self.arrivals.append((self.timeline.written_until, arrival_ns))
        for issue in issues:
            self.issues[issue] += 1
        return issues

    def active(self, now_ns: int, inactive_after_ns: int) -> bool:
        last = self.timeline.last_arrival_ns
        return last is not None and now_ns - last <= inactive_after_ns

    def arrival_of(self, sample_index: int) -> int | None:
        """When the audio up to ``sample_index`` arrived, if it has."""
        return next((arrival for written, arrival in self.arrivals if written >= sample_index), None)


class FaceEngine:
    """Turns two voices into face frames. Not thread-safe: the node calls it from one callback group."""

    def __init__(self, generator: Generator, renderer: Renderer | None = None, neck: Neck | None = None,
                 config: EngineConfig | None = None, *, start_ns: int,
                 formats: dict[str, AudioFormat] | None = None) -> None:
        self.generator = generator
        self.renderer = renderer
        self.neck = neck
        self.config = config or EngineConfig()
        self.epoch_ns = int(start_ns)
        self.samples_per_frame = generator.samples_per_frame
        self.lookahead = generator.lookahead_samples
        formats = formats or {}
        self.voices = {name: _Voice(formats.get(name, AudioFormat()), self.epoch_ns, self.config)
                       for name in STREAMS}
        self.next_frame = 0
        self._generator_origin = 0  # engine sample index where the generator's audio (since its reset) starts
        self._pushed = dict.fromkeys(STREAMS, 0)  # samples of each voice given to the generator since then
        self.frames_dropped = 0  # frames skipped because the engine fell too far behind
        self.renders_dropped = 0  # frames whose image was not rendered to keep up
        self._inactive_ns = int(self.config.inactive_after_s * NS_PER_S)
        self._max_wait_ns = int(self.config.max_wait_ms * 1e6)

    def set_format(self, stream: str, audio_format: AudioFormat) -> list[AudioIssue]:
        """Declare the format of a stream (from an AudioInfo message or a parameter)."""
        return self.voices[stream].set_format(audio_format)

    def push(self, stream: str, data: bytes, stamp_ns: int | None, arrival_ns: int) -> list[AudioIssue]:
        """Add one audio message of ``stream`` ('self' or 'partner'); return what had to be repaired in it."""
        other = self.voices['partner' if stream == 'self' else 'self']
        return self.voices[stream].push(data, stamp_ns, arrival_ns, other.timeline.offset_ns)

    def _needed(self, frame: int) -> int:
        return self.samples_per_frame * (frame + 1) + self.lookahead

    def _deadline_ns(self, frame: int) -> int:
        return self.epoch_ns + self._needed(frame) * NS_PER_S // RATE_HZ + self._max_wait_ns

    def _ready(self, frame: int, now_ns: int) -> tuple[bool, int]:
        """Whether ``frame`` can be generated now, and when its audio was complete (engine clock)."""
        need = self._needed(frame)
        active = [v for v in self.voices.values() if v.active(now_ns, self._inactive_ns)]
        if active and all(v.timeline.written_until >= need for v in active):
            return True, max(v.arrival_of(need) or now_ns for v in active)
        deadline = self._deadline_ns(frame)
        return now_ns >= deadline, deadline

    def poll(self, now_ns: int) -> list[FrameOutput]:
        """Generate every frame that is due at ``now_ns``; render the newest of them."""
        self._skip_if_hopelessly_behind(now_ns)
        outputs = []
        while True:
            ready, completed_ns = self._ready(self.next_frame, now_ns)
            if not ready:
                break
            outputs.append(self._generate(self.next_frame, completed_ns))
            self.next_frame += 1
        if outputs:
            if self.renderer is not None:
                started = time.perf_counter()
                outputs[-1].image = self.renderer.render(outputs[-1].motion)
                outputs[-1].stage_ms['render'] = (time.perf_counter() - started) * 1e3
                self.renders_dropped += len(outputs) - 1
        return outputs

    def _skip_if_hopelessly_behind(self, now_ns: int) -> None:
        behind_ns = now_ns - self._deadline_ns(self.next_frame)
        if behind_ns <= self.config.max_backlog_s * NS_PER_S:
            return
        frame_ns = NS_PER_S // self.config.fps
        skip = int(behind_ns // frame_ns)
        self.frames_dropped += skip
        self.next_frame += skip
        self.generator.reset()  # its audio restarts at the new frame
        self._generator_origin = self.next_frame * self.samples_per_frame
        self._pushed = dict.fromkeys(STREAMS, 0)

    def _generate(self, frame: int, completed_ns: int) -> FrameOutput:
        start = frame * self.samples_per_frame
        need = self._needed(frame)
        activity = {}
        for name, voice in self.voices.items():
            have = self._generator_origin + self._pushed[name]
            if need > have:
                push = self.generator.push_self if name == 'self' else self.generator.push_partner
                push(voice.timeline.read(have, need))
                self._pushed[name] = need - self._generator_origin
            voice.timeline.consume(need)
            activity[name] = voice.vad.update(voice.timeline.read(start, start + self.samples_per_frame))
        started = time.perf_counter()
        frames = self.generator.pull()
        generate_ms = (time.perf_counter() - started) * 1e3
        if len(frames) != 1:
            msg = f'the generator returned {len(frames)} frames for frame {frame}; expected exactly one'
            raise RuntimeError(msg)
        motion = frames[0].motion.copy()
        motion[BLENDSHAPES] = np.clip(motion[BLENDSHAPES], 0.0, 1.0)  # weights are in [0, 1], as FaceMotion says
        speaking, listening = activity['self'] > 0, activity['partner'] > 0
        state = (Activity.OVERLAP if speaking and listening else Activity.SPEAKING if speaking
                 else Activity.LISTENING if listening else Activity.SILENT)
        output = FrameOutput(frame, self._stamp_of(start), motion, state, activity['self'], activity['partner'],
                             completed_ns, stage_ms=dict(self.generator.stage_ms) or {'generate': generate_ms})
        if self.neck is not None:
            output.neck = self.neck.step(motion, 1.0 / self.config.fps)
        return output

    def _stamp_of(self, sample_index: int) -> int:
        for name in STREAMS:  # the robot's own voice sets the time base when it has one
            stamp = self.voices[name].timeline.stamp_of(sample_index)
            if stamp is not None:
                return stamp
        return self.epoch_ns + sample_index * NS_PER_S // RATE_HZ

    def issue_counts(self) -> dict[str, dict[str, int]]:
        """How often each kind of audio problem was repaired, per stream."""
        return {name: {issue.name: count for issue, count in voice.issues.items()}
                for name, voice in self.voices.items()}
