"""The face engine: two audio streams in, one face frame (motion, image, neck command) out every 40 ms.

Everything the node does except talking to ROS: audio bytes are decoded, resampled and placed on the engine clock
(``dystream_ros.audio``), one timeline per voice and one sample index for everything; frame ``t`` is generated as
soon as both voices have delivered the audio it needs, its 40 ms plus the model's lookahead, or at its deadline with
silence for a voice that stays quiet or late. Each frame reads its span of each timeline once, for the generator and
the voice activity. A voice that has not published for ``inactive_after_s`` is not waited for: a partner who never
speaks, a robot that does not talk, or no audio at all still give a live face at 25 Hz. When the engine falls
behind, every frame's motion is still generated in order (the motion stays continuous) but only the newest frame is
rendered.

Times are integers in nanoseconds on the caller's clock (the node's ROS clock), so the engine runs the same under
simulated time, in tests and in benchmarks.
"""
from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np

from dystream_ros.audio import AudioFormat, AudioIssue, VoiceInput
from dystream_ros.audio.vad import VoiceActivity
from dystream_ros.face.motion import BLENDSHAPES
from dystream_ros.runtime.frames import Generator, frame_end, stream_clip
from dystream_ros.units import FPS, NS_PER_S, SAMPLE_RATE_HZ, SAMPLES_PER_FRAME, STREAMS

if TYPE_CHECKING:
    from dystream_ros.neck import NeckCommand

WARM_UP_S = 1.0  # silence run through the generator and renderer before the first real frame


class Activity(enum.IntEnum):
    """Who speaks during a frame; the values are FaceMotion's ACTIVITY_* constants."""

    SILENT = 0
    SPEAKING = 1
    LISTENING = 2
    OVERLAP = 3


class Renderer(Protocol):
    """Motion frame (motion_dim,) -> RGB image (H, W, 3) uint8."""

    def render(self, motion: np.ndarray) -> np.ndarray: ...  # noqa: D102


class Neck(Protocol):
    """Motion frame -> neck joint command, within the joints' limits whatever the input."""

    def step(self, pose: np.ndarray, dt_s: float) -> NeckCommand: ...  # noqa: D102


@dataclass(frozen=True)
class EngineConfig:
    """When frames are generated, and how long the engine waits for late audio."""

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


@dataclass(frozen=True)
class VoiceStatus:
    """What the node reports of one voice."""

    audio_format: AudioFormat  # as declared (parameter or AudioInfo)
    rate_ratio: float  # audio time per stamp time at the last RATE_MISMATCH: 3.0 for 48 kHz declared as 16 kHz
    issues: dict[str, int]  # AudioIssue name -> how often it was repaired

    def explain(self, issue: AudioIssue) -> str:
        """What ``issue`` means for this voice, for a log line."""
        if issue is not AudioIssue.RATE_MISMATCH:
            return issue.value
        rate, channels = self.audio_format.sample_rate_hz, self.audio_format.channels
        return (f'{issue.value}; read as {rate} Hz x {channels} channel(s) it lasts {self.rate_ratio:.2f}x the time '
                f'between stamps, so it is more likely {rate * self.rate_ratio:.0f} samples per second')


@dataclass(frozen=True)
class EngineStatus:
    """What the node reports in /diagnostics and its log lines."""

    generator: str
    providers: list[str]
    lookahead_ms: int
    frames_dropped: int  # frames skipped because the engine fell too far behind
    renders_dropped: int  # frames whose image was not rendered to keep up
    voices: dict[str, VoiceStatus]


class FaceEngine:
    """Turns two voices into face frames. Not thread-safe: the node calls it from one callback group."""

    def __init__(self, generator: Generator, renderer: Renderer | None = None, neck: Neck | None = None,
                 config: EngineConfig | None = None, *, start_ns: int,
                 formats: dict[str, AudioFormat] | None = None) -> None:
        self.generator = generator
        self.renderer = renderer
        self.neck = neck
        self.config = config or EngineConfig()
        self._formats = dict(formats or {})
        self._inactive_ns = int(self.config.inactive_after_s * NS_PER_S)
        self._max_wait_ns = int(self.config.max_wait_ms * 1e6)
        self.reset(start_ns)

    # --- the public API ---
    def reset(self, start_ns: int) -> None:
        """Start over at ``start_ns``: empty timelines (in the formats given at construction), frame 0 next."""
        self.epoch_ns = int(start_ns)
        self.voices = {name: VoiceInput(self._formats.get(name, AudioFormat()), self.epoch_ns, self.config.buffer_s)
                       for name in STREAMS}
        self.activity = {name: VoiceActivity() for name in STREAMS}
        self.next_frame = 0
        self.frames_dropped = 0
        self.renders_dropped = 0
        self.generator.reset(0)

    def warm_up(self) -> int:
        """Run ``WARM_UP_S`` of silence through the generator and renderer, so that the first real frame is not
        slow (lazy allocations, ONNX Runtime's first run); return the frames generated."""
        silence = np.zeros(int(WARM_UP_S * SAMPLE_RATE_HZ), np.float32)
        frames = list(stream_clip(self.generator, silence, silence))
        if self.renderer is not None and frames:
            self.renderer.render(self._clipped(frames[-1].motion))
        self.generator.reset(self.next_frame)
        return len(frames)

    def set_format(self, stream: str, audio_format: AudioFormat) -> list[AudioIssue]:
        """Declare the format of a stream (from an AudioInfo message or a parameter)."""
        return self.voices[stream].set_format(audio_format)

    def push(self, stream: str, data: bytes, stamp_ns: int | None, arrival_ns: int) -> list[AudioIssue]:
        """Add one audio message of ``stream`` ('self' or 'partner'); return what had to be repaired in it."""
        other = self.voices['partner' if stream == 'self' else 'self']
        return self.voices[stream].push(data, stamp_ns, arrival_ns, other.timeline.offset_ns)

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
        if outputs and self.renderer is not None:
            started = time.perf_counter()
            outputs[-1].image = self.renderer.render(outputs[-1].motion)
            outputs[-1].stage_ms['render'] = (time.perf_counter() - started) * 1e3
            self.renders_dropped += len(outputs) - 1
        return outputs

    def status(self) -> EngineStatus:
        """The figures the node reports."""
        voices = {name: VoiceStatus(voice.audio_format, voice.timeline.rate_check.ratio,
                                    {issue.name: count for issue, count in voice.issues.items()})
                  for name, voice in self.voices.items()}
        return EngineStatus(type(self.generator).__name__, list(self.generator.providers),
                            self.generator.lookahead_ms, self.frames_dropped, self.renders_dropped, voices)

    # --- frame timing ---
    def _deadline_ns(self, frame: int) -> int:
        return self.epoch_ns + frame_end(self.generator, frame) * NS_PER_S // SAMPLE_RATE_HZ + self._max_wait_ns

    def _ready(self, frame: int, now_ns: int) -> tuple[bool, int]:
        """Whether ``frame`` can be generated now, and when its audio was complete (engine clock)."""
        need = frame_end(self.generator, frame)
        active = [v for v in self.voices.values() if v.active(now_ns, self._inactive_ns)]
        if active and all(v.timeline.written_until >= need for v in active):
            return True, max(v.arrival_of(need) or now_ns for v in active)
        deadline = self._deadline_ns(frame)
        return now_ns >= deadline, deadline

    def _skip_if_hopelessly_behind(self, now_ns: int) -> None:
        behind_ns = now_ns - self._deadline_ns(self.next_frame)
        if behind_ns <= self.config.max_backlog_s * NS_PER_S:
            return
        skip = int(behind_ns // (NS_PER_S // FPS))
        self.frames_dropped += skip
        self.next_frame += skip
        self.generator.reset(self.next_frame)  # the model's stream restarts at the new frame

    # --- one frame ---
    def _generate(self, frame: int, completed_ns: int) -> FrameOutput:
        start, need = frame * SAMPLES_PER_FRAME, frame_end(self.generator, frame)
        first = self.generator.input_start(frame)
        span_start = min(first, start)
        audio, activity = {}, {}
        for name, voice in self.voices.items():
            samples = voice.timeline.read(span_start, need)  # the one read of this frame's audio
            voice.timeline.consume(need)
            frame_samples = samples[start - span_start:start - span_start + SAMPLES_PER_FRAME]  # its own 40 ms
            activity[name] = self.activity[name].update(frame_samples)
            audio[name] = samples[first - span_start:]
        started = time.perf_counter()
        motion = self._clipped(self.generator.step(frame, audio['self'], audio['partner']).motion)
        generate_ms = (time.perf_counter() - started) * 1e3
        speaking, listening = activity['self'] > 0, activity['partner'] > 0
        state = (Activity.OVERLAP if speaking and listening else Activity.SPEAKING if speaking
                 else Activity.LISTENING if listening else Activity.SILENT)
        output = FrameOutput(frame, self._stamp_of(start), motion, state, activity['self'], activity['partner'],
                             completed_ns, stage_ms=dict(self.generator.stage_ms) or {'generate': generate_ms})
        if self.neck is not None:
            output.neck = self.neck.step(motion, 1.0 / FPS)
        return output

    @staticmethod
    def _clipped(motion: np.ndarray) -> np.ndarray:
        """A copy with the blendshape weights in [0, 1], as FaceMotion says."""
        motion = motion.copy()
        motion[BLENDSHAPES] = np.clip(motion[BLENDSHAPES], 0.0, 1.0)
        return motion

    def _stamp_of(self, sample_index: int) -> int:
        for name in STREAMS:  # the robot's own voice sets the time base when it has one
            stamp = self.voices[name].timeline.stamp_of(sample_index)
            if stamp is not None:
                return stamp
        return self.epoch_ns + sample_index * NS_PER_S // SAMPLE_RATE_HZ
