"""``dystream demo``: the video it writes shows each face frame when its sound plays, and its report counts the
frames a viewer saw without a picture of their own or late.

The demo runs as ``make demo`` runs it (the node in its own process, the conversation replayed from a third), on
the first 15 s of the shipped conversation, and the check reads the mp4 itself: the mouth opening drawn in each
picture against the loudness of the sound track.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
from support.realtime import live_run

from dystream_ros.apps.bag_tools import read_conversation
from dystream_ros.apps.bags import write_conversation_bag
from dystream_ros.apps.demo import AUDIO_TOPICS, run_demo
from dystream_ros.apps.graph_run import Received, image_delivery
from dystream_ros.resources import demo_bag
from dystream_ros.units import FPS, NS_PER_S, SAMPLE_RATE_HZ, SAMPLES_PER_FRAME

SECONDS = 15  # the robot talks for most of the conversation's first 15 s
SIZE = 256
FRAME_NS = NS_PER_S // FPS
MAX_LAG_FRAMES = 50  # lags searched for the best match of lips and voice, either way
# beyond this share of frames without an image of their own the node was starved of CPU (it also drops the
# audio that comes too late for its frames), and the video shows that, not how the demo assembles it
MAX_MISSING_PERCENT = 60


pytestmark = pytest.mark.realtime


@pytest.fixture
def demo(request: pytest.FixtureRequest, live_runs: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The demo run on the first ``SECONDS`` of the shipped conversation (cut with the bag tools), shared by the
    module's tests (a fresh one for a rerun)."""
    return live_run(request, live_runs, lambda: _run_demo(tmp_path_factory.mktemp('demo')))


def _run_demo(folder: Path) -> dict:
    """Cut the conversation into ``folder``, run the demo there, return its summary and output folder."""
    self_audio, partner_audio = read_conversation(demo_bag(), *AUDIO_TOPICS)
    samples = SECONDS * SAMPLE_RATE_HZ
    write_conversation_bag(folder / 'bag', self_audio[:samples], partner_audio[:samples],
                           start_ns=1_700_000_000 * NS_PER_S)
    summary = run_demo(folder / 'out', SIZE, folder / 'bag', installed=False)  # this checkout's node
    return {'summary': summary, 'out': folder / 'out'}


def mouth_opening(path: Path) -> np.ndarray:
    """Per video frame, how far the stylised face's mouth is open: the square root of the area of its dark inside
    (StylisedConfig.mouth_rgb, a dark red that nothing else in the face is: lips are light, the outlines grey)."""
    frames = imageio_ffmpeg.read_frames(str(path))
    width, height = next(frames)['size']
    opening = []
    for raw in frames:
        rgb = np.frombuffer(raw, np.uint8).reshape(height, width, 3).astype(np.int16)
        red, green = rgb[..., 0], rgb[..., 1]
        opening.append(np.sqrt(np.count_nonzero((green < 50) & (red - green > 30))))
    return np.array(opening)


def loudness(path: Path) -> np.ndarray:
    """The sound track's RMS per video frame (40 ms)."""
    command = [imageio_ffmpeg.get_ffmpeg_exe(), '-v', 'error', '-i', str(path), '-ac', '1', '-ar',
               str(SAMPLE_RATE_HZ), '-f', 's16le', '-']
    audio = np.frombuffer(subprocess.run(command, capture_output=True, check=True).stdout, np.int16) / 32768.0
    frames = len(audio) // SAMPLES_PER_FRAME
    return np.sqrt(np.mean(audio[:frames * SAMPLES_PER_FRAME].reshape(frames, -1) ** 2, axis=1))


def correlation(mouth: np.ndarray, sound: np.ndarray, lag: int) -> float:
    """Correlation of the mouth at frame t + ``lag`` with the sound at frame t (lag > 0: the lips trail)."""
    if lag < 0:
        return correlation(sound, mouth, -lag)
    return float(np.corrcoef(mouth[lag:], sound[:len(sound) - lag])[0, 1])


def test_the_lips_move_with_the_voice_in_the_video(demo: dict) -> None:
    summary = demo['summary']
    if summary['images_missing_percent'] > MAX_MISSING_PERCENT:  # seen once, with two other nodes on 2 cores
        pytest.skip(f'the machine was too busy to judge lip sync: the node fell behind ({summary})')
    video = demo['out'] / 'demo.mp4'
    mouth, sound = mouth_opening(video), loudness(video)
    assert len(mouth) == SECONDS * FPS == demo['summary']['video_frames']
    assert abs(len(sound) - len(mouth)) <= 1  # the sound track is as long as the picture
    frames = min(len(mouth), len(sound))
    mouth, sound = mouth[:frames], sound[:frames]
    by_lag = {lag: correlation(mouth, sound, lag) for lag in range(-MAX_LAG_FRAMES, MAX_LAG_FRAMES + 1)}
    best = max(by_lag, key=by_lag.__getitem__)
    # measured: best lag -1 (the model opens the mouth a frame before the sound peaks, as `dystream bag render`
    # does, 0.74 at lag 0 there); at lag 0 0.42 with a fifth of the images missing under load, 0.34 with half
    # of them (a missing image repeats the one before); the old assembly: 0.06 at lag 0, the lips 7 s late
    assert abs(best) <= 1, f'lips and voice are {best} frames apart: {by_lag[best]:.2f} there, {by_lag[0]:.2f} at 0'
    assert by_lag[0] > 0.25, by_lag[0]
    # the mouth opens as soon as the robot talks (the bag's first second is silence, then the robot speaks)
    assert mouth[FPS:5 * FPS].max() > 2 * max(mouth[:FPS // 2].max(), 1.0)


def test_the_report_counts_the_pictures_a_viewer_missed(demo: dict) -> None:
    summary = demo['summary']
    assert json.loads((demo['out'] / 'demo_latency.json').read_text()) == summary
    assert summary['node_exit_code'] == 0
    assert summary['frames_in_conversation'] <= summary['video_frames'] == SECONDS * FPS
    assert summary['frames_published'] > summary['frames_in_conversation']  # idle frames before the replay
    assert summary['machine_load']['cpus'] == os.cpu_count()  # what else ran meanwhile
    for count in ('images_missing', 'images_late'):
        assert 0 <= summary[count] < summary['video_frames']
        assert summary[f'{count}_percent'] == round(100 * summary[count] / summary['video_frames'], 1)


def test_image_delivery_counts_missing_and_late_images_on_the_sound_timeline() -> None:
    start = 1_700_000_000 * NS_PER_S
    frames, delay = 100, 30_000_000
    images = [Received(start + i * FRAME_NS + delay, start + i * FRAME_NS) for i in range(frames)]
    del images[40:45]  # five pictures that never came
    images[10] = Received(images[10].received_ns + 2 * FRAME_NS, images[10].value)  # late: a display stalls
    images[11] = Received(images[11].received_ns + FRAME_NS // 2, images[11].value)  # within a frame: on time
    images[60:80] = [Received(arrival + NS_PER_S // 2, stamp) for arrival, stamp in images[60:80]]  # a stall
    idle = [Received(n, n) for n in range(2_000_000_000 * NS_PER_S, 2_000_000_010 * NS_PER_S, FRAME_NS)]
    jittered = [Received(arrival + 3_000_000, stamp + 3_000_000) for arrival, stamp in images]  # stamp jitter
    for received in (images, idle + jittered, images + images[::7]):  # idle frames on the node's clock, repeats
        report = image_delivery(received, start, frames)
        assert report == {'video_frames': 100, 'images_missing': 5, 'images_missing_percent': 5.0,
                          'images_late': 21, 'images_late_percent': 21.0}
