"""Can this process's middleware enforce the security it is asked for? Checked by every node before rclpy starts.

Fast DDS built without DDS-Security (the PyPI ``ros-fastdds`` wheel) cannot load an enclave, and under
``ROS_SECURITY_STRATEGY=Permissive`` a node whose enclave is missing starts unsecured with only a warning: a robot
asked to be secure must refuse to run in both cases, and say how to get a middleware that can.
"""
from __future__ import annotations

import ctypes
import os
from pathlib import Path

from dystream_ros.errors import ConfigError

# Strings that only a SECURITY=ON build contains: the rmw sets the plugin properties, Fast DDS has the plugins.
SECURITY_MARKERS = {'librmw_fastrtps_shared_cpp': b'dds.sec.auth.plugin', 'libfastdds': b'DDS:Auth:PKI-DH'}
HOW_TO_GET_ONE = ('on the PyPI install run `make secure-middleware` (Fast DDS rebuilt with SECURITY=ON); with a '
                  'system ROS, use its Fast DDS (the apt builds have security: README "Securing the robot")')


def secure_environment(keystore: Path, enclave: str) -> dict[str, str]:
    """The environment variables that start a process, or an rclpy context, enforced in ``enclave`` of ``keystore``
    (rcl reads them when the context is initialised; the enclave given this way overrides ``--enclave``)."""
    return {'ROS_SECURITY_ENABLE': 'true', 'ROS_SECURITY_STRATEGY': 'Enforce', 'ROS_SECURITY_KEYSTORE': str(keystore),
            'ROS_SECURITY_ENCLAVE_OVERRIDE': enclave}


def security_requested(environ: dict[str, str] | None = None) -> bool:
    """True when ``ROS_SECURITY_ENABLE`` is ``true`` (rcl's own test)."""
    return (os.environ if environ is None else environ).get('ROS_SECURITY_ENABLE', '').lower() == 'true'


def loaded_fastrtps_libraries() -> dict[str, Path]:
    """The Fast DDS libraries this process loads for rmw_fastrtps_cpp (name -> file), found by loading them."""
    try:
        ctypes.CDLL('librmw_fastrtps_shared_cpp.so')  # the search path rclpy's rmw loader uses, with libfastdds
    except OSError:
        return {}
    found = {}
    for line in Path('/proc/self/maps').read_text().splitlines():
        path = line.split(maxsplit=5)[-1] if line.count(' ') >= 5 else ''
        for name in SECURITY_MARKERS:
            if Path(path).name.startswith(name + '.so'):
                found[name] = Path(path)
    return found


def has_security(library: Path, marker: bytes) -> bool:
    """Whether ``library`` contains ``marker``: read in pieces, overlapping by the marker's length."""
    with library.open('rb') as stream:
        tail = b''
        while chunk := stream.read(1 << 22):
            if marker in tail + chunk:
                return True
            tail = chunk[-len(marker):]
    return False


def check_secure_middleware(environ: dict[str, str] | None = None) -> None:
    """Raise ConfigError when security is requested but would not be enforced: a strategy other than Enforce, no
    keystore, or a Fast DDS (or its rmw) built without DDS-Security. Nothing to check when it is not requested,
    or when the rmw is not rmw_fastrtps_cpp."""
    environ = dict(os.environ if environ is None else environ)
    if not security_requested(environ):
        return
    strategy = environ.get('ROS_SECURITY_STRATEGY', '')
    if strategy != 'Enforce':
        msg = (f'ROS_SECURITY_ENABLE=true with ROS_SECURITY_STRATEGY={strategy or "(unset: Permissive)"}: a node '
               'whose enclave is missing would start unsecured; set ROS_SECURITY_STRATEGY=Enforce')
        raise ConfigError(msg)
    keystore = environ.get('ROS_SECURITY_KEYSTORE', '')
    if not keystore or not Path(keystore, 'enclaves').is_dir():
        msg = (f'ROS_SECURITY_KEYSTORE={keystore or "(unset)"} is not a keystore (no enclaves/ folder): make one with '
               '`dystream keystore create` and `dystream keystore enclave`')
        raise ConfigError(msg)
    if environ.get('RMW_IMPLEMENTATION', 'rmw_fastrtps_cpp') != 'rmw_fastrtps_cpp':
        return
    for name, library in loaded_fastrtps_libraries().items():
        if not has_security(library, SECURITY_MARKERS[name]):
            msg = f'security is requested but {library} was built without DDS-Security: {HOW_TO_GET_ONE}'
            raise ConfigError(msg)
