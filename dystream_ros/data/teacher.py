"""The corpus teacher: hand-built face motion for one side of a conversation, from timed phonemes.

It is what the synthetic corpus teaches the model (no talking-face video can be had offline), and a baseline the
evaluation compares the model with. Each side gets, at 25 fps in the motion space of ``dystream_ros.face.motion``:

- while speaking: visemes from the phonemes (jaw, lips, tongue) with coarticulation, brows and head nods on the
  loud syllables, head drift and gaze shifts;
- while listening: nods and small smiles at the partner's phrase ends, attentive gaze, raised brows at questions;
- always: blinks, breathing and idle micro-motion.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter1d

from dystream_ros.data.tts import Phone
from dystream_ros.face.motion import MOTION_DIM, index_of
from dystream_ros.units import FPS, SAMPLES_PER_FRAME

# Mouth targets per viseme class (blendshape -> weight); anything not named stays 0.
_VISEMES: dict[str, dict[str, float]] = {
    'bilabial': {'jawOpen': 0.03, 'mouthPressLeft': 0.45, 'mouthPressRight': 0.45, 'mouthRollLower': 0.15,
                 'mouthRollUpper': 0.1, 'mouthClose': 0.05},
    'labiodental': {'jawOpen': 0.08, 'mouthRollLower': 0.5, 'mouthUpperUpLeft': 0.2, 'mouthUpperUpRight': 0.2},
    'dental': {'jawOpen': 0.15, 'tongueOut': 0.35},
    'alveolar': {'jawOpen': 0.12, 'mouthStretchLeft': 0.15, 'mouthStretchRight': 0.15},
    'postalveolar': {'jawOpen': 0.12, 'mouthFunnel': 0.45, 'mouthPucker': 0.2},
    'velar': {'jawOpen': 0.2},
    'rhotic': {'jawOpen': 0.14, 'mouthPucker': 0.3, 'mouthFunnel': 0.2},
    'rounded_glide': {'jawOpen': 0.08, 'mouthPucker': 0.7},
    'open': {'jawOpen': 0.55, 'mouthLowerDownLeft': 0.2, 'mouthLowerDownRight': 0.2},
    'open_round': {'jawOpen': 0.45, 'mouthFunnel': 0.35},
    'mid': {'jawOpen': 0.32, 'mouthLowerDownLeft': 0.1, 'mouthLowerDownRight': 0.1},
    'mid_round': {'jawOpen': 0.3, 'mouthFunnel': 0.35, 'mouthPucker': 0.25},
    'close_front': {'jawOpen': 0.14, 'mouthStretchLeft': 0.35, 'mouthStretchRight': 0.35, 'mouthSmileLeft': 0.15,
                    'mouthSmileRight': 0.15},
    'close_back': {'jawOpen': 0.14, 'mouthPucker': 0.6, 'mouthFunnel': 0.3},
}

# Phoneme symbol -> viseme class, for espeak-ng's IPA and festival's phone set. Longest prefix wins.
_PHONE_CLASSES: dict[str, str] = {
    **dict.fromkeys(['p', 'b', 'm'], 'bilabial'),
    **dict.fromkeys(['f', 'v'], 'labiodental'),
    **dict.fromkeys(['θ', 'ð', 'th', 'dh'], 'dental'),
    **dict.fromkeys(['t', 'd', 'n', 'l', 's', 'z', 'ɾ', 'ɬ', 'n̩', 'l̩'], 'alveolar'),
    **dict.fromkeys(['ʃ', 'ʒ', 'tʃ', 'dʒ', 'sh', 'zh', 'ch', 'jh'], 'postalveolar'),
    **dict.fromkeys(['k', 'g', 'ɡ', 'ŋ', 'ng', 'h', 'hh', 'j', 'y', 'x', 'ʔ'], 'velar'),
    **dict.fromkeys(['ɹ', 'r', 'ɚ', 'ɝ', 'er', 'ɜ'], 'rhotic'),
    **dict.fromkeys(['w'], 'rounded_glide'),
    **dict.fromkeys(['a', 'ɑ', 'æ', 'ʌ', 'ɐ', 'aa', 'ae', 'ah', 'ay', 'aw'], 'open'),
    **dict.fromkeys(['ɔ', 'ɒ', 'ao', 'oy'], 'open_round'),
    **dict.fromkeys(['e', 'ɛ', 'ə', 'ɪ', 'eh', 'ey', 'ax', 'ih'], 'mid'),
    **dict.fromkeys(['o', 'oʊ', 'ow', 'əʊ'], 'mid_round'),
    **dict.fromkeys(['i', 'iy', 'iː'], 'close_front'),
    **dict.fromkeys(['u', 'ʊ', 'uw', 'uh', 'uː'], 'close_back'),
}
_MARKS = str.maketrans('', '', 'ˈˌːˑ̃̆')


def viseme_class(symbol: str) -> str:
    """Return the viseme class of a phoneme symbol (IPA or festival), 'mid' for anything unknown."""
    clean = symbol.translate(_MARKS).lower()
    for length in range(len(clean), 0, -1):
        if clean[:length] in _PHONE_CLASSES:
            return _PHONE_CLASSES[clean[:length]]
    return 'mid'


MOUTH_NAMES = sorted({name for targets in _VISEMES.values() for name in targets})
_MOUTH_INDEX = np.array([index_of(n) for n in MOUTH_NAMES])
_VISEME_MATRIX = {cls: np.array([t.get(n, 0.0) for n in MOUTH_NAMES], np.float32) for cls, t in _VISEMES.items()}

_TICK_S = 0.01  # internal time step of the mouth model (100 Hz), averaged down to 25 fps
_COARTICULATION_S = 0.03  # smoothing of mouth targets: neighbours blend into each other
_ANTICIPATION_S = 0.03  # the lips move slightly ahead of the sound


@dataclass(frozen=True)
class Persona:
    """How one person moves: drawn once per speaker so the corpus covers different styles."""

    articulation: float = 1.0  # scale of mouth movements
    head_motion: float = 1.0  # scale of head drift and speech nods
    nod_rate: float = 0.6  # probability of a nod at the partner's phrase end
    smile: float = 0.3  # smile strength while listening
    blinks_per_min: float = 17.0
    eye_open_bias: float = 0.0  # >0 wide eyes, <0 a little squinted

    @staticmethod
    def random(rng: np.random.Generator) -> Persona:
        """A plausible person, with enough spread to make the corpus varied."""
        return Persona(
            articulation=float(rng.uniform(0.75, 1.25)), head_motion=float(rng.uniform(0.5, 1.5)),
            nod_rate=float(rng.uniform(0.5, 0.9)), smile=float(rng.uniform(0.1, 0.5)),
            blinks_per_min=float(rng.uniform(10.0, 25.0)), eye_open_bias=float(rng.uniform(-0.15, 0.15)))


@dataclass(frozen=True)
class Turn:
    """One utterance placed in a conversation: who, when, its phonemes and whether it asks something."""

    speaker: int
    start_s: float
    duration_s: float
    phones: tuple[Phone, ...]
    is_question: bool = False

    @property
    def end_s(self) -> float:
        """End of the utterance in conversation time."""
        return self.start_s + self.duration_s


def mouth_track(phones: list[Phone], num_frames: int, articulation: float = 1.0) -> np.ndarray:
    """Return mouth blendshapes (num_frames, len(MOUTH_NAMES)) for phonemes timed in seconds from frame 0."""
    ticks = int(np.ceil(num_frames / FPS / _TICK_S))
    targets = np.zeros((ticks, len(MOUTH_NAMES)), np.float32)
    closures = []
    for phone in phones:
        cls = viseme_class(phone.symbol)
        a = max(0, int((phone.start_s - _ANTICIPATION_S) / _TICK_S))
        b = min(ticks, max(a + 1, int(np.ceil((phone.end_s - _ANTICIPATION_S) / _TICK_S))))
        targets[a:b] = _VISEME_MATRIX[cls] * articulation
        if cls == 'bilabial':
            closures.append((a, b))
    mouth = gaussian_filter1d(targets, _COARTICULATION_S / _TICK_S, axis=0, mode='constant')
    jaw = MOUTH_NAMES.index('jawOpen')
    for a, b in closures:  # lips must meet for p, b, m whatever the neighbours: dominance of the closure
        mouth[a:b, jaw] = np.minimum(mouth[a:b, jaw], 0.04)
    per_frame = int(round(1 / FPS / _TICK_S))
    mouth = mouth[: num_frames * per_frame].reshape(num_frames, per_frame, -1).mean(axis=1)
    return np.clip(mouth, 0.0, 1.0)


def loudness_track(audio: np.ndarray, num_frames: int) -> np.ndarray:
    """Return the RMS level of each 40 ms frame of ``audio`` (num_frames,), in linear units."""
    padded = np.zeros(num_frames * SAMPLES_PER_FRAME, np.float32)
    n = min(len(audio), len(padded))
    padded[:n] = audio[:n]
    return np.sqrt(np.mean(padded.reshape(num_frames, -1) ** 2, axis=1))


def _ou_noise(rng: np.random.Generator, num_frames: int, tau_s: float, sigma: float) -> np.ndarray:
    """Ornstein-Uhlenbeck drift (num_frames,): smooth random wandering with time constant ``tau_s``."""
    alpha = np.exp(-1.0 / (tau_s * FPS))
    noise = rng.normal(0.0, sigma * np.sqrt(1 - alpha**2), num_frames)
    out = np.empty(num_frames, np.float32)
    value = rng.normal(0.0, sigma)
    for t in range(num_frames):
        value = alpha * value + noise[t]
        out[t] = value
    return out


def _pulse(num_frames: int, centre_s: float, width_s: float) -> np.ndarray:
    """A smooth bump (num_frames,) peaking at 1 at ``centre_s``."""
    t = np.arange(num_frames) / FPS
    return np.exp(-0.5 * ((t - centre_s) / width_s) ** 2).astype(np.float32)


def side_motion(own_turns: list[Turn], partner_turns: list[Turn], own_audio: np.ndarray, num_frames: int,
                persona: Persona, rng: np.random.Generator) -> np.ndarray:
    """Return the teacher motion (num_frames, MOTION_DIM) of one side of a conversation.

    ``own_turns`` are what this person says, ``partner_turns`` what they hear; ``own_audio`` is their voice
    (16 kHz) and drives the emphasis of their speech gestures.
    """
    motion = np.zeros((num_frames, MOTION_DIM), np.float32)
    speaking = np.zeros(num_frames, bool)
    mouth = np.zeros((num_frames, len(MOUTH_NAMES)), np.float32)
    for turn in own_turns:
        shifted = [Phone(p.symbol, p.start_s + turn.start_s, p.end_s + turn.start_s) for p in turn.phones]
        mouth = np.maximum(mouth, mouth_track(shifted, num_frames, persona.articulation))
        speaking[int(turn.start_s * FPS):int(np.ceil(turn.end_s * FPS))] = True
    motion[:, _MOUTH_INDEX] = mouth

    pitch, yaw, roll = (index_of(n) for n in ('headPitch', 'headYaw', 'headRoll'))
    scale = persona.head_motion
    # head drift, larger while speaking; breathing
    activity = gaussian_filter1d(speaking.astype(np.float32), FPS * 0.3)
    motion[:, yaw] = _ou_noise(rng, num_frames, 1.5, 0.05 * scale) * (0.5 + activity)
    motion[:, roll] = _ou_noise(rng, num_frames, 2.0, 0.025 * scale) * (0.5 + activity)
    t = np.arange(num_frames) / FPS
    breath_hz = rng.uniform(0.2, 0.3)
    motion[:, pitch] = 0.008 * np.sin(2 * np.pi * breath_hz * t) + _ou_noise(rng, num_frames, 1.5, 0.006 * scale)
    motion[:, index_of('headZ')] = 0.002 * np.sin(2 * np.pi * breath_hz * t)
    motion[:, index_of('headX')] = _ou_noise(rng, num_frames, 2.0, 0.005 * scale)

    # emphasis while speaking: loud syllables nod the head and lift the brows
    loud = loudness_track(own_audio, num_frames)
    if loud.max() > 0:
        emphasis = np.clip(loud / (np.percentile(loud[speaking], 90) + 1e-6) if speaking.any() else loud * 0, 0, 1.5)
        emphasis = gaussian_filter1d(emphasis, 2.0) * speaking
        motion[:, pitch] += 0.05 * scale * (emphasis - gaussian_filter1d(emphasis, 8.0))
        brow = np.clip(emphasis - 0.8, 0, None) * 0.5
        for name in ('browInnerUp', 'browOuterUpLeft', 'browOuterUpRight'):
            motion[:, index_of(name)] += brow

    # listening: nods and smiles at the partner's phrase ends, brows up at questions
    smile_level = np.zeros(num_frames, np.float32)
    for turn in partner_turns:
        # nods at the partner's phrase boundaries (pauses inside the turn) and just after the turn ends
        pauses = [turn.start_s + b.start_s for a, b in zip(turn.phones, turn.phones[1:])
                  if b.start_s - a.end_s > 0.12]
        for at, chance in [*((p, 0.5 * persona.nod_rate) for p in pauses), (turn.end_s, persona.nod_rate)]:
            if rng.random() < chance:
                centre = at + rng.uniform(-0.3, 0.0)  # listeners nod as the phrase completes
                depth = rng.uniform(0.08, 0.16) * scale
                for k in range(1 + int(rng.random() < 0.3)):  # one nod of about 0.45 s, sometimes two
                    motion[:, pitch] += depth * (0.7**k) * _pulse(num_frames, centre + 0.4 * k, 0.1)
        if rng.random() < 0.5:
            smile_level += persona.smile * _pulse(num_frames, (turn.start_s + turn.end_s) / 2,
                                                  max(turn.duration_s / 2, 0.4))
        if turn.is_question:
            for name in ('browInnerUp', 'browOuterUpLeft', 'browOuterUpRight'):
                motion[:, index_of(name)] += 0.35 * _pulse(num_frames, turn.end_s - 0.2, 0.35)
    for name in ('mouthSmileLeft', 'mouthSmileRight'):
        motion[:, index_of(name)] += np.clip(smile_level, 0, 0.7) * ~speaking
    motion[:, index_of('cheekSquintLeft')] += 0.3 * np.clip(smile_level, 0, 0.7) * ~speaking
    motion[:, index_of('cheekSquintRight')] += 0.3 * np.clip(smile_level, 0, 0.7) * ~speaking

    # gaze: short glances away while speaking, steady on the partner while listening
    gaze = np.zeros(num_frames, np.float32)
    for start in np.flatnonzero(speaking & (rng.random(num_frames) < 0.5 / FPS)):
        gaze += rng.choice([-1.0, 1.0]) * 0.4 * _pulse(num_frames, start / FPS, 0.3)
    look_out, look_in = np.clip(gaze, 0, 1), np.clip(-gaze, 0, 1)
    motion[:, index_of('eyeLookOutLeft')] += look_out
    motion[:, index_of('eyeLookInRight')] += look_out
    motion[:, index_of('eyeLookInLeft')] += look_in
    motion[:, index_of('eyeLookOutRight')] += look_in
    motion[:, index_of('eyeLookDownLeft')] += 0.1 * activity
    motion[:, index_of('eyeLookDownRight')] += 0.1 * activity

    # blinks: a Poisson process, 60 ms closing, 40 ms closed, 100 ms opening
    blink = np.zeros(num_frames, np.float32)
    next_s = rng.exponential(60.0 / persona.blinks_per_min)
    while next_s < num_frames / FPS:
        blink = np.maximum(blink, np.interp(t, next_s + np.array([0.0, 0.06, 0.1, 0.2]), [0.0, 1.0, 1.0, 0.0],
                                            left=0.0, right=0.0).astype(np.float32))
        next_s += 0.25 + rng.exponential(60.0 / persona.blinks_per_min)
    for side in ('Left', 'Right'):
        motion[:, index_of(f'eyeBlink{side}')] = np.clip(blink * 0.95 + 0.05 * (persona.eye_open_bias < 0), 0, 1)
        motion[:, index_of(f'eyeWide{side}')] += max(persona.eye_open_bias, 0.0) * (1 - blink)
        motion[:, index_of(f'eyeSquint{side}')] += max(-persona.eye_open_bias, 0.0) * (1 - blink)

    blendshapes = slice(0, index_of('headPitch'))
    motion[:, blendshapes] = np.clip(motion[:, blendshapes], 0.0, 1.0)
    return motion
