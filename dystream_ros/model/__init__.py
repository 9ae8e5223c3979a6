"""DyStream (arXiv 2512.24408) in plain PyTorch, in streaming form: audio of two voices in, face motion out.

Modules, leaf to root: ``config`` (ModelConfig and the sizes tiny/base/official), ``audio_encoder`` (log-mel and
causal conv encoder with a lookahead delay), ``transformer`` (sliding-window attention with an exact KV cache),
``flow_head`` (AdaLN MLP head), ``sampler`` (Euler + multi-condition CFG), ``dystream`` (the whole model: training
loss, per-frame step, offline generation), ``streaming`` (StreamingGenerator), ``checkpoint`` (safetensors),
``onnx_export`` (ONNX graphs and the ONNX Runtime backend), ``dataset`` and ``train`` (``dystream train``).

Typical use::

    from dystream_ros.model import StreamingGenerator
    gen = StreamingGenerator('model.safetensors', backend='onnx', seed=0)
    gen.push_self(chunk_a); gen.push_partner(chunk_b)
    for frame in gen.pull():
        frame.index, frame.start_sample, frame.motion  # (motion_dim,) raw units
"""
from __future__ import annotations

from dystream_ros.model.checkpoint import DEFAULT_MODEL_PATH, load_default_model, load_model, save_model
from dystream_ros.model.config import PRESETS, ModelConfig
from dystream_ros.model.dystream import DyStream
from dystream_ros.model.sampler import Guidance
from dystream_ros.model.streaming import MotionFrame, StreamingGenerator

__all__ = [
    'DEFAULT_MODEL_PATH',
    'PRESETS',
    'DyStream',
    'Guidance',
    'ModelConfig',
    'MotionFrame',
    'StreamingGenerator',
    'load_default_model',
    'load_model',
    'save_model',
]
