"""StreamingGenerator: DyStream stepped one motion frame at a time over the audio the engine reads for it.

Timing (16 kHz, 25 fps, ``L`` = lookahead, 960 samples for 60 ms): frame ``t`` covers samples ``[640 t, 640 (t + 1))``
of the engine clock and is computed from the audio up to ``640 (t + 1) + L``. The encoder of each voice runs one
40 ms encoder frame per motion frame (a few more at the first frame after a reset, whose encoder frames precede
it), so ``step`` reads 880 samples per voice: the encoder window of the newest encoder frame. Audio before the frame
the stream started at (``reset(first_frame)``) is silence to the model, so a stream restarted mid-conversation
computes exactly what a fresh one would. Stepping whole clips equals the offline :meth:`DyStream.generate` for
the same seed.

The generator owns its state (:class:`GeneratorState`: encoder states, the transformer KV cache, the previous
frame, a seeded ``torch.Generator`` for the sampler noise) and a backend that runs the three compute steps: the
encoder step (one 40 ms frame of one voice), the start-of-stream prefix cache, and the per-frame generator step.
``backend='torch'`` runs :class:`~dystream_ros.model.dystream.DyStream`; ``backend='onnx'`` runs exported graphs in
ONNX Runtime (:mod:`dystream_ros.runtime.onnx_backend`). It is not thread-safe: the engine serialises its calls.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch

from dystream_ros.errors import ConfigError, StreamError
from dystream_ros.model.checkpoint import load_default_model, load_model
from dystream_ros.model.dystream import DyStream, frame_position
from dystream_ros.model.sampler import Guidance, sigma_schedule
from dystream_ros.model.transformer import KVCache, cache_slot, rope_at
from dystream_ros.runtime.frames import MotionFrame, check_clip, check_step_audio, stream_clip
from dystream_ros.runtime.onnx_backend import OnnxBackend
from dystream_ros.units import SAMPLES_PER_FRAME, STREAMS

SHED_STEPS = 2  # Euler steps while the engine sheds work (the torch backend; ONNX graphs have their steps built in)

if TYPE_CHECKING:
    from dystream_ros.model.config import ModelConfig


class Backend(Protocol):
    """The compute steps the streaming logic needs; features and caches are opaque to it."""

    name: str
    providers: list[str]
    light: bool  # sample with SHED_STEPS Euler steps (only where the backend can)

    def encoder_start(self, stream: str) -> Any: ...  # noqa: D102 (documented on TorchBackend)
    def encode(self, stream: str, window: np.ndarray, state: Any) -> tuple[Any, Any]: ...  # noqa: D102
    def prefix(self, anchor: np.ndarray) -> Any: ...  # noqa: D102
    def step(self, prev: np.ndarray, feat_self: Any, feat_partner: Any, anchor: np.ndarray,  # noqa: D102
             noise: np.ndarray, cache: Any, position: int) -> tuple[np.ndarray, Any]: ...


class TorchBackend:
    """Runs a DyStream module in eval mode under ``torch.inference_mode``."""

    name = 'torch'

    def __init__(self, model: DyStream, guidance: Guidance, steps: int) -> None:
        self.model = model.eval()
        self.device = model.motion_mean.device
        self.providers = [f'torch:{self.device.type}']
        self.masks = guidance.mask_tensor(self.device)
        self.coefficients = guidance.coefficient_tensor(self.device)
        self.encoders = {'self': model.self_encoder, 'partner': model.partner_encoder}
        with torch.inference_mode():
            self.silence = {name: enc.silence() for name, enc in self.encoders.items()}  # (state, feature)
            # The time modulations depend only on the fixed sigmas: computed once per schedule, not per frame.
            self.schedules = {light: self._schedule(min(steps, SHED_STEPS) if light else steps)
                              for light in (False, True)}
        self.light = False  # sample with fewer Euler steps (the engine sheds work when it falls behind)
        self._prefix: tuple[bytes, KVCache] | None = None

    def _schedule(self, steps: int) -> tuple[list[float], list]:
        """Noise levels of ``steps`` Euler steps and the head's time modulation at each."""
        sigmas = sigma_schedule(steps, self.model.config.sigma_min)
        return sigmas, [self.model.head.time_modulation(torch.full((1,), s, device=self.device)) for s in sigmas[:-1]]

    def encoder_start(self, stream: str) -> torch.Tensor:
        """Encoder state after endless silence."""
        return self.silence[stream][0]

    def encode(self, stream: str, window: np.ndarray, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One encoder frame: window (880,) float32 -> feature (1, audio_dim), next state."""
        with torch.inference_mode():
            return self.encoders[stream].step(torch.from_numpy(window)[None].to(self.device), state)

    def prefix(self, anchor: np.ndarray) -> KVCache:
        """KV cache of the start tokens (anchor motion, silent audio): a fresh copy, since ``step`` writes into it."""
        key = anchor.tobytes()
        with torch.inference_mode():
            if self._prefix is None or self._prefix[0] != key:  # depends only on the anchor: computed once
                self._prefix = (key, self.model.prefix_cache(self._tensor(anchor), self.silence['self'][1],
                                                             self.silence['partner'][1], self.masks))
            return [(k.clone(), v.clone()) for k, v in self._prefix[1]]

    def step(self, prev: np.ndarray, feat_self: torch.Tensor, feat_partner: torch.Tensor, anchor: np.ndarray,
             noise: np.ndarray, cache: KVCache, position: int) -> tuple[np.ndarray, KVCache]:
        """Generate one frame: raw motion (motion_dim,) float32 and the cache (written in place); ``position`` of
        its token."""
        config = self.model.config
        with torch.inference_mode():
            rope = tuple(r.to(self.device) for r in rope_at(position, config))
            motion = self.model.step(self._tensor(prev), feat_self, feat_partner, self._tensor(anchor),
                                     self._tensor(noise), self.masks, self.coefficients, cache, rope,
                                     cache_slot(position, config).to(self.device), *self.schedules[self.light])
        return motion[0].cpu().numpy(), cache

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).reshape(1, -1).to(self.device)


@dataclass
class GeneratorState:
    """Everything that crosses a frame boundary; rebuilt by ``reset``."""

    first_frame: int  # the frame the stream (re)started at: audio before it is silence to the model
    next_frame: int  # the frame ``step`` computes next
    encoder_states: dict[str, Any]  # per voice, the encoder's past conv inputs (backend-specific)
    cache: Any  # transformer KV cache, backend-specific
    prev_motion: np.ndarray  # raw motion of the last frame (the anchor before the first)
    noise: torch.Generator  # sampler noise, one (1, motion_dim) draw per frame


class StreamingGenerator:
    """Live DyStream: one motion frame per ``step``, from the audio of both voices up to its lookahead.

    Args:
        model: a :class:`DyStream`, a checkpoint path, or None for the shipped default weights.
        backend: ``'torch'`` or ``'onnx'`` (exports the model on first use, see ``onnx_dir``).
        anchor: the avatar's reference / neutral motion (motion_dim,) in raw units; the model's
            default_anchor() if None.
        seed: seed of the sampler noise; the same seed and audio give the same frames.
        steps: Euler steps (default: the model config's, 5).
        cfg_self, cfg_partner, cfg_anchor, cfg_all: guidance weights (default: those stored with the weights).
        device: torch device of the torch backend.
        onnx_dir: folder of an ONNX export (written there if absent or stale); default a cache folder below
            ``$DYSTREAM_CACHE`` or ``~/.cache/dystream_ros``.
        num_threads: ONNX Runtime intra-op threads (0 lets it choose); the torch backend uses torch's setting.
    """

    motion_space = 'face'  # face/motion.py's blendshapes and head pose

    def __init__(self, model: DyStream | str | os.PathLike[str] | None = None, *, backend: str = 'torch',
                 anchor: np.ndarray | None = None, seed: int = 0, steps: int | None = None,
                 cfg_self: float | None = None, cfg_partner: float | None = None, cfg_anchor: float | None = None,
                 cfg_all: float | None = None, device: str | torch.device = 'cpu',
                 onnx_dir: str | os.PathLike[str] | None = None, num_threads: int = 0) -> None:
        if model is None:
            model = load_default_model(device)
        elif not isinstance(model, DyStream):
            model = load_model(model, device)
        overrides = {k: v for k, v in (('steps', steps), ('cfg_self', cfg_self), ('cfg_partner', cfg_partner),
                                       ('cfg_anchor', cfg_anchor), ('cfg_all', cfg_all)) if v is not None}
        self.config: ModelConfig = model.config.replace(**overrides)
        if self.config.samples_per_frame != SAMPLES_PER_FRAME:
            msg = (f'the model runs at {self.config.sample_rate_hz} Hz and {self.config.fps} fps; the engine clock is '
                   f'{SAMPLES_PER_FRAME} samples per frame')
            raise ConfigError(msg)
        self.guidance = Guidance.from_config(self.config)
        self.seed = seed
        self.default_anchor = model.default_anchor().detach().cpu().numpy().astype(np.float32)
        self.backend: Backend
        if backend == 'torch':
            self.backend = TorchBackend(model, self.guidance, self.config.steps)
        elif backend == 'onnx':
            self.backend = OnnxBackend.for_model(model, self.guidance, self.config.steps, onnx_dir, num_threads)
        else:
            msg = f"backend must be 'torch' or 'onnx', got {backend!r}"
            raise ConfigError(msg)
        self._anchor = self._check_anchor(anchor)
        self.state = self._new_state(0)
        self.stage_ms: dict[str, float] = {}  # where the last step spent its time (see step)

    # --- what the engine reads ---
    @property
    def motion_names(self) -> tuple[str, ...]:
        """Names of the motion dimensions (from the training data; empty if the checkpoint has none)."""
        return self.config.motion_names

    @property
    def motion_dim(self) -> int:
        """Motion dimensions per frame (58)."""
        return self.config.motion_dim

    @property
    def lookahead_ms(self) -> int:
        """Audio past a frame's end that it waits for (60 ms)."""
        return self.config.lookahead_ms

    @property
    def providers(self) -> list[str]:
        """What runs the model: ``['torch:cpu']`` or the ONNX Runtime execution providers in use."""
        return list(self.backend.providers)

    def shed(self, light: bool) -> bool:
        """Sample with fewer Euler steps (``SHED_STEPS``) while ``light``; return whether this backend can (the ONNX
        graphs have their steps built in)."""
        self.backend.light = light and self.backend.name == 'torch'
        return self.backend.light

    # --- streaming ---
    def reset(self, first_frame: int = 0, *, anchor: np.ndarray | None = None, seed: int | None = None) -> None:
        """Start a new stream at ``first_frame``: start-of-stream cache and encoder states; optionally a new
        anchor or seed."""
        if anchor is not None:
            self._anchor = self._check_anchor(anchor)
        if seed is not None:
            self.seed = seed
        self.state = self._new_state(first_frame)

    def input_start(self, frame: int) -> int:
        """First sample ``step(frame)`` reads: the encoder window of the first encoder frame not yet run."""
        cfg, state = self.config, self.state
        first_encoder_frame = 0 if frame == state.first_frame else frame - state.first_frame + cfg.pre_frames
        return ((state.first_frame + first_encoder_frame) * SAMPLES_PER_FRAME + cfg.encoder_offset_samples
                - cfg.history_samples)

    def step(self, frame: int, self_audio: np.ndarray, partner_audio: np.ndarray) -> MotionFrame:
        """Generate ``frame`` from each voice's samples ``[input_start(frame), frame end + lookahead)``.

        Frames are consecutive from the last reset. ``stage_ms`` then says where the time went: the audio
        encoders, and the transformer with the flow head (one ONNX graph, so timed together).
        """
        state, cfg = self.state, self.config
        if frame != state.next_frame:
            msg = (f'step({frame}) out of order: the stream started at frame {state.first_frame} is at '
                   f'{state.next_frame}')
            raise StreamError(msg)
        started = time.perf_counter()
        silent_until = state.first_frame * SAMPLES_PER_FRAME - self.input_start(frame)
        features = {}
        for name, audio in zip(STREAMS, (self_audio, partner_audio)):
            check_step_audio(self, frame, audio, name)
            if silent_until > 0:  # before the stream started
                audio = np.concatenate([np.zeros(silent_until, np.float32), audio[silent_until:]])
            features[name] = self._encode(name, audio)
        encoded = time.perf_counter()
        noise = torch.randn(1, cfg.motion_dim, generator=state.noise).numpy()
        motion, state.cache = self.backend.step(state.prev_motion, features['self'], features['partner'],
                                                self._anchor, noise, state.cache,
                                                frame_position(cfg, frame - state.first_frame))
        state.prev_motion = motion
        state.next_frame += 1
        self.stage_ms = {'encoder': (encoded - started) * 1e3,
                         'transformer_and_head': (time.perf_counter() - encoded) * 1e3}
        return MotionFrame(frame, motion)

    def generate(self, self_audio: np.ndarray, partner_audio: np.ndarray | None = None) -> np.ndarray:
        """Offline: the frames of whole clips, (T, motion_dim) raw, T = frames final given the clip length.

        Uses a fresh noise generator seeded with ``seed`` and leaves the streaming state untouched; equals
        stepping the same audio after ``reset()``.
        """
        if isinstance(self.backend, TorchBackend):
            # A separate code path: the encoders run over the whole clip at once (AudioEncoder.forward).
            self_audio = check_clip(self_audio, 'self')
            partner_audio = (np.zeros_like(self_audio) if partner_audio is None
                             else check_clip(partner_audio, 'partner'))
            generator = torch.Generator().manual_seed(self.seed)
            out = self.backend.model.generate(torch.from_numpy(self_audio), torch.from_numpy(partner_audio),
                                              torch.from_numpy(self._anchor), generator, self.guidance,
                                              self.config.steps)
            return out.cpu().numpy()
        saved = self.state
        try:
            frames = [frame.motion for frame in stream_clip(self, self_audio, partner_audio)]
        finally:
            self.state = saved
        return np.stack(frames) if frames else np.zeros((0, self.motion_dim), np.float32)

    # --- internals ---
    def _new_state(self, first_frame: int) -> GeneratorState:
        return GeneratorState(first_frame, first_frame, {name: self.backend.encoder_start(name) for name in STREAMS},
                              self.backend.prefix(self._anchor), self._anchor.copy(),
                              torch.Generator().manual_seed(self.seed))

    def _encode(self, name: str, audio: np.ndarray) -> Any:
        """Run the encoder frames whose windows tile ``audio`` (one hop apart); the feature of the last."""
        window = self.config.encoder_window_samples
        feature = None
        for offset in range(0, len(audio) - window + 1, SAMPLES_PER_FRAME):
            feature, self.state.encoder_states[name] = self.backend.encode(
                name, audio[offset:offset + window], self.state.encoder_states[name])
        return feature

    def _check_anchor(self, anchor: np.ndarray | None) -> np.ndarray:
        if anchor is None:
            return self.default_anchor.copy()
        anchor = np.asarray(anchor, dtype=np.float32).reshape(-1)
        if anchor.shape != (self.motion_dim,) or not np.all(np.isfinite(anchor)):
            msg = f'anchor must be {self.motion_dim} finite values, got shape {anchor.shape}'
            raise ConfigError(msg)
        return anchor
