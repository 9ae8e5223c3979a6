"""``dystream corpus``: a synthetic dyadic corpus, two people talking, spoken by offline TTS.

Each conversation has turn taking with pauses and overlaps, questions and answers, backchannels ("uh huh",
"right") and laughter while the other talks; each side has its own voice, rate, pitch and loudness, and its own
microphone (level, room noise, reverberation, some cross-talk from the other side). Each conversation gives two
samples, one per side (see ``dystream_ros.data.sample``): the side's teacher motion, its own voice as ``self``
and the other's voice as ``partner``. The ``train`` and ``heldout`` splits use disjoint voices and texts.

Training also speaks with piper's neural voice (the only natural one there is offline), force-aligned by PocketSphinx
for its phoneme times. The held-out split has no piper: one voice cannot be both heard in training and new, so the
held-out split stays all voices the model never heard; how the model does on natural voices is measured on real
recordings (``dystream_ros.data.real_speech``).
"""
from __future__ import annotations

import argparse
import functools
import json
import multiprocessing
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.signal import fftconvolve

from dystream_ros.data.augment import pink_noise, room_impulse_response
from dystream_ros.data.real_speech import align
from dystream_ros.data.sample import Sample, write_sample
from dystream_ros.data.teacher import Persona, Turn, side_motion
from dystream_ros.data.tts import Utterance, Voice, synthesize, voice_family
from dystream_ros.face.motion import MOTION_NAMES
from dystream_ros.units import SAMPLE_RATE_HZ, SAMPLES_PER_FRAME

# Voices per split: the held-out split must be spoken by voices the model never heard in training.
_ESPEAK_TRAIN = ['en-us', 'en', 'en-gb-scotland', 'en-029', 'en-gb-x-gbclan']
_ESPEAK_TRAIN_VARIANTS = ['m1', 'm2', 'm3', 'm4', 'm5', 'f1', 'f2', 'f3', 'f4', 'klatt', 'klatt2', 'Alex', 'Andy',
                          'Annie', 'belinda', 'david', 'ed', 'john', 'linda', 'max', 'paul', 'robert']
_ESPEAK_HELDOUT = ['en-gb-x-rp', 'en-gb-x-gbcwmd']
_ESPEAK_HELDOUT_VARIANTS = ['m6', 'm7', 'f5', 'klatt3', 'Mike', 'Lee']
_FESTIVAL = {'train': ['kal'], 'heldout': ['slt']}
_PIPER = {'train': ['joe'], 'heldout': []}
# Chance of each engine per side of a conversation (espeak takes the rest). The held-out split keeps the shares
# and draws it always had, so the held-out corpus of a seed is the one earlier evaluations used.
_ENGINE_SHARES = {'train': {'piper': 0.4, 'festival': 0.15}, 'heldout': {'festival': 0.2}}

# Texts per split: different topics, so held-out sentences are new as well as their voices.
_TOPICS = {
    'train': {
        'questions': ['Could you tell me where the {place} is?', 'Is the {place} open today?',
                      'How long does it take to get to the {place}?', 'Do I need a badge for the {place}?',
                      'Who should I ask about the {thing}?', 'When does the {event} start?',
                      'Did you see the {thing} this morning?', 'Can I leave my {thing} here for a moment?'],
        'answers': ['The {place} is on the {floor} floor, next to the {landmark}.',
                    'It opens at {hour} and closes at {hour2}.', 'It takes about {minutes} minutes on foot.',
                    'Yes, you can get one at the front desk.', 'Please ask {person}, she knows all about it.',
                    'The {event} starts at {hour}, in the {place}.', 'Of course, I will keep an eye on it.',
                    'I think so, but let me check for you.'],
        'statements': ['I have a meeting with {person} at {hour}.', 'I came here by {transport} today.',
                       'The weather was lovely on the way in.', 'I am here for the {event}.',
                       'My colleague will join me in a few minutes.', 'I have never been to this building before.',
                       'Thank you so much, that is very helpful.', 'Good morning, nice to meet you.'],
        'place': ['library', 'cafeteria', 'meeting room', 'lab', 'lecture hall', 'reception', 'elevator',
                  'parking lot', 'museum shop', 'workshop'],
        'thing': ['schedule', 'parcel', 'umbrella', 'coat', 'new robot', 'visitor pass', 'presentation'],
        'event': ['tour', 'workshop', 'seminar', 'open day', 'demonstration', 'lunch talk'],
        'person': ['Anna', 'Doctor Patel', 'Maria', 'Professor Chen', 'Sophie', 'the manager'],
        'floor': ['first', 'second', 'third', 'ground'],
        'landmark': ['stairs', 'big window', 'coffee machine', 'blue door', 'plants'],
        'hour': ['nine', 'ten thirty', 'noon', 'two o clock', 'half past three'],
        'hour2': ['five', 'six in the evening', 'eight', 'midnight'],
        'minutes': ['two', 'five', 'ten', 'fifteen'],
        'transport': ['train', 'bus', 'bike', 'car'],
    },
    'heldout': {
        'questions': ['Which {animal} do you like the most?', 'Have you ever tried {food}?',
                      'What would you do on a {day} off?', 'Is it far to the {city} station?'],
        'answers': ['I really like the {animal}, it is so calm.', 'Yes, {food} is one of my favourites.',
                    'I would probably go hiking near the {city} hills.', 'No, the {city} station is quite close.'],
        'statements': ['My sister lives in {city} now.', 'We cooked {food} together last {day}.',
                       'The {animal} at the zoo was sleeping all day.', 'I forgot my glasses at home again.'],
        'animal': ['otter', 'giraffe', 'penguin', 'fox', 'owl'],
        'food': ['lentil soup', 'fresh bread', 'dumplings', 'mango salad'],
        'day': ['Sunday', 'Friday', 'holiday'],
        'city': ['harbour', 'river', 'old town', 'university'],
    },
}
_BACKCHANNELS = ['uh huh.', 'yeah.', 'right.', 'okay.', 'I see.', 'sure.', 'hmm.', 'oh really?']
_LAUGHS = ['ha ha ha!', 'ha ha!', 'he he he.']
_PIPER_LAUGHS = ['ha ha ha!', 'ha ha!']  # piper runs 'he he he' into a sound PocketSphinx cannot align


def _fill(template: str, topic: dict[str, list[str]], rng: np.random.Generator) -> str:
    out = template
    for key, words in topic.items():
        if key in ('questions', 'answers', 'statements'):
            continue
        while '{' + key + '}' in out:
            out = out.replace('{' + key + '}', str(rng.choice(words)), 1)
    return out


def _random_voice(split: str, rng: np.random.Generator) -> Voice:
    draw = rng.random()
    shares = _ENGINE_SHARES[split]
    if draw < shares.get('piper', 0.0):
        return Voice('piper', str(rng.choice(_PIPER[split])), rate_wpm=int(rng.integers(145, 205)),
                     noise_scale=round(float(rng.uniform(0.4, 0.9)), 2))
    if draw < shares.get('piper', 0.0) + shares['festival']:
        return Voice('festival', str(rng.choice(_FESTIVAL[split])), rate_wpm=int(rng.integers(140, 200)))
    languages, variants = ((_ESPEAK_TRAIN, _ESPEAK_TRAIN_VARIANTS) if split == 'train'
                           else (_ESPEAK_HELDOUT, _ESPEAK_HELDOUT_VARIANTS))
    name = f'{rng.choice(languages)}+{rng.choice(variants)}'
    return Voice('espeak', name, rate_wpm=int(rng.integers(135, 210)), pitch=int(rng.integers(25, 75)),
                 pitch_range=int(rng.integers(20, 90)))


@dataclass
class _Spoken:
    speaker: int
    start_s: float
    utterance: Utterance
    is_question: bool


def _script(split: str, rng: np.random.Generator, target_s: float,
            long_turns: float = 0.0) -> list[tuple[int, str, str]]:
    """(speaker, kind, text) lines: alternating questions, answers and statements, about ``target_s`` long.

    With ``long_turns`` > 0, that share of answers and statements go on for 1 to 3 more sentences in one breath: a
    person explaining the way or reading aloud talks for 4 to 10 s with only sentence pauses, while single sentences
    (median 1.3 s) teach a model that speech stops after about two seconds, and it then shuts the mouth on real
    readers. At 0 no random number is drawn for it, so the corpora of earlier seeds stay the same.
    """
    topic = _TOPICS[split]
    sentences = topic['answers'] + topic['statements']

    def go_on(text: str) -> str:
        if long_turns <= 0.0 or rng.random() >= long_turns:
            return text
        more = rng.choice(sentences, size=int(rng.integers(1, 4)), replace=False)
        return ' '.join([text, *(_fill(str(m), topic, rng) for m in more)])

    lines: list[tuple[int, str, str]] = []
    speaker = int(rng.integers(2))
    estimated = 0.0
    while estimated < target_s:
        kind = str(rng.choice(['question', 'statement'], p=[0.6, 0.4]))
        template = str(rng.choice(topic['questions' if kind == 'question' else 'statements']))
        text = _fill(template, topic, rng)
        lines.append((speaker, kind, text if kind == 'question' else go_on(text)))
        if kind == 'question':  # a question is answered by the other side
            lines.append((1 - speaker, 'answer', go_on(_fill(str(rng.choice(topic['answers'])), topic, rng))))
            speaker = 1 - speaker if rng.random() < 0.5 else speaker
        else:
            speaker = 1 - speaker if rng.random() < 0.7 else speaker
        estimated += 2.0 * (2 if kind == 'question' else 1) + 0.5
    return lines


def _schedule(lines: list[tuple[int, str, str]], voices: list[Voice],
              rng: np.random.Generator) -> list[_Spoken]:
    """Speak the script and place it in time: gaps, overlaps, backchannels and laughter from the listener."""
    main_iter, extra_iter = {}, {}
    for speaker in (0, 1):
        texts = [text for s, _, text in lines if s == speaker]
        reactions = _BACKCHANNELS + (_PIPER_LAUGHS if voices[speaker].engine == 'piper' else _LAUGHS)
        extras = [str(rng.choice(reactions)) for _ in range(len(lines))]
        unique_extras = sorted(set(extras))  # a few short texts, many times: each is spoken (and aligned) once
        spoken = synthesize(texts + unique_extras, voices[speaker], align)
        main_iter[speaker] = iter(spoken[: len(texts)])
        by_text = dict(zip(unique_extras, spoken[len(texts):]))
        extra_iter[speaker] = iter([by_text[text] for text in extras])
    placed: list[_Spoken] = []
    clock = float(rng.uniform(0.3, 1.5))
    last_speaker = -1
    for speaker, kind, _ in lines:
        utterance = next(main_iter[speaker])
        if speaker != last_speaker:
            clock += float(np.clip(rng.normal(0.35, 0.3), -0.4, 1.5))  # turn gap; negative means overlap
        else:
            clock += float(rng.uniform(0.15, 0.6))
        placed.append(_Spoken(speaker, max(clock, 0.0), utterance, kind == 'question'))
        listener = 1 - speaker
        if utterance.duration_s > 1.2 and rng.random() < 0.45:  # the listener reacts while this one talks
            reaction = next(extra_iter[listener])
            at = clock + float(rng.uniform(0.5, max(0.6, utterance.duration_s - 0.2)))
            placed.append(_Spoken(listener, at, reaction, False))
        clock += utterance.duration_s
        last_speaker = speaker
    return placed


def _microphone(own: np.ndarray, other: np.ndarray, rng: np.random.Generator, far_field: bool) -> np.ndarray:
    """What one side's microphone records: its own voice, some of the other's, the room; scaled to a level."""
    signal = own.copy()
    if far_field:
        signal = fftconvolve(signal, room_impulse_response(rng))[: len(own)].astype(np.float32)
    if rng.random() < 0.5:  # cross-talk: the other voice leaks in (a robot hears its own speaker)
        signal += other * float(10 ** (rng.uniform(-30, -15) / 20))
    speech_rms = float(np.sqrt(np.mean(own[np.abs(own) > 1e-4] ** 2))) if np.any(np.abs(own) > 1e-4) else 0.0
    snr_db = rng.uniform(15, 40) if far_field else rng.uniform(35, 60)
    signal += pink_noise(rng, len(signal)) * speech_rms * float(10 ** (-snr_db / 20))
    peak = float(np.max(np.abs(signal))) + 1e-9
    level_db = rng.uniform(-30, -8) if far_field else rng.uniform(-14, -2)
    return (signal / peak * float(10 ** (level_db / 20))).astype(np.float32)


def conversation(index: int, split: str, seed: int, target_s: float, long_turns: float = 0.0) -> list[Sample]:
    """Generate conversation ``index`` of a corpus and return its two samples (one per side); ``long_turns``: see
    :func:`_script`."""
    rng = np.random.default_rng([seed, index, 0 if split == 'train' else 1])
    voices = [_random_voice(split, rng) for _ in range(2)]
    personas = [Persona.random(rng) for _ in range(2)]
    placed = _schedule(_script(split, rng, target_s, long_turns), voices, rng)
    total_s = max(s.start_s + s.utterance.duration_s for s in placed) + float(rng.uniform(0.5, 1.5))
    num_frames = int(total_s * 25)
    num_samples = num_frames * SAMPLES_PER_FRAME
    dry = [np.zeros(num_samples, np.float32) for _ in range(2)]
    turns: list[list[Turn]] = [[], []]
    for spoken in placed:
        start = int(spoken.start_s * SAMPLE_RATE_HZ)
        audio = spoken.utterance.audio[: max(0, num_samples - start)]
        dry[spoken.speaker][start:start + len(audio)] += audio
        turns[spoken.speaker].append(Turn(spoken.speaker, spoken.start_s, spoken.utterance.duration_s,
                                          tuple(spoken.utterance.phones), spoken.is_question))
    samples = []
    for side in (0, 1):
        other = 1 - side
        motion = side_motion(turns[side], turns[other], dry[side], num_frames, personas[side], rng)
        # self = this side's own voice as a robot gets it (its TTS, or a close microphone); partner = the other
        # person through a far-field microphone in a room
        self_audio = _microphone(dry[side], dry[other], rng, far_field=False)
        partner_audio = _microphone(dry[other], dry[side], rng, far_field=True)
        samples.append(Sample(f'{split}_{seed}_{index:05d}_{"ab"[side]}', motion, MOTION_NAMES,
                              np.ones(num_frames, bool), self_audio, partner_audio, voices[side].label))
    return samples


def _conversation_at(split: str, seed: int, target_s: float, long_turns: float, index: int) -> list[Sample]:
    """``conversation`` with the index last, for a process pool."""
    return conversation(index, split, seed, target_s, long_turns)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``dystream corpus``."""
    parser.add_argument('--out', type=Path, required=True, help='folder to write the samples into')
    parser.add_argument('--hours', type=float, default=1.0, help='total conversation time to generate')
    parser.add_argument('--seed', type=int, default=0, help='the same seed gives the same corpus')
    parser.add_argument('--split', choices=['train', 'heldout'], default='train',
                        help='train, or heldout: voices and texts that train never uses')
    parser.add_argument('--conversation-seconds', type=float, default=40.0,
                        help='approximate length of one conversation')
    parser.add_argument('--long-turns', type=float, default=0.0,
                        help='share of answers and statements that go on for 1 to 3 more sentences (a person '
                             'explaining or reading aloud); default 0, single sentences')
    parser.add_argument('--jobs', type=int, default=os.cpu_count() or 1,
                        help='conversations generated at once, one process each (libespeak-ng carries state from '
                             'one utterance to the next, so espeak voices may differ from a one-process run by '
                             'timing jitter)')


def run(args: argparse.Namespace) -> int:
    """Generate the corpus with a progress bar and write a summary (corpus.json) next to the samples."""
    from tqdm import tqdm

    args.out.mkdir(parents=True, exist_ok=True)
    goal_s = args.hours * 3600.0
    done_s, index, count = 0.0, 0, 0
    voices: Counter[str] = Counter()  # samples per voice family
    make = functools.partial(_conversation_at, args.split, args.seed, args.conversation_seconds, args.long_turns)
    jobs = max(1, args.jobs)
    with tqdm(total=int(goal_s), unit='s', desc=f'corpus ({args.split}), seconds of conversation') as bar, \
            multiprocessing.get_context('spawn').Pool(jobs) as pool:
        while done_s < goal_s:
            # conversations index .. index + jobs - 1 at once; those after the goal is reached are dropped, so the
            # corpus holds the conversations a single process writes
            for samples in pool.map(make, range(index, index + jobs)):
                if done_s >= goal_s:
                    break
                for sample in samples:
                    write_sample(args.out, sample)
                length_s = samples[0].num_frames / 25
                done_s += length_s
                count += len(samples)
                voices.update(voice_family(sample.speaker) for sample in samples)
                index += 1
                bar.update(int(round(length_s)))
    summary = {'split': args.split, 'seed': args.seed, 'long_turns': args.long_turns, 'conversations': index,
               'samples': count, 'hours': round(done_s / 3600, 3), 'samples_per_voice': dict(sorted(voices.items()))}
    (args.out / 'corpus.json').write_text(json.dumps(summary, indent=2) + '\n')
    print(json.dumps(summary))
    return 0
