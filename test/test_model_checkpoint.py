"""DyStream checkpoints: exact safetensors round trip and a loader that names every mismatch."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from dystream_ros.errors import CheckpointError
from dystream_ros.model import DyStream, ModelConfig, checkpoint, load_model, save_model
from dystream_ros.runtime.generator import StreamingGenerator


def small_model(seed: int = 0) -> DyStream:
    torch.manual_seed(seed)
    model = DyStream(ModelConfig(context_frames=8, motion_dim=6, motion_names=tuple('abcdef')))
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.01 * torch.randn_like(param))  # no zero-initialised tensor left
        model.set_motion_stats(torch.rand(6), 0.5 + torch.rand(6))
    return model


def test_round_trip_is_exact(tmp_path: Path) -> None:
    model = small_model()
    path = save_model(tmp_path / 'm.safetensors', model)
    loaded = load_model(path)
    assert loaded.config == model.config
    assert loaded.config.motion_names == tuple('abcdef')
    original, restored = model.state_dict(), loaded.state_dict()
    assert original.keys() == restored.keys()
    for key, value in original.items():
        assert torch.equal(value, restored[key]), key
    assert not loaded.training


def test_streaming_generator_loads_a_path(tmp_path: Path) -> None:
    path = save_model(tmp_path / 'm.safetensors', small_model())
    gen = StreamingGenerator(path)
    assert gen.motion_names == tuple('abcdef') and gen.motion_dim == 6


def _rewrite(path: Path, model: DyStream, edit: dict[str, torch.Tensor | None]) -> Path:
    tensors = {k: v.contiguous() for k, v in model.state_dict().items()}
    for key, value in edit.items():
        if value is None:
            del tensors[key]
        else:
            tensors[key] = value
    metadata = {'format': 'dystream', 'version': '1', 'config': json.dumps(model.config.to_dict())}
    save_file(tensors, str(path), metadata=metadata)
    return path


def test_loader_lists_missing_unexpected_and_mismatched_keys(tmp_path: Path) -> None:
    model = small_model()
    path = _rewrite(tmp_path / 'bad.safetensors', model, {
        'head.output_proj.bias': None,
        'transformer.blocks.0.ln_1.weight': None,
        'extra.weight': torch.zeros(2),
        'transformer.motion_embed.weight': torch.zeros(3, 3),
    })
    with pytest.raises(CheckpointError) as info:
        load_model(path)
    message = str(info.value)
    assert 'missing keys (2): head.output_proj.bias, transformer.blocks.0.ln_1.weight' in message
    assert 'unexpected keys (1): extra.weight' in message
    assert 'mismatched keys (1): transformer.motion_embed.weight: checkpoint (3, 3) vs model (128, 6)' in message
    assert str(path) in message


def test_weights_saved_before_the_rest_pose_existed_still_load_with_their_mean_as_anchor(tmp_path: Path) -> None:
    model = small_model()
    path = _rewrite(tmp_path / 'old.safetensors', model, {'motion_rest': None})
    loaded = load_model(path)
    assert loaded.config.anchor == 'window_end'
    assert torch.equal(loaded.default_anchor(), model.motion_mean)


def test_loader_rejects_files_that_are_not_dystream_checkpoints(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match='not found'):
        load_model(tmp_path / 'absent.safetensors')
    (tmp_path / 'garbage.safetensors').write_bytes(b'\x00' * 64)
    with pytest.raises(CheckpointError, match='cannot read'):
        load_model(tmp_path / 'garbage.safetensors')
    save_file({'x': torch.zeros(1)}, str(tmp_path / 'other.safetensors'))
    with pytest.raises(CheckpointError, match='not a DyStream checkpoint'):
        load_model(tmp_path / 'other.safetensors')
    save_file({'x': torch.zeros(1)}, str(tmp_path / 'badcfg.safetensors'),
              metadata={'format': 'dystream', 'config': json.dumps({'n_layers': 3})})
    with pytest.raises(CheckpointError, match='invalid model config.*n_layers'):
        load_model(tmp_path / 'badcfg.safetensors')


def test_default_model_error_names_the_missing_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    absent = tmp_path / 'dystream_tiny.safetensors'
    monkeypatch.setattr(checkpoint, 'DEFAULT_MODEL_PATH', absent)
    with pytest.raises(CheckpointError, match=str(absent)):
        checkpoint.load_default_model()
    save_model(absent, small_model())
    assert checkpoint.load_default_model().config.motion_dim == 6


def test_no_pickled_code_runs_when_weights_load() -> None:
    # our weights are safetensors; the one pickle read is the published Lightning checkpoint, and only with
    # weights_only=True (tensors and plain containers, no code)
    package = Path(checkpoint.__file__).parent.parent
    calls = [(source, call) for source in package.rglob('*.py')
             for call in re.findall(r'torch\.load\(([^)]*)\)', source.read_text())]
    assert calls, 'the published checkpoints are read somewhere'
    for source, call in calls:
        assert 'weights_only=True' in call, (source, call)
