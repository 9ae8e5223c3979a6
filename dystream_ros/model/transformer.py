"""Autoregressive motion transformer: sliding-window causal attention with RoPE and an exact KV cache.

Reproduces the role of the DyStream GPT (arXiv 2512.24408; OFF-M:158-198, 337-495 of the paper code
``motion_gen_gpt_flowmatching_addaudio_linear_twowavencoder.py``): token ``i`` holds motion frame ``i``, the fused
audio feature of frame ``i + 1`` is added in every block, an anchor (the avatar's reference motion) conditions every
block, and the output of token ``i`` conditions the flow head that predicts frame ``i + 1``.

Deliberate differences from the paper code, all for an exact KV cache:

* **Positions.** The paper code rotates the 768-d block input with window-relative positions and adds a second
  self-attention with sinusoidal window-relative PE; every hidden state changes when the window slides, so it must
  recompute all 94 tokens per frame. We use one self-attention per block with per-head RoPE on q/k and a banded
  causal mask of ``context_frames`` (sliding-window attention, Mistral style). Scores depend only on relative
  positions, so cached keys stay valid: each frame costs one token. Keys are cached already rotated at their
  absolute stream position; the cos/sin of a position are computed in float64 (:func:`rope_at`), so a key
  rotated at position 10^7 is as exact as one at position 3 and endless streams do not drift. The cache of each
  layer is a ring buffer of ``context_frames`` slots, allocated once: the token at position ``p`` is written in
  place into slot ``p % context_frames`` (:func:`cache_slot`), over the one that just left the window.
* **Anchor.** The paper code cross-attends to a single anchor token. With one key the softmax weight is 1, so that
  cross-attention is exactly ``out_proj(v_proj(anchor))``, a per-block linear of the embedded anchor; we add that
  term directly (``Block.anchor_linear``).
* **Audio.** As the paper ("addaudio_linear"): per-stream projection, per-stream CFG/dropout mask, a fusion linear,
  then a per-block linear added to the residual stream without a norm.
"""
from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from dystream_ros.model.config import ModelConfig

KVCache = list[tuple[torch.Tensor, torch.Tensor]]  # per layer (k, v) ring buffers, each (B, n_head, context_frames, hs)


def rope_tables(first_position: int, num_positions: int, head_size: int, base: float,
                device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Cos and sin (T, head_size) of positions first .. first+T-1 for rotate-half RoPE, computed in float64."""
    inv_freq = base ** (-torch.arange(0, head_size, 2, dtype=torch.float64) / head_size)  # (hs/2,)
    positions = torch.arange(first_position, first_position + num_positions, dtype=torch.float64)
    angles = positions[:, None] * inv_freq  # (T, hs/2)
    angles = torch.cat([angles, angles], dim=1)  # (T, hs)
    return angles.cos().float().to(device), angles.sin().float().to(device)


@functools.lru_cache(maxsize=8)
def _inv_freq(head_size: int, base: float) -> np.ndarray:
    return base ** (-np.arange(0, head_size, 2, dtype=np.float64) / head_size)  # (hs/2,)


def rope_at(position: int, config: ModelConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Cos and sin (1, head_size) of one absolute position, for :meth:`MotionTransformer.step`.

    The same float64 arithmetic as :func:`rope_tables`, in numpy: it runs once per generated frame.
    """
    angles = position * _inv_freq(config.head_size, config.rope_base)
    angles = np.concatenate([angles, angles])[None]  # (1, hs)
    return torch.from_numpy(np.cos(angles).astype(np.float32)), torch.from_numpy(np.sin(angles).astype(np.float32))


def cache_slot(position: int, config: ModelConfig) -> torch.Tensor:
    """The ring-buffer slot (1,) int64 of the token at ``position``."""
    return torch.tensor([position % config.context_frames])


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x (B, H, T, hs) by the tables (T, hs)."""
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat([-x2, x1], dim=-1) * sin


def banded_causal_mask(num_tokens: int, window: int, device: torch.device | None = None) -> torch.Tensor:
    """(T, T) bool, True where token i may attend to token j: i - window < j <= i."""
    idx = torch.arange(num_tokens, device=device)
    offset = idx[:, None] - idx[None, :]  # i - j
    return (offset >= 0) & (offset < window)


class SlidingWindowAttention(nn.Module):
    """Multi-head causal self-attention over the last ``context_frames`` tokens, RoPE on q and k."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)
        self.dropout = config.dropout
        self.resid_dropout = nn.Dropout(config.dropout)

    def _split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        batch, tokens, width = x.shape
        q, k, v = self.c_attn(x).split(width, dim=2)  # (B, T, C) each
        shape = (batch, tokens, self.n_head, width // self.n_head)
        return (q.view(shape).transpose(1, 2), k.view(shape).transpose(1, 2),
                v.view(shape).transpose(1, 2))  # (B, nh, T, hs)

    def _merge(self, y: torch.Tensor) -> torch.Tensor:
        batch, _, tokens, _ = y.shape
        y = y.transpose(1, 2).reshape(batch, tokens, -1)  # (B, T, C)
        return self.resid_dropout(self.c_proj(y))

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Whole sequence x (B, T, C), tables (T, hs); returns y and the rotated k and v (B, nh, T, hs)."""
        q, k, v = self._split(x)
        k = apply_rope(k, cos, sin)
        y = F.scaled_dot_product_attention(apply_rope(q, cos, sin), k, v, attn_mask=mask,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self._merge(y), k, v

    def step(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, k_cache: torch.Tensor,
             v_cache: torch.Tensor, slot: torch.Tensor) -> torch.Tensor:
        """One new token x (B, 1, C) at the position of tables (1, hs); returns y (B, 1, C).

        The token's k and v are written into ``slot`` of the ring buffers (B, nh, W, hs), which then hold exactly
        the window: the new token and the W - 1 before it (attention does not depend on their order).
        """
        q, k, v = self._split(x)
        k_cache.index_copy_(2, slot, apply_rope(k, cos, sin))
        v_cache.index_copy_(2, slot, v)
        y = F.scaled_dot_product_attention(apply_rope(q, cos, sin), k_cache, v_cache)  # the whole window: no mask
        return self._merge(y)


class MLP(nn.Module):
    """Position-wise feed-forward, 4x wide, GELU."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Position-wise MLP."""
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x))))


class Block(nn.Module):
    """Pre-LN block: attention, additive audio and anchor, MLP."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd)
        self.attn = SlidingWindowAttention(config)
        self.audio_linear = nn.Linear(config.n_embd, config.n_embd)  # paper: cross_linear_audio
        self.anchor_linear = nn.Linear(config.n_embd, config.n_embd)  # paper: cross_attn_anchor, see module doc
        self.ln_2 = nn.LayerNorm(config.n_embd)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, audio: torch.Tensor, anchor: torch.Tensor, cos: torch.Tensor,
                sin: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x, audio (B, T, C), anchor (B, 1, C); returns x and the block's k, v."""
        y, k, v = self.attn(self.ln_1(x), cos, sin, mask)
        x = x + y + self.audio_linear(audio) + self.anchor_linear(anchor)
        return x + self.mlp(self.ln_2(x)), k, v

    def step(self, x: torch.Tensor, audio: torch.Tensor, anchor: torch.Tensor, cos: torch.Tensor,
             sin: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, slot: torch.Tensor) -> torch.Tensor:
        """One token x, audio (B, 1, C), anchor (B, 1, C); returns x, the token written into the cache."""
        y = self.attn.step(self.ln_1(x), cos, sin, k_cache, v_cache, slot)
        x = x + y + self.audio_linear(audio) + self.anchor_linear(anchor)
        return x + self.mlp(self.ln_2(x))


class MotionTransformer(nn.Module):
    """Motion tokens + fused two-stream audio + anchor -> per-token condition (B, T, n_embd) for the flow head."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.motion_embed = nn.Linear(config.motion_dim, config.n_embd)  # paper: face_embed
        self.anchor_embed = nn.Linear(config.motion_dim, config.n_embd)
        self.self_proj = nn.Linear(config.audio_dim, config.n_embd)
        self.partner_proj = nn.Linear(config.audio_dim, config.n_embd)  # paper: audio_other_proj
        self.audio_fusion = nn.Linear(2 * config.n_embd, config.n_embd)  # paper: audio_audioother_fusion
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd)

    def condition(self, feat_self: torch.Tensor, feat_partner: torch.Tensor, anchor: torch.Tensor,
                  masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Fuse the conditions, with each dropped (CFG branch or training dropout) where its mask is 0.

        Args:
            feat_self, feat_partner: encoder features (B, T, audio_dim) of the frames the tokens predict.
            anchor: normalised anchor motion (B, motion_dim).
            masks: (B, T or 1, 3) in {0, 1}: self audio, partner audio, anchor. A dropped stream is zeroed after
                its projection, before fusion; a dropped anchor after its embedding (paper code OFF-M:463-483).

        Returns:
            audio (B, T, n_embd) and anchor embedding (B, 1, n_embd).
        """
        projected = torch.cat([self.self_proj(feat_self) * masks[..., 0:1],
                               self.partner_proj(feat_partner) * masks[..., 1:2]], dim=-1)  # (B, T, 2C)
        anchor_emb = self.anchor_embed(anchor)[:, None] * masks[:, :1, 2:3]  # (B, 1, C)
        return self.audio_fusion(projected), anchor_emb

    def forward(self, motion: torch.Tensor, audio: torch.Tensor, anchor: torch.Tensor, first_position: int = 0
                ) -> tuple[torch.Tensor, KVCache]:
        """Whole sequence with the banded causal mask.

        Args:
            motion: normalised motion tokens (B, T, motion_dim); token i holds frame i.
            audio: fused audio (B, T, n_embd) of frames i + 1; anchor: anchor embedding (B, 1, n_embd).
            first_position: absolute position of token 0 (only relative positions matter to the output).

        Returns:
            The conditions (B, T, n_embd) after the final norm, and each layer's (k, v), k rotated.
        """
        tokens = motion.shape[1]
        cos, sin = rope_tables(first_position, tokens, self.config.head_size, self.config.rope_base, motion.device)
        mask = banded_causal_mask(tokens, self.config.context_frames, motion.device)
        x = self.drop(self.motion_embed(motion))  # (B, T, C)
        cache: KVCache = []
        for block in self.blocks:
            x, k, v = block(x, audio, anchor, cos, sin, mask)
            cache.append((k, v))
        return self.ln_f(x), cache

    def step(self, motion: torch.Tensor, audio: torch.Tensor, anchor: torch.Tensor, cache: KVCache,
             rope: tuple[torch.Tensor, torch.Tensor], slot: torch.Tensor) -> torch.Tensor:
        """One token: motion (B, 1, motion_dim) normalised, audio (B, 1, C), anchor (B, 1, C); returns (B, 1, C).

        ``cache`` holds the W - 1 previous tokens of every layer and is updated in place; ``rope`` is
        :func:`rope_at` of the token's position (one more than the newest cached token's), ``slot`` its
        :func:`cache_slot`.
        """
        x = self.motion_embed(motion)  # (B, 1, C)
        cos, sin = rope
        for block, (k_cache, v_cache) in zip(self.blocks, cache):
            x = block.step(x, audio, anchor, cos, sin, k_cache, v_cache, slot)
        return self.ln_f(x)

    def ring_cache(self, cache: KVCache) -> KVCache:
        """Ring buffers of ``context_frames`` slots holding ``cache``'s W - 1 tokens in slots 0 .. W - 2."""
        ring: KVCache = []
        for k, v in cache:
            batch, heads, tokens, size = k.shape
            slots = (batch, heads, self.config.context_frames, size)
            ring.append(tuple(torch.cat([t, t.new_zeros(slots)[:, :, tokens:]], dim=2) for t in (k, v)))
        return ring
