"""DyStream ONNX export: ONNX Runtime (CPU) equals torch, explicit cache I/O, provider report, export-onnx CLI."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from dystream_ros.cli import main
from dystream_ros.model import DyStream, ModelConfig, save_model
from dystream_ros.runtime.frames import stream_clip
from dystream_ros.runtime.generator import StreamingGenerator
from dystream_ros.runtime.onnx_backend import OnnxBackend, cache_names

RATE = 16000
ROOT = Path(__file__).resolve().parent.parent


def random_model(audio_frontend: str = 'logmel') -> DyStream:
    torch.manual_seed(0)
    model = DyStream(ModelConfig(context_frames=10, audio_frontend=audio_frontend))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.startswith('head.'):  # zero-initialised layers would make the head a constant
                param.add_(0.05 * torch.randn_like(param))
        model.set_motion_stats(torch.rand(58), 0.1 + torch.rand(58))
    return model.eval()


@pytest.fixture(scope='module')
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[DyStream, Path]:
    model = random_model()
    folder = tmp_path_factory.mktemp('onnx')
    StreamingGenerator(model, backend='onnx', onnx_dir=folder, num_threads=1)  # exports
    return model, folder


def voice(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.2 * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t + seed)) * rng.standard_normal(t.shape[0])).astype(np.float32)


def test_onnx_runtime_streaming_equals_torch(exported: tuple[DyStream, Path]) -> None:
    assert_onnx_streams_like_torch(*exported)


def test_onnx_runtime_streams_whisper_stem_models_like_torch(tmp_path: Path) -> None:
    assert_onnx_streams_like_torch(random_model('whisper_stem'), tmp_path)


def assert_onnx_streams_like_torch(model: DyStream, folder: Path) -> None:
    own, partner = voice(2.0, 1), voice(2.0, 2)
    results = {}
    for backend in ('torch', 'onnx'):
        gen = StreamingGenerator(model, backend=backend, onnx_dir=folder, seed=4, num_threads=1)
        results[backend] = np.stack([f.motion for f in stream_clip(gen, own, partner)])
    assert results['onnx'].shape == results['torch'].shape == (48, 58)  # (32000 - 960) // 640
    assert np.abs(np.diff(results['torch'], axis=0)).max() > 1e-2
    assert np.abs(results['onnx'] - results['torch']).max() <= 1e-3


def test_step_graph_takes_and_returns_the_kv_cache(exported: tuple[DyStream, Path]) -> None:
    model, folder = exported
    session = ort.InferenceSession(str(folder / 'step.onnx'), providers=['CPUExecutionProvider'])
    inputs = [i.name for i in session.get_inputs()]
    outputs = [o.name for o in session.get_outputs()]
    assert inputs == ['prev', 'feat_self', 'feat_partner', 'anchor', 'noise', 'rope_cos', 'rope_sin', 'slot',
                      *cache_names(model.config)]
    assert outputs == ['motion', *cache_names(model.config, '_out')]
    branches = 4  # the anchor-only branch has weight 0 in the stored guidance, so it is left out
    expected = [branches, model.config.n_head, model.config.context_frames, model.config.head_size]
    assert session.get_inputs()[8].shape == expected


def test_onnx_backend_reports_providers_and_reuses_its_export(exported: tuple[DyStream, Path]) -> None:
    model, folder = exported
    stamp = (folder / 'step.onnx').stat().st_mtime_ns
    gen = StreamingGenerator(model, backend='onnx', onnx_dir=folder, num_threads=1)
    assert (folder / 'step.onnx').stat().st_mtime_ns == stamp  # up to date: not exported again
    assert 'CPUExecutionProvider' in gen.providers
    assert set(gen.providers) <= set(ort.get_available_providers())
    assert OnnxBackend(folder).meta['branches'] == ['uncond', 'self', 'partner', 'all']


def test_export_onnx_command_checks_against_torch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    checkpoint = save_model(tmp_path / 'm.safetensors', random_model())
    code = main(['export-onnx', '--model', str(checkpoint), '--out', str(tmp_path / 'onnx'), '--steps', '3',
                 '--check-frames', '8'])
    assert code == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report['steps'] == 3 and report['check_frames'] == 8
    assert report['max_abs_diff_vs_torch'] <= 1e-3
    assert 'CPUExecutionProvider' in report['providers']
    assert sorted(p.name for p in (tmp_path / 'onnx').iterdir()) == [
        'encoder_partner.onnx', 'encoder_self.onnx', 'meta.json', 'prefix.onnx', 'silence.safetensors', 'step.onnx']


def test_a_model_that_fails_on_its_first_frames_stops_the_node_with_the_reason(exported: tuple[DyStream, Path],
                                                                                tmp_path: Path) -> None:
    model, folder = exported
    weights = save_model(tmp_path / 'model.safetensors', model)
    cached = tmp_path / 'cache' / 'onnx' / json.loads((folder / 'meta.json').read_text())['key']
    shutil.copytree(folder, cached)
    shutil.copy(cached / 'encoder_self.onnx', cached / 'step.onnx')  # a graph with other inputs: the warm-up fails
    result = subprocess.run([sys.executable, '-m', 'dystream_ros.nodes.dystream_node', '--ros-args', '-p',
                             f'model_path:={weights}', '-p', 'backend:=onnx'], cwd=ROOT,
                            env={**os.environ, 'DYSTREAM_CACHE': str(tmp_path / 'cache')}, capture_output=True,
                            text=True, timeout=180)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-3000:]
    assert 'cannot activate: the model failed on silence' in output and 'activate failed' in output
