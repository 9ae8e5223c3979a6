"""`dystream render` and `dystream bag render`: a face video with the conversation's sound, from the shipped model."""
from __future__ import annotations

import subprocess
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import soundfile

from dystream_ros.apps.bags import write_conversation_bag
from dystream_ros.cli import main
from dystream_ros.data.corpus import conversation


def _video_facts(path: Path) -> tuple[int, float, bool]:
    frames, seconds = imageio_ffmpeg.count_frames_and_secs(str(path))
    probe = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), '-hide_banner', '-i', str(path)], capture_output=True,
                           text=True, check=False)
    return frames, seconds, 'Audio: aac' in probe.stderr


def test_render_turns_two_wavs_of_any_rate_into_a_face_video_with_sound(tmp_path: Path) -> None:
    robot, _ = conversation(1, 'heldout', 5, 3.0)
    seconds = robot.num_frames / 25
    soundfile.write(tmp_path / 'self.wav', robot.self_audio, 16000)
    partner_44k = np.interp(np.arange(int(len(robot.partner_audio) * 44100 / 16000)) * 16000 / 44100,
                            np.arange(len(robot.partner_audio)), robot.partner_audio)
    soundfile.write(tmp_path / 'partner.wav', np.stack([partner_44k, partner_44k], axis=1), 44100)
    out = tmp_path / 'face.mp4'
    assert main(['render', '--self', str(tmp_path / 'self.wav'), '--partner', str(tmp_path / 'partner.wav'),
                 '--out', str(out), '--size', '128']) == 0
    frames, duration, has_audio = _video_facts(out)
    assert abs(frames - robot.num_frames) <= 1 and abs(duration - seconds) < 0.2 and has_audio


def test_bag_render_turns_a_recorded_conversation_into_a_video(tmp_path: Path) -> None:
    robot, _ = conversation(2, 'heldout', 5, 3.0)
    write_conversation_bag(tmp_path / 'bag', robot.self_audio, robot.partner_audio, start_ns=1_700_000_000 * 10**9)
    out = tmp_path / 'bag.mp4'
    assert main(['bag', 'render', str(tmp_path / 'bag'), '--out', str(out), '--size', '128']) == 0
    frames, _, has_audio = _video_facts(out)
    assert abs(frames - robot.num_frames) <= 1 and has_audio


def test_render_names_an_unreadable_file(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    (tmp_path / 'broken.wav').write_bytes(b'not a wav')
    assert main(['render', '--self', str(tmp_path / 'broken.wav'), '--out', str(tmp_path / 'x.mp4')]) == 2
    assert f'cannot read audio file {tmp_path / "broken.wav"}' in capsys.readouterr().err
