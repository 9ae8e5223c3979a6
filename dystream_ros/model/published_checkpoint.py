"""The published generator checkpoint (``last.ckpt``, a Lightning file) to our safetensors, and back into a model.

What the converter relies on (``official_reference/README.md`` sections 2.3, 2.4 and 6):

* ``state_dict`` keys carry the Lightning prefix ``model.``. The official loader strips it and loads with
  ``strict=False``, so a renamed key is skipped silently; here every key is checked, both ways, with every shape.
* The weights the official inference uses are the EMA's ``ema_state.shadow_params``: an unnamed list in
  ``model.parameters()`` order, which :func:`official_parameter_names` reproduces. ``collected_params`` holds the
  raw weights of the last ``store()`` and is never used.
* The wav2vec2 positional conv is weight-normed: ``parametrizations.weight.original0/1`` (or, from older stacks,
  ``weight_g``/``weight_v``) are folded into one ``weight``.
* The RoPE and PE tables in the ``state_dict`` are recomputed by the model; the converter checks they agree.

The checkpoint is read with ``torch.load(weights_only=True)``: tensors and plain containers only, no pickled code
runs. The output is one safetensors file whose metadata holds the config (JSON) and the provenance.
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from dystream_ros.errors import CheckpointError, ConfigError
from dystream_ros.model.published import PublishedConfig, PublishedGenerator
from dystream_ros.model.published_layers import reset_position_tables
from dystream_ros.model.wav2vec2 import fold_weight_norm
from dystream_ros.resources import file_sha256

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

FORMAT = 'dystream-published-generator'
FORMAT_VERSION = '1'
LIGHTNING_PREFIX = 'model.'
POS_CONV = '.encoder.pos_conv_embed.conv.'
# (g, v) of the positional conv's weight norm: torch >= 2.1 parametrizations, then the older attribute spelling
WEIGHT_NORM_NAMES = (('parametrizations.weight.original0', 'parametrizations.weight.original1'),
                     ('weight_g', 'weight_v'))
TABLE_TOLERANCE = 1e-5  # RoPE/PE tables: recomputed here, stored in the checkpoint; equal up to libm rounding
MAX_LISTED = 12  # keys named in an error message


def _meta_model(config: PublishedConfig) -> PublishedGenerator:
    with torch.device('meta'):
        return PublishedGenerator(config)


def official_parameter_names(config: PublishedConfig, weight_norm: tuple[str, str] = WEIGHT_NORM_NAMES[0]
                             ) -> list[str]:
    """The official parameter names in ``model.parameters()`` order, the order of the EMA list.

    Ours, with each positional-conv ``weight`` replaced by the weight norm's (g, v) pair (after the bias).
    """
    names = []
    for name, _ in _meta_model(config).named_parameters():
        if POS_CONV in name and name.endswith('.weight'):
            stem = name.removesuffix('weight')
            names += [stem + weight_norm[0], stem + weight_norm[1]]
        else:
            names.append(name)
    return names


def _expected_shapes(config: PublishedConfig, weight_norm: tuple[str, str]) -> dict[str, tuple[int, ...]]:
    """Official state-dict key -> shape: parameters (with g and v) and the RoPE/PE buffers."""
    model = _meta_model(config)
    shapes = {}
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if POS_CONV in name and name.endswith('.weight'):
            stem = name.removesuffix('weight')
            shapes[stem + weight_norm[0]] = (1, 1, tensor.shape[2])
            shapes[stem + weight_norm[1]] = tuple(tensor.shape)
        else:
            shapes[name] = tuple(tensor.shape)
    return shapes


def _listed(names: list[str]) -> str:
    more = f' and {len(names) - MAX_LISTED} more' if len(names) > MAX_LISTED else ''
    return ', '.join(names[:MAX_LISTED]) + more


def _read_lightning(path: Path) -> dict[str, Any]:
    """The checkpoint's top-level dict, tensors and plain containers only (``weights_only``: no code runs)."""
    try:
        checkpoint = torch.load(path, map_location='cpu', weights_only=True, mmap=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
        msg = f'{path} is not a readable Lightning checkpoint (weights only): {exc}'
        raise CheckpointError(msg) from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get('state_dict'), dict):
        msg = f'{path} has no state_dict: not a Lightning checkpoint'
        raise CheckpointError(msg)
    return checkpoint


def _checked_state_dict(raw: Mapping[str, Any], config: PublishedConfig, path: Path
                        ) -> tuple[dict[str, torch.Tensor], tuple[str, str]]:
    """Strip ``model.``, then check the key set and every shape against ``config``; returns the weight-norm
    spelling found."""
    state = {key.removeprefix(LIGHTNING_PREFIX): value for key, value in raw.items()}
    weight_norm = next((names for names in WEIGHT_NORM_NAMES
                        if any(key.endswith(POS_CONV + names[0]) for key in state)), WEIGHT_NORM_NAMES[0])
    expected = _expected_shapes(config, weight_norm)
    unprefixed = sorted(key for key in raw if not key.startswith(LIGHTNING_PREFIX))
    missing = sorted(set(expected) - set(state))
    unexpected = sorted({key for key in set(state) - set(expected)} | set(unprefixed))
    problems = []
    if missing:
        problems.append(f'missing keys: {_listed(missing)}')
    if unexpected:
        problems.append(f'unexpected keys: {_listed(unexpected)}')
    wrong = [f'{key} {tuple(state[key].shape)} (expected {shape})' for key, shape in expected.items()
             if key in state and tuple(state[key].shape) != shape]
    if wrong:
        problems.append(f'shapes that do not fit the config: {_listed(wrong)}')
    if problems:
        msg = f'{path} does not match the published generator of this config: ' + '; '.join(problems)
        raise CheckpointError(msg)
    return state, weight_norm


def _check_tables(state: Mapping[str, torch.Tensor], model_buffers: Mapping[str, torch.Tensor], path: Path) -> None:
    for name, ours in model_buffers.items():
        error = float((state[name].float() - ours).abs().max())
        if error > TABLE_TOLERANCE:
            msg = f'{path}: {name} differs from the table this implementation computes (max |diff| {error:.2e})'
            raise CheckpointError(msg)


def _ema_weights(checkpoint: Mapping[str, Any], state: Mapping[str, torch.Tensor], names: list[str], path: Path
                 ) -> dict[str, torch.Tensor]:
    """Official name -> EMA shadow tensor, by position; each shape is checked against the named raw weight."""
    ema = checkpoint.get('ema_state')
    shadow = ema.get('shadow_params') if isinstance(ema, dict) else None
    if not isinstance(shadow, (list, tuple)):
        msg = f'{path} has no ema_state.shadow_params: the official inference runs on the EMA weights'
        raise CheckpointError(msg)
    if len(shadow) != len(names):
        msg = f'{path}: ema_state.shadow_params has {len(shadow)} tensors, the model has {len(names)} parameters'
        raise CheckpointError(msg)
    wrong = [f'#{i} {name} {tuple(tensor.shape)} (state_dict {tuple(state[name].shape)})'
             for i, (name, tensor) in enumerate(zip(names, shadow)) if tensor.shape != state[name].shape]
    if wrong:
        msg = f'{path}: the EMA list is not in the parameter order: {_listed(wrong)}'
        raise CheckpointError(msg)
    return dict(zip(names, shadow))


def _to_ours(weights: Mapping[str, torch.Tensor], weight_norm: tuple[str, str]) -> dict[str, torch.Tensor]:
    """Official parameters -> our parameters (float32): the positional convs' (g, v) folded into ``weight``."""
    ours = {}
    for name, tensor in weights.items():
        if name.endswith(POS_CONV + weight_norm[1]):
            continue
        if name.endswith(POS_CONV + weight_norm[0]):
            stem = name.removesuffix(weight_norm[0])
            ours[stem + 'weight'] = fold_weight_norm(tensor.float(), weights[stem + weight_norm[1]].float())
        else:
            ours[name] = tensor.float()
    return ours


def convert_published_generator(ckpt_path: str | os.PathLike[str], out_path: str | os.PathLike[str],
                                config: PublishedConfig | None = None,
                                progress: Callable[[str], None] | None = None, *, weights: str = 'ema') -> Path:
    """Convert the published generator checkpoint to one safetensors file.

    Args:
        ckpt_path: the Lightning checkpoint (``last.ckpt``, or the random-weight reference).
        out_path: the safetensors file to write (atomically).
        config: the architecture; the checkpoint states none. Default: the released full size.
        progress: called with one line of text per stage.
        weights: ``'ema'`` (what the official inference uses) or ``'raw'`` (the state_dict's training weights).

    Returns:
        ``out_path``.

    Raises:
        CheckpointError: unreadable file, missing, unexpected or misshapen keys, or a wrong EMA list.
    """
    ckpt_path, out_path = Path(ckpt_path), Path(out_path)
    config = config or PublishedConfig()
    say = progress or (lambda _line: None)
    if weights not in ('ema', 'raw'):
        msg = f"weights must be 'ema' or 'raw', not {weights!r}"
        raise ConfigError(msg)
    say(f'sha256 of {ckpt_path.name}')
    digest = file_sha256(ckpt_path)
    say('reading the checkpoint (weights only)')
    checkpoint = _read_lightning(ckpt_path)
    state, weight_norm = _checked_state_dict(checkpoint['state_dict'], config, ckpt_path)
    names = official_parameter_names(config, weight_norm)
    model = _meta_model(config)  # only for its tables
    reset_position_tables(model)
    _check_tables(state, dict(model.named_buffers()), ckpt_path)
    say(f'keys and shapes match ({len(names)} parameters); taking the {weights} weights')
    chosen = _ema_weights(checkpoint, state, names, ckpt_path) if weights == 'ema' else {n: state[n] for n in names}
    tensors = _to_ours(chosen, weight_norm)
    metadata = {
        'format': FORMAT, 'format_version': FORMAT_VERSION, 'config': config.to_json(), 'weights': weights,
        'source_file': ckpt_path.name, 'source_sha256': digest,
        'source_epoch': str(checkpoint.get('epoch')), 'source_global_step': str(checkpoint.get('global_step')),
        'source_lightning_version': str(checkpoint.get('pytorch-lightning_version')),
    }
    say(f'writing {out_path.name} ({sum(t.numel() for t in tensors.values()) / 1e6:.1f} M values)')
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + '.tmp')
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    tmp.replace(out_path)
    return out_path


def read_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The header metadata of a converted file (config JSON, provenance)."""
    try:
        with safe_open(str(path), framework='pt') as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError) as exc:
        msg = f'cannot read {path}: {exc}'
        raise CheckpointError(msg) from None


def is_published_generator(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a generator written by ``dystream convert-official`` (and not our own weights)."""
    try:
        return read_metadata(path).get('format') == FORMAT
    except CheckpointError:
        return False


def load_published_generator(path: str | os.PathLike[str], device: str | torch.device = 'cpu'
                             ) -> PublishedGenerator:
    """A converted file -> :class:`PublishedGenerator` in eval mode on ``device``; keys and shapes checked."""
    metadata = read_metadata(path)
    if metadata.get('format') != FORMAT:
        msg = f"{path} is not a converted published generator (format {metadata.get('format')!r})"
        raise CheckpointError(msg)
    config = PublishedConfig.from_json(metadata['config'])
    with safe_open(str(path), framework='pt', device=str(device)) as f:
        tensors = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118 (safe_open is not a Mapping)
    model = _meta_model(config)
    try:
        model.load_state_dict(tensors, strict=True, assign=True)
    except RuntimeError as exc:
        msg = f'{path} does not fit its own config: {exc}'
        raise CheckpointError(msg) from None
    reset_position_tables(model, device)
    return model.eval()


def config_of(path: str | os.PathLike[str]) -> PublishedConfig:
    """The :class:`PublishedConfig` a converted file states."""
    return PublishedConfig.from_json(read_metadata(path)['config'])

