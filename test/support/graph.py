"""Teardown for the tests that start a node process themselves next to an in-test ROS graph (the others run
through :class:`dystream_ros.apps.graph_run.GraphRun`)."""
from __future__ import annotations

import subprocess
from typing import Any

from dystream_ros.apps.graph_run import close_graph, stop_process


def stop_node_and_graph(process: subprocess.Popen, sig: int, executor: Any, node: Any, context: Any) -> str:
    """Send ``sig`` to the node's process, wait for it, tear down the test's executor, node and context; return
    what the process printed."""
    output = stop_process(process, sig)
    close_graph(executor, node, context)
    return output
