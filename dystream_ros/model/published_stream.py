"""The published generator on audio that arrives in real time (the way public streaming forks run it).

Kept apart from :mod:`dystream_ros.model.published`, which is the released network and its offline inference.
"""
from __future__ import annotations

from typing import Protocol

import torch

from dystream_ros.errors import ConfigError, StreamError
from dystream_ros.model.published import FPS, HOP_SAMPLES, SAMPLE_RATE_HZ, Guidance, PublishedConfig, PublishedGenerator


class GeneratorSteps(Protocol):
    """The two computations of a stream frame, on some backend (torch here, ONNX Runtime in
    :mod:`dystream_ros.runtime.published_onnx`). Tensors in and out are float32 on :attr:`device`."""

    config: PublishedConfig
    device: torch.device

    def features(self, track: int, audio: torch.Tensor) -> torch.Tensor:
        """Audio (S,) of track 0 (self) or 1 (other) -> its 25 fps features (S / 640, audio_dim)."""

    def next_latent(self, past: torch.Tensor, feat_self: torch.Tensor, feat_other: torch.Tensor,
                    anchor: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Past (1, L, D), features (1, L, A) each, anchor (1, 1, D), noise (1, D) -> the next latent (1, D)."""


class TorchGeneratorSteps:
    """:class:`GeneratorSteps` of a :class:`PublishedGenerator` in torch, with its CFG weights and Euler steps."""

    def __init__(self, model: PublishedGenerator, guidance: Guidance | None = None, steps: int = 5) -> None:
        self.model, self.guidance, self.steps = model, guidance or Guidance(), steps
        self.config, self.device = model.config, model.output_proj.weight.device
        self.encoders = (model.audio_encoder_face, model.audio_encoder_face_other)

    def features(self, track: int, audio: torch.Tensor) -> torch.Tensor:
        """Audio (S,) -> 25 fps features (S / 640, audio_dim)."""
        return self.encoders[track].encode_utterance(audio[None], FPS)[0]

    def next_latent(self, past: torch.Tensor, feat_self: torch.Tensor, feat_other: torch.Tensor,
                    anchor: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """The GPT in the 5 CFG branches, then the head's Euler steps: (1, D)."""
        conditions = self.model.conditions(past, feat_self, feat_other, anchor)
        return self.model.sample(conditions, noise, self.guidance, self.steps)


class PublishedStream:
    """The published generator on audio that arrives in real time: one latent per 40 ms frame.

    The released encoder is not causal (bidirectional attention, a positional conv 2.56 s wide), so it is run the
    way public streaming forks run it (``dystream_architecture.md`` 7.3): for each new frame n, re-encode a
    sliding window of the latest audio, ``history_frames`` frames up to frame n plus ``lookahead_ms`` after it,
    normalised over the window as the processor would, and keep frame n's feature (the features of earlier frames
    stay as they were computed in their turn). The GPT then runs over the last 94 motion frames with the 94
    features ending at frame n, in the 5 CFG branches, and the head takes ``steps`` Euler steps, as offline.

    Frame n is ready once its audio and the lookahead have arrived: the output lags the input by
    :attr:`latency_frames`. :meth:`flush` ends the stream (the last frames get the lookahead there is). The stream
    starts, as the offline inference, after 94 frames of silence and 94 copies of m0. With a history and a
    lookahead that span the whole clip, every window is the whole clip and the output equals
    :meth:`PublishedGenerator.generate` with the same noise.
    """

    def __init__(self, model: PublishedGenerator | GeneratorSteps, m0: torch.Tensor, *, lookahead_ms: float = 60.0,
                 history_frames: int = 96, guidance: Guidance | None = None, steps: int = 5,
                 noise: torch.Tensor | None = None, generator: torch.Generator | None = None) -> None:
        """Start a stream for reference latent ``m0`` (face_dim,); ``noise`` (T, face_dim) is used for the first
        T frames (then ``generator`` draws), so a run can be reproduced. ``model`` is the torch network (run with
        ``guidance`` and ``steps``) or another backend's :class:`GeneratorSteps`, whose own settings hold."""
        if isinstance(model, PublishedGenerator):
            model = TorchGeneratorSteps(model, guidance, steps)
        config = model.config
        if history_frames < config.context_frames + 1:
            msg = (f'history_frames must cover the {config.context_frames} features of the first frame and the '
                   f'frame itself, not {history_frames}')
            raise ConfigError(msg)
        self.backend, self.config, self.generator = model, config, generator
        self.lookahead_samples = round(lookahead_ms * SAMPLE_RATE_HZ / 1000)
        self.history_frames = history_frames
        self.device = model.device
        self.noise = None if noise is None else noise.reshape(-1, config.face_dim).to(self.device)
        context = config.context_frames
        self.anchor = m0.reshape(1, 1, config.face_dim).to(self.device)
        self.motion = self.anchor[0].expand(context, -1).clone()  # (L, D) the last L latents
        self.audio = torch.zeros(2, context * HOP_SAMPLES, device=self.device)  # self, other; silent prefix
        self.audio_start = 0  # absolute sample index of self.audio[:, 0]
        self.features: dict[int, torch.Tensor] = {}  # frame -> (2, audio_dim) features, self and other
        self.next_frame = context  # absolute index of the next frame to generate
        self.generated = 0

    @property
    def latency_frames(self) -> int:
        """Frames of audio that must arrive after a frame before it is generated."""
        return -(-self.lookahead_samples // HOP_SAMPLES)

    @property
    def _audio_end(self) -> int:
        return self.audio_start + self.audio.shape[1]

    @torch.no_grad()
    def push(self, audio_self: torch.Tensor, audio_other: torch.Tensor) -> torch.Tensor:
        """Add the next samples of both tracks (1-D, 16 kHz, as many of each); returns the (m, face_dim) latents
        now ready."""
        if audio_self.shape != audio_other.shape or audio_self.dim() != 1:
            msg = (f'push the same number of samples of both tracks, as 1-D tensors; got {tuple(audio_self.shape)} '
                   f'and {tuple(audio_other.shape)}')
            raise StreamError(msg)
        chunk = torch.stack([audio_self, audio_other]).to(self.device, torch.float32)
        self.audio = torch.cat([self.audio, chunk], dim=1)
        out = []
        while self._audio_end >= (self.next_frame + 1) * HOP_SAMPLES + self.lookahead_samples:
            out.append(self._frame((self.next_frame + 1) * HOP_SAMPLES + self.lookahead_samples))
        return self._stacked(out)

    @torch.no_grad()
    def flush(self) -> torch.Tensor:
        """End of the audio: the (m, face_dim) latents of every frame still pending, with the lookahead there is."""
        out = []
        while self._audio_end >= (self.next_frame + 1) * HOP_SAMPLES:
            out.append(self._frame(self._audio_end))
        return self._stacked(out)

    def _stacked(self, latents: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack(latents) if latents else self.motion.new_zeros(0, self.config.face_dim)

    def _encode(self, first_frame: int, end_sample: int) -> torch.Tensor:
        """Features (2, frames, audio_dim) of the window [first_frame * 640, end_sample), self and other."""
        window = self.audio[:, first_frame * HOP_SAMPLES - self.audio_start : end_sample - self.audio_start]
        return torch.stack([self.backend.features(track, audio) for track, audio in enumerate(window)])

    def _frame(self, end_sample: int) -> torch.Tensor:
        frame, context = self.next_frame, self.config.context_frames
        first = max(0, frame + 1 - self.history_frames)
        needed = [j for j in range(frame - context + 1, frame + 1) if j not in self.features]
        feats = self._encode(first, end_sample)  # (2, F, A)
        for j in needed:
            self.features[j] = feats[:, j - first]
        window = torch.stack([self.features[j] for j in range(frame - context + 1, frame + 1)], dim=1)  # (2, L, A)
        if self.noise is not None and self.generated < self.noise.shape[0]:
            noise = self.noise[self.generated : self.generated + 1]
        else:
            # drawn where the caller's generator lives (a CPU one gives the same noise on any device), then moved
            where = self.generator.device if self.generator is not None else 'cpu'
            noise = torch.randn(1, self.config.face_dim, generator=self.generator, device=where).to(self.device)
        latent = self.backend.next_latent(self.motion[None], window[0:1], window[1:2], self.anchor, noise)[0]
        self.motion = torch.cat([self.motion[1:], latent[None]])
        self.features.pop(frame - context + 1)
        self.next_frame, self.generated = frame + 1, self.generated + 1
        keep_from = (self.next_frame + 1 - self.history_frames) * HOP_SAMPLES  # the next window's first sample
        if keep_from > self.audio_start:
            self.audio = self.audio[:, keep_from - self.audio_start :]
            self.audio_start = keep_from
        return latent
