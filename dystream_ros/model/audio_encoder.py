"""Causal audio encoder with a lookahead delay: a fixed front-end and dilated causal convolutions at 25 Hz.

DyStream (arXiv 2512.24408) encodes each audio stream with "a causal encoder enhanced by a lookahead module" that
sees about 60 ms of future audio. The public code (``motion_gen_gpt_flowmatching_addaudio_linear_twowavencoder.py``,
OFF-M:229-256) ships only a non-causal wav2vec2 encoder, and no pretrained speech model can be downloaded here, so
this module is our own design, trained from scratch:

* **Front-end.** Log-mel of 25 ms Hann windows every 10 ms. Framing and DFT are one ``conv1d`` with fixed
  cos/sin kernels (plain ONNX ops, no ``stft``). Window ``j`` ends at sample ``160 (j + 1)``, so it is causal.
* **Encoder frames.** Four hops stack into one 25 Hz encoder frame. Encoder frame ``u`` covers samples
  ``[offset + 640 u, offset + 640 (u + 1))`` and gives the feature of motion frame ``t = u - pre_frames``. With
  ``offset = lookahead - 640 pre_frames`` the feature of frame ``t`` ends exactly at ``640 (t + 1) + lookahead``:
  **the lookahead is a delay of the framing**, and everything after it is strictly causal.
* **Or a pretrained front-end.** With ``audio_frontend='whisper_stem'`` the frame's features are instead the two
  50 Hz tokens of Whisper tiny.en's convolutional stem (frozen, pretrained on real speech; see
  :mod:`dystream_ros.model.speech_encoder`), read from a 1360-sample window that ends at the same sample. Only the
  history before the frame differs (720 samples instead of 240); the time grid and the lookahead are the same.
* **Causal layers.** Residual blocks of ``LN -> causal dilated conv -> GELU -> Linear`` at 25 Hz. Their receptive
  field is finite (``ModelConfig.receptive_field_frames``), so an output depends only on a bounded audio window.
* **Start of stream.** Audio before sample 0 is silence. The streaming state starts as the state after silence
  (:meth:`AudioEncoder.silence`), and the offline path prepends ``receptive_field_frames - 1`` silent frames, so both
  paths compute the same function of the same samples.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from dystream_ros.model.config import ModelConfig
from dystream_ros.model.speech_encoder import SpeechEncoder

LOG_FLOOR = 1e-6  # added to mel power before the log; silence maps to ln(1e-6) = -13.8
LOG_OFFSET, LOG_SCALE = 4.0, 4.0  # (ln(mel) + 4) / 4 puts speech at 16 kHz, [-1, 1] PCM roughly in [-2.5, 2]


def mel_filterbank(n_freqs: int, n_mels: int, sample_rate_hz: int) -> np.ndarray:
    """Triangular HTK-mel filters from 0 Hz to Nyquist, shape (n_freqs, n_mels), float64."""
    def hz_to_mel(hz: np.ndarray) -> np.ndarray:
        return 2595.0 * np.log10(1.0 + hz / 700.0)

    def mel_to_hz(mel: np.ndarray) -> np.ndarray:
        return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)

    freqs = np.linspace(0.0, sample_rate_hz / 2, n_freqs)
    edges = mel_to_hz(np.linspace(0.0, hz_to_mel(np.array(sample_rate_hz / 2)), n_mels + 2))
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (freqs[:, None] - lower) / (centre - lower)
    falling = (upper - freqs[:, None]) / (upper - centre)
    return np.maximum(0.0, np.minimum(rising, falling))


class LogMel(nn.Module):
    """Log-mel spectrogram as a strided conv with fixed DFT kernels; (B, S) audio -> (B, hops, n_mels)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.hop = config.hop_samples
        win = config.win_samples
        n_freqs = win // 2 + 1
        n = np.arange(win)
        window = 0.5 - 0.5 * np.cos(2 * np.pi * n / win)  # periodic Hann
        phase = 2 * np.pi * np.outer(np.arange(n_freqs), n) / win  # (F, win)
        kernel = np.concatenate([np.cos(phase) * window, -np.sin(phase) * window])  # (2F, win)
        self.register_buffer('dft_kernel', torch.tensor(kernel, dtype=torch.float32)[:, None], persistent=False)
        basis = mel_filterbank(n_freqs, config.n_mels, config.sample_rate_hz)
        self.register_buffer('mel_basis', torch.tensor(basis, dtype=torch.float32), persistent=False)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """(B, S) audio -> (B, hops, n_mels) log-mel."""
        spec = F.conv1d(audio[:, None, :], self.dft_kernel, stride=self.hop)  # (B, 2F, H)
        real, imag = spec.chunk(2, dim=1)  # (B, F, H) each
        power = (real * real + imag * imag).transpose(1, 2)  # (B, H, F)
        mel = power @ self.mel_basis  # (B, H, n_mels)
        return (torch.log(mel + LOG_FLOOR) + LOG_OFFSET) / LOG_SCALE


class CausalConvBlock(nn.Module):
    """Residual ``x + fc(gelu(conv(ln(x))))`` with a causal dilated conv over 25 Hz frames."""

    def __init__(self, config: ModelConfig, dilation: int) -> None:
        super().__init__()
        width = config.audio_dim
        self.context = (config.audio_kernel - 1) * dilation  # past frames of conv input the block needs
        self.ln = nn.LayerNorm(width)
        self.conv = nn.Conv1d(width, width, config.audio_kernel, dilation=dilation)
        self.fc = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Whole sequence x (B, T, C), zero conv inputs before it."""
        h = self.ln(x).transpose(1, 2)  # (B, C, T)
        h = F.pad(h, (self.context, 0))  # (B, C, context + T): zeros left, nothing right
        h = self.conv(h).transpose(1, 2)  # (B, T, C)
        return x + self.fc(F.gelu(h))

    def step(self, x: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One frame: x (B, 1, C), state (B, C, context) = the block's last conv inputs; returns (y, new state)."""
        h = torch.cat([state, self.ln(x).transpose(1, 2)], dim=2)  # (B, C, context + 1)
        y = self.conv(h).transpose(1, 2)  # (B, 1, C)
        return x + self.fc(F.gelu(y)), h[:, :, 1:]


class AudioEncoder(nn.Module):
    """One audio stream -> one feature per motion frame, causal with a ``lookahead_ms`` delay."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        if config.audio_frontend == 'whisper_stem':
            self.front = SpeechEncoder(window_tokens=0, num_layers=0)  # frozen, its weights are not in our file
        else:
            self.front = LogMel(config)
        self.in_proj = nn.Linear(config.frontend_dim, config.audio_dim)
        self.blocks = nn.ModuleList(CausalConvBlock(config, d) for d in config.audio_dilations)
        self.ln_f = nn.LayerNorm(config.audio_dim)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """Encode (B, history + 640 U) samples into (B, U, audio_dim); conv inputs before the first frame are 0."""
        cfg = self.config
        num_samples = audio.shape[1]
        frames, rest = divmod(num_samples - cfg.history_samples, cfg.samples_per_frame)
        assert frames > 0 and rest == 0, (
            f'encoder input must be {cfg.history_samples} + k * {cfg.samples_per_frame} samples, got {num_samples}')
        x = self.in_proj(self.front_frames(audio))  # (B, U, frontend_dim) -> (B, U, C)
        for block in self.blocks:
            x = block(x)
        return self.ln_f(x)

    def front_frames(self, audio: torch.Tensor) -> torch.Tensor:
        """(B, history + 640 U) samples -> (B, U, frontend_dim): 4 log-mel hops, or 2 Whisper tokens, per frame."""
        batch = audio.shape[0]
        frames = (audio.shape[1] - self.config.history_samples) // self.config.samples_per_frame
        features = self.front.stem(audio) if self.config.audio_frontend == 'whisper_stem' else self.front(audio)
        return features.reshape(batch, frames, -1)

    def step(self, window: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode one frame.

        Args:
            window: (B, history + 640) float32 samples: ``history_samples`` of history, then the frame's 640.
            state: (B, audio_dim, encoder_state_frames), the blocks' past conv inputs, concatenated in block order.

        Returns:
            The frame's feature (B, audio_dim) and the new state.
        """
        x = self.in_proj(self.front_frames(window))  # (B, 1, C)
        new_states = []
        offset = 0
        for block in self.blocks:
            x, block_state = block.step(x, state[:, :, offset:offset + block.context])
            new_states.append(block_state)
            offset += block.context
        return self.ln_f(x)[:, 0], torch.cat(new_states, dim=2)

    def init_state(self, batch_size: int = 1) -> torch.Tensor:
        """The all-zero conv state (before any input), (B, audio_dim, encoder_state_frames)."""
        ref = self.in_proj.weight
        return torch.zeros(batch_size, self.config.audio_dim, self.config.encoder_state_frames,
                           dtype=ref.dtype, device=ref.device)

    @torch.no_grad()
    def silence(self) -> tuple[torch.Tensor, torch.Tensor]:
        """State after endless silence, (1, C, F), and the feature of a silent frame, (1, C).

        ``receptive_field_frames - 1`` silent steps fill every conv input with its silent value; one more step
        returns the silent feature and the same state.
        """
        cfg = self.config
        state = self.init_state(1)
        window = torch.zeros(1, cfg.encoder_window_samples, dtype=state.dtype, device=state.device)
        for _ in range(cfg.receptive_field_frames - 1):
            _, state = self.step(window, state)
        feature, _ = self.step(window, state)
        return state, feature

    def encode_frames(self, audio: torch.Tensor, first_frame: int, num_frames: int) -> torch.Tensor:
        """Features (B, num_frames, C) of motion frames ``first_frame ..``, from a whole clip (B, S).

        Samples outside the clip count as silence, the same convention as the stream start.
        """
        start, end = encoder_audio_span(self.config, first_frame, num_frames)
        return self(crop_audio(audio, start, end))[:, -num_frames:]


def encoder_audio_span(config: ModelConfig, first_frame: int, num_frames: int) -> tuple[int, int]:
    """Sample span [start, end) that the encoder reads for motion frames first_frame .. first_frame+num_frames-1.

    It includes ``receptive_field_frames - 1`` warm-up frames and the mel history, so that the outputs for the
    wanted frames see no conv zero-padding; ``end`` is the last sample frame ``first_frame + num_frames - 1`` may
    see, its end plus the lookahead.
    """
    first_encoder_frame = first_frame + config.pre_frames - (config.receptive_field_frames - 1)
    start = config.encoder_offset_samples + first_encoder_frame * config.samples_per_frame - config.history_samples
    end = config.encoder_offset_samples + (first_frame + config.pre_frames + num_frames) * config.samples_per_frame
    return start, end


def crop_audio(audio: torch.Tensor, start: int, end: int) -> torch.Tensor:
    """audio[..., start:end] where indices outside [0, S) read as zeros (silence)."""
    total = end - start
    lo, hi = max(start, 0), min(end, audio.shape[-1])
    inner = audio[..., lo:hi] if hi > lo else audio[..., :0]
    left = min(total, max(0, -start))
    return F.pad(inner, (left, total - left - inner.shape[-1]))


def num_final_frames(config: ModelConfig, num_samples: int) -> int:
    """Motion frames that are final once ``num_samples`` samples of a stream have arrived."""
    return max(0, math.floor((num_samples - config.lookahead_samples) / config.samples_per_frame))
