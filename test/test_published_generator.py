"""The published DyStream generator, re-implemented, against the official code's golden tensors (random weights).

Data (``test/data/official/``, copied from ``shared/official_reference`` and described in its README): a reduced
``Audio2FaceGPT`` in the Lightning container of ``last.ckpt`` (``generator_random.ckpt``: raw weights in the
state_dict, different EMA weights in ``ema_state``), its config (``generator_config.json``) and the inputs,
intermediates and outputs of the official offline inference run on the EMA weights
(``generator_golden.safetensors``).

Error measure: ``max|ours - golden| / max|golden|`` over each tensor, at most 1e-4 (the official run differs from
itself by about 1e-6 between 1 and 2 threads). The module tests feed each part the golden inputs of that part, so a
failure points at one module; the end-to-end test feeds only the audio, m0 and the per-frame noise ``in.noise``
(the official RNG stream cannot be re-drawn, README section 7).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from dystream_ros.errors import CheckpointError, StreamError
from dystream_ros.model.published import (
    FPS,
    Guidance,
    PublishedConfig,
    PublishedGenerator,
    flow_schedule,
)
from dystream_ros.model.published_checkpoint import (
    convert_published_generator,
    load_published_generator,
    official_parameter_names,
)
from dystream_ros.model.published_stream import PublishedStream
from dystream_ros.model.wav2vec2 import TAIL_PAD_SAMPLES, normalize_utterance, to_video_rate

DATA = Path(__file__).resolve().parent / 'data' / 'official'
CKPT = DATA / 'generator_random.ckpt'
REFERENCE = json.loads((DATA / 'generator_config.json').read_text(encoding='utf-8'))
TOLERANCE = 1e-4  # max|a - b| / max|b|


def relative_error(ours: torch.Tensor, golden: torch.Tensor) -> float:
    """max|ours - golden| / max|golden|."""
    assert ours.shape == golden.shape, f'{tuple(ours.shape)} != {tuple(golden.shape)}'
    return float((ours - golden).abs().max() / golden.abs().max())


def assert_close(ours: torch.Tensor, golden: torch.Tensor, name: str) -> None:
    error = relative_error(ours, golden)
    assert error <= TOLERANCE, f'{name}: relative error {error:.2e}'


@pytest.fixture(scope='module')
def config() -> PublishedConfig:
    return PublishedConfig.from_reference(REFERENCE)


@pytest.fixture(scope='module')
def golden() -> dict[str, torch.Tensor]:
    return load_file(str(DATA / 'generator_golden.safetensors'))


@pytest.fixture(scope='module')
def model(tmp_path_factory: pytest.TempPathFactory, config: PublishedConfig) -> PublishedGenerator:
    out = convert_published_generator(CKPT, tmp_path_factory.mktemp('published') / 'generator.safetensors', config)
    return load_published_generator(out)


def test_parameter_order_is_the_official_ema_order(config: PublishedConfig) -> None:
    assert official_parameter_names(config) == REFERENCE['parameter_order']


def test_full_size_has_the_released_parameter_count() -> None:
    names = official_parameter_names(PublishedConfig())
    with torch.device('meta'):
        model = PublishedGenerator(PublishedConfig())
    assert len(names) == 778
    # ours folds each positional conv's weight norm (g [1, 1, 128] + v) into one weight
    assert sum(p.numel() for p in model.parameters()) + 2 * 128 == 393_908_736


def test_schedule_is_the_schedulers(golden: dict[str, torch.Tensor]) -> None:
    timesteps, sigmas = flow_schedule(5)
    assert torch.equal(timesteps, golden['in.timesteps'])
    assert torch.equal(sigmas, golden['in.sigmas'])
    assert timesteps.long().tolist() == [1000, 750, 500, 250, 1]


@torch.no_grad()
def test_wav2vec2_matches_module_by_module(model: PublishedGenerator, golden: dict[str, torch.Tensor]) -> None:
    encoder = model.audio_encoder_face
    assert_close(normalize_utterance(golden['in.audio_self']), golden['w2v.self.input_values'], 'input_values')
    padded = torch.cat([golden['w2v.self.input_values'], torch.zeros(1, TAIL_PAD_SAMPLES)], dim=1)
    assert_close(encoder.feature_extractor(padded), golden['w2v.self.feature_extractor'], 'feature_extractor')
    projected = encoder.feature_projection(golden['w2v.self.feature_extractor'].transpose(1, 2))
    assert_close(projected, golden['w2v.self.feature_projection'], 'feature_projection')
    assert_close(encoder.encoder.pos_conv_embed(golden['w2v.self.feature_projection']),
                 golden['w2v.self.pos_conv_embed'], 'pos_conv_embed')
    x = encoder.encoder.layer_norm(golden['w2v.self.feature_projection'] + golden['w2v.self.pos_conv_embed'])
    assert_close(encoder.encoder.layers[0](x), golden['w2v.self.layer0'], 'layer0')
    assert_close(encoder.encoder.layers[1](golden['w2v.self.layer0']), golden['w2v.self.layer1'], 'layer1')
    assert_close(to_video_rate(golden['w2v.self.high_level_50hz'], FPS), golden['w2v.self.fea_25fps'], 'fea_25fps')
    for stream, track, wav2vec in (('self', 'in.audio_self', encoder),
                                   ('other', 'in.audio_other', model.audio_encoder_face_other)):
        padded = torch.cat([golden[f'w2v.{stream}.input_values'], torch.zeros(1, TAIL_PAD_SAMPLES)], dim=1)
        assert_close(wav2vec(padded), golden[f'w2v.{stream}.high_level_50hz'], f'{stream} high_level_50hz')
        assert_close(wav2vec.encode_utterance(golden[track], FPS), golden[f'w2v.{stream}.fea_25fps'],
                     f'{stream} fea_25fps from raw audio')


@torch.no_grad()
def test_gpt_matches_sub_layer_by_sub_layer(model: PublishedGenerator, golden: dict[str, torch.Tensor]) -> None:
    feat_self, feat_other = golden['w2v.self.fea_25fps'][:, 1:96], golden['w2v.other.fea_25fps'][:, 1:96]
    assert_close(model.audio_proj(feat_self), golden['frame0.audio_proj'], 'audio_proj')
    assert_close(model.audio_other_proj(feat_other), golden['frame0.audio_other_proj'], 'audio_other_proj')
    assert_close(model.fused_audio(feat_self, feat_other).transpose(0, 1), golden['frame0.audio_hidden'],
                 'audio_hidden')
    assert_close(model.anchor_embed(golden['in.motion_m0']), golden['frame0.anchor_hidden'], 'anchor_hidden')
    past = golden['out.motion_full'][:, :94]
    assert_close(model.face_embed(past), golden['frame0.face_hidden_past'], 'face_hidden_past')
    x, audio, anchor = golden['frame0.gpt_in_x'], golden['frame0.gpt_in_audio'], golden['frame0.gpt_in_anchor']
    mask = torch.ones(94, 94, dtype=torch.bool).tril()
    assert torch.equal(mask, golden['frame0.causal_mask'] == 0)
    block = model.blocks[0]
    h = x
    for name, part in (('self_attn_rope', lambda h: block.self_attn_rope(block.norm1(h), mask)),
                       ('cross_linear_audio', lambda _h: block.cross_linear_audio(audio)),
                       ('cross_attn_anchor', lambda h: block.cross_attn_anchor(block.norm_anchor(h), anchor)),
                       ('self_attn_pos', lambda h: block.self_attn_pos(block.norm3(h), mask)),
                       ('mlp', lambda h: block.mlp(block.norm4(h)))):
        assert_close(part(h), golden[f'frame0.block0.{name}'], f'block0.{name}')
        h = h + golden[f'frame0.block0.{name}']
    assert_close(block(x, audio, anchor, mask), golden['frame0.block0_out'], 'block0_out')
    assert_close(model.blocks[1](golden['frame0.block0_out'], audio, anchor, mask), golden['frame0.block1_out'],
                 'block1_out')
    timesteps, _ = flow_schedule(5)
    assert_close(model.time_embed(timesteps.long())[:, None], golden['frame0.time_embed'], 'time_embed')


@torch.no_grad()
def test_gpt_conditions_of_every_frame(model: PublishedGenerator, golden: dict[str, torch.Tensor]) -> None:
    full, frames = golden['out.motion_full'][0], golden['gpt.out'].shape[0]
    past = torch.stack([full[k : k + 94] for k in range(frames)])  # (49, 94, 512)

    def windows(features: torch.Tensor) -> torch.Tensor:
        return torch.stack([features[0, k + 1 : k + 95] for k in range(frames)])  # (49, 94, A)

    conditions = model.conditions(past, windows(golden['w2v.self.fea_25fps']), windows(golden['w2v.other.fea_25fps']),
                                  golden['in.motion_m0'].expand(frames, 1, -1))
    assert_close(conditions, golden['gpt.out'][:, :, 0], 'gpt.out')


@torch.no_grad()
def test_flow_head_and_euler_steps_of_every_frame(model: PublishedGenerator, golden: dict[str, torch.Tensor]
                                                  ) -> None:
    timesteps, sigmas = flow_schedule(5)
    latent_in = torch.cat([golden['in.noise'][:, :, 0], golden['head.latent_out'][:, :4, 0, 0]], dim=1)  # (49, 5, D)
    conditions = golden['gpt.out'][:, :, 0]  # (49, 5 branches, D)
    guidance = Guidance(*golden['in.cfg_weights'].tolist())
    for step in range(5):
        temb = model.time_embed(timesteps[step : step + 1].long())
        x0 = model.diffusion_head(latent_in[:, step, None], conditions, temb)
        assert_close(x0, golden['head.x0'][:, step, :, 0], f'head.x0 step {step}')
        x0_cfg = guidance.combine(golden['head.x0'][:, step, :, 0])
        assert_close(x0_cfg, golden['head.x0_cfg'][:, step, 0, 0], f'head.x0_cfg step {step}')
        latent = latent_in[:, step]
        latent = latent + (sigmas[step + 1] - sigmas[step]) * (latent - x0_cfg) / (sigmas[step] + 1e-9)
        assert_close(latent, golden['head.latent_out'][:, step, 0, 0], f'head.latent_out step {step}')


def test_generate_reproduces_the_official_motion(model: PublishedGenerator, golden: dict[str, torch.Tensor]
                                                 ) -> None:
    cfg_audio, cfg_audio_other, cfg_anchor, cfg_all = golden['in.cfg_weights'].tolist()
    motion = model.generate(golden['in.audio_self_2s'], golden['in.audio_other_2s'], golden['in.motion_m0'],
                            cfg_audio=cfg_audio, cfg_audio_other=cfg_audio_other, cfg_anchor=cfg_anchor,
                            cfg_all=cfg_all, steps=5, noise=golden['in.noise'])
    assert_close(motion, golden['out.motion'][0], 'out.motion')
    assert relative_error(motion, golden['out.motion_raw_weights'][0]) > 100 * TOLERANCE


def test_raw_weights_give_the_raw_weight_motion_not_the_official(
        tmp_path: Path, config: PublishedConfig, golden: dict[str, torch.Tensor]) -> None:
    raw = load_published_generator(convert_published_generator(CKPT, tmp_path / 'raw.safetensors', config,
                                                               weights='raw'))
    motion = raw.generate(golden['in.audio_self_2s'], golden['in.audio_other_2s'], golden['in.motion_m0'],
                          noise=golden['in.noise'])
    assert_close(motion, golden['out.motion_raw_weights'][0], 'out.motion_raw_weights')
    assert relative_error(motion, golden['out.motion'][0]) > 100 * TOLERANCE


def test_converter_refuses_a_renamed_key(tmp_path: Path, config: PublishedConfig) -> None:
    checkpoint = torch.load(CKPT, map_location='cpu', weights_only=True)
    key = 'model.blocks.1.cross_attn_anchor.cross_attn.in_proj_weight'
    checkpoint['state_dict']['model.blocks.1.cross_attn_anchor.cross_attention.in_proj_weight'] = (
        checkpoint['state_dict'].pop(key))
    torch.save(checkpoint, tmp_path / 'renamed.ckpt')
    with pytest.raises(CheckpointError, match=r'missing keys: blocks\.1\.cross_attn_anchor\.cross_attn\.in_proj_weight'
                       r'.*unexpected keys: blocks\.1\.cross_attn_anchor\.cross_attention\.in_proj_weight'):
        convert_published_generator(tmp_path / 'renamed.ckpt', tmp_path / 'out.safetensors', config)
    assert not (tmp_path / 'out.safetensors').exists()


def test_converter_names_shapes_that_do_not_fit_the_config(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r'shapes that do not fit the config: audio_encoder_face'
                       r'\.feature_extractor\.conv_layers\.0\.conv\.weight \(24, 1, 10\) \(expected \(512, 1, 10\)\)'):
        convert_published_generator(CKPT, tmp_path / 'out.safetensors')  # the default config: full size


def test_converter_refuses_a_short_ema_list(tmp_path: Path, config: PublishedConfig) -> None:
    checkpoint = torch.load(CKPT, map_location='cpu', weights_only=True)
    checkpoint['ema_state']['shadow_params'] = checkpoint['ema_state']['shadow_params'][1:]
    torch.save(checkpoint, tmp_path / 'short.ckpt')
    with pytest.raises(CheckpointError, match='shadow_params has 265 tensors, the model has 266'):
        convert_published_generator(tmp_path / 'short.ckpt', tmp_path / 'out.safetensors', config)


def test_converted_file_states_config_and_provenance(tmp_path: Path, config: PublishedConfig) -> None:
    import hashlib

    from dystream_ros.model.published_checkpoint import read_metadata

    metadata = read_metadata(convert_published_generator(CKPT, tmp_path / 'g.safetensors', config))
    assert metadata['format'] == 'dystream-published-generator'
    assert metadata['weights'] == 'ema'
    assert metadata['source_sha256'] == hashlib.sha256(CKPT.read_bytes()).hexdigest()
    assert PublishedConfig.from_json(metadata['config']) == config


def test_stream_with_whole_clip_windows_equals_offline_generate(model: PublishedGenerator,
                                                                golden: dict[str, torch.Tensor]) -> None:
    stream = PublishedStream(model, golden['in.motion_m0'], lookahead_ms=3000.0, history_frames=200,
                             noise=golden['in.noise'])
    pushed = [stream.push(a, b) for a, b in zip(golden['in.audio_self_2s'].split(640),
                                                golden['in.audio_other_2s'].split(640))]
    assert all(latents.shape[0] == 0 for latents in pushed)  # the lookahead holds every frame back
    motion = stream.flush()
    assert motion.shape == (50, 512)  # offline stops one frame short: its last window needs a frame more
    assert_close(motion[:49], golden['out.motion'][0], 'stream vs out.motion')


def test_stream_emits_one_frame_per_frame_after_the_lookahead(model: PublishedGenerator,
                                                             golden: dict[str, torch.Tensor]) -> None:
    stream = PublishedStream(model, golden['in.motion_m0'], lookahead_ms=60.0, noise=golden['in.noise'])
    assert stream.latency_frames == 2
    counts = [stream.push(a, b).shape[0] for a, b in zip(golden['in.audio_self_2s'][:640 * 6].split(640),
                                                         golden['in.audio_other_2s'][:640 * 6].split(640))]
    assert counts == [0, 0, 1, 1, 1, 1]
    assert stream.flush().shape == (2, 512)
    with pytest.raises(StreamError, match='same number of samples'):
        stream.push(torch.zeros(100), torch.zeros(99))


def test_a_stream_fed_each_frame_up_to_its_lookahead_makes_that_frame_at_once(
        model: PublishedGenerator, golden: dict[str, torch.Tensor]) -> None:
    # the engine's way: the first frame's 40 ms and 60 ms beyond, then 40 ms more per frame
    stream = PublishedStream(model, golden['in.motion_m0'], lookahead_ms=60.0, noise=golden['in.noise'])
    ends = [1600, 2240, 2880, 3520]
    counts = [stream.push(golden['in.audio_self_2s'][a:b], golden['in.audio_other_2s'][a:b]).shape[0]
              for a, b in zip([0, *ends[:-1]], ends)]
    assert counts == [1, 1, 1, 1]


def test_the_convert_official_command_writes_a_generator_the_model_loads(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parent.parent
    command = [sys.executable, '-m', 'dystream_ros.cli', 'convert-official', '--generator', str(CKPT),
               '--generator-config', str(DATA / 'generator_config.json'), '--out', str(tmp_path / 'published')]
    done = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert 'reading the checkpoint' in done.stdout and 'generator: wrote' in done.stdout  # progress, then the file
    model = load_published_generator(tmp_path / 'published' / 'generator.safetensors')
    assert model.config == PublishedConfig.from_reference_file(DATA / 'generator_config.json')
    # without the sizes the published full size is assumed, and the command says which shapes disagree
    done = subprocess.run(command[:6] + ['--out', str(tmp_path / 'full')], cwd=root, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 2 and 'shape' in done.stderr, done.stderr


def test_the_published_benchmark_times_a_converted_generator_against_the_shipped_model(tmp_path: Path) -> None:
    out = convert_published_generator(CKPT, tmp_path / 'generator.safetensors', PublishedConfig.from_reference_file(
        DATA / 'generator_config.json'))
    done = subprocess.run([sys.executable, '-m', 'dystream_ros.cli', 'bench', 'published', '--generator', str(out),
                           '--no-renderer', '--frames', '2', '--device', 'cpu', '--json'],
                          cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True, timeout=300,
                          check=False)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report['generator']['frames'] == 2 and report['generator']['ms_per_frame'] > 0
    assert report['generator']['parameters'] == sum(p.numel() for p in load_published_generator(out).parameters())
    assert report['baseline']['ms_per_frame'] > 0 and report['generator_vs_shipped'] > 0
    assert 'renderer' not in report and 'machine_load' in report
