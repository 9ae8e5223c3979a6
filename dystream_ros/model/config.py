"""DyStream model configuration: one frozen dataclass, three named sizes, and the audio/frame arithmetic.

Every module of ``dystream_ros.model`` takes a :class:`ModelConfig` and reads nothing else. The derived
properties convert the unit-carrying fields (Hz, ms, frames) into sample and hop counts once, so the hot loop never
does unit arithmetic.

Time grid (see ``docs`` of :mod:`dystream_ros.model.audio_encoder`): motion frame ``t`` covers audio samples
``[640 t, 640 (t + 1))`` at 16 kHz / 25 fps, and is *final* once audio up to ``640 (t + 1) + lookahead_samples``
has arrived on both streams.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from dystream_ros.errors import ConfigError
from dystream_ros.units import FPS, SAMPLE_RATE_HZ

ANCHORS = ('window_end', 'rest')  # see ModelConfig.anchor
# What each voice's encoder reads (see ModelConfig.audio_frontend): our log-mel, or the convolutional stem of
# Whisper tiny.en (pretrained on 680k hours of real speech, frozen; dystream_ros.model.speech_encoder).
AUDIO_FRONTENDS = ('logmel', 'whisper_stem')
WHISPER_STEM_DIM = 2 * 384  # two 50 Hz tokens of Whisper tiny.en's width per motion frame
WHISPER_STEM_HISTORY = 720  # samples before a frame's 640 that its two tokens read (each token reads 1040)
GUIDANCE_WEIGHTS = ('cfg_self', 'cfg_partner', 'cfg_anchor', 'cfg_all')  # the ModelConfig fields of the CFG weights
TRAINING_FIELDS = ('drop_self', 'drop_partner', 'drop_anchor', 'context_noise')  # change nothing at inference
# Field names of configs written before the robot's own stream was called 'self' everywhere (the shipped weights).
RENAMED_FIELDS = {'cfg_audio': 'cfg_self', 'drop_audio': 'drop_self'}


@dataclass(frozen=True)
class ModelConfig:
    """Architecture and default inference settings of a DyStream model.

    Fields above ``steps`` define the weights (a checkpoint fixes them); ``steps`` and the ``cfg_*`` weights are
    inference defaults that a caller may override with :meth:`replace`; ``drop_*`` and ``context_noise`` are training
    settings (:data:`TRAINING_FIELDS`).
    """

    name: str = 'tiny'
    # --- motion ---
    motion_dim: int = 58  # ours: 52 ARKit blendshapes + head rotation (pitch/yaw/roll, rad) + translation (xyz, m)
    motion_names: tuple[str, ...] = ()  # one name per motion dimension, from the training data; () = unnamed
    # --- audio front-end (both streams) ---
    sample_rate_hz: int = SAMPLE_RATE_HZ  # mono PCM rate of both audio streams
    fps: int = FPS  # motion frames per second; one frame = 40 ms = 640 samples
    hop_ms: int = 10  # log-mel hop; a motion frame is 4 hops
    win_ms: int = 25  # log-mel analysis window (400 samples, Hann); also the DFT length
    n_mels: int = 40  # mel bands, 0..8 kHz
    lookahead_ms: int = 60  # future audio the encoder may see past the end of a frame (paper: 60 ms); 0 allowed
    audio_frontend: str = 'logmel'  # 'logmel' (n_mels bands, learned from scratch) or 'whisper_stem' (pretrained)
    # --- causal audio encoder (one per stream, 25 Hz, dilated causal convolutions) ---
    audio_dim: int = 64  # encoder width
    audio_kernel: int = 3  # causal conv kernel, in 25 Hz frames
    audio_dilations: tuple[int, ...] = (1, 2, 4, 8)  # one conv block per entry; receptive field 1 + 2*15 = 31 frames
    # --- autoregressive transformer ---
    n_embd: int = 128  # transformer width
    n_layer: int = 4
    n_head: int = 4  # head size n_embd / n_head must be even (RoPE rotates pairs)
    context_frames: int = 94  # attention window in frames (paper code: cbh_window_length 96 - 2 = 94, 3.76 s)
    dropout: float = 0.1  # attention and residual dropout (paper code: 0.1 everywhere); training only
    rope_base: float = 10000.0  # RoPE frequency base
    # --- flow-matching head (AdaLN MLP blocks) ---
    head_width: int = 128
    head_layers: int = 3  # AdaLN blocks, each a time-modulated and a condition-modulated MLP (paper: 6)
    head_mlp_ratio: int = 4  # hidden = head_mlp_ratio * head_width (paper: 4)
    time_freq_dim: int = 256  # sinusoidal features of the flow time t = 1000 sigma
    # --- inference defaults ---
    steps: int = 5  # Euler steps of the flow sampler (paper code default: 5)
    sigma_min: float = 0.001  # last non-zero noise level of the sampler (paper code: timestep 1 of 1000)
    cfg_self: float = 0.5  # guidance weight of the self-audio-only branch (paper code: cfg_audio)
    cfg_partner: float = 0.5  # guidance weight of the partner-audio-only branch (paper code: cfg_audio_other)
    cfg_anchor: float = 0.0  # guidance weight of the anchor-only branch; 0 skips the branch exactly
    cfg_all: float = 1.0  # guidance weight of the fully conditioned branch
    # --- conditioning dropout (training), so the unconditional CFG branches are meaningful ---
    drop_self: float = 0.1  # per frame, on the projected self audio
    drop_partner: float = 0.1  # per frame, on the projected partner audio
    drop_anchor: float = 0.1  # per sample, on the embedded anchor
    # --- context noise (training): the paper's corruption leaves the last context frames clean, so a model learns to
    # continue its last frame and, on audio unlike its training voices, keeps a shut mouth shut. This adds noise of a
    # per-window level drawn from [0, context_noise) (normalised units) to every context frame, the last included.
    context_noise: float = 0.0
    # --- the anchor in training: 'window_end' is one of the window's last 10 frames (paper code), which shows the
    # model the frames it predicts; 'rest' is the speaker's rest pose, which does not (see DyStream.default_anchor)
    anchor: str = 'window_end'

    def __post_init__(self) -> None:
        """Check the invariants the modules rely on; raise ConfigError naming the field."""
        problems = []
        if self.motion_dim < 1:
            problems.append(f'motion_dim must be >= 1, got {self.motion_dim}')
        if self.motion_names and len(self.motion_names) != self.motion_dim:
            problems.append(f'motion_names has {len(self.motion_names)} names for motion_dim {self.motion_dim}')
        if self.sample_rate_hz % self.fps:
            problems.append(f'sample_rate_hz {self.sample_rate_hz} is not a multiple of fps {self.fps}')
        if (self.sample_rate_hz * self.hop_ms) % 1000 or (self.sample_rate_hz * self.win_ms) % 1000:
            problems.append(f'hop_ms {self.hop_ms} and win_ms {self.win_ms} must be whole numbers of samples')
        elif self.samples_per_frame % self.hop_samples:
            problems.append(f'a frame ({self.samples_per_frame} samples) is not a whole number of hops '
                            f'({self.hop_samples} samples)')
        if self.win_ms < self.hop_ms:
            problems.append(f'win_ms {self.win_ms} must be >= hop_ms {self.hop_ms}')
        if self.lookahead_ms < 0 or self.lookahead_ms % self.hop_ms:
            problems.append(f'lookahead_ms must be a non-negative multiple of hop_ms {self.hop_ms}, '
                            f'got {self.lookahead_ms}')
        if not self.audio_dilations or min(self.audio_dilations) < 1 or self.audio_kernel < 1:
            problems.append('audio_dilations must be non-empty positive integers and audio_kernel >= 1')
        if self.n_embd % self.n_head or (self.n_embd // self.n_head) % 2:
            problems.append(f'n_embd {self.n_embd} / n_head {self.n_head} must be an even integer head size')
        if self.context_frames < 1:
            problems.append(f'context_frames must be >= 1, got {self.context_frames}')
        if self.steps < 1:
            problems.append(f'steps must be >= 1, got {self.steps}')
        if not 0.0 < self.sigma_min < 1.0:
            problems.append(f'sigma_min must be in (0, 1), got {self.sigma_min}')
        for field in ('dropout', 'drop_self', 'drop_partner', 'drop_anchor'):
            if not 0.0 <= getattr(self, field) < 1.0:
                problems.append(f'{field} must be in [0, 1), got {getattr(self, field)}')
        if self.context_noise < 0.0:
            problems.append(f'context_noise must be >= 0, got {self.context_noise}')
        if self.audio_frontend not in AUDIO_FRONTENDS:
            problems.append(f'audio_frontend must be one of {AUDIO_FRONTENDS}, got {self.audio_frontend!r}')
        if self.anchor not in ANCHORS:
            problems.append(f'anchor must be one of {ANCHORS}, got {self.anchor!r}')
        if problems:
            msg = f'invalid ModelConfig {self.name!r}: ' + '; '.join(problems)
            raise ConfigError(msg)

    # --- derived sizes, converted once ---
    @property
    def samples_per_frame(self) -> int:
        """Audio samples per motion frame (640 at 16 kHz, 25 fps)."""
        return self.sample_rate_hz // self.fps

    @property
    def hop_samples(self) -> int:
        """Log-mel hop in samples (160)."""
        return self.sample_rate_hz * self.hop_ms // 1000

    @property
    def win_samples(self) -> int:
        """Log-mel window in samples (400)."""
        return self.sample_rate_hz * self.win_ms // 1000

    @property
    def hops_per_frame(self) -> int:
        """Log-mel hops per motion frame (4)."""
        return self.samples_per_frame // self.hop_samples

    @property
    def history_samples(self) -> int:
        """Audio before a frame's 640 samples that its encoder frame reads: the first log-mel window's part before
        the frame (400 - 160 = 240 samples), or what Whisper's stem reads before it (720 samples)."""
        if self.audio_frontend == 'whisper_stem':
            return WHISPER_STEM_HISTORY
        return self.win_samples - self.hop_samples

    @property
    def frontend_dim(self) -> int:
        """Values per motion frame that the front-end gives the encoder: 4 hops of log-mel, or two Whisper tokens."""
        if self.audio_frontend == 'whisper_stem':
            return WHISPER_STEM_DIM
        return self.hops_per_frame * self.n_mels

    @property
    def lookahead_samples(self) -> int:
        """Future audio, in samples, that frame t waits for past its end (960 for 60 ms)."""
        return self.sample_rate_hz * self.lookahead_ms // 1000

    @property
    def pre_frames(self) -> int:
        """Encoder frames that precede motion frame 0: ceil(lookahead / frame)."""
        return math.ceil(self.lookahead_samples / self.samples_per_frame)

    @property
    def encoder_offset_samples(self) -> int:
        """Start of encoder frame 0 in stream samples, in (-640, 0].

        Encoder frame u covers ``[offset + 640 u, offset + 640 (u + 1))`` and gives the feature of motion frame
        ``u - pre_frames``, whose last sample is then ``640 (t + 1) + lookahead_samples``: the lookahead is a delay.
        """
        return self.lookahead_samples - self.pre_frames * self.samples_per_frame

    @property
    def encoder_window_samples(self) -> int:
        """Raw samples one encoder step reads: history + one frame (880)."""
        return self.history_samples + self.samples_per_frame

    @property
    def receptive_field_frames(self) -> int:
        """Encoder frames an encoder output depends on, itself included."""
        return 1 + (self.audio_kernel - 1) * sum(self.audio_dilations)

    @property
    def encoder_state_frames(self) -> int:
        """Frames of conv input the streaming encoder keeps, summed over its blocks."""
        return (self.audio_kernel - 1) * sum(self.audio_dilations)

    @property
    def head_size(self) -> int:
        """Attention head size."""
        return self.n_embd // self.n_head

    # --- construction and (de)serialisation ---
    def replace(self, **changes: Any) -> ModelConfig:
        """Return a copy with ``changes`` applied (and validated)."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            msg = f'unknown ModelConfig fields: {sorted(unknown)}'
            raise ConfigError(msg)
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Return the config as JSON-ready values (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ModelConfig:
        """Build a config from :meth:`to_dict` output (old field names too); raise ConfigError on unknown or mistyped
        fields."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        values = {RENAMED_FIELDS.get(k, k): v for k, v in values.items()}
        unknown = set(values) - set(fields)
        if unknown:
            msg = f'unknown ModelConfig fields: {sorted(unknown)}'
            raise ConfigError(msg)
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
        try:
            return cls(**kwargs)
        except TypeError as exc:
            msg = f'malformed ModelConfig: {exc}'
            raise ConfigError(msg) from None

    @classmethod
    def preset(cls, name: str) -> ModelConfig:
        """Return the named size: ``tiny``, ``base`` or ``official``."""
        if name not in PRESETS:
            msg = f'unknown model config {name!r}; choose one of {sorted(PRESETS)}'
            raise ConfigError(msg)
        return PRESETS[name]


PRESETS: dict[str, ModelConfig] = {
    # Real time on one CPU core (the shipped default).
    'tiny': ModelConfig(),
    # A Jetson-class GPU.
    'base': ModelConfig(
        name='base', n_mels=80, audio_dim=256, audio_dilations=(1, 2, 4, 8, 1, 2, 4, 8),
        n_embd=384, n_layer=8, n_head=6, head_width=384, head_layers=4,
    ),
    # The published size: 768 wide, 12 layers, 12 heads, a 6-block head of width 768 (paper code OFF-M:341-392).
    # The published audio encoders are two 8-layer wav2vec2 copies, which cannot be downloaded here; this size
    # uses a wider causal conv encoder instead.
    'official': ModelConfig(
        name='official', n_mels=80, audio_dim=512, audio_dilations=(1, 2, 4, 8, 16, 1, 2, 4, 8, 16),
        n_embd=768, n_layer=12, n_head=12, head_width=768, head_layers=6,
    ),
}
