"""ONNX export of the published generator and renderer, and their ONNX Runtime backends (CUDA / TensorRT / CPU).

The graphs are the backends' computations one for one, so one stream (:class:`PublishedStream`) and one frame
loop (:class:`PublishedRenderer`) serve torch and ONNX Runtime alike:

* generator (:class:`OnnxGeneratorSteps`, a :class:`GeneratorSteps`): ``encoder_self.onnx`` and
  ``encoder_other.onnx``, the wav2vec2 network on a window of any length (``input_values (1, S) -> features
  (1, T50, 768)``; the normalisation and the 25 fps resampling stay in torch, they are a few vector ops), and
  ``frame.onnx``: the GPT in the 5 CFG branches and the head's Euler steps, ``(past, feat_self, feat_other,
  anchor, noise) -> latent``. The CFG weights and the step count are constants of the export (``meta.json``).
* renderer (:class:`OnnxRendererParts`, a :class:`RendererParts`): ``renderer_source.onnx`` (the portrait ->
  appearance volume, latent), ``renderer_segmap.onnx`` (flow estimator and warp) and ``renderer_decode.onnx``
  (the SPADE decoder, any feature-map size).

The published encoder attends over its whole window, so there is no key/value cache to carry between frames:
each frame re-encodes its window, in either backend. Exports are cached under ``~/.cache/dystream_ros/onnx/`` by
a hash of the weights and the settings, like the shipped model's.
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dystream_ros.face.published_face import TorchRendererParts
from dystream_ros.face.published_renderer import HeadAnimator, PublishedRendererConfig
from dystream_ros.model.published import FPS, SAMPLE_RATE_HZ, Guidance, PublishedConfig, PublishedGenerator
from dystream_ros.model.published_stream import TorchGeneratorSteps
from dystream_ros.model.wav2vec2 import prepare_utterance, to_video_rate
from dystream_ros.runtime.onnx_backend import (
    default_onnx_dir,
    export_graph,
    export_is_current,
    on_cpu,
    open_sessions,
    read_export_meta,
    weights_key,
)

EXPORT_VERSION = 1  # bump when the graphs' interface changes; part of the cache key
GENERATOR_GRAPHS = ('encoder_self', 'encoder_other', 'frame')
RENDERER_GRAPHS = ('renderer_source', 'renderer_segmap', 'renderer_decode')
MIN_WINDOW_SAMPLES = 1040  # the shortest window the stream encodes: one frame and the 80-sample tail pad, 640 + 400
MAX_WINDOW_SAMPLES = 60 * SAMPLE_RATE_HZ  # a minute: far beyond the stream's 3.9 s window


class _Method(nn.Module):
    """Export wrapper: one method of a backend's torch parts as a module's forward."""

    def __init__(self, method: Callable[..., object], owner: nn.Module) -> None:
        super().__init__()
        self.owner, self.method = owner, method  # the owner registers the weights the method uses

    def forward(self, *args: torch.Tensor) -> object:
        """The method."""
        return self.method(*args)


def _timed(say: Callable[[str], None], what: str, export: Callable[[], None]) -> None:
    started = time.perf_counter()
    say(f'exporting {what} ...')
    export()
    say(f'exported {what} in {time.perf_counter() - started:.0f} s')


def _write_meta(folder: Path, meta: dict[str, object]) -> None:
    """``meta.json`` last, so an interrupted export is never taken for a finished one."""
    (folder / 'meta.json').write_text(json.dumps(meta, indent=2))


# --- generator ---
def generator_key(model: PublishedGenerator, guidance: Guidance, steps: int) -> str:
    """Hash of the weights, config, CFG weights and steps: the name of a cached generator export."""
    settings = [EXPORT_VERSION, 'generator', model.config.to_json(), guidance.__dict__, steps]
    return weights_key(model, settings)


@torch.no_grad()
def export_published_generator(model: PublishedGenerator, folder: str | os.PathLike[str],
                               guidance: Guidance | None = None, steps: int = 5,
                               progress: Callable[[str], None] | None = None) -> Path:
    """Export the generator's three graphs and ``meta.json`` into ``folder``; return it."""
    say = progress or (lambda _line: None)
    guidance = guidance or Guidance()
    folder = Path(folder)
    model = on_cpu(model).eval()
    config = model.config
    samples = torch.export.Dim('samples', min=MIN_WINDOW_SAMPLES, max=MAX_WINDOW_SAMPLES)
    window = torch.zeros(1, SAMPLE_RATE_HZ)  # an example: the graph takes any length in the Dim's range
    for name, encoder in (('encoder_self', model.audio_encoder_face),
                          ('encoder_other', model.audio_encoder_face_other)):
        _timed(say, name, lambda e=encoder, n=name: export_graph(
            e, (window,), folder / f'{n}.onnx', ['input_values'], ['features'],
            dynamic_shapes={'input_values': {1: samples}}))
    torch_steps = TorchGeneratorSteps(model, guidance, steps)
    context, audio_dim, face_dim = config.context_frames, config.audio_dim, config.face_dim
    inputs = (torch.zeros(1, context, face_dim), torch.zeros(1, context, audio_dim),
              torch.zeros(1, context, audio_dim), torch.zeros(1, 1, face_dim), torch.zeros(1, face_dim))
    _timed(say, 'frame (GPT and flow head)', lambda: export_graph(
        _Method(torch_steps.next_latent, model), inputs, folder / 'frame.onnx',
        ['past', 'feat_self', 'feat_other', 'anchor', 'noise'], ['latent']))
    _write_meta(folder, {'version': EXPORT_VERSION, 'key': generator_key(model, guidance, steps),
                         'config': config.to_json(), 'guidance': guidance.__dict__, 'steps': steps})
    return folder


class OnnxGeneratorSteps:
    """The published generator's :class:`GeneratorSteps` on ONNX Runtime, from an export folder."""

    device = torch.device('cpu')  # the stream's tensors; ONNX Runtime moves them to its own device

    def __init__(self, folder: str | os.PathLike[str], num_threads: int = 0) -> None:
        self.folder = folder = Path(folder)
        self.meta = read_export_meta(folder, 'dystream export-onnx --model <published generator>')
        self.config = PublishedConfig.from_json(self.meta['config'])
        self.guidance, self.steps = Guidance(**self.meta['guidance']), self.meta['steps']
        self.sessions = open_sessions(folder, GENERATOR_GRAPHS, num_threads)
        self.providers = self.sessions['frame'].get_providers()

    @classmethod
    def for_model(cls, model: PublishedGenerator, guidance: Guidance | None = None, steps: int = 5,
                  onnx_dir: str | os.PathLike[str] | None = None, num_threads: int = 0,
                  progress: Callable[[str], None] | None = None) -> OnnxGeneratorSteps:
        """The backend of an export of ``model`` with these settings, exporting first if none is up to date."""
        guidance = guidance or Guidance()
        key = generator_key(model, guidance, steps)
        folder = Path(onnx_dir) if onnx_dir is not None else default_onnx_dir() / f'published-{key}'
        if not export_is_current(folder, key):
            export_published_generator(model, folder, guidance, steps, progress)
        return cls(folder, num_threads)

    def features(self, track: int, audio: torch.Tensor) -> torch.Tensor:
        """Audio (S,) -> 25 fps features (S / 640, audio_dim)."""
        session = self.sessions[GENERATOR_GRAPHS[track]]
        (low,) = session.run(None, {'input_values': prepare_utterance(audio[None].float()).numpy()})
        return to_video_rate(torch.from_numpy(low), FPS)[0]

    def next_latent(self, past: torch.Tensor, feat_self: torch.Tensor, feat_other: torch.Tensor,
                    anchor: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """The next latent (1, D)."""
        feeds = dict(zip(('past', 'feat_self', 'feat_other', 'anchor', 'noise'),
                         (np.ascontiguousarray(t.numpy(), np.float32)
                          for t in (past, feat_self, feat_other, anchor, noise))))
        (latent,) = self.sessions['frame'].run(None, feeds)
        return torch.from_numpy(latent)


# --- renderer ---
def renderer_key(model: HeadAnimator) -> str:
    """Hash of the renderer's weights and config: the name of a cached renderer export."""
    return weights_key(model, [EXPORT_VERSION, 'renderer', model.config.to_json()])


@torch.no_grad()
def export_published_renderer(model: HeadAnimator, folder: str | os.PathLike[str],
                              progress: Callable[[str], None] | None = None) -> Path:
    """Export the renderer's three graphs and ``meta.json`` into ``folder``; return it."""
    say = progress or (lambda _line: None)
    folder = Path(folder)
    model = on_cpu(model)
    parts = TorchRendererParts(model, 'cpu')
    image = torch.zeros(1, 3, model.config.image_size, model.config.image_size)
    _timed(say, 'renderer_source (face and motion encoders)', lambda: export_graph(
        _Method(parts.source, model), (image,), folder / 'renderer_source.onnx', ['image'],
        ['appearance', 'latent']))
    appearance, latent = parts.source(image)
    _timed(say, 'renderer_segmap (flow estimator and warp)', lambda: export_graph(
        _Method(parts.segmap, model), (latent, latent.clone(), appearance), folder / 'renderer_segmap.onnx',
        ['flow_from', 'driving', 'appearance'], ['segmap']))
    seg = parts.segmap(latent, latent, appearance)
    height, width = torch.export.Dim('height', min=2, max=256), torch.export.Dim('width', min=2, max=256)
    _timed(say, 'renderer_decode (SPADE decoder)', lambda: export_graph(
        _Method(parts.decode, model), (seg,), folder / 'renderer_decode.onnx', ['segmap'], ['rgb'],
        dynamic_shapes={'args': ({2: height, 3: width},)}))  # the wrapper's forward takes *args
    _write_meta(folder, {'version': EXPORT_VERSION, 'key': renderer_key(model), 'config': model.config.to_json()})
    return folder


class OnnxRendererParts:
    """The published renderer's :class:`RendererParts` on ONNX Runtime, from an export folder."""

    device = torch.device('cpu')

    def __init__(self, folder: str | os.PathLike[str], num_threads: int = 0) -> None:
        self.folder = folder = Path(folder)
        self.meta = read_export_meta(folder, 'dystream export-onnx --model <generator> --renderer <renderer>')
        self.config = PublishedRendererConfig.from_json(self.meta['config'])
        self.sessions = open_sessions(folder, RENDERER_GRAPHS, num_threads)
        self.providers = self.sessions['renderer_decode'].get_providers()

    @classmethod
    def for_model(cls, model: HeadAnimator, onnx_dir: str | os.PathLike[str] | None = None, num_threads: int = 0,
                  progress: Callable[[str], None] | None = None) -> OnnxRendererParts:
        """The backend of an export of ``model``, exporting first if none is up to date."""
        key = renderer_key(model)
        folder = Path(onnx_dir) if onnx_dir is not None else default_onnx_dir() / f'published-renderer-{key}'
        if not export_is_current(folder, key):
            export_published_renderer(model, folder, progress)
        return cls(folder, num_threads)

    def _run(self, graph: str, **inputs: torch.Tensor) -> list[torch.Tensor]:
        feeds = {name: np.ascontiguousarray(t.numpy(), np.float32) for name, t in inputs.items()}
        return [torch.from_numpy(out) for out in self.sessions[graph].run(None, feeds)]

    def source(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Appearance volume and motion latent of the portrait."""
        appearance, latent = self._run('renderer_source', image=image)
        return appearance, latent

    def segmap(self, flow_from: torch.Tensor, driving: torch.Tensor, appearance: torch.Tensor) -> torch.Tensor:
        """The warped, projected appearance for ``driving``."""
        return self._run('renderer_segmap', flow_from=flow_from, driving=driving, appearance=appearance)[0]

    def decode(self, seg: torch.Tensor) -> torch.Tensor:
        """RGB in [-1, 1]."""
        return self._run('renderer_decode', segmap=seg)[0]
