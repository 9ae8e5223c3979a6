"""ONNX export of the streaming steps, and the ONNX Runtime backend of StreamingGenerator.

The export and the backend sit together because they are the two sides of one interface (graph, input and output
names, ``EXPORT_VERSION``). Four graphs, all with their state as explicit inputs and outputs (nothing hidden in
the session), and the encoders' silent start (``silence.safetensors``, from :meth:`AudioEncoder.silence`):

* ``encoder_self.onnx``, ``encoder_partner.onnx``: one 40 ms encoder frame, ``(window (1, 880), state) ->
  (feature (1, audio_dim), state)``; the log-mel front-end is a Conv with fixed DFT weights.
* ``prefix.onnx``: the start-of-stream KV cache from the anchor and the silent features.
* ``step.onnx``: one generated frame: the transformer token of every CFG branch with its per-layer KV ring buffers
  (``k_0, v_0, ...`` in, ``k_0_out, v_0_out, ...`` out, the new token written into ``slot``) and the whole Euler/CFG
  sampling. The start noise and the RoPE cos/sin of the token's position are inputs: the caller computes the angles
  in float64, and torch and ONNX Runtime can be compared exactly. The CFG branches, their coefficients and the sigma
  schedule are constants of the export (``meta.json`` records them); another setting exports again.

The backend asks ONNX Runtime for TensorRT, then CUDA, then CPU, keeping those that are available, and reports
the providers each session actually got (``OnnxBackend.providers``).
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import json
import logging
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from safetensors.numpy import load_file, save_file
from torch import nn

from dystream_ros.errors import CheckpointError
from dystream_ros.model.config import ModelConfig
from dystream_ros.model.dystream import DyStream, frame_position
from dystream_ros.model.sampler import Guidance, sigma_schedule
from dystream_ros.model.transformer import cache_slot, rope_at

if TYPE_CHECKING:
    from collections.abc import Iterator

EXPORT_VERSION = 4  # bump when the graphs' interface changes; part of the cache key
PREFERRED_PROVIDERS = ('TensorrtExecutionProvider', 'CUDAExecutionProvider', 'CPUExecutionProvider')
OPSET = 18
MAX_INLINE_BYTES = 1_800_000_000  # below protobuf's 2 GiB message limit
logger = logging.getLogger(__name__)


class EncoderStep(nn.Module):
    """Export wrapper: one frame of one stream's encoder."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, window: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One encoder frame of one voice."""
        return self.encoder.step(window, state)


class PrefixStep(nn.Module):
    """Export wrapper: the start-of-stream KV cache for fixed CFG branches."""

    def __init__(self, model: DyStream, guidance: Guidance) -> None:
        super().__init__()
        self.model = model
        self.register_buffer('masks', guidance.mask_tensor())

    def forward(self, anchor: torch.Tensor, silence_self: torch.Tensor, silence_partner: torch.Tensor
                ) -> tuple[torch.Tensor, ...]:
        """The start-of-stream cache, flat."""
        cache = self.model.prefix_cache(anchor, silence_self, silence_partner, self.masks)
        return tuple(t for kv in cache for t in kv)  # k_0, v_0, k_1, ...


class GeneratorStep(nn.Module):
    """Export wrapper: one frame of generation, fixed CFG branches and sigma schedule."""

    def __init__(self, model: DyStream, guidance: Guidance, steps: int) -> None:
        super().__init__()
        self.model = model
        self.sigmas = sigma_schedule(steps, model.config.sigma_min)
        self.register_buffer('masks', guidance.mask_tensor())
        self.register_buffer('coefficients', guidance.coefficient_tensor())

    def forward(self, prev: torch.Tensor, feat_self: torch.Tensor, feat_partner: torch.Tensor,
                anchor: torch.Tensor, noise: torch.Tensor, rope_cos: torch.Tensor, rope_sin: torch.Tensor,
                slot: torch.Tensor, cache: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """One frame and the updated cache, flat."""
        pairs = [(cache[2 * i], cache[2 * i + 1]) for i in range(len(cache) // 2)]
        motion = self.model.step(prev, feat_self, feat_partner, anchor, noise, self.masks, self.coefficients, pairs,
                                 (rope_cos, rope_sin), slot, self.sigmas)
        return (motion, *cache)  # the exporter turns the in-place cache writes into these outputs


def cache_names(config: ModelConfig, suffix: str = '') -> list[str]:
    """Names of the per-layer cache tensors: k_0, v_0, k_1, ... (with ``suffix`` for outputs)."""
    return [f'{kind}_{i}{suffix}' for i in range(config.n_layer) for kind in ('k', 'v')]


def weights_key(module: nn.Module, settings: object) -> str:
    """Hash of a module's weights and the JSON of ``settings``: the name of a cached export."""
    digest = hashlib.sha256()
    digest.update(json.dumps(settings, sort_keys=True).encode())
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def export_key(model: DyStream, guidance: Guidance, steps: int) -> str:
    """Hash of the weights, config, CFG branches and steps: the name of a cached export."""
    return weights_key(model, [EXPORT_VERSION, model.config.to_dict(), guidance.names, guidance.coefficients, steps])


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporter's progress prints, warnings and log lines (they are not errors)."""
    exporter_log = logging.getLogger('torch.onnx')
    level = exporter_log.level
    exporter_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter('ignore')
            yield
    finally:
        exporter_log.setLevel(level)


def on_cpu(model: nn.Module) -> nn.Module:
    """``model`` on the CPU, where export traces it: a copy when it lives elsewhere (a GPU), so that the caller's
    model stays where it is."""
    if all(t.device.type == 'cpu' for t in (*model.parameters(), *model.buffers())):
        return model
    return copy.deepcopy(model).to('cpu')


def export_graph(module: nn.Module, args: tuple[Any, ...], path: Path, input_names: list[str],
                 output_names: list[str], dynamic_shapes: dict[str, Any] | None = None) -> None:
    """Export one graph (dynamo exporter, :data:`OPSET`), quietly, making its folder if needed.

    One self-contained file unless the weights exceed protobuf's 2 GB limit (then <name>.onnx.data beside it).
    ``dynamic_shapes`` gives the inputs' dynamic dimensions (``torch.export.Dim``) by argument name.

    Raises:
        CheckpointError: the exporter failed or the file could not be written (the torch backend still works).
    """
    weight_bytes = sum(t.numel() * t.element_size() for t in module.state_dict().values())
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with _quiet():
            torch.onnx.export(module, args, str(path), input_names=input_names, output_names=output_names,
                              opset_version=OPSET, dynamo=True, external_data=weight_bytes > MAX_INLINE_BYTES,
                              dynamic_shapes=dynamic_shapes)
    except (torch.onnx.OnnxExporterError, OSError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        msg = f'the ONNX export of {path.name} into {path.parent} failed ({first_line}); backend torch runs without it'
        raise CheckpointError(msg) from exc


def open_sessions(folder: Path, names: tuple[str, ...], num_threads: int = 0) -> dict[str, Any]:
    """ONNX Runtime sessions of ``folder/<name>.onnx``, on TensorRT, CUDA or the CPU, whichever are available
    (:data:`PREFERRED_PROVIDERS`); ``num_threads`` intra-op CPU threads (0: ONNX Runtime chooses).

    Raises:
        CheckpointError: a graph is missing or ONNX Runtime cannot load it.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = num_threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    available = set(ort.get_available_providers())
    wanted = [p for p in PREFERRED_PROVIDERS if p in available]
    sessions = {}
    for name in names:
        path = folder / f'{name}.onnx'
        try:
            sessions[name] = ort.InferenceSession(str(path), options, providers=wanted)
        except Exception as exc:  # onnxruntime raises its own untyped errors  # noqa: BLE001
            msg = f'cannot load ONNX graph {path}: {exc}'
            raise CheckpointError(msg) from None
    return sessions


def read_export_meta(folder: Path, command: str) -> dict[str, Any]:
    """The ``meta.json`` of an export in ``folder``; ``command`` is the one that makes it, for the error."""
    meta_path = folder / 'meta.json'
    if not meta_path.is_file():
        msg = f'{folder} holds no ONNX export ({meta_path.name} missing); run `{command}`'
        raise CheckpointError(msg)
    return json.loads(meta_path.read_text())


def export_is_current(folder: Path, key: str) -> bool:
    """Whether ``folder`` holds the export whose key is ``key``."""
    meta_path = folder / 'meta.json'
    return meta_path.is_file() and json.loads(meta_path.read_text()).get('key') == key


@torch.no_grad()
def export_onnx(model: DyStream, folder: str | os.PathLike[str], guidance: Guidance | None = None,
                steps: int | None = None) -> Path:
    """Export the four graphs and ``meta.json`` into ``folder``; return it."""
    cfg = model.config
    guidance = guidance or Guidance.from_config(cfg)
    steps = steps or cfg.steps
    folder = Path(folder)
    model = on_cpu(model).eval()
    window = torch.zeros(1, cfg.encoder_window_samples)
    for name, encoder in (('self', model.self_encoder), ('partner', model.partner_encoder)):
        export_graph(EncoderStep(encoder), (window, encoder.init_state(1)), folder / f'encoder_{name}.onnx',
                ['window', 'state'], ['feature', 'state_out'])
    anchor = model.motion_mean[None].clone()
    (state_self, silence_self), (state_partner, silence_partner) = (model.self_encoder.silence(),
                                                                    model.partner_encoder.silence())
    save_file({'state_self': state_self.numpy(), 'feature_self': silence_self.numpy(),
               'state_partner': state_partner.numpy(), 'feature_partner': silence_partner.numpy()},
              str(folder / 'silence.safetensors'))
    export_graph(PrefixStep(model, guidance), (anchor, silence_self, silence_partner), folder / 'prefix.onnx',
            ['anchor', 'silence_self', 'silence_partner'], cache_names(cfg))
    cache = model.prefix_cache(anchor, silence_self, silence_partner, guidance.mask_tensor())
    flat = [t for kv in cache for t in kv]
    # Distinct tensors for every input: the tracer merges inputs that are the same tensor object.
    rope_cos, rope_sin = rope_at(frame_position(cfg, 0), cfg)
    export_graph(GeneratorStep(model, guidance, steps),
            (anchor.clone(), silence_self.clone(), silence_partner.clone(), anchor.clone(),
             torch.zeros(1, cfg.motion_dim), rope_cos, rope_sin, cache_slot(frame_position(cfg, 0), cfg),
             [t.clone() for t in flat]),
            folder / 'step.onnx', ['prev', 'feat_self', 'feat_partner', 'anchor', 'noise', 'rope_cos', 'rope_sin',
                                   'slot', *cache_names(cfg)],
            ['motion', *cache_names(cfg, '_out')])
    meta = {'version': EXPORT_VERSION, 'key': export_key(model, guidance, steps), 'config': cfg.to_dict(),
            'steps': steps, 'branches': list(guidance.names), 'coefficients': list(guidance.coefficients)}
    (folder / 'meta.json').write_text(json.dumps(meta, indent=2))
    return folder


class OnnxBackend:
    """Runs the exported graphs with ONNX Runtime; the StreamingGenerator backend for ``backend='onnx'``."""

    name = 'onnx'
    light = False  # the Euler steps are built into the graph: none can be shed

    def __init__(self, folder: str | os.PathLike[str], num_threads: int = 0) -> None:
        self.folder = folder = Path(folder)
        self.meta = read_export_meta(folder, 'dystream export-onnx')
        self.config = ModelConfig.from_dict(self.meta['config'])
        self.sessions = open_sessions(folder, ('encoder_self', 'encoder_partner', 'prefix', 'step'), num_threads)
        self.providers = self.sessions['step'].get_providers()
        self._cache_in = cache_names(self.config)
        self._silence = load_file(str(folder / 'silence.safetensors'))  # state_self, feature_self, ...

    @classmethod
    def for_model(cls, model: DyStream, guidance: Guidance, steps: int,
                  onnx_dir: str | os.PathLike[str] | None = None, num_threads: int = 0) -> OnnxBackend:
        """The backend of an export of ``model`` with these settings, exporting first if none is up to date."""
        key = export_key(model, guidance, steps)
        folder = Path(onnx_dir) if onnx_dir is not None else default_onnx_dir() / key
        if not export_is_current(folder, key):
            logger.info('exporting DyStream to ONNX in %s', folder)
            export_onnx(model, folder, guidance, steps)
        return cls(folder, num_threads)

    def encoder_start(self, stream: str) -> np.ndarray:
        """Encoder state after endless silence."""
        return self._silence[f'state_{stream}']

    def encode(self, stream: str, window: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One encoder frame: window (880,) -> feature (1, audio_dim), next state."""
        feature, state = self.sessions[f'encoder_{stream}'].run(None, {'window': window[None], 'state': state})
        return feature, state

    def prefix(self, anchor: np.ndarray) -> list[np.ndarray]:
        """Start-of-stream KV cache, flat: k_0, v_0, k_1, ..."""
        return self.sessions['prefix'].run(None, {'anchor': anchor.reshape(1, -1),
                                                  'silence_self': self._silence['feature_self'],
                                                  'silence_partner': self._silence['feature_partner']})

    def step(self, prev: np.ndarray, feat_self: np.ndarray, feat_partner: np.ndarray, anchor: np.ndarray,
             noise: np.ndarray, cache: list[np.ndarray], position: int) -> tuple[np.ndarray, list[np.ndarray]]:
        """One generated frame: raw motion (motion_dim,) and the next flat cache; ``position`` of its token."""
        rope_cos, rope_sin = (r.numpy() for r in rope_at(position, self.config))  # float64 angles, then float32
        feeds = {'prev': prev.reshape(1, -1), 'feat_self': feat_self, 'feat_partner': feat_partner,
                 'anchor': anchor.reshape(1, -1), 'noise': noise, 'rope_cos': rope_cos, 'rope_sin': rope_sin,
                 'slot': cache_slot(position, self.config).numpy(), **dict(zip(self._cache_in, cache))}
        motion, *cache = self.sessions['step'].run(None, feeds)
        return motion[0], cache


def default_onnx_dir() -> Path:
    """Parent folder of cached ONNX exports."""
    root = os.environ.get('DYSTREAM_CACHE') or Path.home() / '.cache' / 'dystream_ros'
    return Path(root) / 'onnx'
