"""dystream_node's /diagnostics through its lifecycle, with two nodes in two namespaces on one graph."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile
from support.graph import stop_node_and_graph

ROOT = Path(__file__).resolve().parent.parent


def start_node(namespace: str, *parameters: str) -> subprocess.Popen:
    """dystream_node in ``namespace`` with ``parameters`` (name:=value), its output piped."""
    args = [arg for parameter in parameters for arg in ('-p', parameter)]
    return subprocess.Popen([sys.executable, '-m', 'dystream_ros.nodes.dystream_node', '--ros-args', '-r',
                             f'__ns:={namespace}', *args], cwd=ROOT, env=dict(os.environ), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def test_diagnostics_name_the_namespace_say_inactive_and_never_count_below_zero() -> None:
    context = Context()
    rclpy.init(context=context)
    node = rclpy.create_node('diagnostics_listener', context=context)
    statuses: list[tuple[float, DiagnosticStatus]] = []
    node.create_subscription(DiagnosticArray, '/diagnostics',
                             lambda m: statuses.extend((time.monotonic(), s) for s in m.status), QoSProfile(depth=100))
    change_state = node.create_client(ChangeState, '/right/dystream_node/change_state')
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)

    def spin(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            executor.spin_once(timeout_sec=0.02)

    def transition(transition_id: int) -> None:
        future = change_state.call_async(ChangeState.Request(transition=Transition(id=transition_id)))
        executor.spin_until_future_complete(future, timeout_sec=120)
        assert future.result() is not None and future.result().success, transition_id

    def right(since: float) -> list[str]:
        return [s.message for t, s in statuses if s.name == '/right/dystream_node: face' and t >= since]

    left = start_node('/left', 'generator:=amplitude', 'renderer:=none')
    # the photo avatar at 2048 px is over its budget here: frames get no image, and the node counts them
    right_node = start_node('/right', 'generator:=amplitude', 'renderer:=photo', 'image_size:=2048',
                            'autostart:=false')
    try:
        assert change_state.wait_for_service(timeout_sec=60)
        transition(Transition.TRANSITION_CONFIGURE)
        configured = time.monotonic()
        spin(2.5)
        inactive = right(configured)
        transition(Transition.TRANSITION_ACTIVATE)
        spin(4.0)
        transition(Transition.TRANSITION_DEACTIVATE)
        deactivated = time.monotonic()
        spin(2.5)
        paused = right(deactivated)
        transition(Transition.TRANSITION_ACTIVATE)
        reactivated = time.monotonic()
        spin(3.0)
        again = right(reactivated)
    finally:
        right_log = stop_node_and_graph(right_node, signal.SIGINT, executor, node, context)
        left.send_signal(signal.SIGINT)
        left_log = left.communicate(timeout=30)[0]
    assert right_node.returncode == 0 and left.returncode == 0, (right_log[-2000:], left_log[-2000:])
    assert {s.name for _, s in statuses} == {'/left/dystream_node: face', '/right/dystream_node: face'}
    assert inactive and set(inactive) == {'inactive'}
    assert paused and paused[-1] == 'inactive'
    assert again and 'inactive' not in again[1:]
    over_budget = [m for _, s in statuses for m in [s.message] if 'got no image' in m]
    assert over_budget, 'the renderer kept up: nothing was counted'
    counts = [int(re.search(r'(-?\d+) frames', m).group(1)) for m in over_budget]
    assert min(counts) > 0, counts
