"""How every node of the package joins the ROS graph: with the package's DDS profile, never less secure than asked
for, and with a one-line reason on stderr (exit code 1) when it cannot, instead of a traceback."""
from __future__ import annotations

import sys
from typing import TYPE_CHECKING, TypeVar

import rclpy
from rclpy.exceptions import InvalidHandle
from rclpy.impl.implementation_singleton import rclpy_implementation

from dystream_ros.errors import ConfigError
from dystream_ros.resources import use_dds_profile
from dystream_ros.security.middleware import check_secure_middleware, security_requested

if TYPE_CHECKING:
    from collections.abc import Callable

NodeT = TypeVar('NodeT')


def start_node(name: str, make_node: Callable[[], NodeT], args: list[str] | None) -> NodeT | None:
    """``rclpy.init`` and ``make_node()``; None, with the reason on stderr, if the node cannot start: security
    requested of a middleware that cannot enforce it, an enclave that fails to load (a permissions file edited by
    hand, a certificate from another CA), or a bad parameter."""
    use_dds_profile()
    try:
        check_secure_middleware()
    except ConfigError as exc:
        print(f'{name}: refusing to start: {exc}', file=sys.stderr)
        return None
    rclpy.init(args=args)
    try:
        return make_node()
    except ConfigError as exc:
        print(f'{name}: {exc}', file=sys.stderr)
    except (rclpy_implementation.RCLError, InvalidHandle) as exc:
        why = 'its enclave did not load (see the security errors above)' if security_requested() else str(exc)
        print(f'{name}: cannot join the ROS graph: {why}: {exc}', file=sys.stderr)
    rclpy.try_shutdown()
    return None
