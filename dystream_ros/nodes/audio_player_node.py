"""audio_player_node: the robot's own voice (the ``self_audio`` stream) on its speaker, at the times the face shows it.

dystream_node shows each frame of the robot's voice when that sound is due: at its stamp, for audio stamped on the
node's clock (a TTS that stamps an utterance with the time it will be played), or from its arrival, chained after
what is still playing, for unstamped audio. This node places every message with the same code
(:class:`~dystream_ros.audio.VoiceInput`, the face engine's own decoder, resampler and timeline), and PortAudio asks
it, buffer by buffer, for the samples due at the moment that buffer reaches the speaker (the DAC time PortAudio
reports, mapped onto the node's clock), so the speaker and the face agree to within a frame. Where no audio is due
it plays silence. Output is 16 kHz mono S16LE, the engine's own rate; name an ALSA ``plug`` device (``default``,
``plughw:...``) for a sound card that only takes 48 kHz or stereo.
"""
from __future__ import annotations

import sys
import threading
import time
from typing import Any

import numpy as np
from rcl_interfaces.msg import IntegerRange, ParameterDescriptor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from dystream_ros.audio import AudioFormat, VoiceInput
from dystream_ros.errors import ConfigError, DystreamError
from dystream_ros.msg import AudioData, AudioDataStamped, AudioInfo
from dystream_ros.nodes.audio_capture_node import audio_devices, choose_device, run_sound_node
from dystream_ros.nodes.conversions import audio_format_of, stamp_ns
from dystream_ros.units import NS_PER_S, SAMPLE_RATE_HZ

INFO_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
AUDIO_DEPTH = 1000  # messages: a TTS utterance published as a burst of chunks is not lost
BUFFER_S = 120.0  # audio held, as in the face engine: a minute-long utterance in one message, and room ahead
RESYNC_TOLERANCE_S = 0.02  # the DAC time PortAudio reports may wander this far from the samples counted ...
RESYNC_AFTER_S = 0.25  # ... and further for this long (a drifting sound card, a restarted device) before it is used
SLICE_MS = 100  # a long message is placed this much at a time (a minute of 24 kHz audio takes 1.5 s to place)
CLOCK_CHECK_S = 1.0  # how often the offset between PortAudio's clock and the node's clock is measured
LOG_EVERY_S = 5.0


class PlayClock:
    """Where each buffer the device asks for starts, as a sample index of the node's clock.

    A DAC plays its samples one after the other at its own rate, so buffers follow each other without a gap or an
    overlap; the time PortAudio reports for a buffer only re-anchors the count when the two disagree by more than
    ``tolerance`` for longer than ``settle`` samples (the sound card's clock drifts from the computer's, the device
    was restarted), or at once when the output ran dry (an underflow). Short disagreements are the reporting's
    own jitter (a late callback) and are ignored.
    """

    def __init__(self, tolerance: int, settle: int) -> None:
        self.tolerance, self.settle = tolerance, settle
        self.next_index: int | None = None
        self.resyncs: list[int] = []  # how far each re-anchoring moved the count (samples), not yet reported
        self._disagreeing = 0  # samples played since the report and the count started to disagree

    def start_of(self, reported_index: int, frames: int, underflow: bool) -> int:
        """The first sample index of a buffer of ``frames`` that the device says starts at ``reported_index``."""
        if self.next_index is None or underflow:
            if self.next_index is not None:
                self.resyncs.append(reported_index - self.next_index)
            self.next_index, self._disagreeing = reported_index, 0
        elif abs(reported_index - self.next_index) > self.tolerance:
            self._disagreeing += frames
            if self._disagreeing > self.settle:
                self.resyncs.append(reported_index - self.next_index)
                self.next_index, self._disagreeing = reported_index, 0
        else:
            self._disagreeing = 0
        start = self.next_index
        self.next_index += frames
        return start


def _declare_parameters(node: Node) -> dict[str, Any]:
    """Declare the node's parameters (all read-only: they shape the stream); return their values."""
    def declare(name: str, default: Any, description: str, **limits: Any) -> Any:
        return node.declare_parameter(name, default, ParameterDescriptor(
            description=description, read_only=True, **limits))

    declared = [
        declare('device', '', 'output device: empty for the default, an index, or part of its name'),
        declare('audio_type', 'AudioDataStamped', 'message type on self_audio: AudioDataStamped or plain AudioData'),
        declare('audio_reliability', 'best_effort', 'QoS reliability of the audio subscription (best_effort also '
                'receives from reliable publishers): best_effort or reliable'),
        declare('sample_rate', 16000, 'sample rate of self_audio in Hz, until an AudioInfo says otherwise',
                integer_range=[IntegerRange(from_value=8000, to_value=48000, step=1)]),
        declare('channels', 1, 'interleaved channels of self_audio (mixed to mono)',
                integer_range=[IntegerRange(from_value=1, to_value=8, step=1)]),
        declare('sample_format', 'S16LE', 'encoding of self_audio: S16LE, S32LE or F32LE'),
        declare('buffer_ms', 10, 'audio per PortAudio buffer in milliseconds (shorter: less latency, more CPU)',
                integer_range=[IntegerRange(from_value=5, to_value=100, step=1)]),
        declare('output_latency_ms', -1, 'time from PortAudio handing over a buffer to its sound leaving the '
                'speaker; negative: as PortAudio reports it (each buffer\'s DAC time, or the stream\'s output '
                'latency for a device that reports none). Set it to the latency measured with a loopback when the '
                'device does not know all of it (Bluetooth, an amplifier with a delay) or reports none',
                integer_range=[IntegerRange(from_value=-1, to_value=2000, step=1)]),
    ]
    return {parameter.name: parameter.value for parameter in declared}


class AudioPlayerNode(Node):
    """Plays ``self_audio`` (AudioDataStamped or AudioData, format on ``self_audio_info``) at its times."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__('audio_player_node', **kwargs)
        values = _declare_parameters(self)
        if values['audio_type'] not in ('AudioDataStamped', 'AudioData'):
            msg = f"audio_type {values['audio_type']!r}: use AudioDataStamped or AudioData"
            raise ConfigError(msg)
        if values['audio_reliability'] not in ('best_effort', 'reliable'):
            msg = f"audio_reliability {values['audio_reliability']!r}: use best_effort or reliable"
            raise ConfigError(msg)
        audio_format = AudioFormat(values['sample_rate'], values['channels'], values['sample_format'].upper())
        self._latency_s = values['output_latency_ms'] / 1e3 if values['output_latency_ms'] >= 0 else None
        self._lock = threading.Lock()  # the voice is written by the subscription and read by PortAudio's thread
        self._voice = VoiceInput(audio_format, self._now_ns(), BUFFER_S)
        self._play_clock = PlayClock(round(RESYNC_TOLERANCE_S * SAMPLE_RATE_HZ),
                                     round(RESYNC_AFTER_S * SAMPLE_RATE_HZ))

        import pyaudio

        self._pyaudio = pyaudio.PyAudio()
        self._underflow_flag = pyaudio.paOutputUnderflow
        self._continue = pyaudio.paContinue
        try:
            device = choose_device(audio_devices(self._pyaudio, 'output'), values['device'], 'output')
            self._stream = self._pyaudio.open(
                format=pyaudio.paInt16, channels=1, rate=SAMPLE_RATE_HZ, output=True, output_device_index=device,
                frames_per_buffer=SAMPLE_RATE_HZ * values['buffer_ms'] // 1000, stream_callback=self._fill,
                start=False)
        except (OSError, ValueError, ConfigError) as exc:
            self._pyaudio.terminate()
            msg = f'cannot open the speaker: {exc}'
            raise ConfigError(msg) from None
        self._stream_latency_s = self._stream.get_output_latency()
        self._clock_offset_ns = self._measure_clock_offset()
        stamped = values['audio_type'] == 'AudioDataStamped'
        reliability = (ReliabilityPolicy.BEST_EFFORT if values['audio_reliability'] == 'best_effort'
                       else ReliabilityPolicy.RELIABLE)
        qos = QoSProfile(depth=AUDIO_DEPTH, reliability=reliability)
        self.create_subscription(AudioDataStamped if stamped else AudioData, 'self_audio',
                                 lambda msg: self._on_audio(msg, stamped), qos)
        self.create_subscription(AudioInfo, 'self_audio_info', self._on_audio_info, INFO_QOS)
        self.create_timer(CLOCK_CHECK_S, self._on_clock_check)
        self._stream.start_stream()
        name = (self._pyaudio.get_device_info_by_index(device)['name'] if device is not None
                else 'the default output')
        latency = (f'{values["output_latency_ms"]:.0f} ms (set)' if self._latency_s is not None
                   else f'as PortAudio reports it (stream latency {self._stream_latency_s * 1e3:.0f} ms)')
        self.get_logger().info(f'playing self_audio on {name}: {SAMPLE_RATE_HZ} Hz mono, output latency {latency}')

    def _now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    def _measure_clock_offset(self) -> int:
        """Node clock - PortAudio's stream clock (ns), from the closest of a few back-to-back readings."""
        readings = []
        for _ in range(5):
            before = self._now_ns()
            stream_s = self._stream.get_time()
            after = self._now_ns()
            readings.append((after - before, (before + after) // 2 - round(stream_s * NS_PER_S)))
        return min(readings)[1]

    def _on_clock_check(self) -> None:
        self._clock_offset_ns = self._measure_clock_offset()  # the node's clock may be slewed (NTP)
        jumps, self._play_clock.resyncs = self._play_clock.resyncs, []
        if jumps:
            moved = ', '.join(f'{jump * 1e3 / SAMPLE_RATE_HZ:+.0f} ms' for jump in jumps)
            self.get_logger().warning(f'the speaker is not where the samples played put it: re-synchronised '
                                      f'({moved}); a steady drift is the sound card\'s clock, a jump an underrun '
                                      'or a wrong output_latency_ms')

    # ----- input: the same placement as the face -------------------------------------------------------------
    def _on_audio(self, msg: AudioDataStamped | AudioData, stamped: bool) -> None:
        arrival = self._now_ns()
        data = bytes(msg.audio.data if stamped else msg.data)
        stamp = stamp_ns(msg.header.stamp) if stamped else 0
        audio_format = self._voice.audio_format
        # a long message (a whole utterance) goes in in slices, so that the speaker is never kept waiting for the
        # lock while it is decoded; the pipeline places audio the same however it is chunked
        step = audio_format.frame_bytes * audio_format.sample_rate_hz * SLICE_MS // 1000
        issues = []
        for first in range(0, len(data), step):
            first_ns = first // audio_format.frame_bytes * NS_PER_S // audio_format.sample_rate_hz
            try:
                with self._lock:
                    issues += self._voice.push(data[first:first + step], stamp + first_ns if stamp else None, arrival)
            except DystreamError as exc:
                self.get_logger().error(f'self_audio: {exc}', throttle_duration_sec=LOG_EVERY_S)
                return
            time.sleep(0)  # let PortAudio's thread take the lock
        for issue in set(issues):
            self.get_logger().warning(f'self_audio: {issue.value}', throttle_duration_sec=LOG_EVERY_S)

    def _on_audio_info(self, msg: AudioInfo) -> None:
        try:
            audio_format = audio_format_of(msg)
        except DystreamError as exc:
            self.get_logger().error(f'self_audio_info rejected, keeping the previous format: {exc}')
            return
        with self._lock:
            self._voice.set_format(audio_format)
        self.get_logger().info(f'self_audio is now {audio_format}')

    def _index_of(self, stream_time_s: float, offset_ns: int) -> int:
        """The sample index on the node's clock (the timeline's) of a time on PortAudio's clock."""
        return self._voice.timeline.index_of(round(stream_time_s * NS_PER_S) + offset_ns)

    # ----- output: PortAudio's thread ------------------------------------------------------------------------
    def _fill(self, in_data: bytes | None, frames: int, time_info: dict[str, float], status: int
              ) -> tuple[bytes, int]:
        """The samples of the node's clock that this buffer plays, as S16LE."""
        now_s = time_info['current_time']
        if self._latency_s is not None:
            dac_s = now_s + self._latency_s
        elif time_info['output_buffer_dac_time'] > now_s:
            dac_s = time_info['output_buffer_dac_time']
        else:  # a device that knows no delay reports its DAC time as 'now'
            dac_s = now_s + self._stream_latency_s
        offset_ns = self._clock_offset_ns
        start = self._play_clock.start_of(self._index_of(dac_s, offset_ns), frames, bool(status & self._underflow_flag))
        with self._lock:
            samples = self._voice.timeline.read(start, start + frames)
            # audio due before now is late for the speaker as for the face: the same rule places what comes next
            self._voice.timeline.consume(self._index_of(now_s, offset_ns))
        return np.clip(np.round(samples * 32768.0), -32768, 32767).astype('<i2').tobytes(), self._continue

    def close(self) -> None:
        """Stop playing and release the device."""
        self._stream.stop_stream()
        self._stream.close()
        self._pyaudio.terminate()


def main(args: list[str] | None = None) -> int:
    """Play until SIGINT or SIGTERM."""
    return run_sound_node(AudioPlayerNode, 'audio_player_node', args)


if __name__ == '__main__':
    sys.exit(main())
