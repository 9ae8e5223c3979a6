"""dystream eval on the shipped model, shortened: every figure is present, finite and computed for real."""
from __future__ import annotations

import math
from pathlib import Path

import pytest

from dystream_ros.apps.evaluate import evaluate, plot, write_report


@pytest.fixture(scope='module')
def report_and_traces() -> tuple[dict, dict]:
    return evaluate(backend='onnx', heldout_count=2, heldout_seconds=15.0, drift_minutes=0.75, seeds=2,
                    rendered=False)  # test_evaluate_rendered.py scores the rendered real speech


def test_the_report_has_every_figure_for_the_model_and_both_baselines(report_and_traces: tuple[dict, dict]) -> None:
    report, _ = report_and_traces
    for set_name in ('heldout_tts', 'real_speech'):
        for system in ('model', 'amplitude'):
            figures = report[set_name][system]
            assert -1.0 <= figures['lipsync_corr'] <= 1.0
            assert abs(figures['lipsync_lag_frames']) <= 5
            assert 0.0 <= figures['silence_closed'] <= 1.0
    assert report['heldout_tts']['teacher']['lipsync_corr'] == 1.0  # the teacher is the reference on TTS
    assert report['heldout_tts']['amplitude']['listening_nod_ratio'] == 0.0  # it never moves its head
    assert report['real_speech']['clips'] >= 10
    assert abs(report['online_offline_gap']) <= 0.05
    assert report['seed_diversity'] > 0
    assert set(report['drift_10min']) == {'model', 'amplitude', 'teacher'}
    assert all(math.isfinite(v) for v in report['drift_10min'].values())


def test_heldout_lip_sync_is_also_given_per_voice(report_and_traces: tuple[dict, dict]) -> None:
    report, _ = report_and_traces
    by_voice = report['heldout_tts']['lipsync_corr_by_voice']
    assert sum(row['clips'] for row in by_voice.values()) == report['heldout_tts']['clips']
    assert set(by_voice) <= {'en-gb-x-rp', 'en-gb-x-gbcwmd', 'slt'}  # the held-out voices, without variants
    for row in by_voice.values():
        assert -1.0 <= row['model'] <= 1.0 and -1.0 <= row['amplitude'] <= 1.0


def test_the_shipped_model_follows_the_voice_better_than_chance(report_and_traces: tuple[dict, dict]) -> None:
    report, _ = report_and_traces
    assert report['heldout_tts']['model']['lipsync_corr'] > 0.5
    assert report['real_speech']['model']['lipsync_corr'] > 0.5
    assert report['heldout_tts']['model']['silence_closed'] > 0.8


def test_the_plots_are_written(report_and_traces: tuple[dict, dict], tmp_path: Path) -> None:
    written = plot(*report_and_traces, tmp_path)
    assert [p.name for p in written] == ['eval_metrics.png', 'eval_traces.png']
    assert all(p.stat().st_size > 10_000 for p in written)


def test_the_report_states_each_target_and_the_per_voice_table(report_and_traces: tuple[dict, dict],
                                                               tmp_path: Path) -> None:
    report, _ = report_and_traces
    write_report(report, tmp_path / 'eval.md', 'dystream eval')
    text = (tmp_path / 'eval.md').read_text()
    assert text.count('>= 0.75 and above the amplitude baseline') == 1
    assert '| voice | clips | model | amplitude |' in text
    for voice, row in report['heldout_tts']['lipsync_corr_by_voice'].items():
        assert f'| {voice} | {row["clips"]} | {row["model"]} | {row["amplitude"]} |' in text
