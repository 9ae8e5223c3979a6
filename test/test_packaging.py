"""The package installs the way users install it: ROS layout in .venv (make setup), wheel for plain Python."""
from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import dystream_ros
from dystream_ros.msg import FaceMotion
from dystream_ros.resources import share_path

ROOT = Path(__file__).resolve().parent.parent
PREFIX = Path(sys.prefix)


def test_make_setup_installs_the_ros_layout_into_the_venv() -> None:
    # what `ros2 run`, `ros2 launch` and the ament index look for, as colcon would install it
    for relative in ('lib/dystream_ros/dystream_node', 'lib/dystream_ros/audio_capture_node',
                     'lib/dystream_ros/audio_player_node', 'bin/dystream', 'share/dystream_ros/package.xml',
                     'share/dystream_ros/msg/FaceMotion.msg', 'share/ament_index/resource_index/packages/dystream_ros'):
        assert (PREFIX / relative).is_file(), relative
    for script in ('lib/dystream_ros/dystream_node', 'bin/dystream'):
        assert os.access(PREFIX / script, os.X_OK), script
    assert FaceMotion.ACTIVITY_LISTENING == 2
    assert share_path('msg', 'FaceMotion.msg').read_text() == (ROOT / 'msg' / 'FaceMotion.msg').read_text()


def test_messages_import_in_a_clean_process_without_environment_set_by_hand() -> None:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(('AMENT_', 'LD_LIBRARY', 'PYTHONPATH', '_ROS_WHEELS'))}
    result = subprocess.run(
        [str(PREFIX / 'bin' / 'python'), '-c',
         'import rclpy, dystream_ros; from dystream_ros.msg import FaceMotion; print(FaceMotion.__module__)'],
        cwd='/', env=env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == 'dystream_ros.msg._face_motion'


def test_dystream_command_runs() -> None:
    result = subprocess.run([str(PREFIX / 'bin' / 'dystream'), '--help'], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert 'usage: dystream' in result.stdout


def test_plain_python_wheel_holds_the_library_and_the_command(tmp_path: Path) -> None:
    subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '-q', '-w',
                    str(tmp_path), str(ROOT)], check=True, timeout=300, capture_output=True)
    (wheel,) = tmp_path.glob('dystream_ros-*.whl')
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(archive.read(n).decode() for n in names if n.endswith('entry_points.txt'))
    assert 'dystream_ros/cli.py' in names and 'dystream_ros/data/sample.py' in names
    assert 'dystream = dystream_ros.cli:main' in entry_points
    assert dystream_ros.__version__ in wheel.name


def test_colcon_build_in_a_ros_workspace_installs_messages_nodes_and_share_files(tmp_path: Path) -> None:
    # the other way to build: src/dystream_ros in a workspace + colcon build, against the ROS in this prefix
    (tmp_path / 'src').mkdir()
    (tmp_path / 'src' / 'dystream_ros').symlink_to(ROOT)
    env = dict(os.environ, AMENT_PREFIX_PATH=str(PREFIX), CMAKE_PREFIX_PATH=str(PREFIX))
    build = subprocess.run(
        [str(PREFIX / 'bin' / 'colcon'), 'build', '--cmake-args', f'-DPython3_EXECUTABLE={sys.executable}',
         '-DBUILD_TESTING=ON'], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    install = tmp_path / 'install' / 'dystream_ros'
    for relative in ('lib/dystream_ros/dystream_node', 'lib/dystream_ros/audio_player_node',
                     'share/dystream_ros/package.xml', 'share/dystream_ros/msg/AudioDataStamped.msg', 'bin/dystream'):
        assert (install / relative).is_file(), relative
    # the ament test registered by CMakeLists.txt (what `colcon test` runs)
    assert 'dystream_ros_tests' in (tmp_path / 'build' / 'dystream_ros' / 'CTestTestfile.cmake').read_text()
    probe = subprocess.run(
        ['bash', '-c', '. install/setup.sh && python -c "from dystream_ros.msg import FaceMotion; '
         'import dystream_ros.msg as m; print(m.__file__)"'],
        cwd=tmp_path, env=dict(env, PATH=f'{PREFIX / "bin"}:{os.environ["PATH"]}'),
        capture_output=True, text=True, timeout=120, check=False)
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip().startswith(str(install)), probe.stdout
