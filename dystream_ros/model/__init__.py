"""DyStream (arXiv 2512.24408) in plain PyTorch: the network only, in the streaming form the paper describes.

Modules, leaf to root: ``config`` (ModelConfig and the sizes tiny/base/official), ``audio_encoder`` (log-mel and
causal conv encoder with a lookahead delay), ``transformer`` (sliding-window attention with an exact KV cache),
``flow_head`` (AdaLN MLP head), ``sampler`` (Euler + multi-condition CFG), ``dystream`` (the whole model: training
loss, per-frame step, offline generation) and ``checkpoint`` (safetensors). It imports nothing of the package but
``units`` and ``errors``; streaming over live audio is :mod:`dystream_ros.runtime`, training
:mod:`dystream_ros.training`.
"""
from __future__ import annotations

from dystream_ros.model.checkpoint import DEFAULT_MODEL_PATH, load_default_model, load_model, save_model
from dystream_ros.model.config import PRESETS, ModelConfig
from dystream_ros.model.dystream import DyStream
from dystream_ros.model.sampler import Guidance

__all__ = [
    'DEFAULT_MODEL_PATH',
    'PRESETS',
    'DyStream',
    'Guidance',
    'ModelConfig',
    'load_default_model',
    'load_model',
    'save_model',
]
