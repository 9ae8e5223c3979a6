"""Test session set-up: ROS traffic stays on loopback, each run gets a private domain and its own log folder."""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from support import realtime
from support.onnx_export import OnnxExport

OFFICIAL_DATA = Path(__file__).resolve().parent / 'data' / 'official'


def pytest_configure(config: object) -> None:
    """Set the ROS environment before any test (or any process a test starts) initialises rclpy."""
    # Fast DDS would otherwise send discovery multicast out of the network card.
    os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    # A private domain per run, so two runs on one machine (or a robot on the same host) never see each other.
    os.environ['ROS_DOMAIN_ID'] = str(random.SystemRandom().randint(1, 100))
    os.environ['ROS_LOG_DIR'] = tempfile.mkdtemp(prefix='dystream_ros_test_logs_')
    # One torch / OpenMP thread in tests and the processes they start (before torch is imported): on a machine
    # whose cores are shared with other jobs, more threads than free cores make torch a hundred times slower.
    os.environ['OMP_NUM_THREADS'] = '1'


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A realtime test that fails is run once more from a fresh start (see support/realtime.py)."""
    for item in items:
        if item.get_closest_marker('realtime') is not None:
            item.add_marker(pytest.mark.flaky(reruns=realtime.RERUNS))


@pytest.fixture(scope='module')
def live_runs() -> dict:
    """A module's live runs by attempt (:func:`support.realtime.live_run`)."""
    return {}


@pytest.fixture(scope='session')
def published_generator(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The random-weight published generator of test/data/official (reduced sizes), converted to our safetensors."""
    from dystream_ros.model.published import PublishedConfig
    from dystream_ros.model.published_checkpoint import convert_published_generator

    config = PublishedConfig.from_reference_file(OFFICIAL_DATA / 'generator_config.json')
    return convert_published_generator(OFFICIAL_DATA / 'generator_random.ckpt',
                                       tmp_path_factory.mktemp('published') / 'generator.safetensors', config)


@pytest.fixture(scope='session')
def published_renderer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The random-weight published renderer (full size: it has no other), rebuilt from its manifest and converted."""
    from support.published_renderer_fixture import regenerate_state_dict, write_lightning_checkpoint

    from dystream_ros.face.published_weights import convert_published_renderer

    folder = tmp_path_factory.mktemp('published_renderer')
    checkpoint = write_lightning_checkpoint(folder / 'renderer.ckpt', regenerate_state_dict())
    return convert_published_renderer(checkpoint, folder / 'renderer.safetensors')


@pytest.fixture(scope='session')
def published_onnx_export(published_generator: Path, published_renderer: Path,
                          tmp_path_factory: pytest.TempPathFactory) -> OnnxExport:
    """`dystream export-onnx --model <published generator> --renderer <published renderer>` into a fresh cache
    folder (the node's default settings), as a user runs it before starting dystream_node with backend:=onnx."""
    cache = tmp_path_factory.mktemp('dystream_cache')
    result = subprocess.run(
        [sys.executable, '-m', 'dystream_ros.cli', 'export-onnx', '--model', str(published_generator),
         '--renderer', str(published_renderer), '--check-frames', '4'],
        cwd=Path(__file__).resolve().parent.parent, env={**os.environ, 'DYSTREAM_CACHE': str(cache)},
        capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return OnnxExport(cache, json.loads(result.stdout.strip().splitlines()[-1]), result.stderr)
