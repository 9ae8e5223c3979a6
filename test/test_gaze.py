"""Looking at someone: the eyes lead, the head follows within its limits, the generated motion stays on top, and a
lost target eases back."""
from __future__ import annotations

import math

import numpy as np
import pytest

from dystream_ros.errors import ConfigError
from dystream_ros.face.motion import get_values, motion_frame, neutral_motion
from dystream_ros.runtime.gaze import GazeConfig, GazeController, camera_point_in_head, gaze_frames
from dystream_ros.units import FPS, NS_PER_S

FRAME_NS = NS_PER_S // FPS


def run(controller: GazeController, motion: np.ndarray, seconds: float, start_ns: int = 0,
        refresh: np.ndarray | None = None) -> list[np.ndarray]:
    """Apply the controller to ``motion`` for ``seconds`` of frames, re-sending ``refresh`` every frame if given."""
    out = []
    for frame in range(round(seconds * FPS)):
        now = start_ns + frame * FRAME_NS
        if refresh is not None:
            controller.set_target(refresh, now)
        out.append(controller.apply(motion, now, 1.0 / FPS))
    return out


def turn(frame: np.ndarray) -> tuple[float, float, float]:
    """Head yaw (degrees), and the eye turn to the avatar's left and downwards as blendshape weights."""
    yaw, out_left, in_right, down = get_values(frame, 'headYaw', 'eyeLookOutLeft', 'eyeLookInRight', 'eyeLookDownLeft')
    assert out_left == pytest.approx(in_right)  # both eyes turn the same way
    return math.degrees(yaw), float(out_left), float(down)


def test_the_eyes_lead_and_the_head_follows_to_a_person_on_the_left() -> None:
    gaze = GazeController()
    person = np.array([1.0, 1.0, 0.0])  # 45 degrees to the avatar's left, at eye height
    frames = run(gaze, neutral_motion(), 2.0, refresh=person)
    head_early, eyes_early, _ = turn(frames[2])  # 80 ms in
    assert eyes_early > 0.5 and head_early < 10.0  # the eyes are most of the way there, the head has barely started
    head, eyes, down = turn(frames[-1])
    assert head == pytest.approx(0.7 * 45.0, abs=1.0)  # the head carries its share
    assert eyes == pytest.approx(math.radians(0.3 * 45.0) / GazeConfig().eye_range_rad, abs=0.05)  # the eyes the rest
    assert down == 0.0


def test_a_person_below_tips_the_head_down_and_the_eyes_look_down() -> None:
    frames = run(GazeController(), neutral_motion(), 2.0, refresh=np.array([1.0, 0.0, -0.5]))
    pitch = math.degrees(float(get_values(frames[-1], 'headPitch')[0]))
    assert pitch == pytest.approx(0.7 * math.degrees(math.atan2(0.5, 1.0)), abs=1.0)  # + is nose down
    assert get_values(frames[-1], 'eyeLookDownLeft', 'eyeLookDownRight').min() > 0.1


def test_the_generated_motion_stays_on_top() -> None:
    speaking = motion_frame(jawOpen=0.5, headPitch=0.05, headYaw=-0.1, eyeBlinkLeft=1.0)
    frames = run(GazeController(), speaking, 2.0, refresh=np.array([1.0, 1.0, 0.0]))
    jaw, pitch, blink = get_values(frames[-1], 'jawOpen', 'headPitch', 'eyeBlinkLeft')
    assert (jaw, blink) == (pytest.approx(0.5), 1.0) and pitch == pytest.approx(0.05, abs=1e-6)
    assert float(get_values(frames[-1], 'headYaw')[0]) == pytest.approx(-0.1 + 0.7 * math.pi / 4, abs=0.02)


def test_the_head_stays_within_its_limits_and_the_eyes_within_their_range() -> None:
    config = GazeConfig()
    behind_right = np.array([-1.0, -0.2, 0.0])  # almost behind the robot, on its right
    frames = run(GazeController(config), neutral_motion(), 3.0, refresh=behind_right)
    yaws = np.array([float(get_values(f, 'headYaw')[0]) for f in frames])
    assert yaws.min() >= -config.max_yaw_rad - 1e-9 and yaws[-1] == pytest.approx(-config.max_yaw_rad, abs=0.01)
    looks = np.array([get_values(f, 'eyeLookInLeft', 'eyeLookOutRight') for f in frames])
    assert looks.max() <= 1.0 and looks[-1].min() > 0.9  # the eyes take what the head cannot


def test_a_lost_target_eases_back_to_the_generated_gaze() -> None:
    gaze = GazeController(GazeConfig(lost_after_s=0.5))
    run(gaze, neutral_motion(), 1.0, refresh=np.array([1.0, 1.0, 0.0]))
    assert gaze.looking(NS_PER_S) and not gaze.looking(NS_PER_S + 600_000_000)
    after = run(gaze, neutral_motion(), 4.0, start_ns=NS_PER_S + 600_000_000)  # nobody refreshes it
    yaws = [turn(f)[0] for f in after]
    assert all(a >= b for a, b in zip(yaws, yaws[1:]))  # it eases back, without a jump
    assert yaws[0] > 10.0 and abs(yaws[-1]) < 0.5 and turn(after[-1])[1] < 0.01


def test_points_that_give_no_direction_are_refused() -> None:
    gaze = GazeController()
    assert not gaze.set_target(np.array([np.nan, 0.0, 0.0]), 0)
    assert not gaze.set_target(np.zeros(3), 0)
    assert not gaze.looking(0)
    assert np.array_equal(gaze.apply(motion_frame(jawOpen=0.3), 0, 0.04), motion_frame(jawOpen=0.3))
    with pytest.raises(ConfigError):
        GazeConfig(head_share=1.5)


def test_a_point_seen_by_an_optical_camera_is_placed_in_the_head_frame() -> None:
    optical = [0.1, 0.0, 0.05, -math.pi / 2, 0.0, -math.pi / 2]  # z forward, x right, y down; 10 cm ahead, 5 up
    assert camera_point_in_head((0.0, 0.0, 2.0), optical) == pytest.approx([2.1, 0.0, 0.05])  # straight ahead
    assert camera_point_in_head((1.0, 0.0, 2.0), optical) == pytest.approx([2.1, -1.0, 0.05])  # right in the image
    assert camera_point_in_head((0.0, 1.0, 2.0), optical) == pytest.approx([2.1, 0.0, -0.95])  # down in the image


def test_the_gaze_contact_sheet_follows_a_person_walking_past() -> None:
    frames = gaze_frames(seconds=4.0, count=12)
    assert [label for label, _ in frames][0] == 'person at +45 deg' and frames[-1][0] == 'person at -45 deg'
    yaws = [float(get_values(motion, 'headYaw')[0]) for _, motion in frames]
    assert yaws[3] > 0.2 and yaws[-1] < -0.2
