"""DyStream streaming: causality with lookahead, stepping equals offline, restarts, the step contract, the KV cache."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dystream_ros.apps.video import stream_motion
from dystream_ros.audio import crop
from dystream_ros.errors import ConfigError, StreamError
from dystream_ros.model import DyStream, Guidance, ModelConfig
from dystream_ros.model.audio_encoder import AudioEncoder, num_final_frames
from dystream_ros.model.sampler import BRANCHES, sigma_schedule
from dystream_ros.model.transformer import cache_slot, rope_at
from dystream_ros.runtime.frames import frame_end, stream_clip
from dystream_ros.runtime.generator import StreamingGenerator
from dystream_ros.units import SAMPLE_RATE_HZ as RATE
from dystream_ros.units import SAMPLES_PER_FRAME as FRAME


def random_model(seed: int = 0, **changes: object) -> DyStream:
    """A small model whose every part depends on its inputs.

    The head's modulation and output layers start at zero (the head then ignores its inputs), so they get random
    weights here; otherwise streaming/offline comparisons could pass on a constant output.
    """
    torch.manual_seed(seed)
    config = ModelConfig(context_frames=12).replace(**changes)
    model = DyStream(config)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.startswith('head.'):
                param.add_(0.05 * torch.randn_like(param))
        model.set_motion_stats(torch.rand(config.motion_dim), 0.1 + torch.rand(config.motion_dim))
    return model.eval()


def clips(seconds: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two voice-like clips: noise bursts with a syllable-rate envelope."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    self_audio = 0.2 * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)) * rng.standard_normal(n)
    partner = 0.1 * (0.5 + 0.5 * np.sin(2 * np.pi * 1.7 * t + 1)) * rng.standard_normal(n)
    return self_audio.astype(np.float32), partner.astype(np.float32)


def stream(gen: StreamingGenerator, self_audio: np.ndarray, partner: np.ndarray) -> np.ndarray:
    frames = list(stream_clip(gen, self_audio, partner))
    assert [f.index for f in frames] == list(range(len(frames)))
    return np.stack([f.motion for f in frames])


FRONTENDS = pytest.mark.parametrize('frontend', ['logmel', 'whisper_stem'])


@FRONTENDS
@pytest.mark.parametrize('lookahead_ms', [0, 10, 40, 60])
def test_encoder_step_equals_whole_clip_encoding(lookahead_ms: int, frontend: str) -> None:
    config = ModelConfig(lookahead_ms=lookahead_ms, audio_frontend=frontend)
    torch.manual_seed(0)
    encoder = AudioEncoder(config).eval()
    audio = torch.from_numpy(clips(1.3)[0])[None]
    frames = num_final_frames(config, audio.shape[1])
    with torch.no_grad():
        offline = encoder.encode_frames(audio, 0, frames)
        state, _ = encoder.silence()
        buffer = torch.cat([torch.zeros(1, config.history_samples - config.encoder_offset_samples), audio], 1)
        online = []
        for u in range(frames + config.pre_frames):
            feature, state = encoder.step(buffer[:, u * FRAME:u * FRAME + config.encoder_window_samples], state)
            if u >= config.pre_frames:
                online.append(feature)
    torch.testing.assert_close(torch.stack(online, 1), offline, atol=1e-5, rtol=0)


@FRONTENDS
@pytest.mark.parametrize('lookahead_ms', [0, 60])
@pytest.mark.parametrize('which', ['self', 'partner'])
def test_audio_after_frame_end_plus_lookahead_never_changes_earlier_frames(lookahead_ms: int, which: str,
                                                                           frontend: str) -> None:
    gen = StreamingGenerator(random_model(lookahead_ms=lookahead_ms, audio_frontend=frontend), seed=1)
    self_audio, partner = clips(2.0)
    reference = gen.generate(self_audio, partner)
    t = 20
    cut = frame_end(gen, t)  # first sample frame t may not see
    changed = [self_audio.copy(), partner.copy()]
    changed[0 if which == 'self' else 1][cut:] += 0.3
    moved = gen.generate(*changed)
    np.testing.assert_array_equal(moved[:t + 1], reference[:t + 1])
    assert np.abs(moved[t + 1:] - reference[t + 1:]).max() > 1e-3  # the change is visible right after t
    # One sample earlier is inside frame t's view: frame t changes.
    earlier = [self_audio.copy(), partner.copy()]
    earlier[0 if which == 'self' else 1][cut - 1] += 0.3
    assert np.abs(gen.generate(*earlier)[t] - reference[t]).max() > 0


@FRONTENDS
@pytest.mark.parametrize('lookahead_ms', [0, 60])
def test_each_step_reads_one_encoder_window_after_the_first(lookahead_ms: int, frontend: str) -> None:
    gen = StreamingGenerator(random_model(lookahead_ms=lookahead_ms, audio_frontend=frontend))
    cfg = gen.config
    spans = []
    for frame in range(4):
        start, end = gen.input_start(frame), frame_end(gen, frame)
        spans.append((start, end))
        gen.step(frame, np.zeros(end - start, np.float32), np.zeros(end - start, np.float32))
    assert spans[0][1] == FRAME + gen.lookahead_ms * RATE // 1000  # frame 0 waits for its lookahead only
    assert spans[0][1] - spans[0][0] == (cfg.pre_frames + 1) * FRAME + cfg.history_samples  # and its pre-frames
    assert [end - start for start, end in spans[1:]] == [cfg.encoder_window_samples] * 3
    assert [spans[k + 1][1] - spans[k][1] for k in range(3)] == [FRAME] * 3  # one frame of new audio per step


@FRONTENDS
@pytest.mark.parametrize('lookahead_ms', [0, 60])
def test_stepping_equals_offline(lookahead_ms: int, frontend: str) -> None:
    gen = StreamingGenerator(random_model(lookahead_ms=lookahead_ms, audio_frontend=frontend), seed=7)
    self_audio, partner = clips(2.5)
    offline = gen.generate(self_audio, partner)
    assert offline.shape == (num_final_frames(gen.config, self_audio.shape[0]), gen.motion_dim)
    assert np.abs(np.diff(offline, axis=0)).max() > 1e-2  # frames move: the comparison is not between constants
    assert np.abs(stream(gen, self_audio, partner) - offline).max() <= 1e-4


def test_a_stream_restarted_mid_clip_equals_a_fresh_stream_from_there() -> None:
    self_audio, partner = clips(2.0)
    gen = StreamingGenerator(random_model(), seed=3)
    first = 10
    gen.reset(first)
    restarted = []
    for frame in range(first, first + 30):
        start, end = gen.input_start(frame), frame_end(gen, frame)
        restarted.append(gen.step(frame, crop(self_audio, start, end), crop(partner, start, end)).motion)
    fresh = stream(gen, self_audio[first * FRAME:], partner[first * FRAME:])[:30]
    np.testing.assert_array_equal(np.stack(restarted), fresh)


def test_default_config_streaming_equals_offline() -> None:
    torch.manual_seed(0)
    model = DyStream(ModelConfig.preset('tiny'))
    with torch.no_grad():
        for param in model.head.parameters():
            param.add_(0.05 * torch.randn_like(param))
    gen = StreamingGenerator(model.eval(), seed=2)
    self_audio, partner = clips(4.4)  # > 94 frames: the attention window slides
    offline = gen.generate(self_audio, partner)
    assert offline.shape[0] > gen.config.context_frames
    assert np.abs(stream(gen, self_audio, partner) - offline).max() <= 1e-4


def test_kv_cache_step_equals_full_sequence_with_banded_mask() -> None:
    model = random_model(context_frames=9)
    transformer, config = model.transformer, model.config
    masks = Guidance.from_weights(0.5, 0.5, 0.3, 1.0).mask_tensor()
    branches, tokens = masks.shape[0], 40  # several times the window
    torch.manual_seed(3)
    motion = torch.randn(branches, tokens, config.motion_dim)
    feats = [torch.randn(1, tokens, config.audio_dim).expand(branches, -1, -1) for _ in range(2)]
    anchor = torch.randn(1, config.motion_dim).expand(branches, -1)
    with torch.no_grad():
        audio, anchor_emb = transformer.condition(*feats, anchor, masks)
        full, _ = transformer(motion, audio, anchor_emb)
        start = config.context_frames - 1
        _, prefix = transformer(motion[:, :start], audio[:, :start], anchor_emb)
        cache = transformer.ring_cache(prefix)
        buffers = [t.data_ptr() for kv in cache for t in kv]
        stepped = [transformer.step(motion[:, t:t + 1], audio[:, t:t + 1], anchor_emb, cache, rope_at(t, config),
                                    cache_slot(t, config)) for t in range(start, tokens)]
        assert cache[0][0].shape == (branches, config.n_head, config.context_frames, config.head_size)
        assert [t.data_ptr() for kv in cache for t in kv] == buffers  # written in place, never reallocated
    torch.testing.assert_close(torch.cat(stepped, 1), full[:, start:], atol=1e-5, rtol=0)
    # Without the band the last token sees more: the banded window is what the cache reproduces.
    with torch.no_grad():
        wide = DyStream(config.replace(context_frames=tokens))
        wide.load_state_dict(model.state_dict())
        wide_out, _ = wide.transformer(motion, audio, anchor_emb)
    assert (wide_out[:, -1] - full[:, -1]).abs().max() > 1e-3


def test_positions_far_into_an_endless_stream_are_as_exact_as_at_its_start() -> None:
    model = random_model()
    transformer, config = model.transformer, model.config
    torch.manual_seed(4)
    motion = torch.randn(2, 30, config.motion_dim)
    audio = torch.randn(2, 30, config.n_embd)
    anchor = torch.randn(2, 1, config.n_embd)
    with torch.no_grad():
        start, _ = transformer(motion, audio, anchor, first_position=0)
        late, _ = transformer(motion, audio, anchor, first_position=25 * 3600 * 24 * 30)  # a month at 25 fps
    torch.testing.assert_close(late, start, atol=1e-5, rtol=0)


def test_skipping_zero_weight_branches_is_exact() -> None:
    model = random_model()
    self_audio, partner = (torch.from_numpy(c) for c in clips(1.0))
    anchor = model.motion_mean.clone()
    skipped = Guidance.from_weights(0.5, 0.5, 0.0, 1.0)
    assert skipped.names == ('uncond', 'self', 'partner', 'all')
    coefficients = {'uncond': -1.0, 'anchor': 0.0, 'self': 0.5, 'partner': 0.5, 'all': 1.0}
    every = Guidance(tuple(BRANCHES), tuple(BRANCHES.values()), tuple(coefficients[n] for n in BRANCHES))
    results = [model.generate(self_audio, partner, anchor, torch.Generator().manual_seed(0), g)
               for g in (skipped, every)]
    torch.testing.assert_close(results[0], results[1], atol=1e-5, rtol=0)
    only_all = Guidance.from_weights(0.0, 0.0, 0.0, 1.0)
    assert only_all.names == ('all',) and only_all.coefficients == (1.0,)


def test_sigma_schedule_matches_the_paper_scheduler() -> None:
    assert sigma_schedule(5, 0.001) == pytest.approx([1.0, 0.75025, 0.5005, 0.25075, 0.001, 0.0])
    assert sigma_schedule(1, 0.001) == [1.0, 0.0]


def test_seed_repeats_and_reset_restarts_the_stream() -> None:
    self_audio, partner = clips(1.0)
    gen = StreamingGenerator(random_model(), seed=5)
    first = stream(gen, self_audio, partner)
    np.testing.assert_array_equal(stream(gen, self_audio, partner), first)
    gen.reset(seed=6)
    assert np.abs(stream(gen, self_audio, partner) - first).max() > 1e-3
    gen.reset(seed=5)
    np.testing.assert_array_equal(stream(gen, self_audio, partner), first)


def test_anchor_conditions_the_motion() -> None:
    self_audio, partner = clips(1.0)
    gen = StreamingGenerator(random_model(), seed=5, cfg_anchor=1.0)
    base = gen.generate(self_audio, partner)
    gen.reset(anchor=np.full(gen.motion_dim, 2.0, np.float32))
    assert np.abs(gen.generate(self_audio, partner) - base).max() > 1e-3


def test_a_clip_renders_every_frame_that_covers_its_audio() -> None:
    gen = StreamingGenerator(random_model())
    self_audio, partner = clips(1.01)  # 25.25 frames
    assert len(gen.generate(self_audio, partner)) == num_final_frames(gen.config, self_audio.shape[0])
    assert len(list(stream_motion(gen, self_audio, partner))) == 26


def test_step_checks_its_contract() -> None:
    gen = StreamingGenerator(random_model())
    span = frame_end(gen, 0) - gen.input_start(0)
    with pytest.raises(StreamError, match='float32'):
        gen.step(0, np.zeros(span, np.int16), np.zeros(span, np.float32))
    with pytest.raises(StreamError, match=f'must be {span} float32 samples'):
        gen.step(0, np.zeros(span, np.float32), np.zeros(span - 1, np.float32))
    with pytest.raises(StreamError, match='out of order'):
        gen.step(1, np.zeros(span, np.float32), np.zeros(span, np.float32))
    with pytest.raises(StreamError, match='int16'):
        gen.generate(np.zeros(640, np.int16))
    with pytest.raises(StreamError, match='1-D'):
        gen.generate(np.zeros((2, 640), np.float32))
    with pytest.raises(StreamError, match='NaN'):
        gen.generate(np.zeros(640, np.float32), np.full(640, np.nan, np.float32))
    with pytest.raises(ConfigError, match='anchor'):
        gen.reset(anchor=np.zeros(3, np.float32))


def test_config_validation_names_the_problem() -> None:
    with pytest.raises(ConfigError, match='lookahead_ms'):
        ModelConfig(lookahead_ms=15)
    with pytest.raises(ConfigError, match='n_head'):
        ModelConfig(n_embd=100, n_head=3)
    with pytest.raises(ConfigError, match='unknown model config'):
        ModelConfig.preset('huge')
    assert ModelConfig.preset('official').n_embd == 768
    assert ModelConfig.from_dict(ModelConfig.preset('base').to_dict()) == ModelConfig.preset('base')
    assert ModelConfig.from_dict({'cfg_audio': 0.7}).cfg_self == 0.7  # the name in configs written before
