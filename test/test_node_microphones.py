"""Real microphones as a robot has them: late behind a driver buffer, a stray byte, steady room noise, dropouts.

dystream_node runs in its own process (the amplitude baseline and no renderer: what is tested is the intake, which
is the same for the model); the test publishes its voices over DDS and reads the frames it shows.
"""
from __future__ import annotations

import time

import numpy as np
from support.face_graph import FaceUnderTest, blendshape, s16

NS, MS = 1_000_000_000, 1_000_000


def _bursts(seconds: float) -> np.ndarray:
    """A voice-like signal at -16 dBFS: 0.5 s of modulated tone every second, silence in between."""
    t = np.arange(int(seconds * 16000)) / 16000
    return (0.3 * ((t % 1.0) < 0.5) * np.sin(2 * np.pi * 220 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t))
            ).astype(np.float32)


def test_late_stray_byte_noisy_and_interrupted_microphones_are_heard_right() -> None:
    """The partner's USB array delivers every 10 ms message 250 ms after its capture time; the robot's own microphone
    picks up -45 dBFS of steady room noise, sends one message with a stray byte at 3 s, and drops out from 6 to 8 s.
    """
    face = FaceUnderTest('generator:=amplitude', 'renderer:=none')
    rng = np.random.default_rng(0)
    speech = _bursts(12.0)
    room = rng.normal(0, 10 ** (-45 / 20), 12 * 16000).astype(np.float32)
    sent = {'self': 0, 'partner': 0}
    start = 0

    def microphones(now_ns: int) -> None:
        for stream, delay_ns in (('self', 0), ('partner', 250 * MS)):
            captured_ns = start + (sent[stream] + 160) * NS // 16000  # the end of its next message
            while start and sent[stream] < len(room) and captured_ns + delay_ns <= now_ns:
                k = sent[stream]
                stamp = start + k * NS // 16000
                sent[stream] += 160
                if stream == 'partner':
                    face.publish('partner', s16(speech[k:k + 160]), stamp)
                elif not 6 * 16000 <= k < 8 * 16000:  # the robot's microphone drops out from 6 to 8 s
                    stray = b'\x00' if k == 3 * 16000 else b''  # 321 bytes: half a sample too many
                    face.publish('self', s16(room[k:k + 160]) + stray, stamp)
                captured_ns += 160 * NS // 16000

    try:
        face.wait_for_face()
        start = time.time_ns()
        face.spin(12.5, microphones)
    finally:
        log = face.close()
    assert face.face.returncode == 0, log[-3000:]

    def frames(from_s: float, to_s: float) -> list:
        shown = face.frames_between(start + int(from_s * NS), start + int(to_s * NS))
        return [message for message, _ in shown.values()]

    # the late partner is heard: it listens while the partner speaks (after the first second, in which the delay is
    # measured), and only then
    partner_speaks = [m for m in frames(1.0, 11.5) if (m.header.stamp.nanosec / 1e9 + m.header.stamp.sec
                                                           - start / NS) % 1.0 < 0.45]
    assert np.mean([m.partner_voice_activity > 0 for m in partner_speaks]) > 0.8
    # room noise is not the robot speaking, 2.5 s after its stream starts and after its dropout; the stray byte does
    # not turn the noise after it into loud audio (the amplitude mouth would open)
    for quiet in (frames(2.5, 6.0), frames(10.5, 12.0)):
        assert quiet and all(m.self_voice_activity == 0 for m in quiet)
    assert max(blendshape(m, 'jawOpen') for m in frames(3.0, 6.0)) < 0.15
    assert 'byte count is not a whole number' in log
