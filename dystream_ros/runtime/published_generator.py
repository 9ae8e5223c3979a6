"""The published DyStream generator behind the engine's Generator interface: one 512-d motion latent per frame.

The published motion is a latent of the published renderer (:mod:`dystream_ros.face.published_renderer`), not the
blendshapes and head pose of :mod:`dystream_ros.face.motion`: its ``motion_space`` is ``'latent'``, so the engine
shows it only through that renderer, and sends no head pose or neck command for it.

Each ``step`` hands the stream (:class:`~dystream_ros.model.published_stream.PublishedStream`) the audio it has not
had yet: at the first frame after a reset, that frame's 40 ms and the lookahead; then 40 ms a frame. The stream
re-encodes its 3.9 s window for every frame (the published encoder is not causal), so a frame costs about the same
from the first one on.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable

import numpy as np
import torch

from dystream_ros.errors import ConfigError, StreamError
from dystream_ros.model.published import Guidance, PublishedGenerator
from dystream_ros.model.published_checkpoint import load_published_generator
from dystream_ros.model.published_stream import GeneratorSteps, PublishedStream, TorchGeneratorSteps
from dystream_ros.runtime.frames import MotionFrame, check_step_audio, lookahead_samples
from dystream_ros.runtime.published_onnx import OnnxGeneratorSteps
from dystream_ros.units import SAMPLES_PER_FRAME, STREAMS

LOOKAHEAD_MS = 60  # the paper's; the published encoder sees it as the end of its window


class PublishedStreamingGenerator:
    """The published generator, stepped one frame at a time by the engine.

    Args:
        model: a :class:`PublishedGenerator` or a file written by ``dystream convert-official``.
        device: torch device ('cpu', 'cuda').
        anchor: the reference latent m0 (face_dim,): the motion encoder's latent of the portrait the published
            renderer shows (:attr:`PublishedRenderer.source_latent`); zeros if None.
        seed: seed of the sampler noise.
        steps: Euler steps of the flow head (the authors' demo: 5).
        guidance: the authors' demo weights (audio 0.5, other audio 0.5, anchor 0, all 1) if None.
        backend: 'torch', or 'onnx' for ONNX Runtime (TensorRT, CUDA or CPU, whichever is available) on an
            export of the model with these ``guidance`` and ``steps``, made on first use and cached.
        onnx_dir: where the ONNX export is (or is made); default: a cache folder named by the weights' hash.
        num_threads: ONNX Runtime's CPU threads (0: its default).
        progress: called with a line per exported graph (an export of the full-size model takes minutes).
    """

    motion_space = 'latent'
    motion_names: tuple[str, ...] = ()
    lookahead_ms = LOOKAHEAD_MS

    def __init__(self, model: PublishedGenerator | str | os.PathLike[str], *, device: str = 'cpu',
                 anchor: np.ndarray | None = None, seed: int = 0, steps: int = 5,
                 guidance: Guidance | None = None, backend: str = 'torch',
                 onnx_dir: str | os.PathLike[str] | None = None, num_threads: int = 0,
                 progress: Callable[[str], None] | None = None) -> None:
        if backend not in ('torch', 'onnx'):
            msg = f"backend must be 'torch' or 'onnx', not {backend!r}"
            raise ConfigError(msg)
        network = model if isinstance(model, PublishedGenerator) else load_published_generator(
            model, device if backend == 'torch' else 'cpu')
        self.steps, self.guidance, self.seed = steps, guidance or Guidance(), seed
        self.backend: GeneratorSteps
        if backend == 'onnx':  # the torch network is let go once exported: ONNX Runtime holds its own copy
            self.backend = OnnxGeneratorSteps.for_model(network, self.guidance, steps, onnx_dir, num_threads,
                                                        progress)
            self.providers = self.backend.providers
        else:
            self.backend = TorchGeneratorSteps(network, self.guidance, steps)
            self.providers = [f'torch:{self.backend.device}']
        self.device = self.backend.device
        self.stage_ms: dict[str, float] = {}
        self._anchor = self._check_anchor(anchor)
        self.reset(0)

    @property
    def motion_dim(self) -> int:
        """Values per frame: the latent's 512."""
        return self.backend.config.face_dim

    def shed(self, light: bool) -> bool:  # noqa: ARG002 (the guidance branches share one batch: nothing to drop)
        """Nothing to shed: the engine skips frames instead when this generator falls behind."""
        return False

    def reset(self, first_frame: int = 0, *, anchor: np.ndarray | None = None, seed: int | None = None) -> None:
        """Start a new stream at ``first_frame`` (94 frames of silence and of the anchor before it, as the authors'
        inference starts); optionally with a new anchor or seed."""
        if anchor is not None:
            self._anchor = self._check_anchor(anchor)
        if seed is not None:
            self.seed = seed
        self.first_frame = self.next_frame = first_frame
        noise = torch.Generator().manual_seed(self.seed)  # on the CPU: the same motion on any device
        self.stream = PublishedStream(self.backend, torch.from_numpy(self._anchor), lookahead_ms=self.lookahead_ms,
                                      generator=noise)

    def input_start(self, frame: int) -> int:
        """First sample ``step(frame)`` reads: the first one the stream has not had."""
        return frame * SAMPLES_PER_FRAME + (0 if frame == self.first_frame else lookahead_samples(self))

    def step(self, frame: int, self_audio: np.ndarray, partner_audio: np.ndarray) -> MotionFrame:
        """The latent of ``frame`` from each voice's samples ``[input_start(frame), frame end + lookahead)``."""
        if frame != self.next_frame:
            msg = f'step({frame}) out of order: the stream started at frame {self.first_frame} is at {self.next_frame}'
            raise StreamError(msg)
        for name, audio in zip(STREAMS, (self_audio, partner_audio)):
            check_step_audio(self, frame, audio, name)
        started = time.perf_counter()
        (latent,) = self.stream.push(torch.from_numpy(self_audio), torch.from_numpy(partner_audio))
        self.next_frame += 1
        self.stage_ms = {'generate': (time.perf_counter() - started) * 1e3}
        return MotionFrame(frame, latent.float().cpu().numpy())

    def _check_anchor(self, anchor: np.ndarray | None) -> np.ndarray:
        if anchor is None:
            return np.zeros(self.motion_dim, np.float32)
        anchor = np.asarray(anchor, dtype=np.float32).reshape(-1)
        if anchor.shape != (self.motion_dim,) or not np.all(np.isfinite(anchor)):
            msg = f'the anchor latent must be {self.motion_dim} finite values, got shape {anchor.shape}'
            raise ConfigError(msg)
        return anchor
