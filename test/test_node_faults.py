"""dystream_node through faults a robot meets: voices that stop or stall, a subscriber that is too slow, one that
disappears, and a weights file that is corrupt."""
from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile
from std_msgs.msg import Header

from dystream_ros.data.corpus import conversation
from dystream_ros.msg import AudioData, AudioDataStamped, FaceMotion
from dystream_ros.nodes.conversions import time_message

ROOT = Path(__file__).resolve().parent.parent
CHUNK = 512
# a display that subscribes to the face images and then dies without saying goodbye (a crash, a pulled cable)
DISPLAY = """
import rclpy, sys
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image
rclpy.init()
node = rclpy.create_node('doomed_display')
node.create_subscription(Image, 'face/image', lambda m: print('image', flush=True), qos_profile_sensor_data)
rclpy.spin(node)
"""


def test_stalls_stops_and_slow_or_vanishing_subscribers_do_not_stop_the_face() -> None:
    robot, _ = conversation(4, 'heldout', 9, 12.0)
    context = Context()
    rclpy.init(context=context)
    node = rclpy.create_node('fault_injector', context=context)
    fast: list[tuple[float, FaceMotion]] = []
    slow_count = [0]

    def slow_callback(msg: FaceMotion) -> None:  # a subscriber that takes 200 ms per message
        slow_count[0] += 1
        time.sleep(0.2)

    node.create_subscription(FaceMotion, 'face/motion', lambda m: fast.append((time.monotonic(), m)),
                             QoSProfile(depth=100))
    slow_node = rclpy.create_node('slow_subscriber', context=context)
    slow_node.create_subscription(FaceMotion, 'face/motion', slow_callback, QoSProfile(depth=10))
    publishers = {name: node.create_publisher(AudioDataStamped, f'{name}_audio', QoSProfile(depth=50))
                  for name in ('self', 'partner')}
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    slow_thread_executor = SingleThreadedExecutor(context=context)
    slow_thread_executor.add_node(slow_node)
    slow_thread = threading.Thread(target=slow_thread_executor.spin, daemon=True)
    face = subprocess.Popen([sys.executable, '-m', 'dystream_ros.nodes.dystream_node', '--ros-args', '-p',
                             'image_size:=128'], cwd=ROOT, env=dict(os.environ), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    display = subprocess.Popen([sys.executable, '-c', DISPLAY], env=dict(os.environ), stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not fast and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.1)
        assert fast, 'the node never started'
        assert select.select([display.stdout], [], [], 30)[0], 'the display received no image'
        assert display.stdout.readline().strip() == 'image'
        slow_thread.start()
        pcm = {name: (np.clip(audio, -1, 1) * 32767).astype('<i2') for name, audio in
               (('self', robot.self_audio), ('partner', robot.partner_audio))}
        start_ns, started = time.time_ns(), time.monotonic()
        n_chunks = len(pcm['self']) // CHUNK
        partner_stops = n_chunks // 3  # the partner's stream ends mid-conversation, for good
        stall = (n_chunks // 2, n_chunks // 2 + int(5 * 16000 / CHUNK))  # the robot's voice stalls 5 s
        display_dies = n_chunks // 4
        for k in range(n_chunks + (stall[1] - stall[0])):
            if k == display_dies:
                display.kill()
            due = started + (k + 1) * CHUNK / 16000
            while time.monotonic() < due:
                executor.spin_once(timeout_sec=0.002)
            for name in ('self', 'partner'):
                if name == 'partner' and k >= partner_stops:
                    continue
                if name == 'self' and stall[0] <= k < stall[1]:
                    continue
                source = k if name == 'partner' or k < stall[0] else k - (stall[1] - stall[0])
                header = Header(stamp=time_message(start_ns + k * CHUNK * 10**9 // 16000))
                data = pcm[name][source * CHUNK:(source + 1) * CHUNK].tobytes()
                publishers[name].publish(AudioDataStamped(header=header, audio=AudioData(data=data)))
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            executor.spin_once(timeout_sec=0.01)
    finally:
        display.kill()
        display.wait(timeout=10)
        face.send_signal(signal.SIGINT)
        log = face.communicate(timeout=30)[0]
        slow_thread_executor.shutdown()
        executor.shutdown()
        node.destroy_node()
        slow_node.destroy_node()
        rclpy.try_shutdown(context=context)
    assert face.returncode == 0, log[-3000:]
    indices = [m.frame_index for _, m in fast]
    assert indices == list(range(indices[0], indices[0] + len(indices)))  # no frame lost, whatever happened
    during = [t for t, m in fast if t >= started]
    rate = (len(during) - 1) / (during[-1] - during[0])
    assert 25 * 0.95 <= rate <= 25 * 1.05, rate
    assert slow_count[0] < len(during) / 2  # the slow subscriber really was slow, and held nobody back
    # while the robot's voice stalled, the face went on (silent); after, it spoke again
    stall_start_s, stall_end_s = stall[0] * CHUNK / 16000, stall[1] * CHUNK / 16000
    stalled = [m for t, m in fast if stall_start_s + 0.5 < t - started < stall_end_s - 0.2]
    assert stalled and all(m.self_voice_activity == 0.0 for m in stalled)
    after = [m for t, m in fast if t - started > stall_end_s + 0.5]
    assert any(m.self_voice_activity > 0 for m in after)


def test_a_corrupt_weights_file_stops_the_node_with_its_name(tmp_path: Path) -> None:
    weights = tmp_path / 'dystream_tiny.safetensors'
    weights.write_bytes(b'\x00' * 64 + b'not safetensors')
    result = subprocess.run([sys.executable, '-m', 'dystream_ros.nodes.dystream_node', '--ros-args', '-p',
                             f'model_path:={weights}'], cwd=ROOT, env=dict(os.environ), capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 1
    assert str(weights) in result.stdout + result.stderr


def test_a_renderer_over_its_budget_drops_images_not_motion_and_says_so() -> None:
    # the photo avatar at 2048 px takes several frame periods per image on this machine
    robot, _ = conversation(2, 'heldout', 9, 6.0)
    context = Context()
    rclpy.init(context=context)
    node = rclpy.create_node('audio_source', context=context)
    motion: list[tuple[float, FaceMotion]] = []
    node.create_subscription(FaceMotion, 'face/motion', lambda m: motion.append((time.monotonic(), m)),
                             QoSProfile(depth=100))
    publisher = node.create_publisher(AudioDataStamped, 'self_audio', QoSProfile(depth=50))
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    face = subprocess.Popen([sys.executable, '-m', 'dystream_ros.nodes.dystream_node', '--ros-args', '-p',
                             'renderer:=photo', '-p', 'image_size:=2048'], cwd=ROOT, env=dict(os.environ),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 180
        while not motion and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.1)
        assert motion, 'the node never started'
        pcm = (np.clip(robot.self_audio, -1, 1) * 32767).astype('<i2')
        start_ns, started = time.time_ns(), time.monotonic()
        for k in range(len(pcm) // CHUNK):
            while time.monotonic() < started + (k + 1) * CHUNK / 16000:
                executor.spin_once(timeout_sec=0.002)
            header = Header(stamp=time_message(start_ns + k * CHUNK * 10**9 // 16000))
            publisher.publish(AudioDataStamped(header=header, audio=AudioData(
                data=pcm[k * CHUNK:(k + 1) * CHUNK].tobytes())))
        end = time.monotonic() + 1.5
        while time.monotonic() < end:
            executor.spin_once(timeout_sec=0.01)
    finally:
        face.send_signal(signal.SIGINT)
        log = face.communicate(timeout=30)[0]
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=context)
    assert face.returncode == 0, log[-3000:]
    indices = [m.frame_index for _, m in motion]
    assert indices == list(range(indices[0], indices[0] + len(indices)))  # motion continuity: every frame
    during = [t for t, _ in motion if t >= started]
    assert (len(during) - 1) / (during[-1] - during[0]) > 25 * 0.9
    assert 'the renderer is over its budget' in log, log[-3000:]
