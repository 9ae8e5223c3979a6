"""audio_capture_node: a microphone to AudioDataStamped (S16LE), for robots whose microphone has no ROS driver.

PyAudio (PortAudio) reads fixed-size chunks in its own thread; each chunk is stamped with the time of its first
sample (the capture time PortAudio reports, mapped onto the node's clock) and published with sensor-data QoS,
with its format latched on ``audio_info``. A device is chosen by index or by (part of) its name; when the one
asked for does not exist, the node fails to start and lists the input devices it found.
"""
from __future__ import annotations

import sys
import threading
from typing import TYPE_CHECKING, Any

import rclpy
from rcl_interfaces.msg import IntegerRange, ParameterDescriptor
from rclpy.executors import ExternalShutdownException
from rclpy.impl.implementation_singleton import rclpy_implementation
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

from dystream_ros.errors import ConfigError
from dystream_ros.msg import AudioData, AudioDataStamped, AudioInfo
from dystream_ros.nodes.conversions import time_message
from dystream_ros.nodes.startup import start_node
from dystream_ros.units import NS_PER_S

RCLError = rclpy_implementation.RCLError

if TYPE_CHECKING:
    from collections.abc import Callable

INFO_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


def audio_devices(pyaudio_instance: Any, direction: str = 'input') -> list[tuple[int, str, int]]:
    """(index, name, max channels) of every device that can record (``direction`` 'input') or play ('output')."""
    key = 'maxInputChannels' if direction == 'input' else 'maxOutputChannels'
    devices = []
    for index in range(pyaudio_instance.get_device_count()):
        info = pyaudio_instance.get_device_info_by_index(index)
        if int(info.get(key, 0)) > 0:
            devices.append((index, str(info['name']), int(info[key])))
    return devices


def choose_device(devices: list[tuple[int, str, int]], wanted: str, direction: str = 'input') -> int | None:
    """The device index for ``wanted``: '' for PortAudio's default (None), a number, or part of a name."""
    if not wanted:
        return None
    if wanted.isdigit() and any(index == int(wanted) for index, _, _ in devices):
        return int(wanted)
    matches = [index for index, name, _ in devices if wanted.lower() in name.lower()]
    if matches:
        return matches[0]
    listing = '; '.join(f'{index}: {name} ({channels} ch)' for index, name, channels in devices) or 'none'
    msg = f'no {direction} device {wanted!r}. {direction.capitalize()} devices found: {listing}'
    raise ConfigError(msg)


class AudioCaptureNode(Node):
    """Publishes the microphone on ``audio`` (AudioDataStamped) and its format on ``audio_info``."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__('audio_capture_node', **kwargs)
        describe = ParameterDescriptor
        self.declare_parameter('device', '', describe(
            description='input device: empty for the default, an index, or part of its name', read_only=True))
        self.declare_parameter('sample_rate', 16000, describe(
            description='samples per second', read_only=True,
            integer_range=[IntegerRange(from_value=8000, to_value=48000, step=1)]))
        self.declare_parameter('channels', 1, describe(
            description='channels to record (interleaved)', read_only=True,
            integer_range=[IntegerRange(from_value=1, to_value=8, step=1)]))
        self.declare_parameter('chunk_ms', 10, describe(
            description='audio per message in milliseconds; a face waits up to this long for the message that '
                        'completes its sound, so it adds to the sound-to-picture latency', read_only=True,
            integer_range=[IntegerRange(from_value=5, to_value=500, step=1)]))
        self.declare_parameter('frame_id', 'microphone', describe(description='frame_id of the audio messages'))
        self.rate = self.get_parameter('sample_rate').value
        self.channels = self.get_parameter('channels').value
        self.chunk = self.rate * self.get_parameter('chunk_ms').value // 1000
        self.frame_id = self.get_parameter('frame_id').value
        self.publisher = self.create_publisher(AudioDataStamped, 'audio', qos_profile_sensor_data)
        self.info_publisher = self.create_publisher(AudioInfo, 'audio_info', INFO_QOS)
        self.chunks_published = 0
        self._stop = threading.Event()

        import pyaudio

        self._pyaudio = pyaudio.PyAudio()
        try:
            device = choose_device(audio_devices(self._pyaudio), self.get_parameter('device').value)
            self._stream = self._pyaudio.open(
                format=pyaudio.paInt16, channels=self.channels, rate=self.rate, input=True,
                input_device_index=device, frames_per_buffer=self.chunk)
        except (OSError, ConfigError) as exc:
            self._pyaudio.terminate()
            msg = f'cannot open the microphone: {exc}'
            raise ConfigError(msg) from None
        name = (self._pyaudio.get_device_info_by_index(device)['name'] if device is not None
                else 'the default input')
        self.info_publisher.publish(AudioInfo(channels=self.channels, sample_rate=self.rate, sample_format='S16LE',
                                              bitrate=self.rate * self.channels * 16, coding_format='WAVE'))
        self._thread = threading.Thread(target=self._capture, name='audio_capture', daemon=True)
        self._thread.start()
        self.get_logger().info(f'recording {name}: {self.rate} Hz, {self.channels} ch, {self.chunk} samples per '
                               'message')

    def _capture(self) -> None:
        """Read chunks until stopped; a read blocks until the chunk is complete, so its last sample is 'now'."""
        chunk_ns = self.chunk * NS_PER_S // self.rate
        while not self._stop.is_set() and self.context.ok():  # SIGINT shuts the context down before close()
            try:
                data = self._stream.read(self.chunk, exception_on_overflow=False)
            except OSError as exc:
                self.get_logger().error(f'microphone read failed: {exc}', throttle_duration_sec=5.0)
                continue
            stamp_ns = self.get_clock().now().nanoseconds - chunk_ns
            msg = AudioDataStamped()
            msg.header.stamp = time_message(stamp_ns)
            msg.header.frame_id = self.frame_id
            msg.audio = AudioData(data=data)
            try:
                self.publisher.publish(msg)
            except RCLError:
                if self.context.ok():
                    raise
                return  # shut down between the check and the publish: the recording ends here
            self.chunks_published += 1

    def close(self) -> None:
        """Stop recording and release the device."""
        self._stop.set()
        self._thread.join(timeout=2.0)
        self._stream.stop_stream()
        self._stream.close()
        self._pyaudio.terminate()


def run_sound_node(make_node: Callable[[], Any], name: str, args: list[str] | None) -> int:
    """Run a node that holds a sound device (it has ``close()``) until SIGINT or SIGTERM; 1 if it cannot start
    (no such device, a bad parameter), with the reason on stderr."""
    node = start_node(name, make_node, args)
    if node is None:
        return 1
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.close()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


def main(args: list[str] | None = None) -> int:
    """Record until SIGINT or SIGTERM."""
    return run_sound_node(AudioCaptureNode, 'audio_capture_node', args)


if __name__ == '__main__':
    sys.exit(main())
