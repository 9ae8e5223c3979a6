"""Euler sampler in x0 form with multi-condition classifier-free guidance, all branches in one batched forward.

Paper code (OFF-M:576-604, diffusers ``FlowMatchEulerDiscreteScheduler`` with 1000 steps, shift 1): sigmas
``linspace(1, 0.001, N)`` then 0; at each sigma the head predicts x0 for every CFG branch, the guided x0 is

    x0 = u + w_audio (A - u) + w_partner (O - u) + w_anchor (N - u) + w_all (ALL - u)

with u = unconditional, A = self audio only, O = partner audio only, N = anchor only, ALL = everything, and the Euler
step ``x += (sigma_next - sigma) (x - x0) / sigma`` is written as ``x = r x + (1 - r) x0`` with r = sigma_next / sigma.
The last step (to sigma 0) returns the guided x0. A branch whose coefficient is exactly 0 contributes nothing, so it
is left out of the batch (exact, as the shikibu fork does for the anchor branch).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from dystream_ros.model.flow_head import FlowHead, Modulation

if TYPE_CHECKING:
    from dystream_ros.model.config import ModelConfig

# name -> (self audio, partner audio, anchor) kept; paper order (OFF-M:531-564).
BRANCHES: dict[str, tuple[float, float, float]] = {
    'uncond': (0.0, 0.0, 0.0),
    'anchor': (0.0, 0.0, 1.0),
    'self': (1.0, 0.0, 0.0),
    'partner': (0.0, 1.0, 0.0),
    'all': (1.0, 1.0, 1.0),
}


@dataclass(frozen=True)
class Guidance:
    """The CFG branches that run, their condition masks and their coefficients in the guided x0."""

    names: tuple[str, ...]
    masks: tuple[tuple[float, float, float], ...]  # per branch: self audio, partner audio, anchor in {0, 1}
    coefficients: tuple[float, ...]  # guided x0 = sum_b coefficient_b * x0_b

    @classmethod
    def from_weights(cls, cfg_self: float, cfg_partner: float, cfg_anchor: float, cfg_all: float) -> Guidance:
        """Expand ``u + sum_k w_k (c_k - u)`` into per-branch coefficients and drop the zero ones."""
        weights = {'anchor': cfg_anchor, 'self': cfg_self, 'partner': cfg_partner, 'all': cfg_all}
        coefficients = {'uncond': 1.0 - sum(weights.values()), **weights}
        names = tuple(name for name in BRANCHES if coefficients[name] != 0.0)
        if not names:  # every coefficient 0 would output 0; keep the unconditional branch with weight 0 instead
            names = ('uncond',)
        return cls(names, tuple(BRANCHES[n] for n in names), tuple(coefficients[n] for n in names))

    @classmethod
    def from_config(cls, config: ModelConfig) -> Guidance:
        """The guidance of a config's ``cfg_*`` weights."""
        return cls.from_weights(config.cfg_self, config.cfg_partner, config.cfg_anchor, config.cfg_all)

    def mask_tensor(self, device: torch.device | None = None) -> torch.Tensor:
        """(num_branches, 1, 3) float masks."""
        return torch.tensor(self.masks, dtype=torch.float32, device=device)[:, None, :]

    def coefficient_tensor(self, device: torch.device | None = None) -> torch.Tensor:
        """(num_branches, 1) float coefficients."""
        return torch.tensor(self.coefficients, dtype=torch.float32, device=device)[:, None]


def sigma_schedule(steps: int, sigma_min: float) -> list[float]:
    """``steps`` noise levels from 1 to sigma_min, then 0."""
    if steps == 1:
        return [1.0, 0.0]
    return [1.0 + (sigma_min - 1.0) * k / (steps - 1) for k in range(steps)] + [0.0]


def euler_sample(head: FlowHead, cond: torch.Tensor, noise: torch.Tensor, coefficients: torch.Tensor,
                 sigmas: list[float], time_mods: list[Modulation] | None = None) -> torch.Tensor:
    """Sample one frame.

    Args:
        head: the flow head.
        cond: transformer output per CFG branch (nb, n_embd).
        noise: the initial x at sigma 1, (1, motion_dim).
        coefficients: (nb, 1) guidance coefficients of the branches.
        sigmas: :func:`sigma_schedule` output.
        time_mods: per step, ``head.time_modulation`` of that sigma at batch 1; computed here when None.

    Returns:
        The guided x0 (1, motion_dim), normalised.
    """
    cond_mod = head.cond_modulation(cond)  # once per frame, shared by all steps
    x = noise
    for k in range(len(sigmas) - 1):
        if time_mods is None:
            time_mod = head.time_modulation(torch.full((1,), sigmas[k], device=noise.device))
        else:
            time_mod = time_mods[k]
        # x is the same for every branch: the head broadcasts it, so its first (time-only) sub-block runs once.
        x0 = head.denoise(x, time_mod, cond_mod)  # (nb, D)
        x0 = (coefficients * x0).sum(dim=0, keepdim=True)  # (1, D)
        ratio = sigmas[k + 1] / sigmas[k]
        x = ratio * x + (1.0 - ratio) * x0
    return x
