"""Checkpoints: safetensors weights with the model config as JSON metadata; a strict, pickle-free loader.

A model file is one ``.safetensors`` file. Its header metadata holds ``format = dystream``, the file version and
``config`` (the :class:`ModelConfig` as JSON), so the file states its own architecture (nanoGPT keeps
``model_args`` next to the weights for the same reason). The loader rebuilds the model from that config and
compares key sets and every shape before copying, raising :class:`CheckpointError` that lists the missing,
unexpected and mismatched keys. Nothing here unpickles: ``torch.load`` is not used anywhere in the package.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from dystream_ros.errors import CheckpointError, ConfigError
from dystream_ros.model.config import ModelConfig
from dystream_ros.model.dystream import DyStream

if TYPE_CHECKING:
    from collections.abc import Mapping

FORMAT = 'dystream'
FORMAT_VERSION = '1'
DEFAULT_MODEL_PATH = Path(__file__).resolve().parent.parent / 'assets' / 'dystream_tiny.safetensors'


def save_tensors(path: str | os.PathLike[str], tensors: Mapping[str, torch.Tensor],
                 metadata: Mapping[str, str]) -> Path:
    """Write tensors to ``path`` atomically (a temporary file, then a rename); return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + '.tmp')
    save_file({k: v.detach().to('cpu').contiguous() for k, v in tensors.items()}, str(tmp), metadata=dict(metadata))
    tmp.replace(path)
    return path


def read_tensors(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read every tensor and the metadata of a safetensors file; CheckpointError names an unreadable file."""
    path = Path(path)
    if not path.is_file():
        msg = f'checkpoint file not found: {path}'
        raise CheckpointError(msg)
    try:
        with safe_open(str(path), framework='pt') as f:
            metadata = dict(f.metadata() or {})
            tensors = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    except (SafetensorError, OSError, ValueError) as exc:
        msg = f'cannot read checkpoint {path}: {exc}'
        raise CheckpointError(msg) from None
    return tensors, metadata


def save_model(path: str | os.PathLike[str], model: DyStream, extra: Mapping[str, str] | None = None,
               state_dict: Mapping[str, torch.Tensor] | None = None) -> Path:
    """Save ``model``'s config and state dict (or ``state_dict``, e.g. EMA weights) to a safetensors file."""
    metadata = {'format': FORMAT, 'version': FORMAT_VERSION, 'config': json.dumps(model.config.to_dict()),
                **(extra or {})}
    return save_tensors(path, model.state_dict() if state_dict is None else state_dict, metadata)


def config_from_metadata(metadata: Mapping[str, str], path: Path, file_format: str = FORMAT) -> ModelConfig:
    """The ModelConfig stored in a checkpoint's metadata; CheckpointError if absent or invalid."""
    if metadata.get('format') != file_format or 'config' not in metadata:
        msg = f'{path} is not a DyStream checkpoint (metadata format={metadata.get("format")!r}, no config)'
        raise CheckpointError(msg)
    try:
        return ModelConfig.from_dict(json.loads(metadata['config']))
    except (json.JSONDecodeError, ConfigError) as exc:
        msg = f'{path}: invalid model config: {exc}'
        raise CheckpointError(msg) from None


def check_state_dict(model: torch.nn.Module, tensors: Mapping[str, torch.Tensor], source: str) -> None:
    """Raise CheckpointError listing missing, unexpected and shape-mismatched keys of ``tensors``."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    mismatched = sorted(f'{k}: checkpoint {tuple(tensors[k].shape)} vs model {tuple(expected[k].shape)}'
                        for k in set(expected) & set(tensors) if tensors[k].shape != expected[k].shape)
    if missing or unexpected or mismatched:
        parts = [f'{name} keys ({len(keys)}): {", ".join(keys)}'
                 for name, keys in (('missing', missing), ('unexpected', unexpected), ('mismatched', mismatched))
                 if keys]
        msg = f'{source} does not match the model: ' + '; '.join(parts)
        raise CheckpointError(msg)


# State-dict prefixes of checkpoints written before the robot's own stream was called 'self' everywhere.
RENAMED_KEYS = {'audio_encoder.': 'self_encoder.', 'transformer.audio_proj.': 'transformer.self_proj.'}


def upgrade_state_dict(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The tensors under today's key names (older files load without a conversion step)."""
    upgraded = {}
    for key, tensor in tensors.items():
        old = next((prefix for prefix in RENAMED_KEYS if key.startswith(prefix)), None)
        upgraded[RENAMED_KEYS[old] + key[len(old):] if old else key] = tensor
    if 'motion_rest' not in upgraded and 'motion_mean' in upgraded:  # saved before the rest pose was stored
        upgraded['motion_rest'] = upgraded['motion_mean']
    return upgraded


def load_model(path: str | os.PathLike[str], device: str | torch.device = 'cpu') -> DyStream:
    """Build the model a checkpoint describes and load its weights, in eval mode."""
    path = Path(path)
    tensors, metadata = read_tensors(path)
    model = DyStream(config_from_metadata(metadata, path))
    tensors = upgrade_state_dict(tensors)
    check_state_dict(model, tensors, str(path))
    model.load_state_dict(tensors, strict=True)
    return model.to(device).eval()


def load_default_model(device: str | torch.device = 'cpu') -> DyStream:
    """Load the shipped weights (``dystream_ros/assets/dystream_tiny.safetensors``); CheckpointError if absent."""
    if not DEFAULT_MODEL_PATH.is_file():
        msg = (f'the default DyStream weights are not installed: {DEFAULT_MODEL_PATH} does not exist; '
               'train a model with `dystream train` and pass its model.safetensors')
        raise CheckpointError(msg)
    return load_model(DEFAULT_MODEL_PATH, device)
