"""The photo avatar: still when neutral, and a closed loop through the FaceLandmarker proves it moves as commanded.

Closed loop: the public-domain astronaut portrait is rendered with swept jawOpen, eyeBlink (both eyes) and
headYaw, each render is tracked with the FaceLandmarker (IMAGE mode), and the recovered value must follow the
command. Tolerances: Pearson correlation >= 0.9 over the sweep, the recovered value rises from the first to the
last command by at least 0.3 (jawOpen, eyeBlink) or by at least 0.6 of the commanded range (headYaw, radians:
large turns are seen less far, see photo.py); a head pitch, and a yaw of up to 10 degrees, is read back within 2
degrees (the avatar calibrates them), and the other two quantities stay near their neutral values (no cross-talk)
as stated in each test.
Run ``python test/test_face_photo.py`` to print the sweeps and correlations.
"""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage import data

from dystream_ros.errors import DataError, StreamError
from dystream_ros.face import landmarks as lm
from dystream_ros.face.motion import get_values, motion_frame, neutral_motion
from dystream_ros.face.photo import PhotoAvatar, PhotoConfig
from dystream_ros.face.renderers import Renderer
from dystream_ros.face.tracker import FaceTracker

SWEEP = np.linspace(0.0, 1.0, 7)
YAW_SWEEP = np.linspace(-0.35, 0.35, 7)  # radians, about +-20 degrees


@pytest.fixture(scope='module')
def avatar() -> PhotoAvatar:
    return PhotoAvatar(data.astronaut())


@pytest.fixture(scope='module')
def tracker():
    with FaceTracker(video=False) as t:
        yield t


def sweep(avatar: PhotoAvatar, tracker: FaceTracker, command: str, values: np.ndarray) -> np.ndarray:
    """Track renders of ``command`` set to each value; return (len(values), 3) recovered jawOpen, blink, yaw."""
    recovered = []
    for value in values:
        frame = motion_frame(**({'eyeBlinkLeft': value, 'eyeBlinkRight': value} if command == 'eyeBlink'
                                else {command: value}))
        face = tracker.track(avatar.render(frame))
        assert face is not None, f'face lost at {command}={value}'
        jaw, blink_l, blink_r, yaw = get_values(face.motion, 'jawOpen', 'eyeBlinkLeft', 'eyeBlinkRight', 'headYaw')
        recovered.append((jaw, 0.5 * (blink_l + blink_r), yaw))
    return np.asarray(recovered)


def test_is_a_renderer_of_the_configured_size(avatar):
    image = avatar.render(neutral_motion())
    assert isinstance(avatar, Renderer) and avatar.size == 512
    assert image.shape == (512, 512, 3) and image.dtype == np.uint8


def test_neutral_motion_renders_the_portrait_unchanged(avatar):
    first = avatar.render(neutral_motion())
    assert np.abs(first.astype(int) - avatar.base).max() <= 1  # the warp is the identity, nothing painted
    assert np.array_equal(avatar.render(neutral_motion()), first)
    assert np.array_equal(avatar.render(np.full(58, np.nan)), first)


def test_expressions_change_the_face_but_not_the_background(avatar):
    neutral = avatar.render(neutral_motion()).astype(int)
    for values in ({'jawOpen': 0.6}, {'eyeBlinkLeft': 1.0}, {'mouthSmileLeft': 1.0}, {'browInnerUp': 1.0}):
        diff = np.abs(avatar.render(motion_frame(**values)).astype(int) - neutral).sum(axis=2)
        assert diff.sum() > 0, values
        assert diff[:20].max() == 0 and diff[:, :20].max() == 0  # the border is beyond the fixed outer ring


def test_jaw_open_follows_the_command(avatar, tracker):
    rec = sweep(avatar, tracker, 'jawOpen', SWEEP)
    assert np.corrcoef(SWEEP, rec[:, 0])[0, 1] >= 0.9
    assert rec[-1, 0] - rec[0, 0] >= 0.3
    assert np.all(rec[:, 1] < 0.3) and np.all(np.abs(rec[:, 2]) < 0.1)  # eyes stay open, head stays ahead


def test_an_open_mouth_is_not_seen_as_a_nod(avatar, tracker):
    """Issues 14 and 18: the tracker read a wide-open mouth as the head pitched by up to 4.8 degrees (3.0 on average
    over head turns of -8, 0 and 8 degrees), which capped how wide the jaw could be shown. The mouth now narrows as it
    opens, as a real one does."""
    rest = get_values(tracker.track(avatar.render(neutral_motion())).motion, 'headPitch')[0]
    worst = 0.0
    for jaw in SWEEP[1:]:
        seen = [tracker.track(avatar.render(motion_frame(jawOpen=jaw, headYaw=yaw))).motion
                for yaw in np.radians([-8.0, 0.0, 8.0])]
        error = [abs(np.degrees(get_values(s, 'headPitch')[0] - rest)) for s in seen]
        worst = max(worst, float(np.mean(error)))
    assert worst <= 2.2, worst  # measured 1.7


def off_proportion(recovered: np.ndarray) -> float:
    """How far a swept value is read back off the straight line from its first to its last reading, as a fraction
    of the way: 0 when it is read in proportion to the command. The avatar calibrates its lids (and jaw) over a few
    head turns, so facing the camera the line is not quite straight; without that, a blink is read late."""
    straight = recovered[0] + SWEEP * (recovered[-1] - recovered[0])
    return float(np.abs(recovered - straight).max() / (recovered[-1] - recovered[0]))


def test_eye_blink_follows_the_command(avatar, tracker):
    rec = sweep(avatar, tracker, 'eyeBlink', SWEEP)
    assert np.corrcoef(SWEEP, rec[:, 1])[0, 1] >= 0.9
    assert rec[-1, 1] - rec[0, 1] >= 0.3
    assert off_proportion(rec[:, 1]) <= 0.15  # measured 10 %; 30 % with the lids closed in proportion
    assert np.all(rec[:, 0] < 0.15) and np.all(np.abs(rec[:, 2]) < 0.1)


def test_head_yaw_follows_the_command(avatar, tracker):
    rec = sweep(avatar, tracker, 'headYaw', YAW_SWEEP)
    assert np.corrcoef(YAW_SWEEP, rec[:, 2])[0, 1] >= 0.9
    assert rec[-1, 2] - rec[0, 2] >= 0.6 * (YAW_SWEEP[-1] - YAW_SWEEP[0])  # +-20 deg seen as about +-15: photo.py
    assert np.all(rec[:, 0] < 0.15) and np.all(rec[:, 1] < 0.3)


def test_a_nod_is_seen_as_deep_as_commanded(avatar, tracker):
    commanded = np.radians(np.linspace(-15.0, 15.0, 7))  # + nose down
    rest = tracker.track(avatar.render(neutral_motion())).motion
    seen = [tracker.track(avatar.render(motion_frame(headPitch=value))).motion for value in commanded]
    error = np.degrees([get_values(s, 'headPitch')[0] - get_values(rest, 'headPitch')[0] for s in seen] - commanded)
    assert np.abs(error).max() <= 2.0  # the avatar calibrated its pitch when it was built


def test_a_conversational_head_turn_is_seen_as_far_as_commanded(avatar, tracker):
    commanded = np.radians([-10.0, -5.0, 5.0, 10.0])  # larger turns are seen less far: photo.py
    rest = tracker.track(avatar.render(neutral_motion())).motion
    seen = [tracker.track(avatar.render(motion_frame(headYaw=value))).motion for value in commanded]
    error = np.degrees([get_values(s, 'headYaw')[0] - get_values(rest, 'headYaw')[0] for s in seen] - commanded)
    assert np.abs(error).max() <= 2.0, error  # measured: within 0.9
    assert np.all(avatar.rotation_gain[:, 1] > 1.0)  # a turn is seen short unless the yaw is calibrated (1.3-1.4)


def test_a_head_turn_widens_the_cheek_without_smearing_its_edge(avatar):
    """Issue 18: turned, the side of the cheek that a frontal photo shows foreshortened was stretched threefold and
    more at the face's edge, into horizontal streaks beside the ear (at a 20 degree turn 2.1 % of the head's pixels
    were a portrait pixel smeared over more than 3). Now the widening is spread over the cheek."""
    for turn in ({'headYaw': 0.35}, {'headYaw': -0.35}, {'headPitch': 0.26}, {'headPitch': -0.26}):
        map_x, map_y = avatar._warp_maps(avatar.deform(motion_frame(**turn)))
        # output pixels per portrait pixel, across and down the picture
        shrink = np.minimum(np.abs(np.gradient(map_x, axis=1)), np.abs(np.gradient(map_y, axis=0)))
        magnified = 1.0 / np.maximum(shrink, 1e-3)
        person = cv2.remap(avatar.matte.person, map_x, map_y, cv2.INTER_LINEAR)
        head = (avatar.matte.head_weight > 0.99) & (person > 0.5)
        smeared = float(np.mean(magnified[head] > 3.0))
        assert smeared <= 0.003, (turn, smeared)  # measured at most 0.001, the old warp 0.021


def _head_region(tracker: FaceTracker, image: np.ndarray, grow: float = 1.0) -> np.ndarray:
    """(H, W) bool: the head as a viewer would outline it, from the face outline tracked in ``image``: grown about
    its centre by 1.6 (ears, hair at the sides, the neck below the chin) and by 2.0 above (the hair on top)."""
    face = tracker.track(image)
    assert face is not None
    outline = face.landmarks_px(image.shape[1], image.shape[0])[list(lm.FACE_OVAL), :2]
    centre = outline.mean(axis=0)
    reach = grow * np.where(outline[:, 1:] < centre[1], 2.0, 1.6)
    region = np.zeros(image.shape[:2], np.uint8)
    cv2.fillPoly(region, [np.round(centre + reach * (outline - centre)).astype(np.int32)], 1)
    return region.astype(bool)


def test_a_conversation_with_head_turns_leaves_the_backdrop_and_the_clothes_still(avatar, tracker):
    """Issue 18: outside the head the picture stays the portrait; the old warp dragged the backdrop beside the hair
    and the collar below the chin (1.4 levels on average next to the head, 2.4 in the worst frame)."""
    portrait = avatar.render(neutral_motion())
    rest, near = _head_region(tracker, portrait), _head_region(tracker, portrait, grow=1.4)
    changed_outside, changed_next_to_head = [], []
    for t in np.arange(100) / 25.0:  # 4 s: turns of +-20 degrees, nods, a tilt, and speech
        frame = motion_frame(headYaw=0.35 * np.sin(2 * np.pi * t / 4), headPitch=0.12 * np.sin(2 * np.pi * t / 1.3),
                             headRoll=0.08 * np.sin(2 * np.pi * t / 3), jawOpen=0.6 * max(0.0, np.sin(6 * np.pi * t)))
        image = avatar.render(frame)
        outside = ~(rest | _head_region(tracker, image))
        change = np.abs(image.astype(int) - portrait).mean(axis=2)
        changed_outside.append(change[outside].mean())
        changed_next_to_head.append(change[outside & near].mean())
    assert np.mean(changed_outside) <= 0.5, np.mean(changed_outside)  # issue 18 asks for 2 levels; measured 0.1
    assert max(changed_next_to_head) <= 1.0, max(changed_next_to_head)  # measured 0.4


def test_a_pucker_leaves_no_specks_at_the_nasolabial_folds(avatar):
    """Issue 18: a pucker pressed triangles at the folds into lines of bright specks (47 levels off their
    surroundings, the portrait's own skin 21-25)."""
    def roughness(image: np.ndarray) -> list[int]:
        grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        off = np.abs(grey.astype(int) - cv2.medianBlur(grey, 5).astype(int))
        corners = avatar.rig.points[[lm.LIPS_UPPER_INNER[0], lm.LIPS_UPPER_INNER[-1]], :2]
        folds = [corners[0] + (-10, -25), corners[1] + (10, -25)]  # between the nostril wings and the mouth corners
        return [int(np.sort(off[int(y) - 25:int(y) + 25, int(x) - 25:int(x) + 25].ravel())[-3]) for x, y in folds]

    portrait = roughness(avatar.render(neutral_motion()))
    for values in ({'mouthPucker': 0.9}, {'mouthPucker': 0.9, 'jawOpen': 0.2}):
        assert all(r <= p + 8 for r, p in zip(roughness(avatar.render(motion_frame(**values))), portrait)), values


def test_portrait_of_any_size_with_the_face_anywhere():
    face = data.astronaut()[30:260, 110:340]  # her head, 230 px
    canvas = np.full((700, 1100, 3), 90, np.uint8)
    small = cv2.resize(face, (160, 160), interpolation=cv2.INTER_AREA)
    canvas[480:640, 860:1020] = small  # small, near the bottom-right corner
    avatar = PhotoAvatar(canvas, PhotoConfig(size=320))
    points = avatar.rig.points
    centre = points[list(lm.FACE_OVAL), :2].mean(axis=0)
    assert np.all(np.abs(centre - 160) < 40)  # recentred
    face_h = np.linalg.norm(points[lm.CHIN, :2] - points[lm.FOREHEAD, :2])
    assert face_h == pytest.approx(0.42 * 320, rel=0.15)  # rescaled to the configured fraction
    assert avatar.render(neutral_motion()).shape == (320, 320, 3)


def test_the_open_mouth_is_lit_like_the_portrait(avatar):
    warm = avatar._mouth_colours['cavity']
    cold_light = np.clip(data.astronaut() * np.array([0.8, 0.95, 1.25]), 0, 255).astype(np.uint8)
    cold = PhotoAvatar(cold_light)._mouth_colours['cavity']
    assert cold[2] / cold[0] > 1.2 * warm[2] / warm[0]  # bluer light, bluer shadows in the mouth


def test_refuses_a_portrait_without_a_face_and_wrong_motion(avatar):
    with pytest.raises(DataError, match='no face'):
        PhotoAvatar(np.full((300, 300, 3), 128, np.uint8))
    with pytest.raises(DataError, match='uint8 RGB'):
        PhotoAvatar(np.zeros((300, 300), np.uint8))
    with pytest.raises(StreamError, match='58'):
        avatar.render(np.zeros(52))


if __name__ == '__main__':  # print the closed-loop figures quoted in the report
    demo = PhotoAvatar(data.astronaut())
    with FaceTracker(video=False) as demo_tracker:
        for name, values, column in (('jawOpen', SWEEP, 0), ('eyeBlink', SWEEP, 1), ('headYaw', YAW_SWEEP, 2)):
            got = sweep(demo, demo_tracker, name, values)[:, column]
            print(f'{name:>8}: commanded {np.round(values, 2).tolist()}')
            r = np.corrcoef(values, got)[0, 1]
            print(f'{"":>8}  recovered {np.round(got.astype(float), 3).tolist()}  r = {r:.3f}')
