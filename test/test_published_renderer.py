"""The published renderer, converted from a checkpoint in the published layout, against the official code.

The checkpoint is the random-weight reference (official_reference README, section 4), rebuilt from its manifest
(support/published_renderer_fixture.py) and converted by the real converter. The goldens were computed with the
official modules: ``renderer_units_golden.safetensors`` runs every sub-module at small size, and
``renderer_golden_extract.safetensors`` holds the full-size (512 px) tensors that are cheap to recompute. The
full-size face generator (about a minute a frame on 2 cores) never runs here; ``tools/check_published_renderer.py``
runs it against the complete reference once.

Relative error, throughout: max |ours - official| / max |official| over the tensor, i.e. the largest error as a
fraction of the tensor's own scale (element-wise ratios would blow up at the many values near 0).
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from safetensors import safe_open
from safetensors.torch import load_file
from support.published_renderer_fixture import DATA, regenerate_state_dict, write_lightning_checkpoint

from dystream_ros.errors import DataError
from dystream_ros.face.published_face import PublishedRenderer, TorchRendererParts, image_to_input
from dystream_ros.face.published_renderer import HeadAnimator, PublishedRendererConfig
from dystream_ros.face.published_weights import (
    FORMAT,
    SPECTRAL_NORM,
    convert_published_renderer,
    fold_state_dict,
    load_published_model,
)
from dystream_ros.resources import file_sha256

REL_TOL = 1e-4
UNITS = load_file(str(DATA / 'renderer_units_golden.safetensors'))
FULL = load_file(str(DATA / 'renderer_golden_extract.safetensors'))


def relative_error(ours: torch.Tensor, official: torch.Tensor) -> float:
    """Max |ours - official| / max |official| (see the module docstring)."""
    assert ours.shape == official.shape, f'shape {tuple(ours.shape)} != {tuple(official.shape)}'
    return float((ours - official).abs().max() / official.abs().max())


def assert_matches(results: dict[str, torch.Tensor], golden: dict[str, torch.Tensor]) -> None:
    errors = {name: relative_error(value, golden[name]) for name, value in results.items()}
    worst = max(errors, key=errors.get)
    print(f'{len(errors)} tensors, worst {worst}: {errors[worst]:.2e}')
    assert errors[worst] <= REL_TOL, {k: f'{v:.2e}' for k, v in errors.items() if v > REL_TOL}


@pytest.fixture(scope='module')
def official_state_dict() -> dict[str, torch.Tensor]:
    return regenerate_state_dict()


@pytest.fixture(scope='module')
def checkpoint(official_state_dict: dict[str, torch.Tensor], tmp_path_factory: pytest.TempPathFactory) -> Path:
    # the real file also holds the training losses' modules, which the converter must skip
    extra = {'discriminator.convs.0.0.weight': torch.zeros(2, 3, 1, 1, dtype=torch.float16),
             'criterion_vgg.vgg_net.slice1.0.weight': torch.zeros(2, 3, 3, 3)}
    path = tmp_path_factory.mktemp('published') / 'epoch=0-step=312000.ckpt'
    return write_lightning_checkpoint(path, {**official_state_dict, **extra})


@pytest.fixture(scope='module')
def converted(checkpoint: Path) -> Path:
    lines: list[str] = []
    out = convert_published_renderer(checkpoint, checkpoint.with_name('renderer.safetensors'), progress=lines.append)
    assert lines, 'the converter reports its steps'
    return out


@pytest.fixture(scope='module')
def model(converted: Path) -> HeadAnimator:
    return load_published_model(converted)


def test_converted_file_records_its_config_and_source(converted: Path, checkpoint: Path) -> None:
    with safe_open(str(converted), 'pt') as f:
        metadata = f.metadata()
        dtypes = {f.get_slice(k).get_dtype() for k in f.keys()}  # noqa: SIM118 (safe_open is not iterable)
    assert metadata['format'] == FORMAT
    assert metadata['source_sha256'] == file_sha256(checkpoint)
    assert metadata['source_global_step'] == '312000'
    official = json.loads((DATA / 'renderer_config.json').read_text(encoding='utf-8'))['subnet_kwargs']
    assert PublishedRendererConfig.from_json(metadata['config']) == PublishedRendererConfig.from_official(official)
    assert dtypes <= {'F32', 'I64'}  # float16 upcast; num_batches_tracked stays int64


def test_face_encoder_matches_official_at_32px(model: HeadAnimator) -> None:
    fe, x, results = model.face_encoder, UNITS['fe32.in'], {}
    with torch.no_grad():
        x = results['fe32.first'] = fe.first(x)
        for i, block in enumerate(fe.down_blocks):
            x = results[f'fe32.down_blocks.{i}'] = block(x)
        x = results['fe32.second'] = fe.second(x)
        x = x.view(1, 32, 16, 4, 4)
        for name, block in fe.resblocks_3d.named_children():
            x = results[f'fe32.resblocks_3d.{name}'] = block(x)
    assert_matches(results, UNITS)


def test_motion_encoder_matches_official_at_small_size(model: HeadAnimator) -> None:
    convs, results = model.motion_encoder.convs, {}
    with torch.no_grad():
        for prefix, indices in (('me32', range(6)), ('me8', (6, 7)), ('me4', (8,))):
            x = UNITS[f'{prefix}.in']
            for i in indices:
                x = results[f'{prefix}.convs.{i}'] = convs[i](x)
    assert_matches(results, UNITS)


def test_face_generator_warp_blocks_match_official_at_small_size(model: HeadAnimator) -> None:
    fg, results = model.face_generator, {}
    with torch.no_grad():
        for k in range(1, 5):
            block = getattr(fg, f'resblock{k}')
            results[f'fg.resblock{k}.out'] = block(UNITS[f'fg.resblock{k}.in'], UNITS['fg.cond'])
        z = UNITS['fg.tail.in']
        results['fg.tail.gn'] = fg.gn(z)
        results['fg.tail.conv2'] = fg.conv2(F.relu(fg.gn(z)))
        results['fg.tail.deltas'] = fg.deltas(z)
    assert_matches(results, UNITS)


def test_face_generator_decoder_matches_official_at_small_size(model: HeadAnimator) -> None:
    fg, volume, seg, results = model.face_generator, UNITS['fg.proj.in'], UNITS['fg.dec.seg'], {}
    with torch.no_grad():
        results['fg.proj.projection'] = fg.projection(volume)
        results['fg.proj.occlusion'] = fg.occlusion(volume.flatten(1, 2))
        results['fg.proj.seg'] = fg.segmap(volume)
        x = results['fg.dec.fc'] = fg.fc(seg)
        for i in range(6):
            x = results[f'fg.dec.G_middle_{i}'] = getattr(fg, f'G_middle_{i}')(x, seg)
        x = results['fg.dec.up_0'] = fg.up_0(F.interpolate(x, scale_factor=2), seg)
        x = results['fg.dec.up_1'] = fg.up_1(F.interpolate(x, scale_factor=2), seg)
        results['fg.dec.conv_img'] = fg.conv_img(F.leaky_relu(x, 0.2))
        results['fg.dec.out'] = fg.decode(seg)
    assert_matches(results, UNITS)


def test_flow_estimator_matches_official_at_full_size(model: HeadAnimator) -> None:
    flow, driving = model.flow_estimator, FULL['in.driving_latent']
    with torch.no_grad():
        fc_out = flow.fc(driving)
        results = {'flow_estimator.Q': flow.direction.basis, 'flow_estimator.fc_out': fc_out,
                   'flow_estimator.direction_out': fc_out @ flow.direction.basis.T,
                   'flow_estimator.out': flow(FULL['motion_encoder.latent'], driving)}
    assert_matches(results, FULL)


def test_warping_branch_matches_official_at_full_size(model: HeadAnimator) -> None:
    fg, seen = model.face_generator, {}
    hooks = [getattr(fg, name).register_forward_hook(lambda module, args, out, name=name: seen.__setitem__(name, out))
             for name in ('conv1', 'resblock1', 'resblock2', 'resblock3', 'resblock4')]
    try:
        with torch.no_grad():
            code = fg.condition(FULL['flow_estimator.out'])
            field = fg.identity_grid + fg.deltas(fg.warp_volume(code))  # (1, 16, 64, 64, 3)
    finally:
        for hook in hooks:
            hook.remove()
    results = {'face_generator.extend_layer': code, 'face_generator.conv1': seen['conv1']}
    probed = {f'face_generator.{name}': seen[name] for name in ('resblock1', 'resblock2', 'resblock3', 'resblock4')}
    probed['face_generator.warping_field'] = field
    for name, value in probed.items():
        results[name + '.probe'] = value.flatten()[FULL[name + '.probe_idx'].long()]
    assert_matches(results, FULL)


def test_source_image_gives_the_official_motion_latent(model: HeadAnimator) -> None:
    x = image_to_input(FULL['in.source_image_u8'].numpy(), 512)
    with torch.no_grad():
        latent = model.motion_encoder(x)
    assert_matches({'motion_encoder.latent': latent}, FULL)


def test_sigma_by_svd_instead_of_the_stored_u_v_would_not_match(
        model: HeadAnimator, official_state_dict: dict[str, torch.Tensor]) -> None:
    # A converter that normalises by the top singular value (a converged power iteration) renders another face.
    wrong = copy.deepcopy(model.face_generator)
    for key in model.state_dict():
        if SPECTRAL_NORM.match(key):
            orig = official_state_dict[key + '_orig'].float()
            wrong.get_parameter(key.removeprefix('face_generator.')).data = orig / torch.linalg.matrix_norm(
                orig.flatten(1), ord=2)
    with torch.no_grad():
        error = relative_error(wrong.decode(UNITS['fg.dec.seg']), UNITS['fg.dec.out'])
    print(f'fg.dec.out with sigma by SVD: {error:.2e}')
    assert error > 100 * REL_TOL


def test_unknown_and_missing_keys_are_refused_by_name(official_state_dict: dict[str, torch.Tensor]) -> None:
    config = PublishedRendererConfig()
    with pytest.raises(DataError, match=r"unknown \['face_generator.G_middle_6.conv_0.weight_orig'\]"):
        fold_state_dict({**official_state_dict, 'face_generator.G_middle_6.conv_0.weight_orig': torch.zeros(1)},
                        config)
    missing = dict(official_state_dict)
    del missing['face_generator.up_1.conv_s.weight_u']
    with pytest.raises(DataError, match=r"missing \['face_generator.up_1.conv_s.weight_u'\]"):
        fold_state_dict(missing, config)


class _RecordingParts(TorchRendererParts):
    """The torch parts with the full-size warp and decoder left out: records what the frame moves from and to,
    returns a grey frame."""

    def __init__(self, model: HeadAnimator) -> None:
        super().__init__(model)
        self.moves: list[tuple[torch.Tensor, torch.Tensor]] = []

    def segmap(self, flow_from: torch.Tensor, driving: torch.Tensor, appearance: torch.Tensor) -> torch.Tensor:
        self.moves.append((flow_from, driving))
        return torch.zeros(1, 256, 64, 64)

    def decode(self, seg: torch.Tensor) -> torch.Tensor:
        return torch.zeros(1, 3, 512, 512) + 0.5


def test_render_latent_moves_from_the_first_latent_as_app_py_or_from_the_image(model: HeadAnimator) -> None:
    parts = _RecordingParts(model)
    renderer = PublishedRenderer(parts)  # flow_source='first_latent', as app.py
    first, second = FULL['in.driving_latent'][0].numpy(), np.zeros(512, np.float32)
    renderer.set_source(FULL['in.source_image_u8'].numpy())
    # The motion encoder's latent of the source image, to float rounding (BLAS kernels differ between CPUs).
    source_latent = torch.from_numpy(renderer.source_latent)[None]
    assert relative_error(source_latent, FULL['motion_encoder.latent']) <= REL_TOL
    frame = renderer.render_latent(first)
    renderer.render_latent(second)
    renderer.flow_source = 'image'
    renderer.restart_flow_source()
    renderer.render_latent(second)
    assert frame.shape == (512, 512, 3) and frame.dtype == np.uint8
    assert np.all(frame == 191)  # clip((0.5 + 1) / 2 * 255) = 191.25, truncated as app.py
    first_t, second_t = torch.from_numpy(first)[None], torch.from_numpy(second)[None]
    expected = [(first_t, first_t), (first_t, second_t), (source_latent, second_t)]
    assert len(parts.moves) == len(expected)
    for (got_from, got_to), (want_from, want_to) in zip(parts.moves, expected):
        torch.testing.assert_close(got_from, want_from)
        torch.testing.assert_close(got_to, want_to)


def test_source_image_of_another_size_is_resized_to_512() -> None:
    x = image_to_input(np.full((300, 200, 3), 255, np.uint8), 512)
    assert x.shape == (1, 3, 512, 512)
    torch.testing.assert_close(x, torch.ones_like(x))
