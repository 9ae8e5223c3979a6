"""QoS profiles that the package's nodes and tools must agree on (this module imports nothing heavy, so a tool
such as ``dystream bag replay`` can use it without loading the model's libraries)."""
from __future__ import annotations

from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

# AudioInfo is latched: a subscriber that comes later still gets the format (a volatile publisher does not match
# a transient-local subscription at all).
INFO_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
