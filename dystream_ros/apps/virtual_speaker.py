"""A loudspeaker without a sound card: an ALSA device whose DAC is a thread of this process.

The device ``speaker`` (added to ``$HOME/.asoundrc``) is ALSA's ``file`` plugin writing into a FIFO; :class:`Dac`
takes the samples out of the FIFO at exactly 16 kHz, as a sound card plays its buffer, and notes when each was
played. A full FIFO blocks the writer, so PortAudio's callbacks are paced by that DAC as by a real one. The null
device under the plugin reports no delay to PortAudio, so the speaker's latency (the ALSA buffer the file plugin
holds back, and the FIFO) is measured first (:func:`speaker_latency_s`), as an integrator measures a speaker with a
loopback cable, and given to audio_player_node as ``output_latency_ms``. The tests of audio_player_node and
``dystream bench speaker`` hear the robot's voice here.
"""
from __future__ import annotations

import fcntl
import os
import threading
import time
from pathlib import Path

import numpy as np

RATE = 16000
CHANNELS = 8  # 8 x S32 per sample in the FIFO: one pipe page (4096 bytes, what a pipe moves at once) is 8 ms
TICK = 4096 // (4 * CHANNELS)  # samples the DAC plays per step: one page
DAC_GRACE_S = 0.05  # a DAC that ran late itself waits this long for the writer before it counts an underrun
F_SETPIPE_SZ = 1031  # fcntl command (linux/fcntl.h)
FIFO_BYTES = 16 * 4096  # 128 ms of sound: a writer that stalls for longer (a busy machine) makes the DAC run dry


def add_virtual_speaker(home: Path) -> Path:
    """A playback device 'speaker' that writes into a FIFO, added to the ALSA configuration in ``home``."""
    fifo = home / 'speaker.fifo'
    os.mkfifo(fifo)
    with (home / '.asoundrc').open('a') as asoundrc:
        asoundrc.write(
            f'pcm.speaker {{ type plug; slave {{ pcm {{ type file; slave.pcm "null"; file "{fifo}"; format "raw" }}; '
            f'format S32_LE; channels {CHANNELS}; rate {RATE} }} }}\n')
    return fifo


class Dac:
    """The virtual speaker's DAC: plays (takes out of the FIFO) 16000 samples a second and keeps what it played."""

    def __init__(self, fifo: Path) -> None:
        self._fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # open before the writer, which waits for a reader
        fcntl.fcntl(self._fd, F_SETPIPE_SZ, FIFO_BYTES)
        self.start_s: float | None = None  # time.monotonic() of the first sample played
        self.underruns: list[int] = []  # where the DAC ran dry (sample index)
        self._played: list[np.ndarray] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _read(self, size: int) -> bytes:
        try:
            return os.read(self._fd, size)
        except BlockingIOError:
            return b''

    def _run(self) -> None:
        page = TICK * 4 * CHANNELS
        pending = b''
        while not pending and not self._stop.is_set():  # the device opens: the first sample is played at once
            pending = self._read(page)
            time.sleep(0.0005)
        self.start_s = time.monotonic()
        tick = 0
        while not self._stop.is_set():
            # the samples of this step are due by its end; a writer a little late (it, or this thread, kept from
            # running on a busy machine) gets DAC_GRACE_S more, as a sound card's deeper buffer would give it
            due = max(self.start_s + (tick + 1) * TICK / RATE, time.monotonic() + DAC_GRACE_S)
            while len(pending) < page and time.monotonic() < due:
                data = self._read(page - len(pending))
                pending += data
                if not data:
                    time.sleep(0.0005)
            if len(pending) == page:
                self._played.append(np.frombuffer(pending, '<i4')[::CHANNELS] >> 16)
                pending = b''
            else:  # the writer did not keep up: the DAC plays silence, as a sound card after an underrun
                self.underruns.append(tick * TICK)
                self._played.append(np.zeros(TICK, np.int32))
            tick += 1
            time.sleep(max(0.0, self.start_s + tick * TICK / RATE - time.monotonic()))

    def played(self) -> np.ndarray:
        """Everything played so far (int16 values), sample ``j`` at ``start_s + j / 16000``."""
        return np.concatenate([np.zeros(0, np.int32), *list(self._played)])

    def close(self) -> None:
        """Stop playing (after the writer has stopped: a DAC that stops would block it in its last write)."""
        self._stop.set()
        self._thread.join(timeout=5)
        os.close(self._fd)


def speaker_latency_s(home: Path, fifo: Path) -> float:
    """From PortAudio handing over a buffer to the DAC playing it, measured with a PortAudio stream of our own
    (in this process, whose ALSA configuration must not have been read before with another ``$HOME``)."""
    import pyaudio

    dac = Dac(fifo)
    handed: dict[int, float] = {}  # buffer number (its sample values) -> PortAudio's time (CLOCK_MONOTONIC)

    def fill(_: bytes | None, frames: int, time_info: dict[str, float], status: int) -> tuple[bytes, int]:  # noqa: ARG001
        number = len(handed) + 1
        handed[number] = time_info['current_time']
        return np.full(frames, number, '<i2').tobytes(), pyaudio.paContinue

    home_before = os.environ.get('HOME')
    os.environ['HOME'] = str(home)
    try:
        audio = pyaudio.PyAudio()
        device = next(i for i in range(audio.get_device_count())
                      if audio.get_device_info_by_index(i)['name'] == 'speaker')
        stream = audio.open(format=pyaudio.paInt16, channels=1, rate=RATE, output=True, output_device_index=device,
                            frames_per_buffer=160, stream_callback=fill)  # as audio_player_node's buffer_ms 10
        time.sleep(2.0)
        stream.stop_stream()
        stream.close()
        audio.terminate()
    finally:
        if home_before is None:
            os.environ.pop('HOME', None)
        else:
            os.environ['HOME'] = home_before
    dac.close()
    played = dac.played()
    firsts = np.flatnonzero(np.diff(played, prepend=0) != 0)  # where each buffer starts playing
    latencies = [dac.start_s + j / RATE - handed[int(played[j])] for j in firsts if int(played[j]) in handed]
    return float(np.median(latencies[len(latencies) // 2:]))  # once the FIFO has filled: the steady latency
