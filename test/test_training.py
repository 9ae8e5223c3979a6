"""DyStream training: a tiny model learns, resume is exact, the CLI and torchrun (DDP, gloo) paths run."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dystream_ros.cli import main
from dystream_ros.data.sample import Sample, write_sample
from dystream_ros.errors import ConfigError, DataError
from dystream_ros.model import DyStream, ModelConfig, load_model
from dystream_ros.model.audio_encoder import encoder_audio_span
from dystream_ros.model.checkpoint import read_tensors
from dystream_ros.runtime.generator import StreamingGenerator
from dystream_ros.training.dataset import WindowDataset
from dystream_ros.training.train import TrainConfig, train
from dystream_ros.units import SAMPLE_RATE_HZ, SAMPLES_PER_FRAME

REPO = Path(__file__).resolve().parent.parent
NAMES = tuple(f'dim{i}' for i in range(58))


def write_clip(root: Path, sample_id: str = 'clip0', frames: int = 75, valid: np.ndarray | None = None,
               nan_frame: int | None = None) -> Path:
    """A synthetic clip whose motion follows the self voice's loudness, plus slow partner-independent sways."""
    t = np.arange(frames * SAMPLES_PER_FRAME) / SAMPLE_RATE_HZ
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 1.3 * t)
    own = (0.3 * envelope * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    partner = (0.1 * np.sin(2 * np.pi * 0.7 * t) * np.sin(2 * np.pi * 330 * t)).astype(np.float32)
    ft = np.arange(frames) / 25
    loudness = 0.5 + 0.5 * np.sin(2 * np.pi * 1.3 * ft)
    motion = np.stack([0.3 * loudness * (d % 5) / 5 + 0.1 * np.sin(2 * np.pi * (0.2 + 0.05 * d) * ft + d)
                       for d in range(58)], axis=1).astype(np.float32)
    valid = np.ones(frames, bool) if valid is None else valid
    if nan_frame is not None:
        motion[nan_frame, 3] = np.nan
    return write_sample(root, Sample(sample_id, motion, NAMES, valid, own, partner))


@pytest.fixture(scope='module')
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp('samples')
    write_clip(root)
    return root


SMALL = ModelConfig(context_frames=16, dropout=0.0)


def test_tiny_model_overfits_a_short_clip(data: Path, tmp_path: Path) -> None:
    result = train(TrainConfig(data=data, out=tmp_path, steps=200, batch_size=8, lr=2e-3, warmup_steps=10,
                               save_every=10_000, progress=False), SMALL)
    first, last = np.mean(result.losses[:10]), np.mean(result.losses[-10:])
    assert first / last >= 10, f'loss fell only from {first:.3f} to {last:.3f}'
    assert result.model_path == tmp_path / 'model.safetensors'


def test_resume_continues_exactly(data: Path, tmp_path: Path) -> None:
    settings = {'data': data, 'steps': 4, 'batch_size': 2, 'warmup_steps': 3, 'save_every': 100, 'progress': False}
    straight = train(TrainConfig(out=tmp_path / 'a', **settings), SMALL)
    first = train(TrainConfig(out=tmp_path / 'b', **{**settings, 'steps': 2}), SMALL)
    resumed = train(TrainConfig(out=tmp_path / 'b', resume=True, **settings))
    assert first.losses + resumed.losses == straight.losses
    a, meta = read_tensors(tmp_path / 'a' / 'train_state.safetensors')
    b, _ = read_tensors(tmp_path / 'b' / 'train_state.safetensors')
    assert a.keys() == b.keys() and meta['step'] == '4'
    assert any(k.startswith('optim.') for k in a) and any(k.startswith('ema.') for k in a)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    with pytest.raises(ConfigError, match='resume'):
        train(TrainConfig(out=tmp_path / 'b', resume=True, **settings), SMALL.replace(n_layer=2))


def test_train_command_writes_weights_the_generator_loads(data: Path, tmp_path: Path) -> None:
    out = tmp_path / 'run'
    code = main(['train', str(data), '--out', str(out), '--steps', '3', '--batch-size', '2', '--context-frames', '8',
                 '--lookahead-ms', '40', '--seed', '3', '--save-every', '2', '--log-every', '1', '--no-progress',
                 '--speed-perturb', '0.1', '--audio-frontend', 'whisper_stem', '--augment', 'telephone,noise'])
    assert code == 0
    model = load_model(out / 'model.safetensors')
    assert model.config.context_frames == 8 and model.config.lookahead_ms == 40
    assert model.config.audio_frontend == 'whisper_stem'
    assert not any(key.startswith(('self_encoder.front', 'partner_encoder.front')) for key in model.state_dict())
    assert model.config.motion_names == NAMES
    assert float(model.motion_std.min()) > 0 and float(model.motion_mean.abs().max()) > 0
    assert [json.loads(line)['step'] for line in (out / 'train_log.jsonl').read_text().splitlines()] == [1, 2, 3]
    # every saved step stays, to choose the one to ship on the validation split; the last is model.safetensors
    kept = sorted(p.name for p in (out / 'checkpoints').iterdir())
    assert kept == ['step_000002.safetensors', 'step_000003.safetensors']
    assert load_model(out / 'checkpoints' / kept[-1]).state_dict().keys() == model.state_dict().keys()
    written = json.loads((out / 'config.json').read_text())
    assert written['world_size'] == 1
    assert written['train']['speed_perturb'] == 0.1 and written['train']['augment'] == ['telephone', 'noise']
    gen = StreamingGenerator(out / 'model.safetensors')
    frames = gen.generate(np.zeros(SAMPLE_RATE_HZ, np.float32), np.zeros(SAMPLE_RATE_HZ, np.float32))
    assert len(frames) == (SAMPLE_RATE_HZ - 640) // 640 and np.all(np.isfinite(frames[-1]))


def test_fine_tuning_starts_from_trained_weights_and_reads_several_folders(data: Path, tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    base = tmp_path / 'base'
    assert main(['train', str(data), '--out', str(base), '--steps', '3', '--batch-size', '2', '--context-frames', '8',
                 '--no-progress']) == 0
    more = tmp_path / 'more'
    write_clip(more, 'clip1', frames=60)
    tuned = tmp_path / 'tuned'
    # learning rate 0: the fine-tune's weights are the ones it started from, so it really loaded them
    assert main(['train', str(data), str(more), '--out', str(tuned), '--init', str(base / 'model.safetensors'),
                 '--context-noise', '0.5', '--steps', '2', '--batch-size', '2', '--lr', '0', '--no-progress']) == 0
    start, result = load_model(base / 'model.safetensors'), load_model(tuned / 'model.safetensors')
    assert result.config == start.config.replace(context_noise=0.5)  # the size comes from --init, not a preset
    for key, value in start.state_dict().items():
        assert torch.equal(value, result.state_dict()[key]), key
    written = json.loads((tuned / 'config.json').read_text())
    assert written['train']['data'] == [str(data), str(more)] and written['windows'] > 0
    assert written['train']['init'] == str(base / 'model.safetensors')
    # another size cannot start from these weights
    assert main(['train', str(data), '--out', str(tmp_path / 'bad'), '--init', str(base / 'model.safetensors'),
                 '--context-frames', '12', '--steps', '1', '--no-progress']) != 0
    assert 'its architecture differs' in capsys.readouterr().err


def test_context_noise_reaches_the_last_context_frame(data: Path) -> None:
    # the paper's corruption leaves the last context frame nearly clean (a model learns to continue it); with
    # context_noise it is noisy too
    config = SMALL.replace(context_noise=2.0)
    model = DyStream(config)
    batch = WindowDataset(data, config, window_frames=17).batch(np.random.default_rng(0), 8)
    seen: list[torch.Tensor] = []
    model.transformer.register_forward_pre_hook(lambda _module, args: seen.append(args[0]))
    for noise in (0.0, 2.0):
        model.config = config.replace(context_noise=noise)
        torch.manual_seed(0)
        model(*batch)
    exact = model.normalize(batch[0])[:, -2]  # the last context token holds frame N - 1
    clean, noisy = ((tokens[:, -1] - exact).abs().mean() for tokens in seen)
    assert noisy > 4 * clean, (float(clean), float(noisy))


def test_torchrun_trains_with_two_processes(data: Path, tmp_path: Path) -> None:
    out = tmp_path / 'ddp'
    env = {**os.environ, 'PYTHONPATH': str(REPO), 'OMP_NUM_THREADS': '1'}
    command = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2', '-m',
               'dystream_ros.cli', 'train', str(data), '--out', str(out), '--steps', '2', '--batch-size', '2',
               '--context-frames', '8', '--device', 'cpu', '--no-progress']
    done = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((out / 'config.json').read_text())['world_size'] == 2
    assert load_model(out / 'model.safetensors').config.context_frames == 8


def test_windows_skip_frames_the_tracker_lost(tmp_path: Path) -> None:
    valid = np.ones(40, bool)
    valid[20] = False
    write_clip(tmp_path, frames=40, valid=valid, nan_frame=35)
    dataset = WindowDataset(tmp_path, ModelConfig(context_frames=9), window_frames=10)
    starts = set(dataset.windows[:, 1].tolist())
    assert starts == set(range(0, 11)) | set(range(21, 26))  # frame 20 lost, frame 35 has a NaN
    assert np.all(np.isfinite(dataset.motion_stats()[0]))
    motion, own, partner, rest = dataset.batch(np.random.default_rng(0), 3)
    assert motion.shape == (3, 10, 58) and own.shape == partner.shape and rest.shape == (3, 58)
    with pytest.raises(DataError, match='consecutive valid frames'):
        WindowDataset(tmp_path, ModelConfig(context_frames=30), window_frames=31)


def test_cosine_decay_warms_up_then_falls_to_a_tenth() -> None:
    from dystream_ros.training.train import _lr
    cosine = TrainConfig(Path(), Path(), steps=1000, lr=1e-3, warmup_steps=100, lr_decay='cosine')
    constant = TrainConfig(Path(), Path(), steps=1000, lr=1e-3, warmup_steps=100)
    assert _lr(cosine, 49) == _lr(constant, 49) == pytest.approx(5e-4)  # the same warm-up
    assert _lr(cosine, 100) == pytest.approx(1e-3)
    rates = [_lr(cosine, step) for step in range(100, 1000)]
    assert all(a >= b for a, b in zip(rates, rates[1:]))
    assert rates[-1] == pytest.approx(1e-4)
    assert _lr(constant, 999) == pytest.approx(1e-3)


def test_rest_anchor_is_each_speakers_closed_mouth_pose_and_the_models_default(tmp_path: Path) -> None:
    """A model trained with ``--anchor rest`` sees, and starts from, a face at rest: mouth closed, the speakers'
    usual head pose; a paper-style model keeps the training mean."""
    from dystream_ros.face.motion import INDEX, MOTION_NAMES
    jaw, pitch = INDEX['jawOpen'], INDEX['headPitch']
    for clip, offset in (('quiet', 0.0), ('nodding', 0.2)):
        motion = np.zeros((100, 58), np.float32)
        motion[:, jaw] = np.where(np.arange(100) % 4 == 0, 0.0, 0.5)  # mouth closed in a quarter of the frames
        motion[:, pitch] = offset
        own = np.zeros(100 * SAMPLES_PER_FRAME, np.float32)
        write_sample(tmp_path / 'data', Sample(clip, motion, MOTION_NAMES, np.ones(100, bool), own, own))
    dataset = WindowDataset(tmp_path / 'data', SMALL, window_frames=17)
    assert dataset.rest_poses[:, jaw].tolist() == [0.0, 0.0]
    assert sorted(dataset.rest_poses[:, pitch].tolist()) == pytest.approx([0.0, 0.2])
    motion, own, partner, rest = dataset.batch(np.random.default_rng(0), 8)
    assert torch.allclose(rest[:, pitch], motion[:, 0, pitch])  # each window with its own speaker's rest pose

    for anchor in ('rest', 'window_end'):
        out = tmp_path / anchor
        assert main(['train', str(tmp_path / 'data'), '--out', str(out), '--steps', '2', '--batch-size', '2',
                     '--context-frames', '16', '--anchor', anchor, '--no-progress']) == 0
        model = load_model(out / 'model.safetensors')
        assert model.config.anchor == anchor
        gen = StreamingGenerator(model)
        if anchor == 'rest':
            assert gen.default_anchor[jaw] == 0.0 and gen.default_anchor[pitch] == pytest.approx(0.1)
        else:
            assert gen.default_anchor[jaw] == pytest.approx(0.375)  # the mean: mouth half open
    with pytest.raises(ValueError, match='rest pose'):
        DyStream(SMALL.replace(anchor='rest'))(motion, own, partner)


def test_speed_perturbed_windows_keep_sound_and_mouth_aligned(tmp_path: Path) -> None:
    """A window played faster or slower moves its audio and its motion on one time base: a click heard at some
    time lines up with the motion the clip had at that time."""
    frames = 400
    motion = np.zeros((frames, 58), np.float32)
    motion[:, 0] = np.arange(frames)  # dim0: the source frame number, so the motion shows where a frame came from
    clicks = np.arange(5, frames - 5, 7) * SAMPLES_PER_FRAME + 123  # source sample of each click
    own = np.zeros(frames * SAMPLES_PER_FRAME, np.float32)
    own[clicks] = 1.0
    write_sample(tmp_path, Sample('clicks', motion, NAMES, np.ones(frames, bool), own, own))
    config = ModelConfig(context_frames=30)
    start = encoder_audio_span(config, 1, 30)[0]  # the audio span's first sample, relative to window frame 0
    dataset = WindowDataset(tmp_path, config, window_frames=31, max_speed_change=0.1)
    windows, audio, partner, _ = dataset.batch(np.random.default_rng(0), 40)
    assert torch.equal(audio, partner)
    speeds = set()
    for window, sound in zip(windows.numpy(), audio.numpy()):
        speed = window[1, 0] - window[0, 0]
        assert np.diff(window[:, 0]) == pytest.approx(np.full(30, speed), abs=1e-4)  # one speed per window
        speeds.add(round(float(speed), 2))
        heard = np.flatnonzero((sound > 0.3) & (sound >= np.roll(sound, 1)) & (sound >= np.roll(sound, -1)))
        assert len(heard) >= 3
        for j in heard:
            frame = (start + j) / SAMPLES_PER_FRAME  # when the click is heard, in window frames
            source_frame = window[0, 0] + speed * frame  # the motion of that moment (the span's margins included)
            assert np.min(np.abs(clicks / SAMPLES_PER_FRAME - source_frame)) < 0.01  # 0.4 ms
    assert speeds == {0.9, 0.95, 1.0, 1.05, 1.1}
    plain = WindowDataset(tmp_path, config, window_frames=31).batch(np.random.default_rng(0), 40)[0]
    assert torch.all(plain[:, 1:, 0] - plain[:, :-1, 0] == 1)


def test_augmented_windows_sound_like_a_telephone_line(tmp_path: Path) -> None:
    """With telephone augmentation every window's voices lose what a telephone line does not carry (above 3.4 kHz);
    the motion is the same window's."""
    from dystream_ros.data.augment import Augmenter

    rng = np.random.default_rng(0)
    noise = (0.1 * rng.standard_normal(400 * SAMPLES_PER_FRAME)).astype(np.float32)  # energy at every frequency
    motion = np.tile(np.arange(400, dtype=np.float32)[:, None], (1, 58))
    write_sample(tmp_path, Sample('noise', motion, NAMES, np.ones(400, bool), noise, noise))
    config = ModelConfig(context_frames=30)
    plain = WindowDataset(tmp_path, config, window_frames=31).batch(np.random.default_rng(1), 8)
    phone = WindowDataset(tmp_path, config, window_frames=31,
                          augment=Augmenter(('telephone',), p=1.0)).batch(np.random.default_rng(1), 8)
    assert torch.equal(plain[0], phone[0])

    def high_band_share(audio: torch.Tensor) -> float:
        spectrum = np.abs(np.fft.rfft(audio.numpy(), axis=1)) ** 2
        return float(spectrum[:, spectrum.shape[1] * 4000 // 8000:].sum() / spectrum.sum())

    assert high_band_share(plain[1]) > 0.4 and high_band_share(plain[2]) > 0.4
    assert high_band_share(phone[1]) < 0.01 and high_band_share(phone[2]) < 0.01
