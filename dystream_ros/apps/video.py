"""``dystream render``: a face video (mp4 with sound) from the voices of a conversation, and the mp4 writer.

The model runs in streaming mode exactly as in the node (frames as the audio arrives), the renderer draws each
frame, and ffmpeg (shipped inside the imageio-ffmpeg wheel) encodes H.264 video with the two voices mixed as AAC.
"""
from __future__ import annotations

import argparse
import itertools
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dystream_ros.errors import DataError
from dystream_ros.units import FPS, NS_PER_S, SAMPLE_RATE_HZ, SAMPLES_PER_FRAME

if TYPE_CHECKING:
    from dystream_ros.runtime.frames import Generator

FRAME_NS = NS_PER_S // FPS


def write_mp4(frames: Iterable[np.ndarray], path: Path, audio: np.ndarray | None = None, fps: int = FPS) -> int:
    """Encode RGB frames (H, W, 3) uint8 to ``path`` with optional 16 kHz mono audio; return the frame count."""
    import imageio_ffmpeg
    import soundfile

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    iterator = iter(frames)
    first = next(iterator, None)
    if first is None:
        msg = f'no frames to write to {path}'
        raise DataError(msg)
    with tempfile.TemporaryDirectory(prefix='dystream_mp4_') as tmp:
        audio_path = None
        if audio is not None:
            audio_path = str(Path(tmp) / 'audio.wav')
            soundfile.write(audio_path, np.clip(audio, -1, 1), SAMPLE_RATE_HZ, subtype='PCM_16')
        height, width = first.shape[:2]
        writer = imageio_ffmpeg.write_frames(
            str(path), (width, height), fps=fps, codec='libx264', pix_fmt_in='rgb24', pix_fmt_out='yuv420p',
            quality=7, macro_block_size=1, audio_path=audio_path, audio_codec='aac' if audio_path else None,
            output_params=['-shortest'] if audio_path else None, ffmpeg_log_level='error')
        writer.send(None)  # start ffmpeg
        count = 0
        for frame in itertools.chain([first], iterator):
            writer.send(np.ascontiguousarray(frame, np.uint8))
            count += 1
        writer.close()
    return count


def video_frame_of(stamp_ns: int, start_ns: int) -> int:
    """The video frame that shows the face frame stamped ``stamp_ns`` (the audio time of its first sample), in a
    video whose sound starts at audio time ``start_ns``: the nearest 40 ms step, so stamp jitter moves nothing."""
    return round((stamp_ns - start_ns) / FRAME_NS)


def frames_by_stamp(images: Iterable[tuple[int, np.ndarray]], start_ns: int, count: int) -> list[np.ndarray | None]:
    """The ``count`` video frames of a recording of (stamp, image) pairs: each image at the frame of its stamp, on
    the timeline of a sound track that starts at audio time ``start_ns``; None where no image has that stamp.

    Arrival order and count play no part: images stamped outside the sound (a node's idle frames before the audio
    began, on its own clock) have no place, and a lost image leaves a gap instead of pulling later ones forward.
    """
    frames: list[np.ndarray | None] = [None] * count
    for stamp_ns, image in images:
        index = video_frame_of(stamp_ns, start_ns)
        if 0 <= index < count and frames[index] is None:
            frames[index] = image
    return frames


def held(frames: list[np.ndarray | None]) -> Iterator[np.ndarray]:
    """The frames with every gap showing the image before it (the first image where the video starts with a gap),
    as a display holds its last picture."""
    last = next((frame for frame in frames if frame is not None), None)
    if last is None:
        msg = 'no image is stamped within the time of the sound track'
        raise DataError(msg)
    for frame in frames:
        last = last if frame is None else frame
        yield last


def mix(self_audio: np.ndarray, partner_audio: np.ndarray) -> np.ndarray:
    """Both voices in one track, as someone in the room hears them, peak-normalised to -1 dBFS."""
    n = max(len(self_audio), len(partner_audio))
    mixed = np.zeros(n, np.float32)
    mixed[:len(self_audio)] += self_audio
    mixed[:len(partner_audio)] += partner_audio
    peak = float(np.abs(mixed).max()) if n else 0.0
    return mixed * (0.89 / peak) if peak > 0 else mixed


def stream_motion(generator: Generator, self_audio: np.ndarray, partner_audio: np.ndarray) -> Iterator[np.ndarray]:
    """Motion frames (motion_dim,) of whole clips, stepped as the engine steps them live; the end of the clip is
    followed by the model's lookahead of silence so that every frame of the clip is produced."""
    from dystream_ros.runtime.frames import stream_clip

    frames = -(-max(len(self_audio), len(partner_audio)) // SAMPLES_PER_FRAME)  # ceil
    return (frame.motion for frame in stream_clip(generator, self_audio, partner_audio, frames))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``dystream render``."""
    parser.add_argument('--self', dest='self_wav', type=Path, required=True, help="the face's own voice (wav)")
    parser.add_argument('--partner', type=Path, help="the partner's voice (wav); silence if absent")
    parser.add_argument('--out', type=Path, required=True, help='the mp4 to write')
    parser.add_argument('--avatar', type=Path, help='portrait for the photo avatar; the stylised face if absent')
    parser.add_argument('--model', type=Path, help='weights (.safetensors); the shipped ones if absent')
    parser.add_argument('--backend', choices=['torch', 'onnx'], default='torch')
    parser.add_argument('--size', type=int, default=512, help='image size in pixels')
    parser.add_argument('--seed', type=int, default=0)


def run(args: argparse.Namespace) -> int:
    """Render the video with a progress bar."""
    from tqdm import tqdm

    from dystream_ros.data.sample import read_any_audio
    from dystream_ros.face.renderers import make_renderer
    from dystream_ros.runtime.generator import StreamingGenerator

    self_audio = read_any_audio(args.self_wav)
    partner_audio = read_any_audio(args.partner) if args.partner else np.zeros_like(self_audio)
    generator = StreamingGenerator(args.model, backend=args.backend, seed=args.seed)
    renderer = make_renderer('photo' if args.avatar else 'stylised', args.size, args.avatar)
    total = (max(len(self_audio), len(partner_audio)) + SAMPLES_PER_FRAME - 1) // SAMPLES_PER_FRAME
    motion = stream_motion(generator, self_audio, partner_audio)
    frames = (renderer.render(m) for m in tqdm(motion, total=total, unit='frame', desc='render'))
    count = write_mp4(frames, args.out, mix(self_audio, partner_audio))
    print(f'{args.out}: {count} frames, {count / FPS:.1f} s')
    return 0

