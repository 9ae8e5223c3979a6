"""Check the converted published renderer against the official golden run at full size (512 px), once.

The tests (test/test_published_renderer.py) cover every sub-module at small size and the cheap full-size pieces; the
full face generator takes about a minute a frame on 2 CPU cores, so only this script runs it. It

1. completes ``renderer_random.ckpt`` of the official reference with its 188 face_generator parameters that are not
   stored, regenerated from ``renderer_weights_manifest.json`` (reference README, section 4.2);
2. converts that checkpoint with the real converter and loads the result;
3. runs face encoder, motion encoder, flow estimator and face generator on ``in.source_image_u8`` and
   ``in.driving_latent`` as the golden run did (source latent = the image's own) and compares every tensor of
   ``renderer_golden.safetensors``: full tensors and probes by max |ours - official| / max |official|, and each
   probed tensor's [mean, std, min, max, mean |x|] by its largest difference over the official std.

Usage: ``.venv/bin/python tools/check_published_renderer.py --reference ../shared/official_reference``
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / 'test')]

from support.published_renderer_fixture import uniform, write_lightning_checkpoint  # noqa: E402

from dystream_ros.face.published_face import image_to_input  # noqa: E402
from dystream_ros.face.published_renderer import HeadAnimator  # noqa: E402
from dystream_ros.face.published_weights import convert_published_renderer, load_published_model  # noqa: E402


def complete_checkpoint(reference: Path, out: Path) -> Path:
    """renderer_random.ckpt plus the regenerated face_generator parameters, in the Lightning layout."""
    state_dict = dict(torch.load(reference / 'renderer_random.ckpt', weights_only=True, map_location='cpu')
                      ['state_dict'])
    rows = json.loads((reference / 'renderer_weights_manifest.json').read_text(encoding='utf-8'))['entries']
    for row in rows:
        if not row['stored']:
            state_dict[row['key']] = torch.from_numpy(uniform(row['key'], row['shape'], row['offset'], row['bound']))
    if len(state_dict) != len(rows):
        msg = f'{len(state_dict)} entries after merging, the manifest has {len(rows)}'
        raise SystemExit(msg)
    return write_lightning_checkpoint(out, state_dict)


def run_official_order(model: HeadAnimator, image_u8: np.ndarray, driving: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every golden tensor, computed by our modules, recorded by forward hooks where it is a module output."""
    seen: dict[str, torch.Tensor] = {}
    hooked = {'face_encoder': ['first', *[f'down_blocks.{i}' for i in range(3)], 'second',
                               *[f'resblocks_3d.3dr{i}' for i in range(6)]],
              'motion_encoder': [f'convs.{i}' for i in range(9)],
              'face_generator': ['extend_layer', 'conv1', *[f'resblock{i}' for i in range(1, 5)], 'gn', 'conv2',
                                 'projection', 'occlusion', 'fc', *[f'G_middle_{i}' for i in range(6)], 'up_0',
                                 'up_1', 'conv_img']}
    for net, names in hooked.items():
        for name in names:
            module = getattr(model, net).get_submodule(name)
            module.register_forward_hook(
                lambda _m, _a, out, key=f'{net}.{name}': seen.__setitem__(key, out.detach().clone()))
    with torch.no_grad():
        x = image_to_input(image_u8, 512)
        seen['in.source_image_stats'] = torch.tensor([x.double().sum(), x.double().abs().sum()])
        seen['face_encoder.out'] = appearance = model.face_encoder(x)
        seen['motion_encoder.latent'] = source = model.motion_encoder(x)
        flow = model.flow_estimator
        seen['flow_estimator.Q'] = flow.direction.basis
        seen['flow_estimator.fc_out'] = flow.fc(driving)
        seen['flow_estimator.direction_out'] = seen['flow_estimator.fc_out'] @ flow.direction.basis.T
        seen['flow_estimator.out'] = target = flow(source, driving)
        fg = model.face_generator
        seen['face_generator.out'] = fg(target, appearance)
        # not module outputs: rebuilt from the recorded ones
        field = fg.identity_grid + torch.tanh(seen['face_generator.conv2']).permute(0, 2, 3, 4, 1)
        seen['face_generator.warping_field'] = field
        seen['face_generator.warped_volume'] = F.grid_sample(appearance, field, align_corners=False)
    return seen


def stats(x: torch.Tensor) -> torch.Tensor:
    """[mean, std (unbiased), min, max, mean |x|] in float64, as the golden ``.stats``."""
    x = x.double().flatten()
    return torch.stack([x.mean(), x.std(), x.min(), x.max(), x.abs().mean()])


def compare(ours: dict[str, torch.Tensor], golden: dict[str, torch.Tensor]) -> list[tuple[str, str, float]]:
    """(name, how, error) for every golden tensor."""
    rows = []
    names = sorted({k.removesuffix('.probe').removesuffix('.probe_idx').removesuffix('.stats') for k in golden})
    for name in names:
        if name in ('in.source_image_u8', 'in.driving_latent'):
            continue
        value = ours[name]
        if name in golden:
            official = golden[name].to(value.dtype)
            rows.append((name, 'full', float((value - official).abs().max() / official.abs().max())))
            continue
        probe = value.flatten()[golden[name + '.probe_idx'].long()]
        official = golden[name + '.probe']
        rows.append((name, 'probe', float((probe - official).abs().max() / official.abs().max())))
        reference = golden[name + '.stats']
        rows.append((name, 'stats', float((stats(value) - reference).abs().max() / reference[1])))
    return rows


def main() -> int:
    """Run the check and print the errors; exit status 1 if one exceeds --rtol."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--reference', type=Path, required=True, help='the official_reference folder')
    parser.add_argument('--rtol', type=float, default=1e-4, help='largest relative error accepted')
    args = parser.parse_args()
    started = time.monotonic()
    golden = load_file(str(args.reference / 'renderer_golden.safetensors'))
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = complete_checkpoint(args.reference, Path(tmp) / 'renderer_complete.ckpt')
        print(f'completed checkpoint: {time.monotonic() - started:.1f} s', flush=True)
        converted = convert_published_renderer(checkpoint, Path(tmp) / 'renderer.safetensors',
                                               progress=lambda line: print(f'  {line}', flush=True))
        model = load_published_model(converted)
    print(f'converted and loaded: {time.monotonic() - started:.1f} s', flush=True)
    forward_started = time.monotonic()
    ours = run_official_order(model, golden['in.source_image_u8'].numpy(), golden['in.driving_latent'])
    print(f'full-size forward (all four sub-nets, {torch.get_num_threads()} threads): '
          f'{time.monotonic() - forward_started:.1f} s', flush=True)
    rows = compare(ours, golden)
    for name, how, error in rows:
        print(f'{error:10.2e}  {how:5s}  {name}')
    groups: dict[str, float] = {}
    for name, how, error in rows:
        group = f'{name.split(".")[0]} ({how})'
        groups[group] = max(groups.get(group, 0.0), error)
    print('max relative error per group:')
    for group, error in groups.items():
        print(f'{error:10.2e}  {group}')
    frame = ((ours['face_generator.out'][0] + 1) / 2 * 255).clamp(0, 255).to(torch.uint8)
    official = ((golden['face_generator.out'][0] + 1) / 2 * 255).clamp(0, 255).to(torch.uint8)
    print(f'uint8 frame: {int((frame.int() - official.int()).abs().max())} max level difference, '
          f'{int((frame != official).sum())} of {frame.numel()} values differ')
    print(f'total {time.monotonic() - started:.1f} s')
    worst = max(error for _, how, error in rows if how != 'stats')
    return 0 if worst <= args.rtol else 1


if __name__ == '__main__':
    sys.exit(main())
