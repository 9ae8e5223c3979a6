"""The render benchmark and the contact sheet script run and report what they should."""
from __future__ import annotations

import json
import os
import runpy
from pathlib import Path

import numpy as np

from dystream_ros.face.contact_sheet import EXPRESSIONS, contact_sheet
from dystream_ros.face.motion import MOTION_DIM
from dystream_ros.face.stylised import StylisedConfig, StylisedFace

BENCH = Path(__file__).resolve().parent.parent / 'bench' / 'render.py'


def test_bench_render_prints_ms_per_frame_per_renderer_as_json(capsys):
    main = runpy.run_path(str(BENCH), run_name='bench_render')['main']
    code = main(['--json', '--frames', '12', '--baseline-frames', '2', '--size', '256'])
    report = json.loads(capsys.readouterr().out)
    assert set(report['renderers']) == {'stylised', 'photo'}
    for figures in report['renderers'].values():
        assert 0.0 < figures['ms_per_frame'] <= figures['max_ms']
    assert report['size'] == 256 and report['threads'] == 1 and report['baseline']['ms_per_frame'] > 0
    assert report['machine_load']['cpus'] == os.cpu_count()  # what else ran meanwhile, next to the figures
    assert code == (0 if all(r['within_budget'] for r in report['renderers'].values()) else 1)


def test_bench_motion_is_varied_and_valid():
    motion = runpy.run_path(str(BENCH), run_name='bench_render')['varied_motion'](250)
    assert motion.shape == (250, MOTION_DIM) and np.all(np.isfinite(motion))
    assert np.all(motion[:, :52] >= 0) and np.all(motion[:, :52] <= 1)
    assert np.all(motion.std(axis=0)[:52] > 0.01)  # every blendshape moves


def test_contact_sheet_lays_out_every_expression_per_renderer():
    faces = [StylisedFace(StylisedConfig(size=96)), StylisedFace(StylisedConfig(size=96, face_rgb=(90, 200, 90)))]
    sheet = contact_sheet(faces, tile=48, columns=6)
    blocks = -(-len(EXPRESSIONS) // 6)
    label_h = 18
    assert sheet.shape == (blocks * (label_h + 2 * 48), 6 * 48, 3)
    first_row, second_row = sheet[label_h:label_h + 48], sheet[label_h + 48:label_h + 96]
    assert not np.array_equal(first_row, second_row)
    assert not np.array_equal(first_row[:, :48], first_row[:, 48:96])  # neutral differs from "ah"
