"""telephone_band keeps the voice band and removes what a telephone line cannot carry."""
from __future__ import annotations

import numpy as np

from dystream_ros.audio.bandwidth import telephone_band


def _energy(audio: np.ndarray, low_hz: float, high_hz: float) -> float:
    spectrum = np.abs(np.fft.rfft(audio)) ** 2
    freqs = np.fft.rfftfreq(len(audio), 1 / 16000)
    return float(spectrum[(freqs >= low_hz) & (freqs < high_hz)].sum())


def test_telephone_band_removes_energy_above_4_khz_and_keeps_the_voice_band() -> None:
    noise = np.random.default_rng(0).normal(0, 0.1, 32000).astype(np.float32)  # 2 s of white noise, flat spectrum
    phone = telephone_band(noise)
    assert phone.shape == noise.shape and phone.dtype == np.float32
    assert _energy(phone, 4000, 8000) < 1e-3 * _energy(noise, 4000, 8000)  # below -30 dB
    assert 0.8 < _energy(phone, 500, 3000) / _energy(noise, 500, 3000) < 1.2
    assert _energy(phone, 0, 100) < 0.01 * _energy(noise, 0, 100)  # no rumble below the band either


def test_telephone_band_passes_a_voice_band_tone_in_time() -> None:
    t = np.arange(16000) / 16000
    tone = (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    phone = telephone_band(tone)
    middle = slice(2000, 14000)  # away from the edges of the clip
    assert np.max(np.abs(phone[middle] - tone[middle])) < 0.02  # same amplitude and no delay: lips keep time
