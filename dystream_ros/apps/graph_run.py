"""dystream_node in its own process next to a ROS graph here: start it, replay a conversation into it, keep what
it publishes, stop it.

``dystream demo``, the sound-to-picture benchmark (bench/e2e.py) and the node's end-to-end tests all run this one
sequence, so the demo shows, the benchmark measures and the tests check the same thing: the real node, started as
a user starts it, fed by ``dystream bag replay`` from a third process. Everything here needs ROS (rclpy); the
``dystream`` commands that use it import it when they run.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, NamedTuple, TypeVar

import numpy as np
import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile

from dystream_ros.apps.video import FRAME_NS, video_frame_of
from dystream_ros.errors import DystreamError
from dystream_ros.msg import FaceMotion
from dystream_ros.security.middleware import check_secure_middleware, secure_environment

NODE_MODULE = 'dystream_ros.nodes.dystream_node'
READY_TIMEOUT_S = 120.0  # loading the model and warming it up, on a slow shared machine
STOP_TIMEOUT_S = 30.0
T = TypeVar('T')


class Received(NamedTuple, Generic[T]):
    """One message kept from a topic, with the time the middleware received it."""

    received_ns: int  # system clock, as the middleware saw it: this process being busy does not delay it
    value: T  # the message, or what ``keep`` took from it


def image_delivery(images: list[Received[int]], start_ns: int, frames: int) -> dict[str, int | float]:
    """How the face images of ``frames`` frames of audio time from ``start_ns`` reached a display here (``images``:
    the header stamp of each image received, with its arrival).

    ``images_missing``: frames with no image of their own (a display, or the demo video, repeats the one before).
    ``images_late``: images that arrived more than one frame period after their due time, the due time being the
    image's stamp plus the run's usual delay (the median of arrival less stamp, so a stamp may be on any clock):
    the steady pace a display expects, and what a viewer sees as a frozen face when an image misses it. (The
    latency figures say how long the usual delay is.)
    """
    delays_ns: dict[int, int] = {}  # video frame -> arrival less stamp of its first image
    for arrival_ns, stamp in images:
        index = video_frame_of(stamp, start_ns)
        if 0 <= index < frames:
            delays_ns.setdefault(index, arrival_ns - stamp)
    delays = np.array(list(delays_ns.values()))
    late = int((delays > np.median(delays) + FRAME_NS).sum()) if len(delays) else 0
    missing = frames - len(delays_ns)
    return {'video_frames': frames, 'images_missing': missing, 'images_missing_percent': _percent(missing, frames),
            'images_late': late, 'images_late_percent': _percent(late, frames)}


def _percent(part: int, whole: int) -> float:
    return round(100 * part / whole, 1) if whole else 0.0


def node_command(parameters: Mapping[str, object], installed: bool = False) -> list[str]:
    """The command line of dystream_node with ``parameters`` (one ``-p name:=value`` each).

    ``installed``: the installed executable (what ``ros2 run`` starts) where this Python has one; otherwise, and
    by default, the node's module run by this Python (the checkout's code when run from a checkout).
    """
    executable = Path(sys.prefix) / 'lib' / 'dystream_ros' / 'dystream_node'
    command = [str(executable)] if installed and executable.is_file() else [sys.executable, '-m', NODE_MODULE]
    return [*command, '--ros-args', *(arg for name, value in parameters.items() for arg in ('-p', f'{name}:={value}'))]


def replay_command(bag: Path, restamp: bool = False, loop: bool = False) -> list[str]:
    """``dystream bag replay`` of ``bag`` at its recorded pace, as its own process."""
    flags = [*(['--restamp'] if restamp else []), *(['--loop'] if loop else [])]
    return [sys.executable, '-m', 'dystream_ros.cli', 'bag', 'replay', *flags, str(bag)]


def stop_process(process: subprocess.Popen, sig: int = signal.SIGINT, timeout_s: float = STOP_TIMEOUT_S) -> str | None:
    """Send ``sig`` and wait for the process to exit, killing it after ``timeout_s``; return what it printed to a
    pipe (None where its output went elsewhere)."""
    process.send_signal(sig)
    try:
        return process.communicate(timeout=timeout_s)[0]
    except subprocess.TimeoutExpired:
        process.kill()
        return process.communicate()[0]


def close_graph(executor: Any, node: Any, context: Context) -> None:
    """Shut down this process's side of the graph: its executor, node and context."""
    executor.shutdown()
    node.destroy_node()
    rclpy.try_shutdown(context=context)


@dataclass(frozen=True)
class SecureGraph:
    """Run all three processes of a :class:`GraphRun` enforced under SROS2, each in its enclave of ``keystore``."""

    keystore: Path
    listener_enclave: str  # granted what the listener subscribes
    node_enclave: str = '/dystream/face'
    replay_enclave: str = '/dystream/replay'


class GraphRun:
    """One run of dystream_node, and a listener node here that keeps what it publishes.

    Subscribe with :meth:`subscribe`, then :meth:`start` (the node is up once it publishes face/motion: idle
    frames flow before any audio), :meth:`replay` conversations into it, and :meth:`stop` it (also on leaving a
    ``with`` block). The listener spins in its own thread, so receiving keeps up while the caller waits or
    measures. The node's output goes to ``log_path`` (a temporary file by default) and is :attr:`output` after
    the stop. With ``secure``, every process of the run is enforced under SROS2 in its enclave.
    """

    def __init__(self, parameters: Mapping[str, object], *, listener: str = 'dystream_listener',
                 log_path: Path | None = None, installed: bool = False, cwd: Path | None = None,
                 secure: SecureGraph | None = None) -> None:
        self.command = node_command(parameters, installed)
        self.cwd = cwd
        self._log_path, self._temporary_log = (log_path, False) if log_path else (None, True)
        self._environment = {role: dict(os.environ) for role in ('listener', 'node', 'replay')}
        if secure is not None:
            for role, enclave in (('listener', secure.listener_enclave), ('node', secure.node_enclave),
                                  ('replay', secure.replay_enclave)):
                self._environment[role].update(secure_environment(secure.keystore, enclave))
            check_secure_middleware(self._environment['listener'])
        self.context = Context()
        saved = dict(os.environ)
        os.environ.update(self._environment['listener'])  # rcl reads the security settings when a context starts
        try:
            rclpy.init(context=self.context)
        finally:
            os.environ.clear()
            os.environ.update(saved)
        self.node = rclpy.create_node(listener, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._first_frame = threading.Event()
        self._motion_watched = False  # by a subscription of the caller's (see subscribe)
        self.process: subprocess.Popen | None = None
        self._spinner: threading.Thread | None = None
        self.output = ''  # what the node printed, once stopped

    def __enter__(self) -> GraphRun:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def subscribe(self, msg_type: type, topic: str, qos: QoSProfile,
                  keep: Callable[[Any], T] = lambda message: message) -> list[Received[T]]:
        """Keep ``keep(message)`` of every message on ``topic``, with its receive time, in the list returned (it
        fills while the node runs). Subscribe before :meth:`start`, so nothing published at start-up is missed."""
        received: list[Received[T]] = []
        # One reader per topic here: under SROS2, Fast DDS 3.2 fails to decode an encrypted sample for a second
        # reader of the topic in the same participant (it logs an error per sample), so the caller's face/motion
        # reader also tells start() that the node is up.
        first_frame = self._first_frame.set if topic.lstrip('/') == 'face/motion' else lambda: None
        self._motion_watched |= topic.lstrip('/') == 'face/motion'

        def on_message(message: Any, info: dict) -> None:
            received.append(Received(info['received_timestamp'], keep(message)))
            first_frame()

        self.node.create_subscription(msg_type, topic, on_message, qos)
        return received

    @property
    def pid(self) -> int:
        """The node's process id (for /proc), once started."""
        assert self.process is not None, 'start() first'
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        """The node's exit status, once stopped."""
        return None if self.process is None else self.process.returncode

    def start(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Start the node and the listener; return once the node publishes face/motion.

        Raises DystreamError, with the end of what the node printed, when it exits or stays silent for ``timeout_s``.
        """
        if self._log_path is None:
            handle, name = tempfile.mkstemp(prefix='dystream_node_', suffix='.log')
            os.close(handle)
            self._log_path = Path(name)
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        if not self._motion_watched:
            self.node.create_subscription(FaceMotion, 'face/motion', lambda _: self._first_frame.set(),
                                          QoSProfile(depth=1))
        with open(self._log_path, 'w') as log:  # the child keeps its own copy of the descriptor
            self.process = subprocess.Popen(self.command, cwd=self.cwd, env=self._environment['node'], stdout=log,
                                            stderr=subprocess.STDOUT, text=True)
        self._spinner = threading.Thread(target=self.executor.spin, daemon=True)
        self._spinner.start()
        if not self.wait_until(self._first_frame.is_set, timeout_s):
            where = '' if self._temporary_log else f' (log: {self._log_path})'
            printed = self._log_path.read_text(errors='replace')[-2000:]
            msg = f'dystream_node did not start{where}; it printed:\n{printed}'
            raise DystreamError(msg)

    def wait_until(self, condition: Callable[[], bool], timeout_s: float) -> bool:
        """Wait until ``condition()`` holds (True), ``timeout_s`` passes or the node exits (False then)."""
        deadline = time.monotonic() + timeout_s
        while not condition():
            if time.monotonic() > deadline or (self.process is not None and self.process.poll() is not None):
                return condition()
            time.sleep(0.02)
        return True

    def replay(self, bag: Path, *, restamp: bool = False, loop: bool = False, duration_s: float | None = None,
               every_s: float = 1.0, tick: Callable[[], None] = lambda: None) -> subprocess.CompletedProcess:
        """Replay ``bag`` into the node from another process and wait for the replay to end; return how it ended.

        ``restamp``: header stamps moved to the present (stamps are then the wall-clock time of the sound);
        ``loop``: the bag over and over, until ``duration_s`` (then the replay is stopped with SIGINT). ``tick``
        runs when the replay starts and every ``every_s`` while it runs (the benchmark samples memory).
        """
        command = replay_command(bag, restamp, loop)
        replay = subprocess.Popen(command, cwd=self.cwd, env=self._environment['replay'], stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True)
        stop_at = None if duration_s is None else time.monotonic() + duration_s
        while True:
            tick()
            try:  # reading the pipe while waiting, so a talkative replay never blocks on it
                output = replay.communicate(timeout=every_s)[0]
                break
            except subprocess.TimeoutExpired:
                if stop_at is not None and time.monotonic() > stop_at:
                    output = stop_process(replay)
                    break
        return subprocess.CompletedProcess(command, replay.returncode, output)

    def stop(self, sig: int = signal.SIGINT, timeout_s: float = STOP_TIMEOUT_S) -> int | None:
        """Stop the node with ``sig`` (killed after ``timeout_s``) and the listener; return the node's exit status.
        Stopping again does nothing."""
        if self.process is not None and self.process.returncode is None:
            stop_process(self.process, sig, timeout_s)
        if self.context.ok():
            close_graph(self.executor, self.node, self.context)
            if self._spinner is not None:
                self._spinner.join(timeout=10)
            if self._log_path is not None and self._log_path.exists():
                self.output = self._log_path.read_text(errors='replace')
                if self._temporary_log:
                    self._log_path.unlink()
        return self.returncode
