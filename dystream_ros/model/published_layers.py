"""The layers of the published DyStream generator: its GPT block and its flow-matching head, with their position
tables and time embedding. :mod:`dystream_ros.model.published` assembles them; names equal the official
state-dict keys (see there for the facts' source).
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

if TYPE_CHECKING:
    from dystream_ros.model.published_config import PublishedConfig

LN_EPS = 1e-5  # every LayerNorm, the head's affine-free ones included (PyTorch's default; checked on the goldens)


def rope_tables(width: int, max_seq_len: int, device: torch.device | str | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Cos and sin (max_seq_len, width / 2) of angle p theta_i, theta_i = 10000^(-2i / width), in float32."""
    theta = 10000.0 ** (-torch.arange(0, width, 2, dtype=torch.float32, device=device) / width)  # (C/2,)
    angles = torch.arange(max_seq_len, dtype=torch.float32, device=device)[:, None] * theta  # (max_seq_len, C/2)
    return angles.cos(), angles.sin()


def sinusoid_table(width: int, max_seq_len: int, device: torch.device | str | None = None) -> torch.Tensor:
    """(1, max_seq_len, width) sinusoidal PE: sin on even, cos on odd dimensions, in float32."""
    freqs = torch.exp(torch.arange(0, width, 2, dtype=torch.float32, device=device) * (-math.log(10000.0) / width))
    angles = torch.arange(max_seq_len, dtype=torch.float32, device=device)[:, None] * freqs  # (max_seq_len, C/2)
    return torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(-2)[None]


class Rope(nn.Module):
    """Rotary embedding of whole vectors (pairs 2i, 2i+1, theta_i = 10000^(-2i/C)), positions 0 .. T-1.

    It rotates the block input before the attention's projections (OFF-M:15-62), not per head. The checkpoint
    stores the tables; they are recomputed (bit-identical), not loaded.
    """

    def __init__(self, width: int, max_seq_len: int) -> None:
        super().__init__()
        self.width, self.max_seq_len = width, max_seq_len
        cos, sin = rope_tables(width, max_seq_len)
        self.register_buffer('cos_angles', cos, persistent=False)
        self.register_buffer('sin_angles', sin, persistent=False)

    def reset_tables(self, device: torch.device | str | None = None) -> None:
        """Recompute the tables on ``device`` (after building the model on the meta device)."""
        self.cos_angles, self.sin_angles = rope_tables(self.width, self.max_seq_len, device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, C) -> (B, T, C), token t rotated by position t."""
        tokens = x.shape[1]
        cos, sin = self.cos_angles[:tokens], self.sin_angles[:tokens]  # (T, C/2)
        even, odd = x[..., 0::2], x[..., 1::2]  # (B, T, C/2)
        return torch.stack([even * cos - odd * sin, even * sin + odd * cos], dim=-1).flatten(-2)


class SinusoidalPositions(nn.Module):
    """Additive sinusoidal PE, the ``pe`` table of the checkpoint (recomputed, not loaded)."""

    def __init__(self, width: int, max_seq_len: int) -> None:
        super().__init__()
        self.width, self.max_seq_len = width, max_seq_len
        self.register_buffer('pe', sinusoid_table(width, max_seq_len), persistent=False)  # (1, max_seq_len, C)

    def reset_tables(self, device: torch.device | str | None = None) -> None:
        """Recompute the table on ``device``."""
        self.pe = sinusoid_table(self.width, self.max_seq_len, device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, C) + PE of positions 0 .. T-1."""
        return x + self.pe[:, : x.shape[1]]


def reset_position_tables(model: nn.Module, device: torch.device | str | None = None) -> None:
    """Recompute every RoPE and PE table of ``model`` on ``device``: a model built on the meta device has none."""
    for module in model.modules():
        if isinstance(module, (Rope, SinusoidalPositions)):
            module.reset_tables(device)


class MultiheadAttention(nn.Module):
    """``nn.MultiheadAttention`` (batch first, kdim = vdim = C) in plain ops: fused in_proj [W_q; W_k; W_v]."""

    def __init__(self, width: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.in_proj_weight = nn.Parameter(torch.zeros(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = nn.Linear(width, width)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None
                ) -> torch.Tensor:
        """Queries (B, Tq, C), keys and values (B, Tk, C), optional bool mask (Tq, Tk) True = may attend."""
        w_q, w_k, w_v = self.in_proj_weight.chunk(3)
        b_q, b_k, b_v = self.in_proj_bias.chunk(3)
        batch, width = q.shape[0], q.shape[2]

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(batch, t.shape[1], self.num_heads, -1).transpose(1, 2)  # (B, nh, T, hs)

        y = F.scaled_dot_product_attention(heads(F.linear(q, w_q, b_q)), heads(F.linear(k, w_k, b_k)),
                                           heads(F.linear(v, w_v, b_v)), attn_mask=mask)
        return self.out_proj(y.transpose(1, 2).reshape(batch, -1, width))


class SelfAttentionRope(nn.Module):
    """Causal self-attention; q and k inputs rotated by :class:`Rope`, v input not."""

    def __init__(self, config: PublishedConfig) -> None:
        super().__init__()
        self.self_attn = MultiheadAttention(config.hidden_size, config.num_heads)
        self.rope = Rope(config.hidden_size, config.max_seq_len)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, T, C) -> (B, T, C)."""
        rotated = self.rope(x)
        return self.self_attn(rotated, rotated, x, mask)


class CrossAttentionRope(nn.Module):
    """Cross-attention to a context; queries and keys rotated by :class:`Rope`, each from position 0."""

    def __init__(self, config: PublishedConfig) -> None:
        super().__init__()
        self.cross_attn = MultiheadAttention(config.hidden_size, config.num_heads)
        self.rope = Rope(config.hidden_size, config.max_seq_len)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """Queries (B, T, C), context (B, Tc, C) -> (B, T, C)."""
        return self.cross_attn(self.rope(x), self.rope(context), context)


class SelfAttentionPos(nn.Module):
    """Causal self-attention with sinusoidal PE added to the q, k and v inputs."""

    def __init__(self, config: PublishedConfig) -> None:
        super().__init__()
        self.self_attn = MultiheadAttention(config.hidden_size, config.num_heads)
        self.pe = SinusoidalPositions(config.hidden_size, config.max_seq_len)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, T, C) -> (B, T, C)."""
        x = self.pe(x)
        return self.self_attn(x, x, x, mask)


class Mlp(nn.Module):
    """timm's Mlp: Linear, GELU (erf), Linear."""

    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Position-wise MLP."""
        return self.fc2(F.gelu(self.fc1(x)))


class GPTBlock(nn.Module):
    """Pre-LN block: RoPE self-attention, audio add, anchor cross-attention, PE self-attention, MLP."""

    def __init__(self, config: PublishedConfig) -> None:
        super().__init__()
        width = config.hidden_size
        self.norm1 = nn.LayerNorm(width)
        self.norm2 = nn.LayerNorm(width)  # unused
        self.norm3 = nn.LayerNorm(width)
        self.norm4 = nn.LayerNorm(width)
        self.norm_anchor = nn.LayerNorm(width)
        self.self_attn_rope = SelfAttentionRope(config)
        self.cross_attn_rope = CrossAttentionRope(config)  # unused
        self.self_attn_pos = SelfAttentionPos(config)
        self.cross_attn_anchor = CrossAttentionRope(config)
        self.cross_linear_audio = nn.Linear(width, width)
        self.mlp = Mlp(width, int(width * config.mlp_ratio))

    def forward(self, x: torch.Tensor, audio: torch.Tensor, anchor: torch.Tensor, mask: torch.Tensor
                ) -> torch.Tensor:
        """Tokens x and fused audio (B, T, C), anchor (B, 1, C), causal mask (T, T) -> (B, T, C)."""
        x = x + self.self_attn_rope(self.norm1(x), mask)
        x = x + self.cross_linear_audio(audio)
        x = x + self.cross_attn_anchor(self.norm_anchor(x), anchor)
        x = x + self.self_attn_pos(self.norm3(x), mask)
        return x + self.mlp(self.norm4(x))


def timestep_sinusoid(timesteps: torch.Tensor, dim: int) -> torch.Tensor:
    """The diffusers ``Timesteps(dim, flip_sin_to_cos=True, downscale_freq_shift=0)``: (N,) -> (N, dim), cos first."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / half)
    angles = timesteps.float()[:, None] * freqs  # (N, dim/2)
    return torch.cat([angles.cos(), angles.sin()], dim=1)


class TimestepEmbedder(nn.Module):
    """Linear, SiLU, Linear (diffusers ``TimestepEmbedding``)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.linear_1 = nn.Linear(width, width)
        self.linear_2 = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C) -> (N, C)."""
        return self.linear_2(F.silu(self.linear_1(x)))


class TimeEmbedding(nn.Module):
    """``WanTimeEmbedding(dim=C, time_freq_dim=C)``: the sinusoid of the raw timestep (0..1000), then the MLP."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.time_embedder = TimestepEmbedder(width)

    def forward(self, timesteps: torch.Tensor) -> torch.Tensor:
        """Integer timesteps (N,) -> (N, C)."""
        return self.time_embedder(timestep_sinusoid(timesteps, self.time_embedder.linear_1.in_features))


class HeadBlock(nn.Module):
    """Two gated MLPs with AdaLN: the first modulated by the time embedding, the second by the GPT condition."""

    def __init__(self, config: PublishedConfig) -> None:
        super().__init__()
        width = config.hidden_size
        hidden = int(width * config.mlp_ratio)
        self.mlp1 = Mlp(width, hidden)
        self.mlp2 = Mlp(width, hidden)
        self.adaLN_modulation1 = nn.Sequential(nn.SiLU(), nn.Linear(width, 3 * width))  # noqa: N815 (checkpoint key)
        self.adaLN_modulation2 = nn.Sequential(nn.SiLU(), nn.Linear(width, 3 * width))  # noqa: N815

    def forward(self, x: torch.Tensor, temb: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Hidden x (..., C), time embedding and condition broadcastable to it -> (..., C)."""
        for mlp, modulation, signal in ((self.mlp1, self.adaLN_modulation1, temb),
                                        (self.mlp2, self.adaLN_modulation2, cond)):
            shift, scale, gate = modulation(signal).chunk(3, dim=-1)
            normed = F.layer_norm(x, (x.shape[-1],), eps=LN_EPS)
            x = x + gate * mlp(normed * (1 + scale) + shift)
        return x


class FlowHead(nn.Module):
    """(noisy latent, GPT condition, time embedding) -> predicted clean latent x0."""

    def __init__(self, config: PublishedConfig) -> None:
        super().__init__()
        width = config.hidden_size
        self.noisy_proj = nn.Linear(config.face_dim, width)
        self.gpt_proj = nn.Linear(config.face_dim, width)
        self.past_proj = nn.Linear(config.face_dim, width)  # unused
        self.anchor_proj = nn.Linear(config.face_dim, width)  # unused
        self.blocks = nn.ModuleList(HeadBlock(config) for _ in range(config.head_layers))
        self.output_norm = nn.LayerNorm(width, eps=LN_EPS)
        self.output_proj = nn.Linear(width, config.face_dim)

    def forward(self, x_t: torch.Tensor, cond: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        """x_t and cond (..., face_dim), temb (..., C), broadcastable -> x0 (..., face_dim)."""
        x = self.noisy_proj(x_t)
        cond = self.gpt_proj(cond)
        for block in self.blocks:
            x = block(x, temb, cond)
        return self.output_proj(self.output_norm(x))
