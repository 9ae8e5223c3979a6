"""A robot's computer is busy with other work: the face keeps moving, with a bounded delay, and says what it shed.

dystream_node (the shipped model on torch, the stylised face at 512 px) runs next to two processes that each keep a
core busy, on a machine whose cores are all taken; the test's robot talks to it live. The node cannot make 25 full
frames a second on what is left: it sheds images, then Euler steps, and skips ahead rather than lag behind.
"""
from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest
from support.face_graph import FaceUnderTest, s16

NS, MS = 1_000_000_000, 1_000_000
BUSY = 'while True: pass'

pytestmark = pytest.mark.realtime


def test_with_the_cpu_taken_by_other_processes_motion_keeps_coming_with_a_bounded_delay() -> None:
    busy = [subprocess.Popen([sys.executable, '-c', BUSY]) for _ in range(2)]
    face = FaceUnderTest('image_size:=512')
    t = np.arange(16000 * 20) / 16000
    voice = (0.3 * ((t % 1.0) < 0.5) * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    sent, start = 0, 0

    def microphone(now_ns: int) -> None:
        nonlocal sent
        while start and sent < len(voice) and start + (sent + 160) * NS // 16000 <= now_ns:
            face.publish('self', s16(voice[sent:sent + 160]), start + sent * NS // 16000)
            sent += 160

    try:
        face.wait_for_face()
        start = time.time_ns()
        face.spin(15.0, microphone)
    finally:
        for process in busy:
            process.kill()
        log = face.close()
    assert face.face.returncode == 0, log[-3000:]
    shown = sorted(face.frames_between(start, start + 15 * NS).items())
    arrivals = np.sort([received for _, (_, received) in shown])
    delays_ms = np.array([(received - stamp) / MS for stamp, (_, received) in shown])
    figures = (len(shown), np.diff(arrivals).max() / MS, np.percentile(delays_ms, [50, 90, 99, 100]).round(),
               [line for line in log.splitlines() if 'short of' in line or 'dropped' in line][-3:])
    assert len(shown) >= 0.8 * 15 * 25, figures  # the motion of most frames (it may skip some to catch up)
    assert np.diff(arrivals).max() <= 1.0 * NS, figures  # no stall: frames keep coming
    # bounded: at most half a second behind the latest moment a frame may be made before it skips ahead (measured
    # here with the torch backend: p50 350 ms, p99 1.0 s; before, a stall of 8 s and p99 3.5 s)
    assert np.percentile(delays_ms, 99) < 1500, figures
    if delays_ms.max() > 400:  # a frame this late was due 300 ms before (lookahead and wait: 100 ms): work was shed
        assert 'short of time' in log, figures  # and it says what it shed (a fast machine keeps up and sheds nothing)
