"""Teardown shared by the tests that run a node as a process next to an in-test ROS graph."""
from __future__ import annotations

import subprocess
from typing import Any

import rclpy


def stop_node_and_graph(process: subprocess.Popen, sig: int, executor: Any, node: Any, context: Any) -> str:
    """Send ``sig`` to the node's process, wait for it, tear down the test's executor, node and context; return
    what the process printed."""
    process.send_signal(sig)
    output = process.communicate(timeout=30)[0]
    executor.shutdown()
    node.destroy_node()
    rclpy.try_shutdown(context=context)
    return output
