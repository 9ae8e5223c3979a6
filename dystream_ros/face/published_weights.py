"""The published renderer checkpoint -> our safetensors, with the training-only machinery folded away.

The published ``epoch=0-step=312000.ckpt`` is a Lightning pickle: ``{epoch, global_step, ..., state_dict}``, the
state_dict keyed ``motion_encoder.``, ``flow_estimator.``, ``face_generator.``, ``face_encoder.`` (plus, very
probably, the loss modules ``discriminator.`` and ``criterion_vgg.``, which inference does not use). It is read with
``torch.load(weights_only=True)``, which rebuilds tensors and plain containers and runs no pickled code.

Folded here, each exact in eval (official_reference README, section 6):

* EqualConv2d / EqualLinear (motion encoder, flow estimator ``fc``): the weight times 1/sqrt(fan_in), as their
  forward does; lr_mul is 1.
* Spectral norm (the SPADE ``conv_0``, ``conv_1``, ``conv_s``): ``weight_orig / sigma`` with
  ``sigma = u . (W v)`` from the **stored** u and v, which is what an eval forward computes; no power iteration
  (the stored vectors are not converged, so a sigma by SVD would render a different face).
* WSConv3d (``resblockN.conv1``): the weight minus its per-filter mean, over (its unbiased std + 1e-5).
* Direction: ``Q = qr(weight + 1e-8)`` (reduced), constant in eval, stored as ``flow_estimator.direction.basis``.
* The Blur kernels are checked to be the official constant and dropped (the module rebuilds them);
  ``face_generator.warp_layer`` is built by the official module but never used, and is dropped.

Keys are checked strictly: a missing or unknown key is refused by name (the official app.py loads with
``strict=False``, which skips a renamed key silently).
"""
from __future__ import annotations

import math
import pickle
import re
from collections.abc import Callable
from pathlib import Path

import torch

from dystream_ros.errors import CheckpointError, DataError
from dystream_ros.face.published_face import PublishedRenderer
from dystream_ros.face.published_renderer import Blur, HeadAnimator, PublishedRendererConfig, blur_kernel
from dystream_ros.resources import file_sha256

FORMAT = 'dystream-published-renderer'
FORMAT_VERSION = '1'
IGNORED_PREFIXES = ('discriminator.', 'criterion_vgg.')  # training losses, in the real file
UNUSED_KEYS = ('face_generator.warp_layer.weight',)  # built, never called (face_generator.py)
SPECTRAL_NORM = re.compile(r'^face_generator\.(G_middle_\d|up_\d)\.conv_[01s]\.weight$')
WEIGHT_STANDARDISED = re.compile(r'^face_generator\.resblock\d\.conv1\.weight$')
EQUALISED = re.compile(r'^(motion_encoder\.convs\..*|flow_estimator\.fc\.\d)\.weight$')
DIRECTION = 'flow_estimator.direction.basis'
WS_EPS = 1e-5  # added to the std, not the variance (VASA1/building_blocks.py:24-34)
DIRECTION_EPS = 1e-8  # added to the weight before the QR (flow_estimator.py:18-23)

Progress = Callable[[str], None]


def _official_sources(key: str) -> list[str]:
    """The official state_dict keys our ``key`` is made from."""
    if SPECTRAL_NORM.match(key):
        stem = key.removesuffix('weight')
        return [stem + 'weight_orig', stem + 'weight_u', stem + 'weight_v']
    if key == DIRECTION:
        return ['flow_estimator.direction.weight']
    return [key]


def _blur_kernel_keys(model: HeadAnimator) -> list[str]:
    return [f'{name}.kernel' for name, module in model.named_modules() if isinstance(module, Blur)]


def spectral_norm_weight(weight_orig: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The weight an eval forward of old-style spectral norm uses: weight_orig / (u . W v), u and v as stored."""
    sigma = torch.dot(u, torch.mv(weight_orig.reshape(weight_orig.shape[0], -1), v))
    return weight_orig / sigma


def standardised_weight(weight: torch.Tensor) -> torch.Tensor:
    """WSConv3d's weight: each filter minus its mean, divided by its unbiased std + 1e-5."""
    mean = weight
    for dim in range(1, weight.dim()):  # one dim at a time, as the official forward: bit-identical in float32
        mean = mean.mean(dim=dim, keepdim=True)
    centred = weight - mean
    std = centred.flatten(1).std(dim=1).reshape(-1, *[1] * (weight.dim() - 1)) + WS_EPS
    return centred / std


def equalised_weight(weight: torch.Tensor) -> torch.Tensor:
    """EqualConv2d / EqualLinear: the stored unscaled weight times 1 / sqrt(fan_in)."""
    return weight * (1.0 / math.sqrt(weight[0].numel()))


def direction_basis(weight: torch.Tensor) -> torch.Tensor:
    """Q of the reduced QR of weight + 1e-8: (512, 64) with orthonormal columns."""
    return torch.linalg.qr(weight + DIRECTION_EPS, mode='reduced').Q


def _read_state_dict(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    try:
        checkpoint = torch.load(path, weights_only=True, map_location='cpu')
    except (pickle.UnpicklingError, RuntimeError, EOFError) as exc:
        msg = f'{path} is not a checkpoint torch can read without running pickled code: {exc}'
        raise DataError(msg) from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get('state_dict'), dict):
        msg = f'{path} has no state_dict: not a Lightning checkpoint of the renderer'
        raise DataError(msg)
    info = {k: str(checkpoint[k]) for k in ('epoch', 'global_step', 'pytorch-lightning_version') if k in checkpoint}
    return checkpoint['state_dict'], info


def fold_state_dict(official: dict[str, torch.Tensor], config: PublishedRendererConfig
                    ) -> dict[str, torch.Tensor]:
    """The official renderer state_dict -> ours (float32, folded), checked key by key and shape by shape.

    Raises:
        DataError: naming every missing or unknown key, or a tensor of the wrong shape or a changed Blur kernel.
    """
    with torch.device('meta'):
        model = HeadAnimator(config)
    ours = model.state_dict()
    kernels = _blur_kernel_keys(model)
    expected = {src for key in ours for src in _official_sources(key)} | set(kernels) | set(UNUSED_KEYS)
    present = {k for k in official if not k.startswith(IGNORED_PREFIXES)}
    missing, unknown = sorted(expected - present), sorted(present - expected)
    if missing or unknown:
        msg = (f'the renderer checkpoint does not match the published architecture: '
               f'missing {missing or "none"}; unknown {unknown or "none"}')
        raise DataError(msg)

    def tensor(key: str) -> torch.Tensor:
        value = official[key]
        return value if value.dtype == torch.int64 else value.float()

    official_kernel = blur_kernel()
    for key in kernels:
        if tensor(key).shape != official_kernel.shape or not torch.allclose(tensor(key), official_kernel):
            msg = f'{key} is not the official blur kernel outer([1, 3, 3, 1]) / 64'
            raise DataError(msg)

    folded: dict[str, torch.Tensor] = {}
    for key, slot in ours.items():
        if SPECTRAL_NORM.match(key):
            value = spectral_norm_weight(*(tensor(k) for k in _official_sources(key)))
        elif key == DIRECTION:
            value = direction_basis(tensor('flow_estimator.direction.weight'))
        elif WEIGHT_STANDARDISED.match(key):
            value = standardised_weight(tensor(key))
        elif EQUALISED.match(key):
            value = equalised_weight(tensor(key))
        else:
            value = tensor(key)
        if value.shape != slot.shape:
            msg = f'{key}: shape {tuple(value.shape)} in the checkpoint, {tuple(slot.shape)} in the architecture'
            raise DataError(msg)
        folded[key] = value.contiguous()
    return folded


def convert_published_renderer(ckpt_path: Path | str, out_path: Path | str, progress: Progress | None = None,
                               config: PublishedRendererConfig | None = None) -> Path:
    """Convert the published renderer checkpoint to our safetensors (float32) and return ``out_path``.

    Args:
        ckpt_path: the Lightning checkpoint (``epoch=0-step=312000.ckpt`` or the reference random one).
        out_path: the safetensors file to write; its metadata holds the config and the source's sha256.
        progress: called with one line per step (reading, folding, writing), which take seconds each.
        config: the renderer's sizes; the official ones by default.

    Raises:
        DataError: the file is not a renderer checkpoint, or a key is missing, unknown or of the wrong shape.
    """
    from safetensors.torch import save_file

    ckpt_path, out_path = Path(ckpt_path), Path(out_path)
    config = config or PublishedRendererConfig()
    say = progress or (lambda _line: None)
    say(f'hashing {ckpt_path.name}')
    source_sha256 = file_sha256(ckpt_path)
    say('reading (torch.load, weights_only=True)')
    official, info = _read_state_dict(ckpt_path)
    say(f'folding {len(official)} tensors (spectral norm, weight standardisation, equalised lr, direction QR)')
    folded = fold_state_dict(official, config)
    count = sum(v.numel() for v in folded.values() if v.is_floating_point())
    say(f'writing {out_path.name}: {len(folded)} tensors, {count / 1e6:.1f} M values, float32')
    metadata = {'format': FORMAT, 'format_version': FORMAT_VERSION, 'config': config.to_json(),
                'source_name': ckpt_path.name, 'source_sha256': source_sha256,
                **{f'source_{k.replace("-", "_")}': v for k, v in info.items()}}
    out_path.parent.mkdir(parents=True, exist_ok=True)
    save_file(folded, str(out_path), metadata=metadata)
    return out_path


def load_published_model(path: Path | str) -> HeadAnimator:
    """The converted renderer's four sub-nets (float32, CPU, eval).

    Raises:
        CheckpointError: the file is missing, not ours, or does not match its own config.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        msg = f'converted renderer {path} does not exist (make it with `dystream convert-official --renderer`)'
        raise CheckpointError(msg)
    with safe_open(str(path), 'pt') as f:
        metadata = f.metadata() or {}
    if metadata.get('format') != FORMAT or metadata.get('format_version') != FORMAT_VERSION:
        msg = f'{path} is not a converted published renderer (format {metadata.get("format")!r})'
        raise CheckpointError(msg)
    with torch.device('meta'):
        model = HeadAnimator(PublishedRendererConfig.from_json(metadata['config']))
    try:
        model.load_state_dict(load_file(str(path)), strict=True, assign=True)
    except RuntimeError as exc:
        msg = f'{path} does not match the published renderer: {exc}'
        raise CheckpointError(msg) from None
    model.rebuild_constants()  # they were made on the meta device
    return model.eval().requires_grad_(False)


def load_published_renderer(path: Path | str, device: str | torch.device = 'cpu',
                            flow_source: str = 'first_latent') -> PublishedRenderer:
    """A :class:`PublishedRenderer` from a converted file (see :class:`PublishedRenderer` for ``flow_source``)."""
    return PublishedRenderer(load_published_model(path), device=device, flow_source=flow_source)
