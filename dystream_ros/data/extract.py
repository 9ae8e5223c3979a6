"""``dystream extract VIDEO... --out DIR``: talking videos -> training samples (motion at 25 fps + 16 kHz speech).

For each video: decode every frame (OpenCV), track the largest face with the FaceLandmarker in VIDEO mode, resample
the motion from the video's frame times to 25 fps, fill short face drop-outs by linear interpolation and mark
long ones invalid, take the speech as 16 kHz mono with the ffmpeg binary of imageio-ffmpeg (silence, with a
warning, when the video has no audio) and write a sample with :func:`dystream_ros.data.sample.write_sample`.

Motion conventions (see :mod:`dystream_ros.face.motion`): the head rotation is relative to facing the camera; the
head translation is relative to the clip's median head position, so it holds the sway, not the camera distance.
"""
from __future__ import annotations

import argparse
import math
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dystream_ros.data.sample import Sample, write_sample
from dystream_ros.errors import DataError
from dystream_ros.face.motion import MOTION_DIM, MOTION_NAMES, TRANSLATION
from dystream_ros.units import FPS, SAMPLE_RATE_HZ, SAMPLES_PER_FRAME

MIN_SHORT_SIDE_PX = 432  # smaller frames are upscaled: the face detector misses small faces (QCIF needs ~3x)
DEFAULT_MAX_GAP_S = 0.4  # face drop-outs up to this long are interpolated; longer ones are marked invalid


@dataclass
class TrackedVideo:
    """A video's face motion at its own frame times."""

    times_s: np.ndarray  # (N,) frame times
    motion: np.ndarray  # (N, 58) float32, zeros where no face
    found: np.ndarray  # (N,) bool
    duration_s: float
    fps: float


@dataclass
class ExtractResult:
    """What happened to one video, for the summary."""

    video: Path
    sample_id: str = ''
    frames: int = 0  # 25 fps frames written
    face_fraction: float = 0.0  # fraction of the video's frames with a face
    filled: int = 0  # 25 fps frames interpolated over a short drop-out
    invalid: int = 0  # 25 fps frames in a long drop-out (valid=False)
    audio: bool = False
    error: str = ''


def read_frames(path: Path) -> tuple[Iterator[tuple[np.ndarray, float]], int, float]:
    """Open a video; return an iterator of (RGB frame, time in s), the frame count (estimate) and the fps.

    Raises:
        DataError: if the file is missing or OpenCV cannot decode it.
    """
    import cv2

    if not Path(path).is_file():
        msg = f'video not found: {path}'
        raise DataError(msg)
    capture = cv2.VideoCapture(str(path))
    ok, first = capture.read() if capture.isOpened() else (False, None)
    if not ok or first is None:
        capture.release()
        msg = f'cannot read video {path}: not a video file or an unsupported codec'
        raise DataError(msg)
    fps = float(capture.get(cv2.CAP_PROP_FPS))
    if not (math.isfinite(fps) and 1.0 <= fps <= 1000.0):
        fps = float(FPS)  # no usable rate in the container: assume 25 fps
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))

    def frames() -> Iterator[tuple[np.ndarray, float]]:
        index, frame = 0, first
        try:
            while frame is not None:
                yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), index / fps
                index += 1
                ok, frame = capture.read()
                if not ok:
                    break
        finally:
            capture.release()

    return frames(), max(count, 1), fps


def track_video(path: Path, max_faces: int = 4, min_confidence: float = 0.5, progress: bool = True) -> TrackedVideo:
    """Track the largest face in every frame of a video (FaceLandmarker, VIDEO mode).

    Raises:
        DataError: if the video cannot be read.
    """
    import cv2
    from tqdm import tqdm

    from dystream_ros.face.tracker import FaceTracker

    frames, count, fps = read_frames(path)
    times, rows, found = [], [], []
    last_ms = -1
    with FaceTracker(video=True, max_faces=max_faces, min_confidence=min_confidence) as tracker, \
            tqdm(total=count, desc=Path(path).name, unit='frame', disable=not progress, leave=False,
                 file=sys.stderr) as bar:
        for rgb, t in frames:
            short = min(rgb.shape[:2])
            if short < MIN_SHORT_SIDE_PX:
                scale = MIN_SHORT_SIDE_PX / short
                rgb = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
            stamp_ms = max(int(round(t * 1000.0)), last_ms + 1)
            last_ms = stamp_ms
            face = tracker.track(rgb, stamp_ms)
            times.append(t)
            found.append(face is not None)
            rows.append(face.motion if face is not None else np.zeros(MOTION_DIM, np.float32))
            bar.update(1)
    times_s = np.asarray(times)
    return TrackedVideo(times_s, np.asarray(rows, np.float32), np.asarray(found, bool),
                        float(len(times_s) / fps), fps)


def resample_motion(tracked: TrackedVideo, fps_out: int = FPS, max_gap_s: float = DEFAULT_MAX_GAP_S,
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Resample tracked motion to ``fps_out`` and handle face drop-outs.

    Every output frame takes the linear interpolation of the found frames around its time (the nearest found
    frame before the first or after the last one). An output frame that shows a native frame without a face lies
    in a drop-out (a run of such frames): if the run lasts at most ``max_gap_s`` it is filled and valid, otherwise
    it is invalid.

    Returns:
        motion (T, 58) float32, valid (T,) bool, filled (T,) bool, with T = floor(duration * fps_out).

    Raises:
        DataError: if no frame has a face.
    """
    if not np.any(tracked.found):
        msg = 'no face found in any frame'
        raise DataError(msg)
    num_out = max(1, int(math.floor(tracked.duration_s * fps_out + 1e-6)))
    t_out = np.arange(num_out) / fps_out
    t_found = tracked.times_s[tracked.found]
    m_found = tracked.motion[tracked.found].astype(np.float64)
    motion = np.stack([np.interp(t_out, t_found, m_found[:, d]) for d in range(MOTION_DIM)], axis=1)
    # An output time shows native frame i = floor(t * fps). It is observed when that frame had a face; otherwise
    # it lies in a drop-out (a run of frames without a face) whose duration decides between filled and invalid.
    n = len(tracked.found)
    shown = np.minimum(np.floor(t_out * tracked.fps + 1e-6).astype(int), n - 1)
    missing = ~tracked.found
    edges = np.flatnonzero(np.diff(np.concatenate([[0], missing.astype(np.int8), [0]])))
    run_frames = np.zeros(n)
    for start, stop in zip(edges[::2], edges[1::2]):
        run_frames[start:stop] = stop - start
    gap_s = run_frames[shown] / tracked.fps
    observed = tracked.found[shown]
    valid = observed | (gap_s <= max_gap_s + 1e-9)
    filled = valid & ~observed
    return motion.astype(np.float32), valid, filled


def read_audio_track(path: Path, num_samples: int) -> np.ndarray | None:
    """Return the video's first audio stream as 16 kHz mono float32 of exactly ``num_samples``, None if it has none.

    Raises:
        DataError: if ffmpeg fails on a video that has audio.
    """
    import imageio_ffmpeg

    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    probe = subprocess.run([ffmpeg, '-hide_banner', '-nostdin', '-i', str(path)], capture_output=True, text=True,
                           check=False)
    if 'Audio:' not in probe.stderr:
        return None
    decoded = subprocess.run([ffmpeg, '-nostdin', '-v', 'error', '-i', str(path), '-map', '0:a:0', '-vn', '-ac', '1',
                              '-ar', str(SAMPLE_RATE_HZ), '-f', 'f32le', 'pipe:1'], capture_output=True, check=False)
    if decoded.returncode != 0:
        msg = f'cannot decode the audio of {path}: {decoded.stderr.decode(errors="replace").strip()[-300:]}'
        raise DataError(msg)
    audio = np.frombuffer(decoded.stdout, np.float32)
    out = np.zeros(num_samples, np.float32)
    out[:min(num_samples, len(audio))] = audio[:num_samples]
    return out


def extract_video(path: Path, out_root: Path, sample_id: str, *, max_gap_s: float = DEFAULT_MAX_GAP_S,
                  max_faces: int = 4, min_confidence: float = 0.5, progress: bool = True) -> ExtractResult:
    """Turn one video into the sample ``out_root/sample_id``; raise DataError if it cannot."""
    tracked = track_video(path, max_faces, min_confidence, progress)
    motion, valid, filled = resample_motion(tracked, FPS, max_gap_s)
    # Translation relative to the clip's median head position (over frames that had a face).
    motion[:, TRANSLATION] -= np.median(tracked.motion[tracked.found][:, TRANSLATION], axis=0)
    num_samples = len(motion) * SAMPLES_PER_FRAME
    audio = read_audio_track(path, num_samples)
    result = ExtractResult(Path(path), sample_id, len(motion), float(tracked.found.mean()), int(filled.sum()),
                           int((~valid).sum()), audio is not None)
    if audio is None:
        print(f'dystream extract: warning: {path} has no audio track; self.wav is silence', file=sys.stderr)
        audio = np.zeros(num_samples, np.float32)
    write_sample(out_root, Sample(sample_id, motion, MOTION_NAMES, valid, audio, np.zeros_like(audio)))
    return result


def _unique_ids(videos: list[Path]) -> list[str]:
    ids: list[str] = []
    for video in videos:
        base, candidate, n = video.stem or 'video', video.stem or 'video', 2
        while candidate in ids:
            candidate, n = f'{base}_{n}', n + 1
        ids.append(candidate)
    return ids


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the command line of ``dystream extract``."""
    parser.add_argument('videos', nargs='+', type=Path, metavar='VIDEO', help='talking-face videos')
    parser.add_argument('--out', required=True, type=Path, help='folder that receives one sample per video')
    parser.add_argument('--max-gap-s', type=float, default=DEFAULT_MAX_GAP_S,
                        help='longest face drop-out filled by interpolation, seconds (default %(default)s)')
    parser.add_argument('--max-faces', type=int, default=4, help='faces detected per frame; the largest is kept')
    parser.add_argument('--min-confidence', type=float, default=0.5, help='face detection/tracking confidence')
    parser.add_argument('--quiet', action='store_true', help='no progress bar')


def run(args: argparse.Namespace) -> int:
    """Extract every video; print a summary; return 1 if any video failed."""
    results = []
    for video, sample_id in zip(args.videos, _unique_ids(list(args.videos))):
        try:
            results.append(extract_video(video, args.out, sample_id, max_gap_s=args.max_gap_s,
                                         max_faces=args.max_faces, min_confidence=args.min_confidence,
                                         progress=not args.quiet))
        except DataError as exc:
            print(f'dystream extract: error: {video}: {exc}', file=sys.stderr)
            results.append(ExtractResult(Path(video), error=str(exc)))
    print(f'{"sample":<24} {"frames":>7} {"seconds":>8} {"face":>6} {"filled":>7} {"invalid":>8} {"audio":>6}')
    for r in results:
        if r.error:
            print(f'{r.video.name:<24} FAILED: {r.error}')
        else:
            print(f'{r.sample_id:<24} {r.frames:>7} {r.frames / FPS:>8.2f} {100 * r.face_fraction:>5.1f}% '
                  f'{r.filled:>7} {r.invalid:>8} {"yes" if r.audio else "no":>6}')
    failed = sum(1 for r in results if r.error)
    print(f'{len(results) - failed} of {len(results)} videos extracted to {args.out}')
    return 1 if failed else 0
