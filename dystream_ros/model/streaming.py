"""StreamingGenerator: push audio chunks of any size on two streams, pull motion frames as soon as they are final.

Timing contract (16 kHz, 25 fps, ``L`` = lookahead in samples, 960 for 60 ms): frame ``t`` covers the audio samples
``[640 t, 640 (t + 1))`` counted from the last :meth:`StreamingGenerator.reset`, and becomes final, i.e. returned
by :meth:`StreamingGenerator.pull`, once both streams hold ``640 (t + 1) + L`` samples. Results do not depend on how
the audio was chunked, and equal the offline :meth:`StreamingGenerator.generate` for the same seed.

The generator owns its state (:class:`GeneratorState`: per-stream audio buffers and encoder states, the
transformer KV cache, the previous frame, a seeded ``torch.Generator`` for the sampler noise) and a backend that
runs the three compute steps: the encoder step (one 40 ms frame per stream), the start-of-stream prefix cache, and
the per-frame generator step. ``backend='torch'`` runs :class:`~dystream_ros.model.dystream.DyStream`;
``backend='onnx'`` runs exported graphs in ONNX Runtime (:mod:`dystream_ros.model.onnx_export`). It is not
thread-safe: callers serialise push, pull and reset (the node does so in one callback group).
"""
from __future__ import annotations

import os
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch

from dystream_ros.errors import ConfigError, StreamError
from dystream_ros.model.checkpoint import load_default_model, load_model
from dystream_ros.model.dystream import DyStream, frame_position
from dystream_ros.model.sampler import Guidance, sigma_schedule
from dystream_ros.model.transformer import rope_at

if TYPE_CHECKING:
    from dystream_ros.model.config import ModelConfig

STREAMS = ('self', 'partner')


@dataclass(frozen=True)
class MotionFrame:
    """One generated frame.

    ``motion`` is raw motion (motion_dim,) float32 in the order of ``StreamingGenerator.motion_names``; ``index``
    counts frames since reset (25 per second); the frame covers audio samples ``[start_sample, start_sample + 640)``
    of each stream since reset, and became final when ``ready_sample`` samples had arrived.
    """

    index: int
    motion: np.ndarray
    start_sample: int
    ready_sample: int
    sample_rate_hz: int = 16000

    @property
    def start_time_s(self) -> float:
        """Audio time of the frame's first sample, seconds since reset."""
        return self.start_sample / self.sample_rate_hz


class Backend(Protocol):
    """The compute steps the streaming logic needs; features and caches are opaque to it."""

    name: str
    providers: list[str]

    def encoder_start(self, stream: str) -> Any: ...  # noqa: D102 (documented on TorchBackend)
    def encode(self, stream: str, window: np.ndarray, state: Any) -> tuple[Any, Any]: ...  # noqa: D102
    def prefix(self, anchor: np.ndarray) -> Any: ...  # noqa: D102
    def step(self, prev: np.ndarray, feat_self: Any, feat_partner: Any, anchor: np.ndarray, noise: np.ndarray,
             cache: Any, position: int) -> tuple[np.ndarray, Any]: ...  # noqa: D102


class TorchBackend:
    """Runs a DyStream module in eval mode under ``torch.inference_mode``."""

    name = 'torch'

    def __init__(self, model: DyStream, guidance: Guidance, steps: int) -> None:
        self.model = model.eval()
        self.device = model.motion_mean.device
        self.providers = [f'torch:{self.device.type}']
        self.masks = guidance.mask_tensor(self.device)
        self.coefficients = guidance.coefficient_tensor(self.device)
        self.sigmas = sigma_schedule(steps, model.config.sigma_min)
        self.encoders = {'self': model.audio_encoder, 'partner': model.partner_encoder}
        with torch.inference_mode():
            self.silence = {name: enc.silence() for name, enc in self.encoders.items()}  # (state, feature)
            # The time modulations depend only on the fixed sigmas: computed once, not per frame.
            self.time_mods = [model.head.time_modulation(torch.full((1,), s, device=self.device))
                              for s in self.sigmas[:-1]]

    def encoder_start(self, stream: str) -> torch.Tensor:
        """Encoder state after endless silence."""
        return self.silence[stream][0]

    def encode(self, stream: str, window: np.ndarray, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One encoder frame: window (880,) float32 -> feature (1, audio_dim), next state."""
        with torch.inference_mode():
            return self.encoders[stream].step(torch.from_numpy(window)[None].to(self.device), state)

    def prefix(self, anchor: np.ndarray) -> Any:
        """KV cache of the start tokens (anchor motion, silent audio)."""
        with torch.inference_mode():
            return self.model.prefix_cache(self._tensor(anchor), self.silence['self'][1],
                                           self.silence['partner'][1], self.masks)

    def step(self, prev: np.ndarray, feat_self: torch.Tensor, feat_partner: torch.Tensor, anchor: np.ndarray,
             noise: np.ndarray, cache: Any, position: int) -> tuple[np.ndarray, Any]:
        """Generate one frame: raw motion (motion_dim,) float32 and the next cache; ``position`` of its token."""
        with torch.inference_mode():
            rope = tuple(r.to(self.device) for r in rope_at(position, self.model.config))
            motion, cache = self.model.step(self._tensor(prev), feat_self, feat_partner, self._tensor(anchor),
                                            self._tensor(noise), self.masks, self.coefficients, cache, rope,
                                            self.sigmas, self.time_mods)
        return motion[0].cpu().numpy(), cache

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).reshape(1, -1).to(self.device)


@dataclass
class StreamState:
    """What one audio stream carries across chunks."""

    pending: np.ndarray  # samples not yet consumed, starting history_samples before the next encoder frame
    encoder_state: Any  # backend-specific encoder state (conv inputs)
    encoder_frames: int = 0  # encoder frames processed since reset
    received: int = 0  # samples pushed since reset
    features: deque[Any] = field(default_factory=deque)  # features of motion frames not generated yet


@dataclass
class GeneratorState:
    """Everything that crosses a chunk boundary; rebuilt by ``reset``."""

    streams: dict[str, StreamState]
    cache: Any  # transformer KV cache, backend-specific
    prev_motion: np.ndarray  # raw motion of the last frame (the anchor before frame 0)
    anchor: np.ndarray  # raw anchor motion (motion_dim,)
    noise: torch.Generator  # sampler noise, one (1, motion_dim) draw per frame
    frame_index: int = 0  # next frame to generate


class StreamingGenerator:
    """Live DyStream: audio chunks in, motion frames out.

    Args:
        model: a :class:`DyStream`, a checkpoint path, or None for the shipped default weights.
        backend: ``'torch'`` or ``'onnx'`` (exports the model on first use, see ``onnx_dir``).
        anchor: the avatar's reference / neutral motion (motion_dim,) in raw units; the model's
            default_anchor() if None.
        seed: seed of the sampler noise; the same seed and audio give the same frames.
        steps: Euler steps (default: the model config's, 5).
        cfg_audio, cfg_partner, cfg_anchor, cfg_all: guidance weights (default: those stored with the weights).
        use_partner: False when there is no partner microphone; the partner stream is then silence and only
            ``push_self`` is called.
        device: torch device of the torch backend.
        onnx_dir: folder of an ONNX export (written there if absent or stale); default a cache folder below
            ``$DYSTREAM_CACHE`` or ``~/.cache/dystream_ros``.
        num_threads: ONNX Runtime intra-op threads (0 lets it choose); the torch backend uses torch's setting.
        max_backlog_frames: how far one stream may run ahead of the other before ``pull`` raises StreamError.
    """

    def __init__(self, model: DyStream | str | os.PathLike[str] | None = None, *, backend: str = 'torch',
                 anchor: np.ndarray | None = None, seed: int = 0, steps: int | None = None,
                 cfg_audio: float | None = None, cfg_partner: float | None = None, cfg_anchor: float | None = None,
                 cfg_all: float | None = None, use_partner: bool = True, device: str | torch.device = 'cpu',
                 onnx_dir: str | os.PathLike[str] | None = None, num_threads: int = 0,
                 max_backlog_frames: int = 250) -> None:
        if model is None:
            model = load_default_model(device)
        elif not isinstance(model, DyStream):
            model = load_model(model, device)
        overrides = {k: v for k, v in (('steps', steps), ('cfg_audio', cfg_audio), ('cfg_partner', cfg_partner),
                                       ('cfg_anchor', cfg_anchor), ('cfg_all', cfg_all)) if v is not None}
        self.config: ModelConfig = model.config.replace(**overrides)
        cfg = self.config
        self.guidance = Guidance.from_weights(cfg.cfg_audio, cfg.cfg_partner, cfg.cfg_anchor, cfg.cfg_all)
        self.seed = seed
        self.use_partner = use_partner
        self.max_backlog_frames = max_backlog_frames
        self.default_anchor = model.default_anchor().detach().cpu().numpy().astype(np.float32)
        self.backend: Backend
        if backend == 'torch':
            self.backend = TorchBackend(model, self.guidance, cfg.steps)
        elif backend == 'onnx':
            from dystream_ros.model.onnx_export import OnnxBackend  # onnxruntime only when asked for

            self.backend = OnnxBackend.for_model(model, self.guidance, cfg.steps, onnx_dir, num_threads)
        else:
            msg = f"backend must be 'torch' or 'onnx', got {backend!r}"
            raise ConfigError(msg)
        self._anchor = self._check_anchor(anchor)
        self._prefix_cache: tuple[bytes, Any] | None = None
        self.state = self._new_state(self._anchor, seed)
        self.stage_ms: dict[str, float] = {}  # where the last pull spent its time (see pull)

    # --- public properties ---
    @property
    def motion_names(self) -> tuple[str, ...]:
        """Names of the motion dimensions (from the training data; empty if the checkpoint has none)."""
        return self.config.motion_names

    @property
    def motion_dim(self) -> int:
        return self.config.motion_dim

    @property
    def samples_per_frame(self) -> int:
        """640 at 16 kHz, 25 fps."""
        return self.config.samples_per_frame

    @property
    def lookahead_samples(self) -> int:
        """Samples past a frame's end that must arrive before it is final (960 for 60 ms)."""
        return self.config.lookahead_samples

    @property
    def providers(self) -> list[str]:
        """What runs the model: ``['torch:cpu']`` or the ONNX Runtime execution providers in use."""
        return list(self.backend.providers)

    @property
    def frames_emitted(self) -> int:
        """Frames returned since reset."""
        return self.state.frame_index

    # --- streaming ---
    def reset(self, anchor: np.ndarray | None = None, seed: int | None = None) -> None:
        """Start a new stream: empty buffers, start-of-stream cache, frame 0 next; optionally a new anchor/seed."""
        if anchor is not None:
            self._anchor = self._check_anchor(anchor)
        if seed is not None:
            self.seed = seed
        self.state = self._new_state(self._anchor, self.seed)

    def push_self(self, samples: np.ndarray) -> None:
        """Append 16 kHz mono float samples in [-1, 1] of the face's own voice (any length, 1-D)."""
        self._push('self', samples)

    def push_partner(self, samples: np.ndarray) -> None:
        """Append 16 kHz mono float samples in [-1, 1] of the partner's voice (any length, 1-D)."""
        if not self.use_partner:
            msg = 'push_partner called on a generator built with use_partner=False'
            raise StreamError(msg)
        self._push('partner', samples)

    def pull(self) -> list[MotionFrame]:
        """Generate and return every frame that is final with the audio pushed so far, oldest first.

        ``stage_ms`` then says where this call's time went: the audio encoders, and the transformer with the flow
        head (one ONNX graph, so timed together).
        """
        streams = self.state.streams
        self.stage_ms = {'encoder': 0.0, 'transformer_and_head': 0.0}
        started = time.perf_counter()
        for name in STREAMS:
            self._encode_available(name)
        self.stage_ms['encoder'] = (time.perf_counter() - started) * 1e3
        started = time.perf_counter()
        gap = len(streams['self'].features) - len(streams['partner'].features)
        if abs(gap) > self.max_backlog_frames:
            behind = 'partner' if gap > 0 else 'self'
            msg = (f'the {behind} stream is {abs(gap)} frames behind the other (limit {self.max_backlog_frames}); '
                   f'push its audio (silence if none), or use use_partner=False when there is no partner audio')
            raise StreamError(msg)
        frames = []
        while streams['self'].features and streams['partner'].features:
            frames.append(self._generate_frame(streams['self'].features.popleft(),
                                               streams['partner'].features.popleft()))
        self.stage_ms['transformer_and_head'] = (time.perf_counter() - started) * 1e3
        return frames

    def flush(self) -> list[MotionFrame]:
        """End of input: pad both streams with silence until every frame that covers pushed audio is final."""
        streams = self.state.streams
        received = max(s.received for s in streams.values())
        frames_wanted = -(-received // self.samples_per_frame)  # ceil
        target = frames_wanted * self.samples_per_frame + self.lookahead_samples
        for name in STREAMS:
            missing = target - streams[name].received
            if missing > 0:
                self._push(name, np.zeros(missing, np.float32), internal=True)
        return self.pull()

    def generate(self, self_audio: np.ndarray, partner_audio: np.ndarray | None = None) -> np.ndarray:
        """Offline: the frames of whole clips, (T, motion_dim) raw, T = frames final given the clip length.

        Uses a fresh noise generator seeded with ``seed`` and leaves the streaming state untouched; equals
        streaming the same audio after ``reset()``.
        """
        self_audio = self._check_audio(self_audio, 'self_audio')
        partner_audio = (np.zeros_like(self_audio) if partner_audio is None
                         else self._check_audio(partner_audio, 'partner_audio'))
        if isinstance(self.backend, TorchBackend):
            # A separate code path: the encoders run over the whole clip at once (AudioEncoder.forward).
            generator = torch.Generator().manual_seed(self.seed)
            model = self.backend.model
            out = model.generate(torch.from_numpy(self_audio), torch.from_numpy(partner_audio),
                                 torch.from_numpy(self._anchor), generator, self.guidance, self.config.steps)
            return out.cpu().numpy()
        saved = self.state
        try:
            self.state = self._new_state(self._anchor, self.seed)
            self._push('self', self_audio)
            self._push('partner', partner_audio, internal=True)
            frames = self.pull()
        finally:
            self.state = saved
        return np.stack([f.motion for f in frames]) if frames else np.zeros((0, self.motion_dim), np.float32)

    # --- internals ---
    def _new_state(self, anchor: np.ndarray, seed: int) -> GeneratorState:
        cfg = self.config
        # The first encoder frame starts at encoder_offset_samples (<= 0); it and its mel history are silence.
        lead = np.zeros(cfg.history_samples - cfg.encoder_offset_samples, np.float32)
        streams = {name: StreamState(lead.copy(), self.backend.encoder_start(name)) for name in STREAMS}
        key = anchor.tobytes()
        if self._prefix_cache is None or self._prefix_cache[0] != key:  # depends only on the anchor: reuse it
            self._prefix_cache = (key, self.backend.prefix(anchor))
        return GeneratorState(streams, self._prefix_cache[1], anchor.copy(), anchor,
                              torch.Generator().manual_seed(seed))

    def _check_anchor(self, anchor: np.ndarray | None) -> np.ndarray:
        if anchor is None:
            return self.default_anchor.copy()
        anchor = np.asarray(anchor, dtype=np.float32).reshape(-1)
        if anchor.shape != (self.motion_dim,) or not np.all(np.isfinite(anchor)):
            msg = f'anchor must be {self.motion_dim} finite values, got shape {anchor.shape}'
            raise ConfigError(msg)
        return anchor

    def _check_audio(self, samples: np.ndarray, what: str) -> np.ndarray:
        samples = np.asarray(samples)
        if samples.ndim != 1 or not np.issubdtype(samples.dtype, np.floating):
            msg = (f'{what} must be 1-D float samples at {self.config.sample_rate_hz} Hz in [-1, 1], got '
                   f'{samples.dtype} with shape {samples.shape} (convert int16 PCM with / 32768)')
            raise StreamError(msg)
        if not np.all(np.isfinite(samples)):
            msg = f'{what} contains NaN or infinite samples'
            raise StreamError(msg)
        return samples.astype(np.float32, copy=False)

    def _push(self, name: str, samples: np.ndarray, internal: bool = False) -> None:
        samples = self._check_audio(samples, f'{name} audio')
        stream = self.state.streams[name]
        stream.pending = np.concatenate([stream.pending, samples])
        stream.received += samples.shape[0]
        if name == 'self' and not self.use_partner and not internal:
            partner = self.state.streams['partner']
            partner.pending = np.concatenate([partner.pending, np.zeros_like(samples)])
            partner.received += samples.shape[0]

    def _encode_available(self, name: str) -> None:
        cfg = self.config
        stream = self.state.streams[name]
        window, hop = cfg.encoder_window_samples, cfg.samples_per_frame
        consumed = 0
        while stream.pending.shape[0] - consumed >= window:
            feature, stream.encoder_state = self.backend.encode(
                name, stream.pending[consumed:consumed + window], stream.encoder_state)
            if stream.encoder_frames >= cfg.pre_frames:  # earlier encoder frames precede motion frame 0
                stream.features.append(feature)
            stream.encoder_frames += 1
            consumed += hop
        if consumed:
            stream.pending = stream.pending[consumed:].copy()

    def _generate_frame(self, feat_self: Any, feat_partner: Any) -> MotionFrame:
        state, cfg = self.state, self.config
        noise = torch.randn(1, cfg.motion_dim, generator=state.noise).numpy()
        motion, state.cache = self.backend.step(state.prev_motion, feat_self, feat_partner, state.anchor, noise,
                                                state.cache, frame_position(cfg, state.frame_index))
        state.prev_motion = motion
        index = state.frame_index
        state.frame_index += 1
        start = index * cfg.samples_per_frame
        return MotionFrame(index, motion, start, start + cfg.samples_per_frame + cfg.lookahead_samples,
                           cfg.sample_rate_hz)


def default_onnx_dir() -> Path:
    """Parent folder of cached ONNX exports."""
    root = os.environ.get('DYSTREAM_CACHE') or Path.home() / '.cache' / 'dystream_ros'
    return Path(root) / 'onnx'
