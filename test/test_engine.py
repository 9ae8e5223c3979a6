"""The face engine on a simulated clock: 25 Hz, waits only for voices that talk, stamps from the audio."""
from __future__ import annotations

import numpy as np
import pytest

from dystream_ros.audio import AudioFormat, AudioIssue, StreamTimeline
from dystream_ros.face.motion import index_of
from dystream_ros.runtime.amplitude import AmplitudeGenerator
from dystream_ros.runtime.engine import Activity, EngineConfig, FaceEngine
from dystream_ros.runtime.frames import frame_end
from dystream_ros.runtime.generator import StreamingGenerator
from dystream_ros.units import NS_PER_S as NS
from dystream_ros.units import SAMPLE_RATE_HZ

MS = 1_000_000
JAW = index_of('jawOpen')


def _bursts(seconds: float, rate: int = SAMPLE_RATE_HZ) -> np.ndarray:
    """A voice-like signal: 0.5 s of modulated tone every second, silence in between."""
    t = np.arange(int(seconds * rate)) / rate
    on = (t % 1.0) < 0.5
    return (0.3 * on * np.sin(2 * np.pi * 220 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t))).astype(np.float32)


def _s16(audio: np.ndarray) -> bytes:
    return (audio * 32767).astype('<i2').tobytes()


def _run_live(engine: FaceEngine, streams: dict[str, np.ndarray], seconds: float, chunk: int = 512,
              stamp0_ns: int = 0, delay_ns: dict[str, int] | None = None) -> list:
    """Publish each stream at real-time pace (chunk by chunk) and poll the engine every 5 ms."""
    delay_ns = delay_ns or {}
    sent = dict.fromkeys(streams, 0)
    outputs = []
    for now in range(0, int(seconds * NS), 5 * MS):
        for name, audio in streams.items():
            while (sent[name] + chunk <= len(audio)
                   and (sent[name] + chunk) * NS // SAMPLE_RATE_HZ + delay_ns.get(name, 0) <= now):
                stamp = stamp0_ns + sent[name] * NS // SAMPLE_RATE_HZ
                engine.push(name, _s16(audio[sent[name]:sent[name] + chunk]), stamp, now)
                sent[name] += chunk
        outputs += engine.poll(now)
    return outputs


def test_a_robot_talking_alone_gets_a_frame_every_40_ms_with_its_lips_moving() -> None:
    engine = FaceEngine(AmplitudeGenerator(), start_ns=0)
    audio = _bursts(6.0)
    outputs = _run_live(engine, {'self': audio}, 6.0)
    assert [o.index for o in outputs] == list(range(len(outputs)))
    assert abs(len(outputs) - 6.0 * 25) <= 2
    jaw = np.array([o.motion[JAW] for o in outputs])
    talking = np.array([(o.index * 0.04) % 1.0 < 0.5 for o in outputs])
    assert jaw[talking].mean() > 0.3 and jaw[~talking][5:].mean() < 0.05
    speaking = np.array([o.activity == Activity.SPEAKING for o in outputs])
    assert speaking[talking].mean() > 0.8 and not any(o.activity == Activity.LISTENING for o in outputs)
    # no partner ever published: frames were not held back for it (generated within 10 ms of their audio)
    latencies = [o.completed_ns - (o.index + 1) * 40 * MS for o in outputs[5:]]
    assert max(latencies) <= 32 * MS


def test_with_no_audio_at_all_the_face_still_runs_at_25_hz() -> None:
    engine = FaceEngine(AmplitudeGenerator(), start_ns=10 * NS)
    outputs = []
    for now in range(10 * NS, 14 * NS, 10 * MS):
        outputs += engine.poll(now)
    assert abs(len(outputs) - 100) <= 2
    assert all(o.activity == Activity.SILENT for o in outputs)
    # each frame came at its deadline, one frame period after its audio would have ended
    assert all(o.completed_ns == 10 * NS + (o.index + 1) * 40 * MS + 40 * MS for o in outputs)


def test_stamps_carry_the_audio_time_of_an_old_bag() -> None:
    engine = FaceEngine(AmplitudeGenerator(), start_ns=0)
    bag_start = 1_600_000_000 * NS
    outputs = _run_live(engine, {'self': _bursts(2.0), 'partner': _bursts(2.0)}, 2.0, stamp0_ns=bag_start)
    # the frames' audio times: 40 ms apart, the first within a poll period of the bag's first sample
    stamps = np.array([o.stamp_ns for o in outputs])
    assert (np.diff(stamps) == 40 * MS).all()
    assert abs(stamps[0] - bag_start) <= 5 * MS


def test_a_bag_pushed_all_at_once_gives_every_frame_and_renders_only_the_newest() -> None:
    class Canvas:  # a renderer that records what it drew (the real ones are tested in test_face_*)
        def __init__(self) -> None:
            self.calls = 0

        def render(self, motion: np.ndarray) -> np.ndarray:
            self.calls += 1
            return np.full((8, 8, 3), int(motion[JAW] * 255), np.uint8)

    canvas = Canvas()
    engine = FaceEngine(AmplitudeGenerator(), canvas, start_ns=0,
                        formats={'self': AudioFormat(48000, 2, 'F32LE')})
    audio = _bursts(1.5, rate=48000)
    stereo = np.repeat(audio[:, None], 2, axis=1).astype('<f4').tobytes()
    assert engine.push('self', stereo, stamp_ns=0, arrival_ns=1500 * MS) == []
    outputs = engine.poll(1500 * MS + 1)
    assert len(outputs) == 37  # every complete frame of 1.5 s (the resampler holds back its last 0.2 ms)
    assert canvas.calls == 1 and outputs[-1].image is not None and outputs[0].image is None
    assert engine.status().renders_dropped == 36


def test_a_late_partner_is_waited_for_briefly_then_its_late_audio_is_dropped() -> None:
    engine = FaceEngine(AmplitudeGenerator(), start_ns=0, config=EngineConfig(max_wait_ms=40.0))
    outputs = _run_live(engine, {'self': _bursts(3.0), 'partner': _bursts(3.0)}, 3.0,
                        delay_ns={'partner': 150 * MS})
    assert abs(len(outputs) - 75) <= 3
    # the partner's stamps put its audio 150 ms before it arrives: frames go at their deadline without it
    assert engine.status().voices['partner'].issues['LATE'] > 10
    assert [o.index for o in outputs] == list(range(len(outputs)))


def test_an_engine_that_stalled_skips_ahead_instead_of_lagging_for_ever() -> None:
    engine = FaceEngine(AmplitudeGenerator(), start_ns=0)
    engine.poll(1 * NS)
    outputs = engine.poll(8 * NS)  # a 7 s stall (the process was suspended)
    assert engine.status().frames_dropped > 100
    assert outputs and outputs[-1].index == 8 * 25 - 2  # the newest frame whose deadline has passed
    assert [o.index for o in outputs] == list(range(outputs[0].index, outputs[-1].index + 1))


def _push_real_time(engine: FaceEngine, pcm: bytes, frame_bytes: int, true_rate: int, seconds: float,
                    chunk_s: float = 0.032) -> list[AudioIssue]:
    """Publish ``pcm`` recorded at ``true_rate`` in real time, stamped with capture times (whatever is declared)."""
    issues = []
    step = int(true_rate * chunk_s) * frame_bytes
    for k in range(int(seconds / chunk_s)):
        stamp = int(k * chunk_s * NS)
        issues += engine.push('self', pcm[k * step:(k + 1) * step], stamp, stamp + int(chunk_s * NS))
        engine.poll(stamp + int(chunk_s * NS))
    return issues


def test_a_wrong_declared_rate_or_channel_count_is_reported_with_the_rate_it_carries() -> None:
    audio = _bursts(4.0, rate=48000)
    engine = FaceEngine(AmplitudeGenerator(), start_ns=0)  # declared: 16 kHz mono (the default)
    issues = _push_real_time(engine, _s16(audio), 2, 48000, 4.0)
    assert AudioIssue.RATE_MISMATCH in issues
    assert engine.status().voices['self'].rate_ratio == pytest.approx(3.0, rel=0.02)  # 48 kHz, read as 16 kHz
    stereo = np.repeat(_bursts(4.0), 2)  # interleaved stereo, declared mono
    engine = FaceEngine(AmplitudeGenerator(), start_ns=0)
    assert AudioIssue.RATE_MISMATCH in _push_real_time(engine, _s16(stereo), 2, 32000, 4.0)
    assert engine.status().voices['self'].rate_ratio == pytest.approx(2.0, rel=0.02)
    # declared right: no report, even with pauses in publishing (a TTS that talks in bursts)
    engine = FaceEngine(AmplitudeGenerator(), start_ns=0, formats={'self': AudioFormat(48000, 1, 'S16LE')})
    issues = _push_real_time(engine, _s16(audio), 2, 48000, 4.0)
    pcm = _s16(audio)
    for k in range(60):  # half-second messages with 0.2 s pauses between them
        stamp = 5 * NS + k * 700 * MS
        issues += engine.push('self', pcm[:48000], stamp, stamp + 500 * MS)
    assert AudioIssue.RATE_MISMATCH not in issues


def _push_in_chunks(engine: FaceEngine, voices: dict[str, np.ndarray], chunk: int) -> list:
    """Publish float32 voices live in messages of ``chunk`` samples, each arriving when its last sample is captured."""
    outputs = []
    for start in range(0, len(voices['self']), chunk):
        now = (start + chunk) * NS // SAMPLE_RATE_HZ
        for name, audio in voices.items():
            engine.push(name, audio[start:start + chunk].astype('<f4').tobytes(), start * NS // SAMPLE_RATE_HZ, now)
        outputs += engine.poll(now)
    return outputs


def test_the_face_does_not_depend_on_how_the_audio_is_cut_into_messages() -> None:
    voices = {'self': _bursts(2.0), 'partner': 0.5 * _bursts(2.0)[::-1].copy()}
    formats = dict.fromkeys(voices, AudioFormat(SAMPLE_RATE_HZ, 1, 'F32LE'))
    generator = StreamingGenerator(seed=1)
    runs = {chunk: np.stack([o.motion for o in _push_in_chunks(FaceEngine(generator, start_ns=0, formats=formats),
                                                               voices, chunk)])
            for chunk in (160, 640, 5333)}  # 10 ms, 40 ms and 333 ms messages
    assert runs[640].shape[0] >= 45 and np.abs(np.diff(runs[640], axis=0)).max() > 1e-2
    for chunk, motion in runs.items():
        n = min(len(motion), len(runs[640]))
        np.testing.assert_array_equal(motion[:n], runs[640][:n], err_msg=f'{chunk}-sample messages')


def test_each_frame_reads_each_voice_once_and_no_audio_is_copied_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[tuple[int, int]] = []
    original = StreamTimeline.read

    def counted(timeline: StreamTimeline, start: int, end: int) -> np.ndarray:
        reads.append((start, end))
        return original(timeline, start, end)

    monkeypatch.setattr(StreamTimeline, 'read', counted)
    generator = StreamingGenerator()
    engine = FaceEngine(generator, start_ns=0)
    outputs = _push_in_chunks(engine, {'self': _bursts(1.0), 'partner': _bursts(1.0)}, 640)
    assert len(reads) == 2 * len(outputs)  # one read per voice per frame, for the model and the voice activity
    # after frame 0 (which also reads its encoder's pre-frames): from the frame's start (voice activity) to the end
    # of its lookahead (the model's new encoder window lies inside)
    assert reads[2::2] == [(o.index * 640, frame_end(generator, o.index)) for o in outputs[1:]]


def test_warm_up_and_reset_leave_a_fresh_stream() -> None:
    voices = {'self': _bursts(1.0), 'partner': _bursts(1.0)}
    engine = FaceEngine(StreamingGenerator(seed=2), start_ns=0)
    first = np.stack([o.motion for o in _push_in_chunks(engine, voices, 320)])
    assert engine.warm_up() == 23  # frames final in one second of silence
    engine.reset(0)
    again = np.stack([o.motion for o in _push_in_chunks(engine, voices, 320)])
    np.testing.assert_array_equal(again, first)
