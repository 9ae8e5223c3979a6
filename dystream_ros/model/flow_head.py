"""Flow-matching head: AdaLN-modulated MLP blocks that predict the clean motion frame x0.

Follows the DyStream head (arXiv 2512.24408; paper code OFF-M:259-334 and the time embedding UTILDEV:2310-2343):
``x_t = sigma * eps + (1 - sigma) * x0``; the head sees x_t, the flow time ``t = 1000 sigma`` and the transformer
output of the previous token, and predicts x0 (not the velocity). Each block has two gated MLP sub-blocks: the first
is modulated (shift, scale, gate) by the time embedding only, the second by the transformer condition only. Norms
inside the blocks have no affine parameters; the modulation layers start at zero (DiT), so every block starts as
the identity.

Both modulations depend on the frame only through (sigma, condition): :meth:`FlowHead.time_modulation` and
:meth:`FlowHead.cond_modulation` let the sampler compute them once per step and once per frame, and
:meth:`FlowHead.denoise` is the part that runs per step and CFG branch.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from dystream_ros.model.config import ModelConfig

Modulation = list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]  # per block (shift, scale, gate), (N, W) each


def timestep_features(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal features (N, dim) of flow times t (N,) on the 0..1000 scale, cos first."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    angles = t.float()[:, None] * freqs  # (N, dim/2)
    return torch.cat([angles.cos(), angles.sin()], dim=1)


class TimeEmbedding(nn.Module):
    """sigma (N,) -> sinusoid of 1000 sigma -> Linear, SiLU, Linear -> (N, head_width)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.freq_dim = config.time_freq_dim
        self.linear_1 = nn.Linear(config.time_freq_dim, config.head_width)
        self.linear_2 = nn.Linear(config.head_width, config.head_width)

    def forward(self, sigma: torch.Tensor) -> torch.Tensor:
        """Noise level (B,) -> time embedding (B, head_width)."""
        return self.linear_2(F.silu(self.linear_1(timestep_features(1000.0 * sigma, self.freq_dim))))


class HeadMLP(nn.Module):
    """head_width -> head_mlp_ratio * head_width -> head_width, GELU."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.fc1 = nn.Linear(config.head_width, config.head_mlp_ratio * config.head_width)
        self.fc2 = nn.Linear(config.head_mlp_ratio * config.head_width, config.head_width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Position-wise MLP."""
        return self.fc2(F.gelu(self.fc1(x)))


class HeadBlock(nn.Module):
    """``h += g1 * MLP1(LN(h) (1 + s1) + b1)`` (time), then ``h += g2 * MLP2(LN(h) (1 + s2) + b2)`` (condition)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        width = config.head_width
        self.norm = nn.LayerNorm(width, elementwise_affine=False)
        self.mlp1 = HeadMLP(config)
        self.mlp2 = HeadMLP(config)
        self.time_modulation = nn.Linear(width, 3 * width)  # paper: adaLN_modulation1
        self.cond_modulation = nn.Linear(width, 3 * width)  # paper: adaLN_modulation2
        for layer in (self.time_modulation, self.cond_modulation):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    @staticmethod
    def _chunks(mod: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        shift, scale, gate = mod.chunk(3, dim=-1)  # (N, W) each
        return shift, 1.0 + scale, gate

    def forward(self, h: torch.Tensor, time_mod: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
                cond_mod: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """One AdaLN block: time-modulated, then condition-modulated MLP, each gated and residual."""
        shift, scale, gate = time_mod
        h = h + gate * self.mlp1(self.norm(h) * scale + shift)
        shift, scale, gate = cond_mod
        return h + gate * self.mlp2(self.norm(h) * scale + shift)


class FlowHead(nn.Module):
    """Predict x0 (N, motion_dim) from x_t (N, motion_dim), sigma (N,) and a condition (N, n_embd)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.noisy_proj = nn.Linear(config.motion_dim, config.head_width)
        self.cond_proj = nn.Linear(config.n_embd, config.head_width)  # paper: gpt_proj
        self.time_embed = TimeEmbedding(config)
        self.blocks = nn.ModuleList(HeadBlock(config) for _ in range(config.head_layers))
        self.output_norm = nn.LayerNorm(config.head_width)
        self.output_proj = nn.Linear(config.head_width, config.motion_dim)
        nn.init.zeros_(self.output_proj.weight)  # start at x0 = 0, the data mean (DiT's final-layer init)
        nn.init.zeros_(self.output_proj.bias)

    def time_modulation(self, sigma: torch.Tensor) -> Modulation:
        """Per-block (shift, 1 + scale, gate) of the time sub-blocks, each (N, W), for sigma (N,)."""
        temb = F.silu(self.time_embed(sigma))
        return [HeadBlock._chunks(block.time_modulation(temb)) for block in self.blocks]

    def cond_modulation(self, cond: torch.Tensor) -> Modulation:
        """Per-block (shift, 1 + scale, gate) of the condition sub-blocks, each (N, W), for cond (N, n_embd)."""
        g = F.silu(self.cond_proj(cond))
        return [HeadBlock._chunks(block.cond_modulation(g)) for block in self.blocks]

    def denoise(self, x_t: torch.Tensor, time_mod: Modulation, cond_mod: Modulation) -> torch.Tensor:
        """x0 prediction (N, motion_dim) from x_t (N or 1, motion_dim) and precomputed modulations.

        A single x_t row broadcasts against N condition rows; until the first condition sub-block the work is
        then done once instead of N times (the same numbers).
        """
        h = self.noisy_proj(x_t)  # (N, W)
        for block, tm, cm in zip(self.blocks, time_mod, cond_mod):
            h = block(h, tm, cm)
        return self.output_proj(self.output_norm(h))

    def forward(self, x_t: torch.Tensor, sigma: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Predicted x0 (B, motion_dim) of noisy motion x_t at noise level sigma, given the condition."""
        return self.denoise(x_t, self.time_modulation(sigma), self.cond_modulation(cond))
