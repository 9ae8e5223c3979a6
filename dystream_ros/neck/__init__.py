"""The neck: head pose -> joint commands for a ros2_control head controller, within the joints' limits."""
from __future__ import annotations

from dystream_ros.neck.mapping import NeckCommand, NeckConfig, NeckJoint, NeckMapper

__all__ = ['NeckCommand', 'NeckConfig', 'NeckJoint', 'NeckMapper']
