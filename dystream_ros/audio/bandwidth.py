"""What a telephone line leaves of a voice: 300-3400 Hz, carried at 8 kHz.

Real voices reach a robot through phones, intercoms and codecs that keep only the narrow band. A face that learned
its mouth from the spectrum above 4 kHz goes still on such a voice, so the evaluation scores real speech cut to this
band too, and training can augment with it.
"""
from __future__ import annotations

import numpy as np
from scipy.signal import butter, resample_poly, sosfiltfilt

from dystream_ros.units import SAMPLE_RATE_HZ

TELEPHONE_BAND_HZ = (300.0, 3400.0)  # the ITU-T G.712 voice channel
TELEPHONE_RATE_HZ = 8000
_BAND_ORDER = 4  # Butterworth order per edge (doubled by the forward-backward pass: no phase shift, lips keep time)


def telephone_band(audio16k: np.ndarray) -> np.ndarray:
    """The voice as heard over a telephone: band-passed to 300-3400 Hz, taken down to 8 kHz and back to 16 kHz.

    Args:
        audio16k: (N,) float 16 kHz mono.

    Returns:
        (N,) float32 16 kHz mono, nothing left above 4 kHz.

    Raises:
        ValueError: for audio shorter than the filter's edge padding (a few ms).
    """
    audio = np.asarray(audio16k, np.float64)
    band = butter(_BAND_ORDER, TELEPHONE_BAND_HZ, btype='bandpass', fs=SAMPLE_RATE_HZ, output='sos')
    factor = SAMPLE_RATE_HZ // TELEPHONE_RATE_HZ
    narrow = resample_poly(sosfiltfilt(band, audio), 1, factor)
    return resample_poly(narrow, factor, 1)[: len(audio)].astype(np.float32)
