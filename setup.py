"""pip install of the plain-Python part of dystream_ros: the library and the ``dystream`` command.

For hosts that train, evaluate or export the model without ROS (``pip install .``). The ROS package itself (the
generated messages, the nodes, launch/ and config/) is built by CMakeLists.txt: ``colcon build`` in a ROS 2
workspace, or ``make setup`` on a machine without ROS (see README.md).
"""
from __future__ import annotations

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent


def requirements() -> list[str]:
    """Runtime requirements: requirements/python.txt without its comments and test tools."""
    lines = (HERE / 'requirements' / 'python.txt').read_text().splitlines()
    names = [line.split('#')[0].strip() for line in lines]
    return [name for name in names if name and name not in {'pytest', 'hypothesis', 'ruff'}]


setup(
    name='dystream_ros',
    version='0.1.0',
    description='A live talking face for social robots, driven by the DyStream streaming dyadic model',
    license='Apache-2.0',
    python_requires='>=3.10',
    packages=find_packages(include=['dystream_ros', 'dystream_ros.*']),
    package_data={'dystream_ros': ['assets/*', 'py.typed']},
    install_requires=requirements(),
    entry_points={'console_scripts': ['dystream = dystream_ros.cli:main']},
)
