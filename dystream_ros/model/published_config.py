"""The sizes of the published DyStream generator (:mod:`dystream_ros.model.published`), read from the reference
code's configuration or from a converted file's metadata."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dystream_ros.errors import ConfigError
from dystream_ros.model.wav2vec2 import Wav2Vec2Config

if TYPE_CHECKING:
    import os


@dataclass(frozen=True)
class PublishedConfig:
    """Sizes of the published generator. Defaults: the released ``last.ckpt`` (393.9 M parameters)."""

    wav2vec2: Wav2Vec2Config = field(default_factory=Wav2Vec2Config)
    face_dim: int = 512  # motion latent of the renderer's motion encoder
    hidden_size: int = 768  # GPT and head width (the constructor's defaults; the YAML's 512/4/8 are ignored)
    num_layers: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    max_seq_len: int = 1024  # rows of the RoPE and PE tables
    head_layers: int = 6  # hard-coded in OFF-M:387
    window_frames: int = 96  # cbh_window_length: 94 motion frames of context + 2
    num_train_timesteps: int = 1000  # flow-matching time scale: t = 1000 sigma

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads or self.hidden_size % 2:
            msg = f'hidden_size {self.hidden_size} must be even and split evenly into {self.num_heads} heads'
            raise ConfigError(msg)
        if self.context_frames < 1 or self.context_frames > self.max_seq_len:
            msg = f'window_frames {self.window_frames} leaves no context or more than max_seq_len'
            raise ConfigError(msg)

    @property
    def audio_dim(self) -> int:
        """Width of the wav2vec2 features (the constructor's ``audio_dim``)."""
        return self.wav2vec2.hidden_size

    @property
    def context_frames(self) -> int:
        """Motion frames the GPT attends over (``inpainting_length``): 94."""
        return self.window_frames - 2

    def to_json(self) -> str:
        """The config as JSON, for the metadata of a weights file."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> PublishedConfig:
        """Inverse of :meth:`to_json`."""
        try:
            values = json.loads(text)
            w2v = values.pop('wav2vec2')
            for key in ('conv_kernel', 'conv_stride'):
                w2v[key] = tuple(w2v[key])
            return cls(wav2vec2=Wav2Vec2Config(**w2v), **values)
        except (ValueError, KeyError, TypeError) as exc:
            msg = f'not a published-generator config: {exc}'
            raise ConfigError(msg) from None

    @classmethod
    def from_reference(cls, values: dict[str, Any]) -> PublishedConfig:
        """The config of ``official_reference/generator_config.json`` (a parsed dict): constructor kwargs, the
        ``model.wav2vec_layer`` override and the wav2vec2 config it was built with."""
        ctor, w2v, cfg = values['ctor_kwargs'], values['wav2vec2_config'], values['cfg_model_resolved']
        kernels = tuple(w2v['conv_kernel'])
        if len(set(w2v['conv_dim'])) != 1 or w2v['feat_extract_norm'] != 'group' or w2v['do_stable_layer_norm']:
            msg = 'only the base-960h wav2vec2 layout is supported (equal conv_dim, group norm, post-LN)'
            raise ConfigError(msg)
        wav2vec2 = Wav2Vec2Config(
            hidden_size=w2v['hidden_size'], num_heads=w2v['num_attention_heads'],
            intermediate_size=w2v['intermediate_size'], num_layers=cfg['wav2vec_layer'], conv_dim=w2v['conv_dim'][0],
            conv_kernel=kernels, conv_stride=tuple(w2v['conv_stride']),
            pos_conv_kernel=w2v['num_conv_pos_embeddings'], pos_conv_groups=w2v['num_conv_pos_embedding_groups'],
            layer_norm_eps=w2v['layer_norm_eps'])
        if ctor['audio_dim'] != wav2vec2.hidden_size:
            msg = f"audio_dim {ctor['audio_dim']} differs from the wav2vec2 width {wav2vec2.hidden_size}"
            raise ConfigError(msg)
        return cls(wav2vec2=wav2vec2, face_dim=ctor['face_dim'], hidden_size=ctor['hidden_size'],
                   num_layers=ctor['num_layers'], num_heads=ctor['num_heads'], mlp_ratio=ctor['mlp_ratio'],
                   max_seq_len=ctor['max_seq_len'], head_layers=values.get('diffusion_head_num_layers', 6),
                   window_frames=cfg['cbh_window_length'],
                   num_train_timesteps=values['noise_scheduler_kwargs']['num_train_timesteps'])

    @classmethod
    def from_reference_file(cls, path: str | os.PathLike[str]) -> PublishedConfig:
        """:meth:`from_reference` of a ``generator_config.json`` file."""
        with open(path, encoding='utf-8') as f:
            return cls.from_reference(json.load(f))
