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


def test_a_late_microphone_is_waited_for_as_late_as_it_is_and_named_when_it_is_too_late() -> None:
    # a USB array behind a driver buffer: the partner's audio arrives 250 ms after its stamps
    engine = FaceEngine(AmplitudeGenerator(), start_ns=0)
    outputs = _run_live(engine, {'self': _bursts(4.0), 'partner': _bursts(4.0)}, 4.0, chunk=160,
                        delay_ns={'partner': 250 * MS})
    partner = engine.status().voices['partner']
    assert abs(partner.delivery_delay_ms - 250) < 15 and partner.wait_ms > 250
    # late only before its first message arrived (the frames of those 250 ms were made without it)
    assert partner.issues.get('LATE', 0) <= 26
    listening = np.array([o.partner_activity > 0 for o in outputs])
    talking = np.array([(o.index * 0.04) % 1.0 < 0.5 and o.index >= 25 for o in outputs])
    assert listening[talking].mean() > 0.8  # the face hears the partner (after its first message)
    # waiting less than that (max_wait_ms) drops its audio, and the log line says why and what to set
    engine = FaceEngine(AmplitudeGenerator(), start_ns=0, config=EngineConfig(max_wait_ms=100.0))
    _run_live(engine, {'self': _bursts(4.0), 'partner': _bursts(4.0)}, 4.0, chunk=160, delay_ns={'partner': 250 * MS})
    partner = engine.status().voices['partner']
    assert partner.issues['LATE'] > 100
    explained = partner.explain(AudioIssue.LATE)
    assert 'max_wait_ms' in explained and '25' in explained.split('arrives ')[1][:3]


def test_an_engine_that_stalled_skips_ahead_instead_of_lagging_for_ever() -> None:
    engine = FaceEngine(AmplitudeGenerator(), start_ns=0)
    engine.poll(1 * NS)
    outputs = engine.poll(8 * NS)  # a 7 s stall (the process was suspended)
    assert engine.status().frames_dropped > 100
    assert outputs and outputs[-1].index == 8 * 25 - 2  # the newest frame whose deadline has passed
    assert [o.index for o in outputs] == list(range(outputs[0].index, outputs[-1].index + 1))


def test_an_engine_short_of_cpu_sheds_images_then_euler_steps_and_keeps_every_frame_of_motion() -> None:
    audio = _bursts(4.0)
    engine = FaceEngine(StreamingGenerator(), _Canvas(), start_ns=0)
    outputs = []
    for now in range(10 * MS, 4 * NS, 10 * MS):
        k = now * SAMPLE_RATE_HZ // NS
        engine.push('self', _s16(audio[k - 160:k]), now - 10 * MS, now)
        if not 1 * NS <= now < 1300 * MS:  # the process got no CPU for 300 ms
            outputs += engine.poll(now)
    assert [o.index for o in outputs] == list(range(len(outputs)))  # every frame's motion, in order
    stalled = [o for o in outputs if 1000 * MS < o.completed_ns < 1300 * MS]
    assert stalled and all(o.image is None for o in stalled)  # late frames got no image
    assert engine.status().frames_light >= 3  # the latest of them were sampled with fewer Euler steps
    assert all(o.image is not None for o in outputs if o.completed_ns > 1500 * MS)  # caught up
    assert engine.status().frames_dropped == 0


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


def _envelope(audio: np.ndarray) -> np.ndarray:
    """Loudness per 40 ms frame."""
    return np.sqrt(np.mean(audio[:len(audio) // 640 * 640].reshape(-1, 640) ** 2, axis=1))


def _speak(engine: FaceEngine, utterance: np.ndarray, *, arrive_ns: int, stamp_ns: int | None, chunks: int,
           until_ns: int, mic: bool = True) -> list:
    """A TTS that sends ``utterance`` in ``chunks`` messages within 20 ms of ``arrive_ns`` (stamped with its play
    time, or not at all), next to a partner microphone that publishes quiet room noise live every 10 ms; the engine
    is polled every 5 ms until ``until_ns``. Returns (frame, the time it was shown)."""
    noise = np.random.default_rng(0).normal(0, 1e-3, until_ns * SAMPLE_RATE_HZ // NS).astype(np.float32)
    pieces = np.array_split(utterance, chunks)
    offsets = np.cumsum([0] + [len(p) for p in pieces])
    shown, sent, mic_sent = [], 0, 0
    for now in range(0, until_ns, 5 * MS):
        while mic and (mic_sent + 160) * NS // SAMPLE_RATE_HZ <= now:
            engine.push('partner', _s16(noise[mic_sent:mic_sent + 160]), mic_sent * NS // SAMPLE_RATE_HZ, now)
            mic_sent += 160
        while sent < chunks and now >= arrive_ns + sent * 20 * MS // chunks:
            stamp = None if stamp_ns is None else stamp_ns + int(offsets[sent]) * NS // SAMPLE_RATE_HZ
            engine.push('self', _s16(pieces[sent]), stamp, now)
            sent += 1
        shown += [(o, now) for o in engine.poll(now)]
    return shown


def _check_utterance_shown_in_time(shown: list, utterance: np.ndarray, start_ns: int) -> None:
    """At least 95 % of the utterance's frames were shown, each within a frame period of when its sound plays,
    and the mouth follows the sound."""
    first = start_ns // (40 * MS)
    frames = {o.index: (o, when) for o, when in shown if first <= o.index < first + len(utterance) // 640}
    assert len(frames) >= 0.95 * (len(utterance) // 640)
    for index, (output, when) in frames.items():
        assert output.stamp_ns == index * 40 * MS  # its stamp is the time its sound is played
        assert 0 <= when - output.stamp_ns <= 40 * MS, (index, (when - output.stamp_ns) / MS)
        assert output.image is not None
    span = range(first, first + len(utterance) // 640)
    jaw = np.array([frames[i][0].motion[JAW] if i in frames else 0.0 for i in span])
    assert np.corrcoef(jaw, _envelope(utterance))[0, 1] > 0.6


class _Canvas:
    """A renderer that draws the jaw as a grey level (the real renderers are tested in test_face_*)."""

    def render(self, motion: np.ndarray) -> np.ndarray:
        return np.full((4, 4, 3), int(motion[JAW] * 255), np.uint8)


def test_a_tts_utterance_stamped_ahead_is_shown_when_it_is_played() -> None:
    utterance = _bursts(3.7)
    # 80 chunks sent within 20 ms at t = 1 s, stamped to play from t = 1.5 s
    engine = FaceEngine(AmplitudeGenerator(), _Canvas(), start_ns=0)
    shown = _speak(engine, utterance, arrive_ns=NS, stamp_ns=1500 * MS, chunks=80, until_ns=6 * NS)
    _check_utterance_shown_in_time(shown, utterance, 1500 * MS)
    assert engine.status().voices['self'].issues == {} and 'LATE' not in engine.status().voices['partner'].issues
    # one message holding the whole utterance: the same
    engine = FaceEngine(AmplitudeGenerator(), _Canvas(), start_ns=0)
    _check_utterance_shown_in_time(_speak(engine, utterance, arrive_ns=NS, stamp_ns=1500 * MS, chunks=1,
                                          until_ns=6 * NS), utterance, 1500 * MS)


def test_an_unstamped_tts_burst_plays_from_its_arrival() -> None:
    utterance = _bursts(3.7)
    engine = FaceEngine(AmplitudeGenerator(), _Canvas(), start_ns=0)
    shown = _speak(engine, utterance, arrive_ns=NS, stamp_ns=None, chunks=80, until_ns=6 * NS)
    _check_utterance_shown_in_time(shown, utterance, NS)


def test_a_minute_long_utterance_in_one_message_is_shown_whole() -> None:
    utterance = _bursts(60.0)
    engine = FaceEngine(AmplitudeGenerator(), _Canvas(), start_ns=0)
    shown = _speak(engine, utterance, arrive_ns=NS, stamp_ns=1200 * MS, chunks=1, until_ns=62 * NS, mic=False)
    _check_utterance_shown_in_time(shown, utterance, 1200 * MS)
