"""A microphone without a sound card that delivers sound at a real microphone's pace.

The device ``clockedmic`` (added to ``$HOME/.asoundrc``) is ALSA's ``file`` plugin reading a FIFO that a thread
here fills with a tone, 10 ms every 10 ms. A read blocks until its samples are there, so audio_capture_node
publishes 100 messages a second, as from a sound card (test_audio_capture's ``filemic`` reads a file as fast as
it can). PortAudio opens the device several times while it probes it, so the thread opens the FIFO again
after each reader leaves.
"""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np

RATE = 16000
PERIOD_S = 0.01


class ClockedMicrophone:
    """Adds ``clockedmic`` to the ALSA configuration in ``home`` and feeds it until :meth:`close`."""

    def __init__(self, home: Path) -> None:
        self.fifo = home / 'clockedmic.fifo'
        os.mkfifo(self.fifo)
        with (home / '.asoundrc').open('a') as asoundrc:
            asoundrc.write(f'pcm.clockedmic {{ type file; slave.pcm "null"; file "/dev/null"; infile "{self.fifo}"; '
                           'format "raw" }\n')
        t = np.arange(int(RATE * PERIOD_S)) / RATE
        self._chunk = (8000 * np.sin(2 * np.pi * 440 * t)).astype('<i2').tobytes()  # a whole number of periods
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._feed, daemon=True)
        self._thread.start()

    def _feed(self) -> None:
        while not self._stop.is_set():
            fd = os.open(self.fifo, os.O_WRONLY)  # blocks until a reader opens the device
            start, sent = time.monotonic(), 0
            try:
                while not self._stop.is_set():
                    os.write(fd, self._chunk)
                    sent += 1
                    time.sleep(max(0.0, start + sent * PERIOD_S - time.monotonic()))
            except BrokenPipeError:
                pass  # the reader closed the device: wait for the next
            finally:
                os.close(fd)

    def close(self) -> None:
        """Stop feeding (after the readers have gone)."""
        self._stop.set()
        unblock = os.open(self.fifo, os.O_RDONLY | os.O_NONBLOCK)  # lets a waiting open() return
        self._thread.join(timeout=5)
        os.close(unblock)
