"""DyStream: two causal audio encoders, the autoregressive motion transformer and the flow-matching head.

Our implementation of arXiv 2512.24408 (Chen & Liu), in the streaming form the paper describes. The training
forward follows the paper code's ``training_step`` (``main.py`` MAIN:151-219): flow-matching x0 loss with context
corruption and end-frame weighting. :meth:`DyStream.step` generates one frame with a KV cache, the whole Euler/CFG
sampling included; :meth:`DyStream.generate` is the offline loop over whole clips.

Motion is normalised inside the model with per-dimension mean/std buffers computed from the training data (the
paper code does not normalise its 512-d latents; our motion mixes blendshape weights, radians and metres, whose
scales differ by orders of magnitude). Public inputs and outputs are raw motion units.

Start of stream (paper code MAIN:334-364): the transformer window starts full, with ``context_frames`` tokens of
the anchor motion and silent audio; the first generated frame is predicted from the last of them.
"""
from __future__ import annotations

import torch
from torch import nn

from dystream_ros.model.audio_encoder import AudioEncoder, num_final_frames
from dystream_ros.model.config import ModelConfig
from dystream_ros.model.flow_head import FlowHead, Modulation
from dystream_ros.model.sampler import Guidance, euler_sample, sigma_schedule
from dystream_ros.model.transformer import KVCache, MotionTransformer, cache_slot, rope_at

MIN_MOTION_STD = 1e-3  # floor of the per-dimension std, in raw units: dimensions that never move normalise to 0
CORRUPTION_THRESHOLD = 0.5  # paper code CFG:11: a context frame is replaced by its noisy version with p = 0.5
END_FRAMES, END_WEIGHT = 5, 3.0  # paper code MAIN:126-142: the last 5 predicted frames weigh 3x in the loss
ANCHOR_FRAMES = 10  # paper code MAIN:193-197: the training anchor is one of the last 10 frames of the window


def frame_position(config: ModelConfig, frame: int) -> int:
    """Absolute position of the token that predicts ``frame``: after the context_frames - 1 start tokens."""
    return config.context_frames - 1 + frame


class DyStream(nn.Module):
    """The whole model; see the module docstring."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.self_encoder = AudioEncoder(config)  # the face's own voice ("self")
        self.partner_encoder = AudioEncoder(config)  # the partner's voice
        self.transformer = MotionTransformer(config)
        self.head = FlowHead(config)
        self.register_buffer('motion_mean', torch.zeros(config.motion_dim))  # raw units
        self.register_buffer('motion_std', torch.ones(config.motion_dim))
        self.register_buffer('motion_rest', torch.zeros(config.motion_dim))  # raw units, see default_anchor

    # --- normalisation ---
    @torch.no_grad()
    def set_motion_stats(self, mean: torch.Tensor, std: torch.Tensor, rest: torch.Tensor | None = None) -> None:
        """Store the training data's per-dimension mean and std (raw units; std floored at MIN_MOTION_STD) and its
        rest pose (the mean if None)."""
        self.motion_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.motion_std.copy_(torch.as_tensor(std, dtype=torch.float32).clamp_min(MIN_MOTION_STD))
        self.motion_rest.copy_(torch.as_tensor(mean if rest is None else rest, dtype=torch.float32))

    def default_anchor(self) -> torch.Tensor:
        """The anchor (motion_dim,) raw, when the caller has no avatar's own: like the training anchors, so the
        training mean for ``window_end`` models, the training data's rest pose (mouth closed) for ``rest`` ones."""
        return self.motion_rest if self.config.anchor == 'rest' else self.motion_mean

    def normalize(self, motion: torch.Tensor) -> torch.Tensor:
        """Raw motion -> the model's normalised units."""
        return (motion - self.motion_mean) / self.motion_std

    def denormalize(self, motion: torch.Tensor) -> torch.Tensor:
        """Normalised motion -> raw units."""
        return motion * self.motion_std + self.motion_mean

    def num_parameters(self) -> int:
        """Parameters, buffers excluded."""
        return sum(p.numel() for p in self.parameters())

    # --- training ---
    def forward(self, motion: torch.Tensor, self_audio: torch.Tensor, partner_audio: torch.Tensor,
                rest: torch.Tensor | None = None) -> torch.Tensor:
        """Flow-matching training loss of one batch of windows (paper code MAIN:171-219).

        Args:
            motion: raw motion (B, N + 1, motion_dim) of frames s .. s + N.
            self_audio, partner_audio: (B, S) audio spans ``encoder_audio_span(config, s + 1, N)`` (see
                :func:`dystream_ros.model.audio_encoder.encoder_audio_span`), giving the features of frames
                s + 1 .. s + N.
            rest: raw rest pose of each window's speaker (B, motion_dim); the anchor of ``rest`` models.

        Returns:
            The weighted x0 MSE (scalar). Randomness (sigma, noise, corruption, dropout, anchor choice) comes from
            torch's global generator.
        """
        cfg = self.config
        if cfg.anchor == 'rest' and rest is None:
            msg = "a model with anchor='rest' trains on each window's rest pose; none was given"
            raise ValueError(msg)
        batch, frames, _ = motion.shape
        tokens = frames - 1
        x0 = self.normalize(motion)  # (B, N+1, D)
        feat_self = self.self_encoder(self_audio)[:, -tokens:]  # (B, N, Da)
        feat_partner = self.partner_encoder(partner_audio)[:, -tokens:]
        # One sigma per sample, shared by its frames (MAIN:175-180).
        sigma = torch.rand(batch, 1, 1, device=motion.device) * (1.0 - cfg.sigma_min) + cfg.sigma_min
        x_t = sigma * torch.randn_like(x0) + (1.0 - sigma) * x0
        # Context corruption (MAIN:185-191): half the frames noisy, blended so older frames are noisier.
        corrupt = torch.rand(batch, frames, 1, device=motion.device) < CORRUPTION_THRESHOLD
        context = torch.where(corrupt, x_t, x0)
        blend = torch.linspace(0.0, 1.0, frames, device=motion.device)[None, :, None]  # (1, N+1, 1)
        context = context * (1.0 - blend) + x0 * blend
        if cfg.context_noise > 0.0:  # see ModelConfig.context_noise: no context frame is exact, the last included
            level = torch.rand(batch, 1, 1, device=motion.device) * cfg.context_noise
            context = context + level * torch.randn_like(context)
        if cfg.anchor == 'rest':
            anchor = self.normalize(rest)  # (B, D)
        else:
            pick = torch.randint(frames - min(ANCHOR_FRAMES, frames), frames, (batch,), device=motion.device)
            anchor = x0[torch.arange(batch, device=motion.device), pick]  # (B, D)
        keep = torch.rand(batch, tokens, 3, device=motion.device)
        drop = torch.tensor([cfg.drop_self, cfg.drop_partner, cfg.drop_anchor], device=motion.device)
        masks = (keep >= drop).float()  # (B, N, 3); the anchor uses frame 0's draw, once per sample
        audio, anchor_emb = self.transformer.condition(feat_self, feat_partner, anchor, masks)
        cond, _ = self.transformer(context[:, :-1], audio, anchor_emb)  # (B, N, C)
        pred = self.head(x_t[:, 1:].reshape(batch * tokens, -1), sigma.expand(batch, tokens, 1).reshape(-1),
                         cond.reshape(batch * tokens, -1)).view(batch, tokens, -1)  # (B, N, D)
        weight = torch.ones(tokens, device=motion.device)
        weight[-END_FRAMES:] = END_WEIGHT
        per_frame = ((pred - x0[:, 1:]) ** 2).mean(dim=2)  # (B, N)
        return (per_frame * weight).sum() / (weight.sum() * batch)

    # --- inference ---
    # Token positions: the start tokens are 0 .. context_frames - 2, and the token that predicts frame t (it holds
    # frame t - 1, the anchor for t = 0) is context_frames - 1 + t; see frame_position.
    def prefix_cache(self, anchor: torch.Tensor, silence_self: torch.Tensor, silence_partner: torch.Tensor,
                     masks: torch.Tensor) -> KVCache:
        """The KV ring buffers after the ``context_frames - 1`` start tokens: anchor motion with silent audio.

        Args:
            anchor: raw anchor motion (1, motion_dim).
            silence_self, silence_partner: silent encoder features (1, audio_dim) (``AudioEncoder.silence``).
            masks: CFG branch masks (nb, 1, 3).
        """
        cfg = self.config
        branches, tokens = masks.shape[0], cfg.context_frames - 1
        if tokens == 0:  # a window of one token: nothing comes before the first
            shape = (branches, cfg.n_head, 0, cfg.head_size)
            return self.transformer.ring_cache([(anchor.new_zeros(shape), anchor.new_zeros(shape))] * cfg.n_layer)
        anchor_n = self.normalize(anchor).expand(branches, -1)  # (nb, D)
        audio, anchor_emb = self.transformer.condition(
            silence_self[:, None].expand(branches, tokens, -1), silence_partner[:, None].expand(branches, tokens, -1),
            anchor_n, masks)
        _, cache = self.transformer(anchor_n[:, None].expand(-1, tokens, -1), audio, anchor_emb)
        return self.transformer.ring_cache(cache)

    def step(self, prev_motion: torch.Tensor, feat_self: torch.Tensor, feat_partner: torch.Tensor,
             anchor: torch.Tensor, noise: torch.Tensor, masks: torch.Tensor, coefficients: torch.Tensor,
             cache: KVCache, rope: tuple[torch.Tensor, torch.Tensor], slot: torch.Tensor, sigmas: list[float],
             time_mods: list[Modulation] | None = None) -> torch.Tensor:
        """Generate frame t from frame t-1 and frame t's audio features; one transformer token per CFG branch.

        Args:
            prev_motion: raw motion of frame t-1 (1, motion_dim); the anchor for t = 0.
            feat_self, feat_partner: encoder features of frame t (1, audio_dim).
            anchor: raw anchor motion (1, motion_dim).
            noise: standard normal (1, motion_dim), the sampler's start.
            masks: (nb, 1, 3) and coefficients (nb, 1) from :class:`Guidance`.
            cache: per layer (k, v) ring buffers (nb, n_head, context_frames, head_size), updated in place.
            rope: cos and sin (1, head_size) of the token's position, ``rope_at(frame_position(t), config)``;
                slot: its ``cache_slot``.
            sigmas: :func:`sigma_schedule` output.
            time_mods: the head's time modulations per sigma, to skip recomputing them (see ``euler_sample``).

        Returns:
            Raw motion of frame t (1, motion_dim).
        """
        branches = masks.shape[0]
        audio, anchor_emb = self.transformer.condition(
            feat_self[:, None].expand(branches, 1, -1), feat_partner[:, None].expand(branches, 1, -1),
            self.normalize(anchor).expand(branches, -1), masks)  # (nb, 1, C) each
        tokens = self.normalize(prev_motion)[:, None].expand(branches, 1, -1)  # (nb, 1, D)
        cond = self.transformer.step(tokens, audio, anchor_emb, cache, rope, slot)  # (nb, 1, C)
        x0 = euler_sample(self.head, cond[:, 0], noise, coefficients, sigmas, time_mods)  # (1, D)
        return self.denormalize(x0)

    @torch.no_grad()
    def generate(self, self_audio: torch.Tensor, partner_audio: torch.Tensor, anchor: torch.Tensor,
                 generator: torch.Generator | None = None, guidance: Guidance | None = None,
                 steps: int | None = None) -> torch.Tensor:
        """Offline generation over whole clips.

        Args:
            self_audio, partner_audio: (S,) float32 16 kHz mono, the same length.
            anchor: raw anchor motion (motion_dim,).
            generator: source of the per-frame start noise, one (1, motion_dim) draw per frame.
            guidance: CFG branches; the config's weights when None. steps: Euler steps; the config's when None.

        Returns:
            Raw motion (T, motion_dim) of the frames that are final given S samples (``num_final_frames``).
        """
        cfg = self.config
        guidance = guidance or Guidance.from_config(cfg)
        sigmas = sigma_schedule(steps or cfg.steps, cfg.sigma_min)
        device = self.motion_mean.device
        frames = num_final_frames(cfg, min(self_audio.shape[-1], partner_audio.shape[-1]))
        anchor = anchor.reshape(1, -1).to(device)
        masks, coefficients = guidance.mask_tensor(device), guidance.coefficient_tensor(device)
        _, silence_self = self.self_encoder.silence()
        _, silence_partner = self.partner_encoder.silence()
        cache = self.prefix_cache(anchor, silence_self, silence_partner, masks)
        out = torch.empty(frames, cfg.motion_dim, device=device)
        if frames == 0:
            return out
        feat_self = self.self_encoder.encode_frames(self_audio.reshape(1, -1).to(device), 0, frames)  # (1, T, Da)
        feat_partner = self.partner_encoder.encode_frames(partner_audio.reshape(1, -1).to(device), 0, frames)
        prev = anchor
        for t in range(frames):
            noise = torch.randn(1, cfg.motion_dim, generator=generator).to(device)
            position = frame_position(cfg, t)
            rope = tuple(r.to(device) for r in rope_at(position, cfg))
            prev = self.step(prev, feat_self[:, t], feat_partner[:, t], anchor, noise, masks, coefficients, cache,
                             rope, cache_slot(position, cfg).to(device), sigmas)
            out[t] = prev[0]
        return out
