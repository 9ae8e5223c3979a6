"""``dystream train``: train DyStream on a folder of samples; single process, or DDP under ``torchrun``.

The recipe follows the paper code (``main.py`` MAIN:85-224, ``configs/motion_gen/sample.yaml``): flow-matching x0
loss with context corruption and the last-5-frames weight (:meth:`DyStream.forward`), AdamW (betas 0.9/0.999, weight
decay 0.01) with a linear warm-up to a constant learning rate (or, with ``--lr-decay cosine``, a cosine decay), and
an EMA of the weights (decay 0.999 with the ``(1 + n) / (10 + n)`` warm-up of torch_ema) whose weights are the ones
saved for inference. Differences: gradient clipping at 1.0 by default (the paper config names 0.99 but never applies
it), and motion normalisation.

Output folder:

* ``model.safetensors``: EMA weights + model config, what ``StreamingGenerator`` loads;
* ``checkpoints/step_<N>.safetensors``: the same at every ``--save-every`` step, kept, so that the step to ship can be
  chosen on the validation split afterwards (``dystream eval --rendered-only --rendered-on heldout --heldout-seed
  2000 --model ...``);
* ``config.json``: the model and training configs, for people;
* ``train_state.safetensors``: raw weights, EMA weights, AdamW moments (``optim.<index>.<name>``) and RNG states,
  with the step, optimizer hyper-parameters and numpy RNG state as JSON metadata; ``--resume`` continues from it.
  Everything is safetensors/JSON: no pickle.
* ``train_log.jsonl``: one line per ``--log-every`` steps.

Under ``torchrun --nproc_per_node=N`` (``WORLD_SIZE`` > 1) every process trains on its own random windows with
``--batch-size`` each, gradients are averaged by DistributedDataParallel (gloo on CPU, nccl on CUDA), and rank 0
writes. Resuming is bit-exact for a single process; under DDP ranks other than 0 re-seed from (seed, rank, step).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from dystream_ros.data.augment import AUGMENTATIONS, Augmenter
from dystream_ros.errors import CheckpointError, ConfigError
from dystream_ros.model.checkpoint import (
    check_state_dict,
    config_from_metadata,
    read_tensors,
    save_model,
    save_tensors,
    upgrade_state_dict,
)
from dystream_ros.model.config import AUDIO_FRONTENDS, GUIDANCE_WEIGHTS, TRAINING_FIELDS, ModelConfig
from dystream_ros.model.dystream import DyStream
from dystream_ros.training.dataset import WindowDataset

MODEL_FILE, STATE_FILE, CONFIG_FILE, LOG_FILE = 'model.safetensors', 'train_state.safetensors', 'config.json', \
    'train_log.jsonl'
STATE_FORMAT = 'dystream-train'
CHECKPOINT_DIR = 'checkpoints'


@dataclass(frozen=True)
class TrainConfig:
    """Training run settings (the model's own settings are in ModelConfig)."""

    data: Path | tuple[Path, ...]  # folder(s) of samples (dystream_ros.data.sample format)
    out: Path  # output folder (see module docstring)
    steps: int = 100_000  # total optimizer steps; --resume continues up to this number
    batch_size: int = 32  # windows per process and step
    lr: float = 3e-4  # peak AdamW learning rate (the paper's production value is unknown; its fork uses 5e-5)
    weight_decay: float = 0.01  # paper code value; applied to matrices only
    warmup_steps: int = 1000  # linear warm-up, then constant (paper: constant_with_warmup, 1000)
    lr_decay: str = 'constant'  # after warm-up: 'constant' (paper) or 'cosine' (down to 10 % at the last step)
    ema_decay: float = 0.999  # paper code value
    grad_clip: float = 1.0  # max global grad norm; 0 disables
    seed: int = 0
    save_every: int = 1000  # steps between checkpoints (and at the end)
    log_every: int = 50  # steps between train_log.jsonl lines
    window_frames: int = 0  # frames per training window; 0 = context_frames + 1 (the paper's window)
    speed_perturb: float = 0.0  # play windows up to this much faster or slower (0.1: 0.9x .. 1.1x); 0 = off
    augment: tuple[str, ...] = ()  # dystream_ros.data.augment kinds applied to each window's voices; () = off
    augment_p: float = 0.5  # probability of each kind, per window and voice
    device: str = ''  # '' = cuda if available, else cpu
    resume: bool = False
    init: Path | None = None  # fine-tune: start from these weights (same architecture; see _initialise)
    progress: bool = True  # tqdm progress bar on rank 0


@dataclass
class TrainResult:
    """What a run returns: the losses of the steps it ran (this process), and the files written."""

    losses: list[float] = field(default_factory=list)
    model_path: Path | None = None
    last_step: int = 0


class EMA:
    """Exponential moving average of the parameters, with torch_ema's ``min(decay, (1 + n) / (10 + n))``."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.decay = decay
        self.updates = 0
        self.shadow = {name: p.detach().clone() for name, p in model.named_parameters()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        """Move the average towards the model's current weights."""
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for name, p in model.named_parameters():
            self.shadow[name].lerp_(p.detach(), 1.0 - decay)

    def state_dict(self, model: torch.nn.Module) -> dict[str, torch.Tensor]:
        """The model's state dict with the EMA parameters in place of the raw ones."""
        return {k: self.shadow.get(k, v) for k, v in model.state_dict().items()}


def _optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{'params': [p for p in params if p.dim() >= 2], 'weight_decay': cfg.weight_decay},
              {'params': [p for p in params if p.dim() < 2], 'weight_decay': 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8)


def _lr(cfg: TrainConfig, step: int) -> float:
    warm = min(1.0, (step + 1) / max(1, cfg.warmup_steps))
    if cfg.lr_decay == 'constant' or step < cfg.warmup_steps:
        return cfg.lr * warm
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - 1 - cfg.warmup_steps)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress))))


def _save(out: Path, model: DyStream, ema: EMA, optimizer: torch.optim.Optimizer, step: int,
          rng: np.random.Generator, cfg: TrainConfig) -> Path:
    """Write model.safetensors and checkpoints/step_<N> (EMA), and train_state.safetensors (everything to resume)."""
    weights = ema.state_dict(model)
    model_path = save_model(out / MODEL_FILE, model, {'step': str(step)}, weights)
    (out / CHECKPOINT_DIR).mkdir(exist_ok=True)
    save_model(out / CHECKPOINT_DIR / f'step_{step:06d}.safetensors', model, {'step': str(step)}, weights)
    tensors: dict[str, torch.Tensor] = {f'model.{k}': v for k, v in model.state_dict().items()}
    tensors.update({f'ema.{k}': v for k, v in ema.shadow.items()})
    opt_state = optimizer.state_dict()
    for index, state in opt_state['state'].items():
        for name, value in state.items():
            tensors[f'optim.{index}.{name}'] = torch.as_tensor(value)
    tensors['rng.torch'] = torch.get_rng_state()
    if torch.cuda.is_available():
        tensors['rng.cuda'] = torch.cuda.get_rng_state()
    groups = [{k: v for k, v in g.items()} for g in opt_state['param_groups']]
    metadata = {'format': STATE_FORMAT, 'step': str(step), 'ema_updates': str(ema.updates),
                'param_groups': json.dumps(groups), 'numpy_rng': json.dumps(rng.bit_generator.state),
                'config': json.dumps(model.config.to_dict()), 'train': json.dumps(_jsonable(cfg))}
    save_tensors(out / STATE_FILE, tensors, metadata)
    return model_path


def _resume(out: Path, model: DyStream, ema: EMA, optimizer: torch.optim.Optimizer,
            rng: np.random.Generator) -> int:
    """Load train_state.safetensors into the run; return the step to continue from."""
    path = out / STATE_FILE
    tensors, metadata = read_tensors(path)
    if metadata.get('format') != STATE_FORMAT:
        msg = f'{path} is not a DyStream training state'
        raise CheckpointError(msg)
    weights = {k[len('model.'):]: v for k, v in tensors.items() if k.startswith('model.')}
    check_state_dict(model, weights, f'{path} (model.*)')
    model.load_state_dict(weights)
    for name in ema.shadow:
        if f'ema.{name}' not in tensors:
            msg = f'{path}: EMA tensor ema.{name} is missing'
            raise CheckpointError(msg)
        ema.shadow[name].copy_(tensors[f'ema.{name}'])
    ema.updates = int(metadata['ema_updates'])
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith('optim.'):
            _, index, name = key.split('.', 2)
            state.setdefault(int(index), {})[name] = value
    groups = json.loads(metadata['param_groups'])
    for group in groups:
        group['betas'] = tuple(group['betas'])
    optimizer.load_state_dict({'state': state, 'param_groups': groups})
    torch.set_rng_state(tensors['rng.torch'])
    if 'rng.cuda' in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors['rng.cuda'])
    rng.bit_generator.state = json.loads(metadata['numpy_rng'])
    return int(metadata['step'])


def _initialise(model: DyStream, path: Path) -> None:
    """Load the weights (and motion normalisation) of a trained model to fine-tune; ConfigError if its architecture
    differs from ``model``'s (training settings and guidance weights may differ: they are what a fine-tune changes)."""
    tensors, metadata = read_tensors(path)
    own = {f: getattr(model.config, f) for f in (*TRAINING_FIELDS, *GUIDANCE_WEIGHTS, 'name', 'motion_names')}
    if config_from_metadata(metadata, path).replace(**own) != model.config:
        msg = f'--init {path}: its architecture differs from the model being trained'
        raise ConfigError(msg)
    tensors = upgrade_state_dict(tensors)
    check_state_dict(model, tensors, str(path))
    model.load_state_dict(tensors)


def _jsonable(cfg: TrainConfig) -> dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(cfg), default=str))


def train(cfg: TrainConfig, model_config: ModelConfig | None = None) -> TrainResult:
    """Run training; see the module docstring. ``model_config`` defaults to the ``tiny`` size.

    On resume the model config stored in the training state is used; a different ``model_config`` is an error.
    """
    world = int(os.environ.get('WORLD_SIZE', '1'))
    distributed = world > 1
    use_cuda = cfg.device.startswith('cuda') or (not cfg.device and torch.cuda.is_available())
    if distributed:
        dist.init_process_group('nccl' if use_cuda else 'gloo')
    rank = dist.get_rank() if distributed else 0
    local_rank = int(os.environ.get('LOCAL_RANK', '0'))
    device = torch.device(f'cuda:{local_rank}' if use_cuda and distributed else ('cuda' if use_cuda else
                                                                                  (cfg.device or 'cpu')))
    if use_cuda:
        if device.index is not None:
            torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = True  # TF32 is fine for this model (paper fork, pitfall 10)
    try:
        return _train(cfg, model_config, rank, distributed, device)
    finally:
        if distributed:
            dist.destroy_process_group()


def _train(cfg: TrainConfig, model_config: ModelConfig | None, rank: int, distributed: bool,
           device: torch.device) -> TrainResult:
    out = Path(cfg.out)
    state_path = out / STATE_FILE
    if cfg.resume and state_path.is_file():
        stored = config_from_metadata(read_tensors(state_path)[1], state_path, STATE_FORMAT)
        if model_config is not None and model_config.replace(motion_names=stored.motion_names) != stored:
            msg = f'--resume uses the model config stored in {state_path}; it differs from the one requested'
            raise ConfigError(msg)
        model_config = stored
    elif cfg.resume:
        msg = f'--resume: no training state at {state_path}'
        raise CheckpointError(msg)
    model_config = model_config or ModelConfig.preset('tiny')
    window = cfg.window_frames or model_config.context_frames + 1
    if window < 2:
        msg = f'window_frames must be >= 2, got {window}'
        raise ConfigError(msg)
    data = WindowDataset(cfg.data, model_config, window, cfg.speed_perturb,
                         Augmenter(cfg.augment, cfg.augment_p) if cfg.augment else None)
    if not model_config.motion_names and all(data.motion_names):
        model_config = model_config.replace(motion_names=data.motion_names)
    torch.manual_seed(cfg.seed)  # identical initial weights on every rank (DDP also broadcasts rank 0's)
    model = DyStream(model_config).to(device)
    model.set_motion_stats(*(torch.from_numpy(a) for a in data.motion_stats()))
    if cfg.init is not None and not cfg.resume:
        _initialise(model, Path(cfg.init))
    ema = EMA(model, cfg.ema_decay)
    optimizer = _optimizer(model, cfg)
    rng = np.random.default_rng([cfg.seed, rank])
    start = 0
    if cfg.resume:
        start = _resume(out, model, ema, optimizer, rng)
        if rank != 0:
            rng = np.random.default_rng([cfg.seed, rank, start])
            torch.manual_seed(cfg.seed * 100_003 + rank * 1009 + start)
    else:
        torch.manual_seed(cfg.seed + rank)  # per-rank noise and dropout from here on
    model.train()
    net = DistributedDataParallel(model, device_ids=[device.index] if device.type == 'cuda' else None) \
        if distributed else model
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        world = dist.get_world_size() if distributed else 1
        (out / CONFIG_FILE).write_text(json.dumps({'model': model_config.to_dict(), 'train': _jsonable(cfg),
                                                   'windows': len(data), 'world_size': world}, indent=2))
    from tqdm import tqdm

    result = TrainResult(last_step=start)
    bar = tqdm(total=cfg.steps, initial=start, disable=rank != 0 or not cfg.progress, unit='step', dynamic_ncols=True)
    started = time.perf_counter()
    for step in range(start, cfg.steps):
        for group in optimizer.param_groups:
            group['lr'] = _lr(cfg, step)
        motion, self_audio, partner, rest = (t.to(device, non_blocking=True) for t in data.batch(rng, cfg.batch_size))
        loss = net(motion, self_audio, partner, rest)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip if cfg.grad_clip > 0 else
                                                   math.inf)
        optimizer.step()
        ema.update(model)
        value = float(loss.detach())
        if not math.isfinite(value):
            msg = f'training diverged at step {step + 1}: loss {value}'
            raise ConfigError(msg)
        result.losses.append(value)
        result.last_step = step + 1
        bar.update(1)
        bar.set_postfix(loss=f'{value:.4f}', lr=f'{_lr(cfg, step):.2e}')
        if rank == 0 and ((step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps):
            with (out / LOG_FILE).open('a') as log:
                log.write(json.dumps({'step': step + 1, 'loss': value, 'grad_norm': float(grad_norm),
                                      'lr': _lr(cfg, step), 'elapsed_s': time.perf_counter() - started}) + '\n')
        if rank == 0 and ((step + 1) % cfg.save_every == 0 or step + 1 == cfg.steps):
            result.model_path = _save(out, model, ema, optimizer, step + 1, rng, cfg)
    bar.close()
    if rank == 0 and result.model_path is None and (out / MODEL_FILE).is_file():
        result.model_path = out / MODEL_FILE
    return result


# --- `dystream train` ---
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``dystream train``."""
    defaults = TrainConfig((), Path())
    parser.add_argument('data', type=Path, nargs='+',
                        help='folders of samples (<id>/motion.npz, self.wav, partner.wav)')
    parser.add_argument('--out', type=Path, required=True, help='output folder for weights and training state')
    parser.add_argument('--config', default=None, choices=['tiny', 'base', 'official'],
                        help='model size (default tiny; with --resume, the stored one)')
    parser.add_argument('--steps', type=int, default=defaults.steps, help='total optimizer steps')
    parser.add_argument('--batch-size', type=int, default=defaults.batch_size, help='windows per process and step')
    parser.add_argument('--lr', type=float, default=defaults.lr, help='peak learning rate')
    parser.add_argument('--warmup-steps', type=int, default=defaults.warmup_steps)
    parser.add_argument('--lr-decay', choices=['constant', 'cosine'], default=defaults.lr_decay,
                        help='learning rate after the warm-up: constant (the paper), or a cosine down to 10 %%')
    parser.add_argument('--weight-decay', type=float, default=defaults.weight_decay)
    parser.add_argument('--ema-decay', type=float, default=defaults.ema_decay)
    parser.add_argument('--grad-clip', type=float, default=defaults.grad_clip, help='0 disables clipping')
    parser.add_argument('--seed', type=int, default=defaults.seed)
    parser.add_argument('--save-every', type=int, default=defaults.save_every)
    parser.add_argument('--log-every', type=int, default=defaults.log_every)
    parser.add_argument('--window-frames', type=int, default=0, help='frames per window (default context + 1)')
    parser.add_argument('--speed-perturb', type=float, default=defaults.speed_perturb,
                        help='play each window up to this much faster or slower, audio and motion together '
                             '(0.1: 0.9x to 1.1x in steps of 0.05; 0 = off)')
    parser.add_argument('--augment', default='', help='comma-separated kinds of audio augmentation '
                        f'({", ".join(k for k in AUGMENTATIONS if k != "rate")}); default none')
    parser.add_argument('--augment-p', type=float, default=defaults.augment_p,
                        help='probability of each augmentation kind, per window and voice')
    parser.add_argument('--context-frames', type=int, default=None, help='override the attention window')
    parser.add_argument('--lookahead-ms', type=int, default=None, help='override the encoder lookahead')
    parser.add_argument('--audio-frontend', choices=AUDIO_FRONTENDS, default=None,
                        help="what the encoders read: our log-mel, or Whisper tiny.en's pretrained stem (frozen)")
    parser.add_argument('--anchor', choices=['window_end', 'rest'], default=None,
                        help="the anchor in training: one of the window's last frames (the paper's), or the "
                             "speaker's rest pose")
    parser.add_argument('--device', default='', help='cpu, cuda, cuda:1 (default: cuda if available)')
    for name in GUIDANCE_WEIGHTS:
        parser.add_argument(f'--{name.replace("_", "-")}', type=float, default=None,
                            help='guidance weight stored with the weights as the inference default')
    parser.add_argument('--context-noise', type=float, default=None,
                        help='noise level drawn per window up to this (normalised units) added to every context '
                             'frame, the last included, so the model cannot just continue its last frame (default 0)')
    parser.add_argument('--init', type=Path, default=None,
                        help='fine-tune: start from the weights of this model.safetensors (same architecture; its '
                             'config is the base that the model flags change)')
    parser.add_argument('--resume', action='store_true', help='continue from OUT/train_state.safetensors')
    parser.add_argument('--no-progress', action='store_true', help='no progress bar')


def run(args: argparse.Namespace) -> int:
    """Train from parsed arguments."""
    overrides = {k: getattr(args, k) for k in ('context_frames', 'lookahead_ms', 'audio_frontend', 'anchor',
                                               'context_noise', *GUIDANCE_WEIGHTS)
                 if getattr(args, k) is not None}
    if args.init is not None and args.config:
        msg = '--init takes the model size from the weights it starts from; drop --config'
        raise ConfigError(msg)
    model_config = None
    if args.init is not None:
        base = config_from_metadata(read_tensors(args.init)[1], args.init)
        model_config = base.replace(**overrides)
    elif not args.resume or args.config or overrides:  # on resume, only an explicit request is checked
        model_config = ModelConfig.preset(args.config or 'tiny').replace(**overrides)
    cfg = TrainConfig(data=tuple(args.data), out=args.out, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                      weight_decay=args.weight_decay, warmup_steps=args.warmup_steps, lr_decay=args.lr_decay,
                      ema_decay=args.ema_decay, grad_clip=args.grad_clip, seed=args.seed, save_every=args.save_every,
                      log_every=args.log_every, window_frames=args.window_frames,
                      speed_perturb=args.speed_perturb, augment=tuple(k for k in args.augment.split(',') if k),
                      augment_p=args.augment_p, device=args.device,
                      resume=args.resume, init=args.init, progress=not args.no_progress)
    result = train(cfg, model_config)
    if result.model_path is not None:
        print(f'step {result.last_step}: weights in {result.model_path}')
    return 0
