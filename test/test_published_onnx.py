"""The published generator and renderer exported to ONNX and run by ONNX Runtime give what torch gives.

The generator is the random-weight reference at its reduced sizes. The renderer is full size whatever its weights:
its source and warp graphs run at full size (a few seconds), its decoder (about 10 s a frame at 512 px on 2 cores)
on a small feature map; ``dystream export-onnx --renderer`` compares one full frame.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from support.onnx_export import OnnxExport

from dystream_ros.errors import CheckpointError
from dystream_ros.face.published_face import PublishedRenderer, TorchRendererParts
from dystream_ros.face.published_weights import load_published_model
from dystream_ros.model.published import HOP_SAMPLES, Guidance
from dystream_ros.model.published_checkpoint import load_published_generator
from dystream_ros.model.published_stream import PublishedStream, TorchGeneratorSteps
from dystream_ros.runtime.published_onnx import OnnxGeneratorSteps, OnnxRendererParts, generator_key

RTOL = 1e-4  # of the tensor's largest value, as the golden tests
# The warp samples the appearance volume at a computed grid: rounding in the grid is multiplied by the volume's
# gradient (1.0e-4 measured). On a whole 512 px frame that is at most one grey level (`dystream export-onnx
# --renderer`).
RTOL_WARPED = 1e-3


def _voices(seconds: float) -> torch.Tensor:
    """Two tracks (2, S) of speech-like bursts and noise, 16 kHz."""
    t = np.arange(int(seconds * 16000)) / 16000
    rng = np.random.default_rng(0)
    bursts = np.clip(np.sin(2 * np.pi * 3.0 * t), 0, None) * np.sin(2 * np.pi * 180 * t)
    return torch.from_numpy(np.stack([0.3 * bursts, 0.2 * bursts[::-1]])
                            + 0.02 * rng.standard_normal((2, t.size))).float()


def _relative(ours: torch.Tensor, reference: torch.Tensor) -> float:
    return float((ours - reference).abs().max() / reference.abs().max())


def test_dystream_export_onnx_exports_the_published_generator_and_checks_it(
        published_onnx_export: OnnxExport) -> None:
    report = published_onnx_export.report['generator']
    assert report['steps'] == 5 and report['guidance'] == Guidance().__dict__  # the node's defaults
    assert report['check_frames'] >= 4 and report['max_rel_diff_vs_torch'] < RTOL
    assert report['providers'][-1] == 'CPUExecutionProvider'
    progress = [line.split(' in ')[0] for line in published_onnx_export.progress.splitlines()
                if line.startswith('exported')]
    assert progress == ['exported encoder_self', 'exported encoder_other', 'exported frame (GPT and flow head)',
                        'exported renderer_source (face and motion encoders)',
                        'exported renderer_segmap (flow estimator and warp)',
                        'exported renderer_decode (SPADE decoder)']
    assert Path(report['out']).parent == published_onnx_export.cache / 'onnx'
    meta = json.loads((Path(report['out']) / 'meta.json').read_text())
    assert meta['guidance'] == Guidance().__dict__ and meta['steps'] == 5  # baked into the graph, and said so


def test_the_onnx_stream_gives_the_torch_stream(published_generator: Path, published_onnx_export: OnnxExport,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv('DYSTREAM_CACHE', str(published_onnx_export.cache))
    model = load_published_generator(published_generator)
    lines: list[str] = []
    onnx = OnnxGeneratorSteps.for_model(model, Guidance(), 5, num_threads=1, progress=lines.append)
    assert lines == []  # found in the cache: the same weights and settings
    # other settings are another export
    assert generator_key(model, Guidance(audio=0.7), 5) != generator_key(model, Guidance(), 5)
    assert generator_key(model, Guidance(), 4) != generator_key(model, Guidance(), 5)

    voices = _voices(1.2)
    noise = torch.randn(40, 512, generator=torch.Generator().manual_seed(1))
    latents = []
    for backend in (TorchGeneratorSteps(model, Guidance(), 5), onnx):
        stream = PublishedStream(backend, torch.zeros(512), noise=noise)
        # 20 ms pieces, as a sound card delivers them: the first windows are shorter than the 3.9 s of later ones
        pieces = [stream.push(*voices[:, i:i + 320]) for i in range(0, voices.shape[1], 320)]
        latents.append(torch.cat([*pieces, stream.flush()]))
    assert latents[0].shape == (voices.shape[1] // HOP_SAMPLES, 512)  # every frame, the last with less lookahead
    assert _relative(latents[1], latents[0]) < RTOL
    assert latents[1].diff(dim=0).abs().max() > 1e-3  # it moves


def test_a_folder_without_an_export_is_refused_with_the_command_that_makes_one(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match='dystream export-onnx --model'):
        OnnxGeneratorSteps(tmp_path)
    with pytest.raises(CheckpointError, match='--renderer'):
        OnnxRendererParts(tmp_path)


def test_the_onnx_renderer_parts_give_the_torch_parts(published_renderer: Path, published_onnx_export: OnnxExport,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    report = published_onnx_export.report['renderer']
    assert report['max_level_diff_vs_torch'] <= 1  # a whole 512 px frame, made by the export command
    assert Path(report['out']).parent == published_onnx_export.cache / 'onnx'
    monkeypatch.setenv('DYSTREAM_CACHE', str(published_onnx_export.cache))
    network = load_published_model(published_renderer)
    lines: list[str] = []
    onnx = OnnxRendererParts.for_model(network, num_threads=2, progress=lines.append)
    assert lines == []  # found in the cache
    torch_parts = TorchRendererParts(network)
    portrait = torch.from_numpy(np.random.default_rng(2).uniform(-1, 1, (1, 3, 512, 512)).astype(np.float32))
    with torch.no_grad():
        appearance, latent = torch_parts.source(portrait)
        onnx_appearance, onnx_latent = onnx.source(portrait)
        assert _relative(onnx_appearance, appearance) < RTOL and _relative(onnx_latent, latent) < RTOL
        driving = latent + 0.3 * torch.randn(1, 512, generator=torch.Generator().manual_seed(3))
        seg = torch_parts.segmap(latent, driving, appearance)
        assert seg.shape == (1, 256, 64, 64)
        assert _relative(onnx.segmap(latent, driving, appearance), seg) < RTOL_WARPED
        small = seg[:, :, 20:28, 24:32]  # the decoder is convolutional: an 8 x 8 piece makes a 64 x 64 picture
        rgb = torch_parts.decode(small)
        assert rgb.shape == (1, 3, 64, 64)
        assert _relative(onnx.decode(small), rgb) < RTOL

    # the frame loop is the torch one: the ONNX parts drop in
    renderer = PublishedRenderer(onnx)
    renderer.set_source(np.full((512, 512, 3), 128, np.uint8))
    assert renderer.source_latent.shape == (512,) and np.all(np.isfinite(renderer.source_latent))


def test_the_published_benchmark_times_the_onnx_generator(published_generator: Path,
                                                          published_onnx_export: OnnxExport) -> None:
    done = subprocess.run([sys.executable, '-m', 'dystream_ros.cli', 'bench', 'published', '--generator',
                           str(published_generator), '--backend', 'onnx', '--no-renderer', '--frames', '2', '--json'],
                          cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True, timeout=300,
                          env={**os.environ, 'DYSTREAM_CACHE': str(published_onnx_export.cache)}, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report['backend'] == 'onnx' and report['generator']['providers'][-1] == 'CPUExecutionProvider'
    assert report['generator']['frames'] == 2 and report['generator']['ms_per_frame'] > 0
    assert 'exporting' not in done.stderr  # the export in the cache, found by the weights' hash


def test_an_export_that_cannot_be_written_is_refused_with_the_reason(published_generator: Path,
                                                                     tmp_path: Path) -> None:
    (tmp_path / 'cache').write_text('a file where the cache folder should be')
    with pytest.raises(CheckpointError, match=r'ONNX export of encoder_self.onnx into .* failed .*backend torch'):
        OnnxGeneratorSteps.for_model(load_published_generator(published_generator), onnx_dir=tmp_path / 'cache' / 'x')
