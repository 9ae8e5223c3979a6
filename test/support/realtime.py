"""Tests marked ``realtime`` judge what live processes do in wall-clock time (frame rates, latencies, a speaker
fed on time) on a machine whose two cores they share with everything else. One such failure is run again, once,
from a fresh start, as ROS 2's own CI retests; a real fault fails both runs, and ``-rR`` lists every rerun.

A module whose realtime tests share one live run (a fixture) gets that run afresh for the second attempt through
:func:`live_run`, so a rerun judges a new run, not the same numbers again."""
from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import pytest

RERUNS = 1

T = TypeVar('T')


def live_run(request: pytest.FixtureRequest, runs: dict[int, T], start: Callable[[], T]) -> T:
    """The live run for this attempt of the requesting test: ``start()`` once per attempt, kept in ``runs`` (a
    module-scoped dict) for the module's other tests of the same attempt."""
    attempt = getattr(request.node, 'execution_count', 1)  # set by pytest-rerunfailures: 2 on the rerun
    if attempt not in runs:
        runs[attempt] = start()
    return runs[attempt]
