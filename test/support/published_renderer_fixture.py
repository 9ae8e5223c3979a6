"""Rebuild the random-weight published renderer checkpoint from its manifest, without the 50 MB file.

Every tensor of ``official_reference/renderer_random.ckpt`` was made by a rule that the manifest
(``test/data/official/renderer_weights_manifest.json``) records row by row (official_reference README, section 4.2):

* ``uniform``: ``float16(float32(offset + (2u - 1) bound))`` with ``u`` the first ``numel`` draws of
  ``numpy.random.RandomState(crc32(key)).random_sample`` (float64, C order);
* ``num_batches_tracked``: int64 312000;
* the motion encoder's Blur kernels: outer([1, 3, 3, 1]) / 64;
* spectral-norm ``weight_u`` / ``weight_v``: the uniform rule (offset 0, bound 1) normalised, then 3 power
  iterations in float64 on the float16 ``weight_orig`` viewed (out, -1), cast to float32 and then float16.

The result is the complete 404-entry state_dict (including the 188 face_generator parameters the reference file
leaves out), saved in the Lightning layout the published ``epoch=0-step=312000.ckpt`` has.
"""
from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import torch

DATA = Path(__file__).resolve().parent.parent / 'data' / 'official'
MANIFEST = DATA / 'renderer_weights_manifest.json'
NUM_BATCHES_TRACKED = 312000
POWER_ITERATIONS = 3


def uniform(key: str, shape: list[int], offset: float, bound: float) -> np.ndarray:
    """The manifest's uniform rule, as float16."""
    n = int(np.prod(shape, dtype=np.int64))
    u = np.random.RandomState(zlib.crc32(key.encode('utf-8'))).random_sample(n)
    return (offset + (2.0 * u - 1.0) * bound).astype(np.float32).astype(np.float16).reshape(shape)


def blur_kernel() -> np.ndarray:
    """StyleGAN2's make_kernel([1, 3, 3, 1]): the normalised outer product, (4, 4) float16."""
    k = np.array([1.0, 3.0, 3.0, 1.0])
    k = np.outer(k, k)
    return (k / k.sum()).astype(np.float16)


def power_iteration(weight_orig: np.ndarray, u_key: str, v_key: str) -> tuple[np.ndarray, np.ndarray]:
    """The stored spectral-norm vectors (u, v) of ``weight_orig`` (float16), by the manifest's rule."""
    w = weight_orig.astype(np.float64).reshape(weight_orig.shape[0], -1)
    u = uniform(u_key, [w.shape[0]], 0.0, 1.0).astype(np.float64)
    v = uniform(v_key, [w.shape[1]], 0.0, 1.0).astype(np.float64)
    u, v = u / np.linalg.norm(u), v / np.linalg.norm(v)
    for _ in range(POWER_ITERATIONS):
        v = w.T @ u
        v /= np.linalg.norm(v)
        u = w @ v
        u /= np.linalg.norm(u)
    return u.astype(np.float32).astype(np.float16), v.astype(np.float32).astype(np.float16)


def regenerate_state_dict(manifest_path: Path = MANIFEST) -> dict[str, torch.Tensor]:
    """All 404 renderer state_dict entries, in the manifest's (the official registration) order."""
    rows = json.loads(manifest_path.read_text(encoding='utf-8'))['entries']
    made: dict[str, np.ndarray] = {}
    for row in rows:
        key, shape = row['key'], row['shape']
        if row['rule'] == 'uniform':
            made[key] = uniform(key, shape, row['offset'], row['bound'])
        elif key.endswith('num_batches_tracked'):
            made[key] = np.array(NUM_BATCHES_TRACKED, dtype=np.int64)
        elif key.endswith('.kernel'):
            made[key] = blur_kernel()
        elif key.endswith('weight_u'):
            base = key.removesuffix('weight_u')
            made[key], made[base + 'weight_v'] = power_iteration(
                made[base + 'weight_orig'], key, base + 'weight_v')
        elif not key.endswith('weight_v'):
            msg = f'no rule for manifest row {key}: {row["rule"]}'
            raise ValueError(msg)
    return {row['key']: torch.from_numpy(made[row['key']]) for row in rows}


def write_lightning_checkpoint(path: Path, state_dict: dict[str, torch.Tensor] | None = None) -> Path:
    """Save ``state_dict`` (the regenerated renderer by default) in the published checkpoint's layout."""
    checkpoint = {'epoch': 0, 'global_step': NUM_BATCHES_TRACKED, 'pytorch-lightning_version': '2.6.0',
                  'state_dict': regenerate_state_dict() if state_dict is None else state_dict}
    torch.save(checkpoint, path)
    return path
