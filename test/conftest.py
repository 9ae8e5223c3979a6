"""Test session set-up: ROS traffic stays on loopback, each run gets a private domain and its own log folder."""
from __future__ import annotations

import os
import random
import tempfile

import pytest
from support import realtime


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
