"""wav2vec 2.0 (base-960h layout), the audio encoder of the published DyStream generator, in plain PyTorch.

The published generator (``Audio2FaceGPT``, OFF-M:229-256 of ``motion_gen_gpt_flowmatching_addaudio_linear_
twowavencoder.py`` at RobinWitch/DyStream@f587541) holds two copies of ``facebook/wav2vec2-base-960h`` cut to their
first ``model.wav2vec_layer`` = 8 transformer layers. This module rebuilds that encoder from the public facts of the
model (Baevski et al. 2020; the base-960h config), with the state-dict names of the transformers implementation so
the published checkpoint loads by name:

* **Feature encoder.** 7 convolutions without bias (kernels 10,3,3,3,3,2,2, strides 5,2,2,2,2,2,2: hop 320 samples,
  receptive field 400, 50 Hz at 16 kHz), each followed by GELU; the first has a GroupNorm with one group per
  channel (``feat_extract_norm = "group"``; its keys say ``layer_norm`` all the same).
* **Projection.** LayerNorm over the conv channels, then Linear to the hidden width.
* **Encoder, post-LN** (``do_stable_layer_norm = False``). A grouped positional convolution (kernel 128, 16
  groups, padding 64, last output frame dropped, GELU) is added to the input, then LayerNorm, then the layers:
  ``x = LN(x + attention(x)); x = LN(x + FFN(x))``. DyStream swaps the attention for plain SDPA without a mask
  (OFF-M:201-226): every frame sees every other, in both directions.
* **Weight norm.** The positional conv is weight-normed over dim 2 in the checkpoint (``g`` (1, 1, K) and ``v``);
  in eval it is the fixed kernel ``g * v / ||v||`` (norm over dims 0 and 1 per tap), which the converter folds into
  a plain ``weight`` (:func:`fold_weight_norm`).

Around the network, as the official processor and inference do (OFF-M:642-657):
:func:`normalize_utterance` (``do_normalize=True``: zero mean, unit variance over the whole call),
:data:`TAIL_PAD_SAMPLES` zeros appended after it, and :func:`to_video_rate` (50 Hz -> 25 fps, linear,
``align_corners=True``).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

NORM_EPS = 1e-7  # added to the variance by the processor's zero-mean unit-variance normalisation
TAIL_PAD_SAMPLES = 80  # zeros appended after normalisation: (640 n + 80 - 400) / 320 + 1 = 2 n conv frames
FEATURE_RATE_HZ = 50  # conv frames per second at 16 kHz (hop 320)


@dataclass(frozen=True)
class Wav2Vec2Config:
    """Sizes of one encoder. Defaults: facebook/wav2vec2-base-960h, cut to DyStream's 8 layers."""

    hidden_size: int = 768
    num_heads: int = 12
    intermediate_size: int = 3072  # FFN width
    num_layers: int = 8  # layers kept: DyStream's model.wav2vec_layer (base-960h has 12)
    conv_dim: int = 512  # channels of all 7 feature-encoder convolutions
    conv_kernel: tuple[int, ...] = (10, 3, 3, 3, 3, 2, 2)
    conv_stride: tuple[int, ...] = (5, 2, 2, 2, 2, 2, 2)  # product 320 samples: 50 Hz at 16 kHz
    pos_conv_kernel: int = 128  # 2.56 s at 50 Hz
    pos_conv_groups: int = 16
    layer_norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        assert len(self.conv_kernel) == len(self.conv_stride), 'one stride per conv kernel'
        assert self.hidden_size % self.num_heads == 0, 'hidden_size must split evenly into heads'
        assert self.hidden_size % self.pos_conv_groups == 0, 'hidden_size must split evenly into pos-conv groups'


def normalize_utterance(audio: torch.Tensor) -> torch.Tensor:
    """(B, S) -> (B, S): ``(x - mean) / sqrt(var + 1e-7)`` per row, as Wav2Vec2FeatureExtractor(do_normalize=True).

    The statistics are those of the whole call (population variance). They are taken in float64: the processor's
    numpy float32 sums differ from it by about 1e-7 relative.
    """
    x = audio.double()
    mean = x.mean(dim=1, keepdim=True)
    var = (x - mean).square().mean(dim=1, keepdim=True)
    return ((x - mean) / torch.sqrt(var + NORM_EPS)).to(audio.dtype)


def prepare_utterance(audio: torch.Tensor) -> torch.Tensor:
    """Raw audio (B, S) -> the network's input (B, S + 80): normalised over the whole call, then
    :data:`TAIL_PAD_SAMPLES` zeros appended (after the normalisation, OFF-M:645)."""
    x = normalize_utterance(audio)
    return torch.cat([x, x.new_zeros(x.shape[0], TAIL_PAD_SAMPLES)], dim=1)


def conv_frames(num_samples: int, config: Wav2Vec2Config) -> int:
    """Feature frames (50 Hz) the feature encoder makes from ``num_samples`` samples."""
    for kernel, stride in zip(config.conv_kernel, config.conv_stride):
        num_samples = (num_samples - kernel) // stride + 1
    return num_samples


def to_video_rate(features: torch.Tensor, fps: int) -> torch.Tensor:
    """(B, T50, C) -> (B, floor(T50 * fps / 50), C): the official linear resampling with ``align_corners=True``.

    Output frame j reads input position j (T50 - 1) / (T_out - 1): about 2 j, drifting by up to one 50 Hz frame
    across a short window (OFF-M:647-649). Reproduce it exactly, the checkpoint was trained with it.
    """
    return F.interpolate(features.transpose(1, 2), scale_factor=fps / FEATURE_RATE_HZ, mode='linear',
                         align_corners=True).transpose(1, 2)


def fold_weight_norm(g: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The kernel ``g v / ||v||`` of a weight norm over dim 2: g (1, 1, K), v (C, C / groups, K)."""
    return g * v / v.norm(dim=(0, 1), keepdim=True)


class ConvLayer(nn.Module):
    """One feature-encoder convolution (no bias), GroupNorm with one group per channel on the first, GELU."""

    def __init__(self, config: Wav2Vec2Config, index: int) -> None:
        super().__init__()
        in_dim = 1 if index == 0 else config.conv_dim
        self.stride = config.conv_stride[index]
        self.conv = nn.Conv1d(in_dim, config.conv_dim, config.conv_kernel[index], stride=self.stride, bias=False)
        # named layer_norm in the checkpoint, a GroupNorm all the same (eps: PyTorch's default, as transformers)
        self.layer_norm = nn.GroupNorm(config.conv_dim, config.conv_dim) if index == 0 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, S) -> (B, conv_dim, S')."""
        x = self.conv(x)
        if self.layer_norm is not None:
            x = self.layer_norm(x)
        return F.gelu(x)


class FeatureEncoder(nn.Module):
    """Raw normalised audio (B, S) -> conv features (B, conv_dim, T50)."""

    def __init__(self, config: Wav2Vec2Config) -> None:
        super().__init__()
        self.conv_layers = nn.ModuleList(ConvLayer(config, i) for i in range(len(config.conv_kernel)))

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """(B, S) samples -> (B, conv_dim, T50)."""
        x = audio[:, None]  # (B, 1, S)
        for layer in self.conv_layers:
            x = layer(x)
        return x


class FeatureProjection(nn.Module):
    """LayerNorm over the conv channels, then Linear to the hidden width."""

    def __init__(self, config: Wav2Vec2Config) -> None:
        super().__init__()
        self.layer_norm = nn.LayerNorm(config.conv_dim, eps=config.layer_norm_eps)
        self.projection = nn.Linear(config.conv_dim, config.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, conv_dim) -> (B, T, hidden)."""
        return self.projection(self.layer_norm(x))


class PositionalConvEmbedding(nn.Module):
    """Grouped convolution over time whose output, after GELU, is added to the encoder input (relative positions).

    The kernel is the folded weight norm. ``conv.bias`` is registered before ``conv.weight`` because the weight
    norm's (g, v) pair, which ``conv.weight`` replaces, comes after the bias in the official parameter order.
    """

    def __init__(self, config: Wav2Vec2Config) -> None:
        super().__init__()
        width, kernel = config.hidden_size, config.pos_conv_kernel
        self.groups, self.padding = config.pos_conv_groups, kernel // 2
        self.trim = 1 if kernel % 2 == 0 else 0  # an even kernel with padding K/2 makes one frame too many
        self.conv = nn.Module()
        self.conv.bias = nn.Parameter(torch.zeros(width))
        self.conv.weight = nn.Parameter(torch.zeros(width, width // config.pos_conv_groups, kernel))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, C) -> (B, T, C)."""
        y = F.conv1d(x.transpose(1, 2), self.conv.weight, self.conv.bias, padding=self.padding, groups=self.groups)
        if self.trim:
            y = y[:, :, :-self.trim]
        return F.gelu(y).transpose(1, 2)


class Attention(nn.Module):
    """Bidirectional multi-head self-attention, no mask (DyStream's SDPA swap, OFF-M:201-226)."""

    def __init__(self, config: Wav2Vec2Config) -> None:
        super().__init__()
        width = config.hidden_size
        self.num_heads = config.num_heads
        # k, v, q, out: the registration order of the checkpoint's parameter list
        self.k_proj = nn.Linear(width, width)
        self.v_proj = nn.Linear(width, width)
        self.q_proj = nn.Linear(width, width)
        self.out_proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, C) -> (B, T, C)."""
        batch, frames, width = x.shape

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(batch, frames, self.num_heads, -1).transpose(1, 2)  # (B, nh, T, hs)

        y = F.scaled_dot_product_attention(heads(self.q_proj(x)), heads(self.k_proj(x)), heads(self.v_proj(x)))
        return self.out_proj(y.transpose(1, 2).reshape(batch, frames, width))


class FeedForward(nn.Module):
    """hidden -> intermediate -> hidden, GELU."""

    def __init__(self, config: Wav2Vec2Config) -> None:
        super().__init__()
        self.intermediate_dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.output_dense = nn.Linear(config.intermediate_size, config.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Position-wise MLP."""
        return self.output_dense(F.gelu(self.intermediate_dense(x)))


class EncoderLayer(nn.Module):
    """Post-LN transformer layer: ``x = LN(x + attention(x)); x = LN(x + FFN(x))``."""

    def __init__(self, config: Wav2Vec2Config) -> None:
        super().__init__()
        self.attention = Attention(config)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.feed_forward = FeedForward(config)
        self.final_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, C) -> (B, T, C)."""
        x = self.layer_norm(x + self.attention(x))
        return self.final_layer_norm(x + self.feed_forward(x))


class Encoder(nn.Module):
    """Positional conv, LayerNorm (post-LN: before the first layer, none after the last), the kept layers."""

    def __init__(self, config: Wav2Vec2Config) -> None:
        super().__init__()
        self.pos_conv_embed = PositionalConvEmbedding(config)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.layers = nn.ModuleList(EncoderLayer(config) for _ in range(config.num_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, C) projected features -> (B, T, C) output of the last kept layer."""
        x = self.layer_norm(x + self.pos_conv_embed(x))
        for layer in self.layers:
            x = layer(x)
        return x


class Wav2Vec2(nn.Module):
    """Normalised audio (B, S) at 16 kHz -> (B, T50, hidden) features at 50 Hz; the published ``WrapedWav2Vec``."""

    def __init__(self, config: Wav2Vec2Config) -> None:
        super().__init__()
        self.config = config
        self.feature_extractor = FeatureEncoder(config)
        self.feature_projection = FeatureProjection(config)
        self.encoder = Encoder(config)

    def forward(self, input_values: torch.Tensor) -> torch.Tensor:
        """(B, S) processor output (see :func:`normalize_utterance`) -> (B, T50, hidden)."""
        low = self.feature_extractor(input_values).transpose(1, 2)  # (B, T50, conv_dim)
        return self.encoder(self.feature_projection(low))

    def encode_utterance(self, audio: torch.Tensor, fps: int) -> torch.Tensor:
        """Raw audio (B, S) -> (B, T, hidden) features at ``fps``, the way the official inference does it.

        :func:`prepare_utterance`, encode, resample to ``fps``. With S = 640 n this gives n frames at 25 fps.
        """
        return to_video_rate(self(prepare_utterance(audio)), fps)
