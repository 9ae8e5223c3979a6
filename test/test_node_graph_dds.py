"""The node and the ``dystream`` command bring the DDS settings they need, however they are started: without
FASTDDS_DEFAULT_PROFILES_FILE in the environment (no Makefile), their Fast DDS participant still gets the package's
shared-memory segment, big enough for a 512x512 face image (the default segment is 0.5 MB)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dystream_ros.apps.graph_run import stop_process

ROOT = Path(__file__).resolve().parent.parent
NODE_ARGS = ['--ros-args', '-p', 'generator:=amplitude', '-p', 'renderer:=none']
SEGMENT = re.compile(r'^([0-9a-f]+)-([0-9a-f]+) .* /dev/shm/fastdds_[0-9a-f]{16}$')  # a participant's segment


def _launcher(tmp_path: Path) -> list[str]:
    """The node executable CMake makes from scripts/launcher.py.in (what `ros2 run` and launch files start)."""
    text = (ROOT / 'scripts' / 'launcher.py.in').read_text()
    script = tmp_path / 'dystream_node'
    script.write_text(text.replace('@Python3_EXECUTABLE@', sys.executable).replace(
        '@ENTRY_MODULE@', 'dystream_ros.nodes.dystream_node'))
    return [sys.executable, str(script), *NODE_ARGS]


def _segment_bytes(pid: int) -> int:
    """Size of the process's Fast DDS participant segment in /dev/shm, 0 while it has none."""
    try:
        maps = Path(f'/proc/{pid}/maps').read_text().splitlines()
    except FileNotFoundError:
        return 0
    sizes = [int(m.group(2), 16) - int(m.group(1), 16) for line in maps if (m := SEGMENT.match(line))]
    return max(sizes, default=0)


@pytest.mark.parametrize('entry_point', ['module', 'launcher', 'dystream command'])
def test_entry_points_use_the_shared_memory_profile_without_the_makefile(entry_point: str, tmp_path: Path) -> None:
    command = {
        'module': lambda: [sys.executable, '-m', 'dystream_ros.nodes.dystream_node', *NODE_ARGS],
        'launcher': lambda: _launcher(tmp_path),
        # waits for a topic nobody publishes: its participant is up meanwhile
        'dystream command': lambda: [sys.executable, '-m', 'dystream_ros.cli', 'bag', 'record', '--out',
                                     str(tmp_path / 'bag'), '--wait', '120', '/nobody_publishes_this'],
    }[entry_point]()
    env = {k: v for k, v in os.environ.items()
           if k not in ('FASTDDS_DEFAULT_PROFILES_FILE', 'FASTRTPS_DEFAULT_PROFILES_FILE', 'ROS_DISTRO')}
    env['PYTHONPATH'] = str(ROOT)  # the launcher script imports this checkout's package, as installed ones do theirs
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    try:
        deadline = time.monotonic() + 120
        while not _segment_bytes(process.pid) and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(0.5)
        segment = _segment_bytes(process.pid)
    finally:
        output = stop_process(process)
    assert segment >= 16 * 2**20, (segment, output[-2000:])
