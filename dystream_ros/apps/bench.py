"""``dystream bench NAME [ARGS]``: run the benchmark ``bench/NAME.py`` and pass it ARGS (e.g. ``--json``).

The benchmarks live in the top-level ``bench/`` folder (installed to ``share/dystream_ros/apps/bench``); each one is a
script with ``main(argv) -> int`` that measures a baseline in the same run and prints the ratio, and records the
machine's load during the run (:class:`MachineLoad`): on a shared machine a figure means little without it.
"""
from __future__ import annotations

import argparse
import os
import runpy
import time
from pathlib import Path

from dystream_ros.errors import ConfigError
from dystream_ros.resources import share_path


class MachineLoad:
    """How busy the machine was while a benchmark ran, from ``with MachineLoad() as load:`` to its end.

    :meth:`figures`: the CPU count, the 1-minute load average before and after, and the share of all CPUs used by
    this process and the children it waited for (the node, the replay) and by every other process (the rest of the
    CPU time /proc/stat counts busy). A benchmark that ran next to other work says so.
    """

    def __enter__(self) -> MachineLoad:
        self.load_before = os.getloadavg()[0]
        self._start = (time.monotonic(), _machine_busy_s(), _own_cpu_s())
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall_s, busy_s, self.own_cpu_s = (now - then for now, then in zip(
            (time.monotonic(), _machine_busy_s(), _own_cpu_s()), self._start))
        self.others_cpu_s = max(busy_s - self.own_cpu_s, 0.0)  # clock ticks and process clocks differ a little
        self.load_after = os.getloadavg()[0]
        self.cpus = os.cpu_count() or 1

    @property
    def own_percent(self) -> float:
        """CPU time of this run, in percent of what all CPUs could do meanwhile."""
        return 100 * self.own_cpu_s / (self.wall_s * self.cpus)

    @property
    def others_percent(self) -> float:
        """CPU time of every other process, in percent of what all CPUs could do meanwhile."""
        return 100 * self.others_cpu_s / (self.wall_s * self.cpus)

    def figures(self) -> dict[str, float | int]:
        """The load as JSON-ready numbers (percent of all CPUs)."""
        return {'cpus': self.cpus, 'load_average_before': round(self.load_before, 2),
                'load_average_after': round(self.load_after, 2), 'cpu_percent_this_run': round(self.own_percent, 1),
                'cpu_percent_other_processes': round(self.others_percent, 1)}

    def line(self) -> str:
        """The load in one line, for a printed table."""
        return (f'machine: {self.cpus} CPUs, load average {self.load_before:.2f} before, {self.load_after:.2f} after; '
                f'of all CPUs this run used {self.own_percent:.0f} %, other processes {self.others_percent:.0f} %')


def _machine_busy_s() -> float:
    """CPU seconds of all CPUs not idle since boot (user, nice, system, irq, softirq, steal of /proc/stat)."""
    fields = [int(value) for value in Path('/proc/stat').read_text().split('\n', 1)[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / os.sysconf('SC_CLK_TCK')


def _own_cpu_s() -> float:
    """CPU seconds of this process and of the children it has waited for."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def available() -> list[str]:
    """Names of the benchmarks found in ``bench/``."""
    return sorted(p.stem for p in share_path('bench').glob('*.py') if not p.stem.startswith('_'))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the benchmark name and its pass-through arguments."""
    parser.add_argument('name', help=f'benchmark to run: {", ".join(available()) or "none installed"}')
    parser.add_argument('bench_args', nargs=argparse.REMAINDER, help='arguments for the benchmark, e.g. --json')


def run(args: argparse.Namespace) -> int:
    """Run ``bench/<name>.py``'s ``main`` with the remaining arguments."""
    path = share_path('bench', f'{args.name}.py')
    if not path.is_file():
        msg = f'no benchmark named {args.name!r} in {path.parent}; available: {", ".join(available()) or "none"}'
        raise ConfigError(msg)
    return int(runpy.run_path(str(path), run_name='dystream_bench')['main'](args.bench_args) or 0)
