"""Where the package's data files live, in a source checkout and once installed.

CMake installs launch/, config/ and bench/ to ``share/dystream_ros`` and rosidl installs the .msg files to
``share/dystream_ros/msg``. In a source checkout the same folders sit at the repository root.
"""
from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

PACKAGE = 'dystream_ros'
_SOURCE_ROOT = Path(__file__).resolve().parent.parent
FAST_DDS_2_DISTROS = ('humble', 'jazzy')  # their Fast DDS reads FASTRTPS_DEFAULT_PROFILES_FILE, later ones FASTDDS_


def share_dir() -> Path:
    """Return the folder holding msg/, launch/, config/ and bench/.

    The source checkout wins when this module runs from one; otherwise the ament index (set by a sourced ROS
    workspace) and finally ``<sys.prefix>/share/dystream_ros`` (the bare-machine install into .venv).
    """
    if (_SOURCE_ROOT / 'package.xml').is_file() and (_SOURCE_ROOT / 'msg').is_dir():
        return _SOURCE_ROOT
    if os.environ.get('AMENT_PREFIX_PATH'):
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

        try:
            return Path(get_package_share_directory(PACKAGE))
        except PackageNotFoundError:
            pass
    return Path(sys.prefix) / 'share' / PACKAGE


def share_path(*parts: str) -> Path:
    """Return a path below :func:`share_dir`, e.g. ``share_path('config', 'default.yaml')``."""
    return share_dir().joinpath(*parts)


def use_dds_profile() -> None:
    """Give Fast DDS the package's profile, config/fastdds_shm.xml (a shared-memory segment that carries a 512x512
    face image whole), unless the user chose a profile. Call it before rclpy creates a context.

    The node executables and the ``dystream`` command call it, so they run with the settings they need however
    they are started (a launch file, ``ros2 run``, ``.venv/bin/dystream``), not only from the Makefile.
    """
    fast_dds_2 = os.environ.get('ROS_DISTRO') in FAST_DDS_2_DISTROS  # ROS_DISTRO: set by a sourced ROS install
    variable = 'FASTRTPS_DEFAULT_PROFILES_FILE' if fast_dds_2 else 'FASTDDS_DEFAULT_PROFILES_FILE'
    # Fast DDS 3 also reads the old variable (with a deprecation warning): a profile there is the user's choice too
    chosen = (variable,) if fast_dds_2 else ('FASTDDS_DEFAULT_PROFILES_FILE', 'FASTRTPS_DEFAULT_PROFILES_FILE')
    profile = share_path('config', 'fastdds_shm.xml')
    if profile.is_file() and not any(os.environ.get(name) for name in chosen):
        os.environ[variable] = str(profile)


def demo_bag() -> Path:
    """The demo conversation (a rosbag2 folder): installed to share/, or in the package's assets in a checkout."""
    installed = share_path('demo_conversation')
    return installed if installed.is_dir() else Path(__file__).resolve().parent / 'assets' / 'demo_conversation'


def file_sha256(path: Path) -> str:
    """The hex sha256 of a file, read in 16 MiB blocks (a published checkpoint is hundreds of MB): the provenance
    that converted weights record of their source."""
    digest = hashlib.sha256()
    with Path(path).open('rb') as f:
        for block in iter(lambda: f.read(1 << 24), b''):
            digest.update(block)
    return digest.hexdigest()
