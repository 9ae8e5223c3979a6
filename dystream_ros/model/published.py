"""The published DyStream generator (``Audio2FaceGPT``), re-implemented to load and reproduce the released weights.

Source of the facts: RobinWitch/DyStream@f587541 ``model/motion_generation/motion_gen_gpt_flowmatching_addaudio_
linear_twowavencoder.py`` (OFF-M), its ``app.py`` demo and the golden tensors of ``tools/official_reference``
(``shared/dystream_architecture.md`` sections 2-4 describe the model in prose). Our own model
(:mod:`dystream_ros.model.dystream`) differs on purpose (KV-cacheable attention, causal audio); this module is the
published network as released, so its checkpoint can be used and checked. Module and parameter names equal the
official state-dict keys, and parameters are registered in the official order (the EMA weights in the checkpoint
are an unnamed list in that order), dead modules included; the layers are in
:mod:`dystream_ros.model.published_layers`:

* **Audio.** Two wav2vec2 encoders (:mod:`dystream_ros.model.wav2vec2`), self and other, each projected by a
  Linear; a Linear fuses the two (``addaudio_linear``). A CFG branch drops a stream by zeroing its projection
  before the fusion, so the fusion bias stays.
* **GPT** (OFF-M:158-198). Token i = ``face_embed`` of motion frame i; the fused audio of frame i + 1 is added in
  every block through a per-block Linear. Pre-LN blocks: causal self-attention whose q and k inputs are the
  LayerNorm output rotated by a RoPE over the whole width (pairs 2i, 2i+1, window-relative positions), the audio
  add, a cross-attention to one anchor token (the embedded reference motion), a second causal self-attention with
  sinusoidal PE added to q, k and v, an MLP. The condition is ``output_proj(output_norm(last token))``.
* **Flow head** (OFF-M:259-334). MLP blocks with AdaLN: one gated MLP modulated by the time embedding, one by the
  GPT condition. It predicts x0; the sampler turns it into a velocity ``(x - x0) / (sigma + 1e-9)`` for an Euler
  step on the FlowMatchEulerDiscrete schedule.
* **Unused parameters** kept for the parameter order: every block's ``norm2`` and ``cross_attn_rope``, the
  head's ``past_proj`` and ``anchor_proj``.

Inference (:meth:`PublishedGenerator.generate`, OFF-M:497-686 and app.py:507-569): 94 silent frames are prepended
to both tracks and 94 copies of the reference latent m0 to the motion; each new frame runs the GPT over the last
94 motion frames in 5 CFG branches (none, anchor, self audio, other audio, all), then ``steps`` Euler steps of the
head with the multi-condition CFG on x0. :class:`~dystream_ros.model.published_stream.PublishedStream` runs the
same per frame on audio that arrives in real time.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from dystream_ros.errors import ConfigError
from dystream_ros.model.published_config import PublishedConfig
from dystream_ros.model.published_layers import FlowHead, GPTBlock, TimeEmbedding
from dystream_ros.model.wav2vec2 import Wav2Vec2

SAMPLE_RATE_HZ = 16000
FPS = 25
HOP_SAMPLES = SAMPLE_RATE_HZ // FPS  # 640 samples per motion frame
NUM_BRANCHES = 5  # CFG branches, in order: none, anchor, self audio, other audio, all
# (self audio, other audio, anchor) kept in each branch (OFF-M:531-564)
BRANCH_MASKS = ((0, 0, 0), (0, 0, 1), (1, 0, 0), (0, 1, 0), (1, 1, 1))


@dataclass(frozen=True)
class Guidance:
    """Multi-condition CFG weights on x0 (OFF-M:586-593); defaults = sample.yaml and the demo's UI."""

    audio: float = 0.5  # cfg_audio: self audio only minus none
    audio_other: float = 0.5  # cfg_audio_other: other audio only minus none
    anchor: float = 0.0  # cfg_anchor: anchor only minus none
    all: float = 1.0  # cfg_all: everything minus none

    def combine(self, x0: torch.Tensor) -> torch.Tensor:
        """(..., 5, D) per-branch x0 -> (..., D): ``u + w_a (A-u) + w_o (O-u) + w_n (N-u) + w_all (ALL-u)``."""
        none, anchor, audio, other, everything = x0.unbind(dim=-2)
        return (none + self.audio * (audio - none) + self.audio_other * (other - none)
                + self.anchor * (anchor - none) + self.all * (everything - none))


def flow_schedule(steps: int, num_train_timesteps: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    """Timesteps (steps,) and sigmas (steps + 1,) float32 of FlowMatchEulerDiscreteScheduler(shift=1).set_timesteps.

    Linear from t = 1000 to the smallest training time (sigma 0.001 as float32), sigma = t / 1000, then a
    terminal sigma of 0. For 5 steps: t = [1000, 750.25, 500.5, 250.75, 1]; the model sees them cast to long.
    """
    sigma_min = float(np.float32(1.0 / num_train_timesteps))
    timesteps = np.linspace(float(num_train_timesteps), sigma_min * num_train_timesteps, steps)
    sigmas = torch.from_numpy(timesteps / num_train_timesteps).float()
    return sigmas * num_train_timesteps, torch.cat([sigmas, sigmas.new_zeros(1)])


class PublishedGenerator(nn.Module):
    """The published ``Audio2FaceGPT``: two wav2vec2 encoders, the GPT and the flow-matching head."""

    def __init__(self, config: PublishedConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or PublishedConfig()
        width, audio_dim = config.hidden_size, config.audio_dim
        self.audio_encoder_face = Wav2Vec2(config.wav2vec2)  # self (the avatar's voice)
        self.audio_encoder_face_other = Wav2Vec2(config.wav2vec2)  # other (the partner's voice)
        self.audio_proj = nn.Linear(audio_dim, width)
        self.audio_other_proj = nn.Linear(audio_dim, width)
        self.audio_audioother_fusion = nn.Linear(2 * width, width)
        self.face_embed = nn.Linear(config.face_dim, width)
        self.anchor_embed = nn.Linear(config.face_dim, width)
        self.time_embed = TimeEmbedding(width)
        self.blocks = nn.ModuleList(GPTBlock(config) for _ in range(config.num_layers))
        self.output_norm = nn.LayerNorm(width)
        self.output_proj = nn.Linear(width, config.face_dim)
        self.diffusion_head = FlowHead(config)

    # --- parts ---
    def encode_audio(self, audio_self: torch.Tensor, audio_other: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Both tracks (B, S) -> 25 fps features (B, T, audio_dim) each, over the whole call (OFF-M:642-657)."""
        return (self.audio_encoder_face.encode_utterance(audio_self, FPS),
                self.audio_encoder_face_other.encode_utterance(audio_other, FPS))

    def fused_audio(self, feat_self: torch.Tensor, feat_other: torch.Tensor) -> torch.Tensor:
        """Features (B, T, audio_dim) -> fused audio (B, 4, T, C) for (self, other) kept = 00, 10, 01, 11."""
        projected_self, projected_other = self.audio_proj(feat_self), self.audio_other_proj(feat_other)
        zero_self, zero_other = torch.zeros_like(projected_self), torch.zeros_like(projected_other)
        pairs = ((zero_self, zero_other), (projected_self, zero_other), (zero_self, projected_other),
                 (projected_self, projected_other))
        return torch.stack([self.audio_audioother_fusion(torch.cat(pair, dim=-1)) for pair in pairs], dim=1)

    def conditions(self, past_motion: torch.Tensor, feat_self: torch.Tensor, feat_other: torch.Tensor,
                   anchor: torch.Tensor) -> torch.Tensor:
        """The GPT condition of the next frame, in the 5 CFG branches.

        Args:
            past_motion: (B, L, face_dim) the last L motion latents, oldest first (L = 94 in the official loop).
            feat_self, feat_other: (B, L, audio_dim) audio features of the frames each token predicts (token i
                gets frame i + 1, so the last one is the frame being generated).
            anchor: (B, 1, face_dim) the reference latent m0.

        Returns:
            (B, 5, face_dim), branches none, anchor, self audio, other audio, all.
        """
        batch, tokens, _ = past_motion.shape
        audio = self.fused_audio(feat_self, feat_other)  # (B, 4, L, C)
        audio = audio[:, [s + 2 * o for s, o, _ in BRANCH_MASKS]].flatten(0, 1)  # (5B, L, C): each branch's audio
        anchor_mask = past_motion.new_tensor([m[2] for m in BRANCH_MASKS])[:, None, None]  # (5, 1, 1)
        anchor = (self.anchor_embed(anchor)[:, None] * anchor_mask).flatten(0, 1)  # (5B, 1, C)
        x = self.face_embed(past_motion)[:, None].expand(-1, NUM_BRANCHES, -1, -1).flatten(0, 1)  # (5B, L, C)
        mask = torch.ones(tokens, tokens, dtype=torch.bool, device=x.device).tril()  # causal
        for block in self.blocks:
            x = block(x, audio, anchor, mask)
        out = self.output_proj(self.output_norm(x[:, -1]))  # (5B, face_dim)
        return out.view(batch, NUM_BRANCHES, -1)

    def sample(self, conditions: torch.Tensor, noise: torch.Tensor, guidance: Guidance, steps: int) -> torch.Tensor:
        """Euler flow-matching sampling of one frame per row: conditions (B, 5, D), noise (B, D) -> latent (B, D).

        The head predicts x0 in every branch; CFG mixes the x0s; the velocity is ``(x - x0) / (sigma + 1e-9)``
        (OFF-M:575-603).
        """
        timesteps, sigmas = flow_schedule(steps, self.config.num_train_timesteps)
        timesteps, sigmas = timesteps.long().to(noise.device), sigmas.to(noise.device)
        latent = noise
        for step in range(steps):
            temb = self.time_embed(timesteps[step : step + 1])  # (1, C), the same for every row and branch
            x0 = guidance.combine(self.diffusion_head(latent[:, None], conditions, temb))  # (B, D)
            velocity = (latent - x0) / (sigmas[step] + 1e-9)
            latent = latent + (sigmas[step + 1] - sigmas[step]) * velocity
        return latent

    # --- inference ---
    @torch.no_grad()
    def generate(self, audio_self: torch.Tensor, audio_other: torch.Tensor, m0: torch.Tensor, *,
                 cfg_audio: float = 0.5, cfg_audio_other: float = 0.5, cfg_anchor: float = 0.0,
                 cfg_all: float = 1.0, steps: int = 5, noise: torch.Tensor | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """The official offline inference (app.py:507-569 calling OFF-M:610-686), batch 1.

        Args:
            audio_self, audio_other: (S,) or (1, S) 16 kHz mono, the avatar's and the partner's tracks (zeros
                for no partner), without the silent prefix (added here, as the demo does).
            m0: (face_dim,) or (1, 1, face_dim) reference motion latent: the anchor and the initial past.
            cfg_*: :class:`Guidance` weights. steps: Euler steps.
            noise: (T, face_dim) (or any shape with T rows) initial latent of each frame; drawn from
                ``generator`` (or the global RNG) when None.

        Returns:
            (T, face_dim) motion latents, T = S / 640 - 1 for S a multiple of 640.
        """
        config, context = self.config, self.config.context_frames
        device = self.output_proj.weight.device
        prefix = torch.zeros(1, context * HOP_SAMPLES, device=device)
        audio_self = torch.cat([prefix, audio_self.reshape(1, -1).to(device)], dim=1)
        audio_other = torch.cat([prefix, audio_other.reshape(1, -1).to(device)], dim=1)
        feat_self, feat_other = self.encode_audio(audio_self, audio_other)  # (1, T_tot, A)
        frames = feat_self.shape[1] - context - 1
        if noise is None:
            noise = torch.randn(frames, config.face_dim, generator=generator, device=device)
        noise = noise.reshape(-1, config.face_dim).to(device)
        if noise.shape[0] < frames:
            msg = f'noise has {noise.shape[0]} frames, the audio needs {frames}'
            raise ConfigError(msg)
        guidance = Guidance(cfg_audio, cfg_audio_other, cfg_anchor, cfg_all)
        anchor = m0.reshape(1, 1, config.face_dim).to(device)
        motion = [anchor[0, 0]] * context
        for i in range(frames):
            past = torch.stack(motion[-context:])[None]  # (1, L, D)
            window = slice(i + 1, i + 1 + context)  # features of the frames the tokens predict
            cond = self.conditions(past, feat_self[:, window], feat_other[:, window], anchor)
            motion.append(self.sample(cond, noise[i : i + 1], guidance, steps)[0])
        return torch.stack(motion[context:])
