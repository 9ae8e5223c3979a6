"""Streaming sample-rate conversion to the model's 16 kHz, independent of how the input is chunked.

A polyphase FIR resampler (rational ratio L/M): output sample n sits at input position n*M/L and is the sum of
the filter's phase ``(n*M) % L`` over the input samples before it. The filter's history is the only state, so
feeding a signal in any chunks gives exactly the same output as feeding it whole.
"""
from __future__ import annotations

from math import gcd

import numpy as np
from scipy.signal import firwin

from dystream_ros.units import SAMPLE_RATE_HZ

_TAPS_PER_PHASE = 24  # filter length per output phase: ~60 dB stop band, 1.5 ms of history at 16 kHz


class Resampler:
    """Converts a stream at ``rate_hz`` to 16 kHz; ``process`` returns every output sample that is complete.

    It delays the signal by half the filter length (``delay_s``), which the caller adds to its latency budget.
    """

    def __init__(self, rate_hz: int) -> None:
        self.rate_hz = int(rate_hz)
        g = gcd(self.rate_hz, SAMPLE_RATE_HZ)
        self.up, self.down = SAMPLE_RATE_HZ // g, self.rate_hz // g
        self._passthrough = self.up == self.down == 1
        cutoff = min(1.0, self.up / self.down)  # the lower of the two Nyquist frequencies, relative
        taps = _TAPS_PER_PHASE * self.up
        # (up, taps per phase): phase p of output n uses taps p, p+up, p+2*up, ... against x[base], x[base-1], ...
        h = firwin(taps, 0.94 * cutoff / self.up, window=('kaiser', 8.0)) * self.up
        self._phases = h.reshape(_TAPS_PER_PHASE, self.up).T.astype(np.float64)
        self._history = np.zeros(_TAPS_PER_PHASE - 1)  # input samples before the next chunk
        self._inputs_seen = 0  # input samples consumed so far
        self._outputs_made = 0  # output samples produced so far
        self.delay_s = 0.0 if self._passthrough else (taps - 1) / 2 / (self.up * self.rate_hz)

    @property
    def inputs_seen(self) -> int:
        """Input samples consumed since the start."""
        return self._inputs_seen

    @property
    def outputs_made(self) -> int:
        """16 kHz samples produced since the start."""
        return self._outputs_made

    def process(self, samples: np.ndarray) -> np.ndarray:
        """Feed input samples (float32); return the 16 kHz samples that are now complete (float32)."""
        if self._passthrough:
            return np.asarray(samples, np.float32)
        # a tenth of a second at a time: a minute in one message would otherwise gather a window of 200 MB
        block = max(self.rate_hz // 10, 1)
        parts = [self._process_block(samples[i:i + block]) for i in range(0, len(samples), block)]
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)

    def _process_block(self, samples: np.ndarray) -> np.ndarray:
        x = np.concatenate([self._history, np.asarray(samples, np.float64)])
        total_in = self._inputs_seen + len(samples)
        # output n needs input index floor(n*down/up) <= total_in - 1
        last = (total_in * self.up - 1) // self.down
        n = np.arange(self._outputs_made, last + 1)
        base = (n * self.down) // self.up - self._inputs_seen + len(self._history)  # index into x
        phase = (n * self.down) % self.up
        window = x[base[:, None] - np.arange(_TAPS_PER_PHASE)[None, :]]  # (N, taps): x[base], x[base-1], ...
        out = np.einsum('nk,nk->n', window, self._phases[phase])
        self._inputs_seen = total_in
        self._outputs_made = last + 1
        self._history = x[-(_TAPS_PER_PHASE - 1):]
        return out.astype(np.float32)
