"""Whisper tiny.en's encoder as we ship it: the converted file equals the wheel's, our encoder computes what
CTranslate2 computes, and the causal version streams: any chunking gives the same features, and audio past the
lookahead changes nothing."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from dystream_ros.apps.convert_whisper import convert, wheel_model_path
from dystream_ros.data.sample import read_any_audio
from dystream_ros.model.config import WHISPER_STEM_HISTORY as WINDOW_HISTORY
from dystream_ros.model.speech_encoder import WHISPER_ASSET, SpeechEncoder, slaney_mel_filterbank

SPEECH = '/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0870.wav'
FRAME = 640


def whisper_log_mel(audio: np.ndarray) -> torch.Tensor:
    """Whisper's own front-end on a 30 s clip (centred STFT, clip-relative floor): (1, 80, 3000)."""
    padded = torch.zeros(480_000)
    padded[:len(audio)] = torch.from_numpy(audio)
    spec = torch.stft(padded, 400, 160, window=torch.hann_window(400), return_complex=True)
    mel = torch.tensor(slaney_mel_filterbank(201, 80, 16000).T, dtype=torch.float32) @ spec[:, :-1].abs() ** 2
    log_mel = mel.clamp_min(1e-10).log10()
    return ((torch.maximum(log_mel, log_mel.max() - 8.0) + 4.0) / 4.0)[None]


def test_the_shipped_file_is_the_wheels_encoder(tmp_path) -> None:  # noqa: ANN001
    fresh = load_file(str(convert(wheel_model_path(), tmp_path / 'encoder.safetensors')))
    shipped = load_file(str(WHISPER_ASSET))
    assert sorted(fresh) == sorted(shipped)
    assert all(torch.equal(fresh[k], shipped[k]) for k in fresh)
    assert sum(v.numel() for k, v in shipped.items() if k.startswith(('conv', 'layers', 'ln_post'))) == 7_633_920


def test_our_encoder_computes_what_ctranslate2_computes() -> None:
    ctranslate2 = pytest.importorskip('ctranslate2')  # a test dependency only: nothing at run time needs it
    log_mel = whisper_log_mel(read_any_audio(SPEECH))
    whisper = ctranslate2.models.Whisper(str(wheel_model_path().parent), device='cpu', compute_type='float32')
    theirs = np.array(whisper.encode(ctranslate2.StorageView.from_array(log_mel.numpy()), to_cpu=True))
    ours = SpeechEncoder(window_tokens=100).whisper_reference(log_mel).numpy()
    assert ours.shape == theirs.shape == (1, 1500, 384)
    assert np.abs(ours - theirs).max() < 1e-3 * np.abs(theirs).max()


@pytest.fixture(scope='module')
def encoder() -> SpeechEncoder:
    return SpeechEncoder(window_tokens=20).eval()


def _frames(encoder: SpeechEncoder, audio: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """Encode ``audio`` (history + 640 U samples) in chunks of ``sizes`` frames, carrying the cache."""
    cache, out, frame = encoder.silence(), [], 0
    for size in sizes:
        span = audio[:, frame * FRAME:(frame + size) * FRAME + WINDOW_HISTORY]
        features, cache = encoder(span, cache)
        out.append(features)
        frame += size
    return torch.cat(out, dim=1)


def test_streaming_equals_offline_for_any_chunking(encoder: SpeechEncoder) -> None:
    audio = torch.from_numpy(read_any_audio(SPEECH)[:WINDOW_HISTORY + 60 * FRAME])[None]
    with torch.no_grad():
        whole = _frames(encoder, audio, [60])
        for sizes in ([1] * 60, [7, 1, 13, 2, 37], [30, 30]):
            assert torch.allclose(_frames(encoder, audio, sizes), whole, atol=1e-4), sizes
    assert whole.shape == (1, 60, 768)


def test_audio_after_the_window_changes_nothing(encoder: SpeechEncoder) -> None:
    audio = torch.from_numpy(read_any_audio(SPEECH)[:WINDOW_HISTORY + 40 * FRAME])[None]
    changed = audio.clone()
    changed[:, WINDOW_HISTORY + 25 * FRAME:] = torch.randn(1, 15 * FRAME)  # from frame 25's window end on
    with torch.no_grad():
        before, after = _frames(encoder, audio, [40]), _frames(encoder, changed, [40])
    assert torch.equal(before[:, :25], after[:, :25])
    assert not torch.allclose(before[:, 25], after[:, 25])


def test_silence_is_a_fixed_point(encoder: SpeechEncoder) -> None:
    with torch.no_grad():
        cache = encoder.silence()
        _, again = encoder(torch.zeros(1, WINDOW_HISTORY + FRAME), cache)
    assert torch.allclose(again, cache, atol=1e-5)
