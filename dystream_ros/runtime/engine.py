"""The face engine: two audio streams in, one face frame (motion, image, neck command) out every 40 ms.

Everything the node does except talking to ROS: audio bytes are decoded, resampled and placed on the engine clock
(``dystream_ros.audio``), one timeline per voice and one sample index for everything. Each frame reads its span of
each timeline once, for the generator and the voice activity.

When frame ``t`` (the sound of ``[40 t, 40 t + 40)`` ms on the engine clock) is made and shown:

- **Live audio** (a microphone): as soon as every voice that publishes has delivered the audio it needs, its 40 ms
  plus the model's lookahead; or at its deadline, with silence for a voice that stays quiet or late. The deadline
  waits for each voice as long as its audio usually arrives late (its measured delivery delay, at least
  ``MIN_WAIT_MS``, at most ``max_wait_ms``). A voice that has not published for ``inactive_after_s`` is not waited
  for: a partner who never speaks, a robot that does not talk, or no audio at all still give a live face at 25 Hz.
- **Audio ahead of time** (a TTS utterance stamped with the time it will be played, or sent faster than real time):
  the frame is made ``lead_ms`` before its sound is played and shown when it is played (its ``present_ns``), so the
  face has no latency for the robot's own voice. The partner's audio of that moment cannot have arrived yet: such a
  frame hears the partner only as far as it has arrived.
- **Stamps from another clock** (an old bag replayed as fast as the node keeps up) are not paced: each frame is shown
  as soon as it is made.

When the engine falls behind, every frame's motion is still generated in order (the motion stays continuous) but only
the newest frame is rendered; further behind than ``max_backlog_s`` it skips ahead.

Times are integers in nanoseconds on the caller's clock (the node's ROS clock), so the engine runs the same under
simulated time, in tests and in benchmarks.
"""
from __future__ import annotations

import enum
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np

from dystream_ros.audio import AudioFormat, AudioIssue, VoiceInput
from dystream_ros.audio.vad import VoiceActivity
from dystream_ros.face.motion import BLENDSHAPES
from dystream_ros.runtime.frames import Generator, frame_end, stream_clip
from dystream_ros.runtime.gaze import GazeController
from dystream_ros.units import FPS, NS_PER_S, SAMPLE_RATE_HZ, SAMPLES_PER_FRAME, STREAMS

if TYPE_CHECKING:
    from dystream_ros.neck import NeckCommand

WARM_UP_S = 1.0  # silence run through the generator and renderer before the first real frame
MIN_WAIT_MS = 40.0  # how long past its lookahead a frame waits for a voice that delivers on time (publisher jitter)
DELAY_MARGIN_MS = 10.0  # added to a voice's measured delivery delay
FRAME_NS = NS_PER_S // FPS
# Falling behind (a busy CPU), the engine sheds work but keeps publishing every frame's motion: a frame this late gets
# no image, and this late it is sampled with fewer Euler steps; further behind than max_backlog_s it skips ahead.
SHED_RENDER_AFTER_MS = 80.0
SHED_STEPS_AFTER_MS = 160.0


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

    max_wait_ms: float = 500.0  # the longest a frame waits for a voice whose audio arrives late
    inactive_after_s: float = 0.5  # a voice silent on the topic this long is not waited for
    max_backlog_s: float = 0.5  # further behind than this, skip ahead (frames dropped) rather than catch up
    buffer_s: float = 120.0  # audio kept per voice: a minute-long utterance in one message, and room ahead
    lead_ms: float = 100.0  # audio ahead of time: make each frame this long before it is shown


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
    present_ns: int | None = None  # engine clock: when its sound is played (audio ahead of time); None: at once
    image: np.ndarray | None = None  # None when the render was dropped to keep up
    neck: NeckCommand | None = None  # joint positions and velocities, when a neck is configured
    stage_ms: dict[str, float] = field(default_factory=dict)

    @property
    def due_ns(self) -> int:
        """The earliest the frame could be shown: when its audio was complete, or when its sound is played."""
        return max(self.completed_ns, self.present_ns or self.completed_ns)


@dataclass(frozen=True)
class VoiceStatus:
    """What the node reports of one voice."""

    audio_format: AudioFormat  # as declared (parameter or AudioInfo)
    rate_ratio: float  # audio time per stamp time at the last RATE_MISMATCH: 3.0 for 48 kHz declared as 16 kHz
    issues: dict[str, int]  # AudioIssue name -> how often it was repaired
    delivery_delay_ms: float  # how late after its stamps this voice's audio usually arrives
    wait_ms: float  # how long past its lookahead a frame waits for this voice
    max_wait_ms: float  # the longest it may wait (the max_wait_ms parameter)

    def explain(self, issue: AudioIssue) -> str:
        """What ``issue`` means for this voice, for a log line."""
        if issue is AudioIssue.LATE and self.delivery_delay_ms > self.max_wait_ms:
            return (f'{issue.value}: this voice arrives {self.delivery_delay_ms:.0f} ms after its stamps, longer than '
                    f'frames wait (max_wait_ms {self.max_wait_ms:.0f}); raise max_wait_ms above that, or fix the '
                    f'stamps if they are not capture times')
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
    frames_light: int  # frames sampled with fewer Euler steps to keep up
    voices: dict[str, VoiceStatus]


class FaceEngine:
    """Turns two voices into face frames. Not thread-safe: the node calls it from one callback group."""

    def __init__(self, generator: Generator, renderer: Renderer | None = None, neck: Neck | None = None,
                 config: EngineConfig | None = None, *, start_ns: int,
                 formats: dict[str, AudioFormat] | None = None) -> None:
        self.generator = generator
        self.renderer = renderer
        self.neck = neck
        self.gaze = GazeController()  # no target: the generated motion as it is
        self._formats = dict(formats or {})
        self.configure(config or EngineConfig())
        self.reset(start_ns)

    @property
    def face_motion(self) -> bool:
        """Whether the motion is face/motion.py's (blendshapes, head pose: gaze, neck and FaceMotion's fields
        apply) rather than a latent only its own renderer shows (the published weights)."""
        return self.generator.motion_space == 'face'

    # --- the public API ---
    def configure(self, config: EngineConfig) -> None:
        """Use ``config`` from the next frame on (its ``buffer_s`` from the next reset)."""
        self.config = config
        self._inactive_ns = int(config.inactive_after_s * NS_PER_S)
        self._max_wait_ns = int(max(config.max_wait_ms, MIN_WAIT_MS) * 1e6)
        self._lead_ns = int(config.lead_ms * 1e6)

    def reset(self, start_ns: int) -> None:
        """Start over at ``start_ns``: empty timelines (in the formats given at construction), frame 0 next."""
        self.epoch_ns = int(start_ns)
        self.voices = {name: VoiceInput(self._formats.get(name, AudioFormat()), self.epoch_ns, self.config.buffer_s)
                       for name in STREAMS}
        self.activity = {name: VoiceActivity() for name in STREAMS}
        self.next_frame = 0
        self.frames_dropped = 0
        self.renders_dropped = 0
        self.frames_light = 0
        self._scheduled: deque[FrameOutput] = deque()  # made ahead of time, shown at their present_ns
        self.generator.reset(0)

    def warm_up(self) -> int:
        """Run ``WARM_UP_S`` of silence through the generator and renderer, so that the first real frame is not
        slow (lazy allocations, ONNX Runtime's first run); return the frames generated."""
        silence = np.zeros(int(WARM_UP_S * SAMPLE_RATE_HZ), np.float32)
        frames = list(stream_clip(self.generator, silence, silence))
        if self.renderer is not None and frames:
            self.renderer.render(self._clipped(frames[-1].motion) if self.face_motion else frames[-1].motion)
        self.generator.reset(self.next_frame)
        return len(frames)

    def set_format(self, stream: str, audio_format: AudioFormat) -> list[AudioIssue]:
        """Declare the format of a stream (from an AudioInfo message or a parameter)."""
        self._formats[stream] = audio_format
        return self.voices[stream].set_format(audio_format)

    def push(self, stream: str, data: bytes, stamp_ns: int | None, arrival_ns: int) -> list[AudioIssue]:
        """Add one audio message of ``stream`` ('self' or 'partner'); return what had to be repaired in it.

        ``stamp_ns`` is the time of its first sample (None: unstamped). Computes nothing: frames come from
        :meth:`poll`.
        """
        other = self.voices['partner' if stream == 'self' else 'self']
        return self.voices[stream].push(data, stamp_ns, arrival_ns, other.timeline.offset_ns)

    def look_at(self, point: np.ndarray, now_ns: int) -> bool:
        """Turn the eyes and head towards ``point`` (head frame, metres) from the next frame on, for as long as it
        is refreshed (:mod:`dystream_ros.runtime.gaze`); False if it is no usable point."""
        return self.gaze.set_target(point, now_ns)

    def poll(self, now_ns: int) -> list[FrameOutput]:
        """Make every frame that is due at ``now_ns``, and return, in order, those to be shown now."""
        self._skip_if_hopelessly_behind(now_ns)
        made = []
        while True:
            ready, completed_ns = self._ready(self.next_frame, now_ns)
            if not ready:
                break
            due_ns = max(completed_ns, self._present_ns(self.next_frame)) if self._paced() else completed_ns
            if self.generator.shed(now_ns - due_ns > SHED_STEPS_AFTER_MS * 1e6):
                self.frames_light += 1
            made.append(self._generate(self.next_frame, completed_ns))
            self.next_frame += 1
        self._render(made, now_ns)
        self._scheduled.extend(made)
        shown = []
        while self._scheduled and (self._scheduled[0].present_ns or 0) <= now_ns:
            shown.append(self._scheduled.popleft())
        return shown

    def status(self) -> EngineStatus:
        """The figures the node reports."""
        voices = {name: VoiceStatus(voice.audio_format, voice.timeline.rate_check.ratio,
                                    {issue.name: count for issue, count in voice.issues.items()},
                                    voice.delivery_delay_ns / 1e6, self._wait_ns(voice) / 1e6,
                                    self._max_wait_ns / 1e6)
                  for name, voice in self.voices.items()}
        return EngineStatus(type(self.generator).__name__, list(self.generator.providers),
                            self.generator.lookahead_ms, self.frames_dropped, self.renders_dropped,
                            self.frames_light, voices)

    # --- frame timing ---
    def _present_ns(self, frame: int) -> int:
        """When the sound of ``frame`` is played, on the engine clock."""
        return self.epoch_ns + frame * FRAME_NS

    def _paced(self) -> bool:
        """Whether frames are shown when their sound is played: the voices' stamps are on the engine clock (or
        unstamped); stamps from another clock (an old bag) have no such moment here."""
        return any(voice.timeline.on_engine_clock for voice in self.voices.values())

    def _wait_ns(self, voice: VoiceInput) -> int:
        """How long past its lookahead a frame waits for ``voice``: as late as its audio usually is."""
        wait = max(MIN_WAIT_MS * 1e6, voice.delivery_delay_ns + DELAY_MARGIN_MS * 1e6)
        return int(min(wait, self._max_wait_ns))

    def _ready(self, frame: int, now_ns: int) -> tuple[bool, int]:
        """Whether ``frame`` can be made now, and when its audio was complete (engine clock)."""
        need = frame_end(self.generator, frame)
        need_ns = self.epoch_ns + need * NS_PER_S // SAMPLE_RATE_HZ
        ahead = self._paced() and now_ns < self._present_ns(frame) - self._lead_ns  # not yet time to make it
        active = [v for v in self.voices.values() if v.active(now_ns, self._inactive_ns)]
        missing = [v for v in active if v.timeline.written_until < need]
        if active and not missing:
            return not ahead, max(v.arrival_of(need) or now_ns for v in active)
        deadline = need_ns + max((self._wait_ns(v) for v in missing), default=MIN_WAIT_MS * 1e6)
        if self._paced() and self._robot_speaks_soon(frame):
            # the robot's own voice is here ahead of time: the frame is made in time to be shown with it
            deadline = min(deadline, self._present_ns(frame) - self._lead_ns)
        deadline = int(deadline)
        return now_ns >= deadline and not ahead, max(deadline, self._present_ns(frame) - self._lead_ns)

    def _robot_speaks_soon(self, frame: int) -> bool:
        """Whether the robot's own voice arrived ahead of time for this frame or for the next moments (as far
        ahead as a frame may wait), so that the frames leading into its utterance are not held back by the partner."""
        voice = self.voices['self']
        start, need = frame * SAMPLES_PER_FRAME, frame_end(self.generator, frame)
        # the robot's audio up to the frame's lookahead, or up to the end of its utterance (nothing more is coming
        # for that utterance: its last frames are not held back waiting for a lookahead of silence)
        covered = min(need, voice.timeline.written_until)
        arrived = voice.arrival_of(covered)
        if covered <= start or arrived is None or arrived > voice.timeline.time_of(covered) - FRAME_NS // 2:
            return False  # live audio (a microphone) arrives after its sound: it cannot be shown before it is heard
        horizon = (self._lead_ns + self._max_wait_ns) * SAMPLE_RATE_HZ // NS_PER_S
        return bool(voice.timeline.heard(start, need + horizon).any())

    def _skip_if_hopelessly_behind(self, now_ns: int) -> None:
        # behind: the next frame could have been made this long ago (audio that arrives late, or all at once, is
        # not the engine falling behind: its frames are made as soon as it is here)
        ready, completed_ns = self._ready(self.next_frame, now_ns)
        behind_ns = now_ns - completed_ns
        if not ready or behind_ns <= self.config.max_backlog_s * NS_PER_S:
            return
        # to a frame half the backlog behind: ready now (its audio is here), so the face goes on at once
        skip = int((behind_ns - self.config.max_backlog_s * NS_PER_S / 2) // FRAME_NS)
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
            own = slice(start - span_start, start - span_start + SAMPLES_PER_FRAME)  # the frame's own 40 ms
            heard = voice.timeline.heard(start, start + SAMPLES_PER_FRAME)
            activity[name] = self.activity[name].update(samples[own], heard)
            # audio that has not arrived when a frame is made ahead of time is not late: it was never waited for
            voice.timeline.consume(need if completed_ns >= self._present_ns(frame) else
                                   min(need, voice.timeline.written_until))
            audio[name] = samples[first - span_start:]
        started = time.perf_counter()
        motion = self.generator.step(frame, audio['self'], audio['partner']).motion
        if self.face_motion:
            motion = self.gaze.apply(self._clipped(motion), completed_ns, 1.0 / FPS)
        generate_ms = (time.perf_counter() - started) * 1e3
        speaking, listening = activity['self'] > 0, activity['partner'] > 0
        state = (Activity.OVERLAP if speaking and listening else Activity.SPEAKING if speaking
                 else Activity.LISTENING if listening else Activity.SILENT)
        present_ns = self._present_ns(frame) if self._paced() else None
        output = FrameOutput(frame, self._stamp_of(start), motion, state, activity['self'], activity['partner'],
                             completed_ns, present_ns,
                             stage_ms=dict(self.generator.stage_ms) or {'generate': generate_ms})
        if self.neck is not None and self.face_motion:
            output.neck = self.neck.step(motion, 1.0 / FPS)
        return output

    def _render(self, made: list[FrameOutput], now_ns: int) -> None:
        """Render the frames that will be shown later (there is time) and the newest unless it is already late;
        drop the rest to keep up."""
        if self.renderer is None:
            return
        for output in made:
            newest_in_time = output is made[-1] and now_ns - output.due_ns <= SHED_RENDER_AFTER_MS * 1e6
            if newest_in_time or (output.present_ns or 0) >= now_ns:
                started = time.perf_counter()
                output.image = self.renderer.render(output.motion)
                output.stage_ms['render'] = (time.perf_counter() - started) * 1e3
            else:
                self.renders_dropped += 1

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
