"""Audio input: any encoding, rate, chunking and stamp mistake becomes clean 16 kHz audio on the engine clock."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dystream_ros.audio import AudioFormat, AudioIssue, Decoder, Resampler, StreamTimeline, VoiceInput
from dystream_ros.errors import ConfigError

NS = 1_000_000_000


def _tone(rate: int, seconds: float, hz: float = 440.0, amplitude: float = 0.5) -> np.ndarray:
    return (amplitude * np.sin(2 * np.pi * hz * np.arange(int(rate * seconds)) / rate)).astype(np.float32)


@pytest.mark.parametrize(('sample_format', 'dtype', 'scale'), [
    ('S16LE', '<i2', 32767), ('S32LE', '<i4', 2**31 - 1), ('F32LE', '<f4', 1.0)])
def test_each_encoding_decodes_to_the_same_mono_signal(sample_format: str, dtype: str, scale: float) -> None:
    signal = _tone(16000, 0.1)
    stereo = np.stack([signal, signal], axis=1)  # interleaved L R L R
    data = (stereo * scale).astype(dtype).tobytes()
    samples, issues = Decoder(AudioFormat(16000, 2, sample_format)).decode(data)
    assert issues == []
    # the DC blocker (below 3 Hz) leaves a 440 Hz tone as it is
    np.testing.assert_allclose(samples[400:], signal[400:], atol=1e-2)


def test_unsupported_formats_are_rejected_with_what_is_supported() -> None:
    with pytest.raises(ConfigError, match='S16LE, S32LE, F32LE'):
        AudioFormat(16000, 1, 'MP3')
    with pytest.raises(ConfigError, match='8000..48000'):
        AudioFormat(96000, 1, 'S16LE')


@settings(max_examples=150, deadline=None)
@given(data=st.binary(min_size=0, max_size=4000), cuts=st.lists(st.integers(0, 4000), max_size=8),
       sample_format=st.sampled_from(['S16LE', 'S32LE', 'F32LE']), channels=st.integers(1, 2))
def test_fuzzed_bytes_decode_from_each_message_start_and_stay_finite(
        data: bytes, cuts: list[int], sample_format: str, channels: int) -> None:
    audio_format = AudioFormat(16000, channels, sample_format)
    decoder = Decoder(audio_format)
    bounds = [0, *sorted(c % (len(data) + 1) for c in cuts), len(data)]
    outputs = [decoder.decode(data[a:b])[0] for a, b in zip(bounds, bounds[1:])]
    decoded = np.concatenate(outputs)
    assert len(decoded) == sum((b - a) // audio_format.frame_bytes for a, b in zip(bounds, bounds[1:]))
    assert np.isfinite(decoded).all() and np.abs(decoded).max(initial=0) <= 2.0
    # chunking on whole sample frames never changes the result
    whole = [0, *sorted({c - c % audio_format.frame_bytes for c in bounds[1:-1]}), len(data)]
    rechunked = Decoder(audio_format)
    np.testing.assert_array_equal(np.concatenate([rechunked.decode(data[a:b])[0] for a, b in zip(whole, whole[1:])]),
                                  Decoder(audio_format).decode(data)[0])


def test_a_message_with_a_stray_byte_does_not_shift_the_messages_after_it() -> None:
    # 1001 bytes of S16LE: the last byte is half a sample; the next message still starts on a sample boundary
    tone = (_tone(16000, 0.2) * 32767).astype('<i2')
    first, second = tone[:500].tobytes() + b'\x7f', tone[500:].tobytes()
    decoder = Decoder(AudioFormat())
    _, issues = decoder.decode(first)
    samples, later_issues = decoder.decode(second)
    assert issues == [AudioIssue.PARTIAL_FRAME] and later_issues == []
    np.testing.assert_allclose(samples[200:], tone[700:] / 32768, atol=2e-2)


def test_channel_select_keeps_the_beamformed_channel_and_drops_the_playback_reference() -> None:
    # a ReSpeaker-style 6-channel array: 0 processed voice, 1-4 raw microphones, 5 the robot's own playback
    voice, playback = _tone(16000, 0.2, 300.0), _tone(16000, 0.2, 1000.0)
    frames = np.stack([voice, voice, voice, voice, voice, playback], axis=1)
    data = (frames * 32767).astype('<i2').tobytes()
    only_voice, _ = Decoder(AudioFormat(16000, 6, 'S16LE', channel_select=(0,))).decode(data)
    np.testing.assert_allclose(only_voice[400:], voice[400:], atol=1e-2)
    raw_mics, _ = Decoder(AudioFormat(16000, 6, 'S16LE', channel_select=(1, 2, 3, 4))).decode(data)
    np.testing.assert_allclose(raw_mics[400:], voice[400:], atol=1e-2)
    with pytest.raises(ConfigError, match='0..5'):
        AudioFormat(16000, 6, 'S16LE', channel_select=(6,))


def test_nan_clipped_and_dc_audio_are_repaired_and_reported() -> None:
    decoder = Decoder(AudioFormat(16000, 1, 'F32LE'))
    bad = _tone(16000, 0.05)
    bad[10:20] = np.nan
    samples, issues = decoder.decode(bad.tobytes())
    assert AudioIssue.NOT_FINITE in issues and np.isfinite(samples).all()
    _, issues = decoder.decode(np.full(800, 1.0, np.float32).tobytes())
    assert AudioIssue.CLIPPED in issues
    dc = Decoder(AudioFormat(16000, 1, 'S16LE'))
    samples, issues = dc.decode((np.full(16000, 0.3) * 32767).astype('<i2').tobytes())
    assert AudioIssue.DC_OFFSET in issues and abs(samples[-1600:].mean()) < 0.01
    odd, issues = Decoder(AudioFormat()).decode(b'\x01\x02\x03')
    assert len(odd) == 1 and issues == [AudioIssue.PARTIAL_FRAME]


@pytest.mark.parametrize('rate', [8000, 11025, 22050, 32000, 44100, 48000])
def test_resampling_to_16k_keeps_pitch_and_level(rate: int) -> None:
    resampler = Resampler(rate)
    out = resampler.process(_tone(rate, 1.0))
    assert abs(len(out) - 16000) <= 1
    expected = 0.5 * np.sin(2 * np.pi * 440.0 * (np.arange(len(out)) / 16000 - resampler.delay_s))
    assert np.abs(out[400:-10] - expected[400:-10]).max() < 1e-3


@settings(max_examples=40, deadline=None)
@given(rate=st.sampled_from([8000, 22050, 44100, 48000]), sizes=st.lists(st.integers(0, 3000), min_size=1))
def test_resampling_gives_the_same_samples_whatever_the_chunking(rate: int, sizes: list[int]) -> None:
    signal = np.random.default_rng(0).normal(0, 0.3, sum(sizes)).astype(np.float32)
    chunked = Resampler(rate)
    parts, i = [], 0
    for size in sizes:
        parts.append(chunked.process(signal[i:i + size]))
        i += size
    np.testing.assert_array_equal(np.concatenate(parts), Resampler(rate).process(signal))


def _feed(timeline: StreamTimeline, audio: np.ndarray, stamp0_ns: int, arrival0_ns: int, chunk: int = 512,
          jitter_ns: int = 0) -> list[AudioIssue]:
    issues = []
    rng = np.random.default_rng(1)
    for i in range(0, len(audio), chunk):
        offset_ns = i * NS // 16000
        stamp = stamp0_ns + offset_ns + int(rng.integers(-jitter_ns, jitter_ns + 1))
        chunk_ns = len(audio[i:i + chunk]) * NS // 16000
        issues += timeline.write(stamp, audio[i:i + chunk], arrival0_ns + offset_ns + chunk_ns)
    return issues


def test_jittery_stamps_from_an_old_bag_give_contiguous_audio() -> None:
    audio = _tone(16000, 2.0)
    timeline = StreamTimeline(epoch_ns=5 * NS)
    # stamps from a bag recorded years ago, jittering by 5 ms, arriving now
    issues = _feed(timeline, audio, stamp0_ns=1_600_000_000 * NS, arrival0_ns=5 * NS, jitter_ns=5_000_000)
    assert issues == []
    np.testing.assert_array_equal(timeline.read(0, len(audio)), audio)
    assert abs(timeline.stamp_of(0) - 1_600_000_000 * NS) <= 5_000_000  # within the stamp jitter


def test_each_sample_keeps_the_stamp_its_message_gave_it() -> None:
    # a publisher whose first message was late (its stamp 15 ms after the audio's time) and the rest on time:
    # output stamps follow each message's own stamp, not an extrapolation from the first
    audio = _tone(16000, 1.0)
    timeline = StreamTimeline(epoch_ns=0)
    stamps = [k * 10_000_000 + (15_000_000 if k == 0 else 0) for k in range(100)]
    for k, stamp in enumerate(stamps):
        assert timeline.write(stamp, audio[k * 160:(k + 1) * 160], arrival_ns=(k + 1) * 10_000_000 + 1) == []
    assert [timeline.stamp_of(k * 160) for k in range(100)] == stamps
    assert timeline.stamp_of(50 * 160 + 80) == stamps[50] + 5_000_000  # 80 samples into the message


def test_gaps_become_silence_and_duplicates_are_dropped() -> None:
    audio = _tone(16000, 1.0)
    timeline = StreamTimeline(epoch_ns=0)
    assert timeline.write(0, audio[:4000], arrival_ns=4000 * NS // 16000) == []
    # a message repeated: dropped, nothing changes
    assert timeline.write(0, audio[:4000] * 0.5, arrival_ns=5000 * NS // 16000) == [AudioIssue.OVERLAP]
    # 0.5 s with no message, then audio again: the hole is silence
    later = 12000
    assert timeline.write(later * NS // 16000, audio[:4000], arrival_ns=16000 * NS // 16000) == [AudioIssue.GAP]
    read = timeline.read(0, 16000)
    np.testing.assert_array_equal(read[:4000], audio[:4000])
    assert not read[4000:later].any()
    np.testing.assert_array_equal(read[later:], audio[:4000])


def test_out_of_order_chunks_fill_their_place_and_late_ones_are_dropped() -> None:
    audio = _tone(16000, 0.3)
    timeline = StreamTimeline(epoch_ns=0)
    a, b, c = audio[:1600], audio[1600:3200], audio[3200:4800]
    timeline.write(0, a, arrival_ns=NS // 10)
    assert timeline.write(3200 * NS // 16000, c, arrival_ns=3 * NS // 10) == [AudioIssue.GAP]
    assert timeline.write(1600 * NS // 16000, b, arrival_ns=3 * NS // 10) == []
    np.testing.assert_array_equal(timeline.read(0, 4800), audio[:4800])
    timeline.consume(6400)
    assert AudioIssue.LATE in timeline.write(4800 * NS // 16000, audio[:1600], arrival_ns=4 * NS // 10)


def test_a_looping_bag_is_resynchronised_without_losing_audio() -> None:
    audio = _tone(16000, 1.0)
    timeline = StreamTimeline(epoch_ns=0)
    _feed(timeline, audio, stamp0_ns=100 * NS, arrival0_ns=0)
    # the bag starts over: stamps jump back by a second, arrival goes on
    issues = _feed(timeline, audio, stamp0_ns=100 * NS, arrival0_ns=NS)
    assert issues.count(AudioIssue.CLOCK_JUMP) == 1
    np.testing.assert_array_equal(timeline.read(0, 32000), np.concatenate([audio, audio]))


def test_a_huge_message_is_dropped_and_the_audio_around_it_kept() -> None:
    timeline = StreamTimeline(epoch_ns=0, capacity_s=2.0)
    audio = _tone(16000, 1.0)
    assert timeline.write(0, audio[:8000], arrival_ns=NS // 2) == []
    huge = np.random.default_rng(0).normal(0, 0.1, 5 * 16000).astype(np.float32)
    assert timeline.write(NS // 2, huge, arrival_ns=NS // 2 + 1) == [AudioIssue.TOO_LARGE]
    assert timeline.write(NS // 2, audio[8000:], arrival_ns=NS) == []
    np.testing.assert_array_equal(timeline.read(0, 16000), audio)
    assert timeline.written_until == 16000


def test_a_bag_replayed_faster_than_real_time_is_placed_by_its_stamps() -> None:
    audio = _tone(16000, 3.0)
    timeline = StreamTimeline(epoch_ns=0)
    issues = []
    for i in range(0, len(audio), 640):  # 40 ms chunks published every 5 ms
        arrival_ns = 40_000_000 + (i // 640) * 5_000_000
        issues += timeline.write(1_600_000_000 * NS + i * NS // 16000, audio[i:i + 640], arrival_ns=arrival_ns)
    assert issues == []
    np.testing.assert_array_equal(timeline.read(0, len(audio)), audio)


def test_a_pause_in_publishing_is_silence_but_a_clock_leap_is_resynchronised() -> None:
    audio = _tone(16000, 0.5)
    paused = StreamTimeline(epoch_ns=0)
    _feed(paused, audio, stamp0_ns=0, arrival0_ns=0)
    # the TTS stops publishing for 3 s, then speaks again: stamps and arrivals both move on by 3.5 s
    assert _feed(paused, audio, stamp0_ns=3_500_000_000, arrival0_ns=3_500_000_000)[0] == AudioIssue.GAP
    assert not paused.read(8000, 8000 + 3 * 16000).any()
    leapt = StreamTimeline(epoch_ns=0)
    _feed(leapt, audio, stamp0_ns=0, arrival0_ns=0)
    # the publisher's clock is reset 100 s ahead while its audio keeps flowing
    assert AudioIssue.CLOCK_JUMP in _feed(leapt, audio, stamp0_ns=100 * NS, arrival0_ns=NS // 2)
    np.testing.assert_array_equal(leapt.read(0, 16000), np.concatenate([audio, audio]))


def test_a_tts_burst_stamped_with_its_play_time_is_placed_at_its_stamps() -> None:
    # 3.2 s of speech published in 80 chunks within 40 ms, stamped to play 0.5 s from now (on the engine's clock)
    audio = _tone(16000, 3.2)
    timeline = StreamTimeline(epoch_ns=100 * NS)
    now, play_at = 101 * NS, 101 * NS + NS // 2
    issues = []
    for k in range(80):
        issues += timeline.write(play_at + k * 40_000_000, audio[k * 640:(k + 1) * 640], arrival_ns=now + k * 500_000)
    assert issues == [] and timeline.on_engine_clock
    start = timeline.index_of(play_at)
    assert start == 1.5 * 16000
    np.testing.assert_array_equal(timeline.read(start, start + len(audio)), audio)
    assert not timeline.heard(0, start).any() and timeline.heard(start, start + len(audio)).all()


def test_unstamped_audio_plays_from_its_arrival_chained_after_what_still_plays() -> None:
    audio = _tone(16000, 2.0)
    timeline = StreamTimeline(epoch_ns=0)
    # a burst: 50 chunks of 40 ms within 25 ms, from t = 1 s
    for k in range(50):
        assert timeline.write(None, audio[k * 640:(k + 1) * 640], arrival_ns=NS + k * 500_000) == []
    np.testing.assert_array_equal(timeline.read(16000, 48000), audio)
    # a second utterance arriving while the first still plays (t = 2.5 s) goes after it
    timeline.write(None, audio[:8000], arrival_ns=2 * NS + NS // 2)
    np.testing.assert_array_equal(timeline.read(48000, 56000), audio[:8000])
    # one arriving after a pause (t = 10 s) plays at once: silence in between, and no gap reported
    assert timeline.write(None, audio[:8000], arrival_ns=10 * NS) == []
    np.testing.assert_array_equal(timeline.read(160000, 168000), audio[:8000])
    assert not timeline.read(56000, 160000).any() and not timeline.heard(56000, 160000).any()


def test_a_minute_in_one_message_fits() -> None:
    minute = np.random.default_rng(0).normal(0, 0.1, 60 * 16000).astype(np.float32)
    voice = VoiceInput(AudioFormat(), epoch_ns=0, capacity_s=120.0)
    assert voice.push((minute * 32767).astype('<i2').tobytes(), 2 * NS, arrival_ns=NS) == []
    start = voice.timeline.index_of(2 * NS)
    assert voice.timeline.written_until - start == 60 * 16000 - voice.resampler.delay_s * 16000
    assert voice.timeline.read(start + 16000, start + 32000).std() > 0.05


def test_a_late_microphone_is_placed_at_its_stamps_and_its_delay_measured() -> None:
    # a USB array behind a driver buffer: every 10 ms chunk arrives 250 ms after its capture time
    audio = _tone(16000, 2.0)
    voice = VoiceInput(AudioFormat(), epoch_ns=0, capacity_s=10.0)
    for k in range(200):
        stamp = 5 * NS + k * 10_000_000
        assert voice.push((audio[k * 160:(k + 1) * 160] * 32767).astype('<i2').tobytes(), stamp,
                          arrival_ns=stamp + 10_000_000 + 250_000_000) == []
    assert abs(voice.delivery_delay_ns - 250_000_000) < 2_000_000
    assert voice.timeline.written_until == pytest.approx(7 * 16000, abs=2)
