"""``dystream ablate-lookahead``: a training per lookahead, each scored on the validation split, a table, a plot."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dystream_ros.apps.lookahead_ablation import _validation_clips
from dystream_ros.cli import main
from dystream_ros.model import load_model

QUICK = ['--steps', '2', '--jobs', '2', '--clips', '1', '--seconds', '6', '--seeds', '1',
         '--recipe=--config tiny --batch-size 2 --warmup-steps 1 --seed 3']


@pytest.fixture(scope='module')
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp('corpus')
    assert main(['corpus', '--out', str(out), '--hours', '0.01', '--seed', '5', '--jobs', '1']) == 0
    return out


def test_each_lookahead_is_trained_scored_and_reported(corpus: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / 'ablation'
    assert main(['ablate-lookahead', str(corpus), '--out', str(out), '--lookahead-ms', '40', '0', *QUICK]) == 0
    report = json.loads((out / 'ablation.json').read_text())
    assert [row['lookahead_ms'] for row in report['rows']] == [0, 40]
    for row in report['rows']:
        model = load_model(out / f'lookahead_{row["lookahead_ms"]}ms' / 'model.safetensors')
        assert model.config.lookahead_ms == row['lookahead_ms']  # trained with it, scored with it
        for band in ('recorded', 'telephone'):
            assert -1.0 <= row[band]['lipsync_corr'] <= 1.0
            assert np.isfinite(row[band]['silence_closed'])
    table = (out / 'ablation.md').read_text().splitlines()
    assert len(table) == 4 and table[2].startswith('| 0 ms |') and table[3].startswith('| 40 ms |')
    assert (out / 'ablation.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    assert 'lookahead 40 ms: trained' in capsys.readouterr().err

    # a second run reuses the finished trainings and scores them again
    weights = out / 'lookahead_0ms' / 'model.safetensors'
    before = weights.stat().st_mtime_ns
    assert main(['ablate-lookahead', str(corpus), '--out', str(out), '--lookahead-ms', '0', *QUICK]) == 0
    assert weights.stat().st_mtime_ns == before
    assert 'lookahead 0 ms: already trained' in capsys.readouterr().err

    # another recipe is another experiment: trained afresh
    other = [*QUICK[:-1], QUICK[-1].replace('--seed 3', '--seed 4')]
    assert main(['ablate-lookahead', str(corpus), '--out', str(out), '--lookahead-ms', '0', *other]) == 0
    assert weights.stat().st_mtime_ns != before
    assert 'lookahead 0 ms: trained' in capsys.readouterr().err


def test_a_recipe_that_sets_the_lookahead_is_refused(corpus: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert main(['ablate-lookahead', str(corpus), '--out', str(tmp_path), '--recipe=--lookahead-ms 20']) == 2
    assert '--recipe may not set --lookahead-ms' in capsys.readouterr().err


def test_a_failed_training_names_its_log(corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(['ablate-lookahead', str(corpus), '--out', str(tmp_path), '--lookahead-ms', '0', '--steps', '2',
                 '--recipe=--config huge']) == 2
    err = capsys.readouterr().err
    assert 'training with lookahead 0 ms failed' in err
    assert str(tmp_path / 'lookahead_0ms' / 'train.out') in err


def test_the_telephone_band_clips_carry_both_voices_without_the_band_above_4_khz() -> None:
    clips = _validation_clips(1, 6.0)
    recorded, telephone = clips['recorded'][0], clips['telephone'][0]
    assert np.array_equal(recorded.reference_mouth, telephone.reference_mouth)  # the same conversation
    for voice in ('self_audio', 'partner_audio'):
        def high_share(audio: np.ndarray) -> float:
            power = np.abs(np.fft.rfft(audio)) ** 2
            return float(power[len(power) // 2:].sum() / power.sum())  # above 4 kHz at 16 kHz
        assert high_share(getattr(recorded, voice)) > 1e-3
        assert high_share(getattr(telephone, voice)) < 1e-4  # measured 1.2e-5: the resampler's leak
