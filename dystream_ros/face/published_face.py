"""The published renderer as the node's renderer: a source portrait encoded once, then one frame per motion latent.

The network is :mod:`dystream_ros.face.published_renderer`; this module drives it frame by frame. A frame is
three parts (:class:`RendererParts`): the source portrait's appearance volume and latent (once per portrait), the
warped feature map of a target latent, and its decoding to pixels. :class:`TorchRendererParts` runs them in torch;
:mod:`dystream_ros.runtime.published_onnx` runs the same three on ONNX Runtime.
"""
from __future__ import annotations

from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from dystream_ros.errors import ConfigError, StreamError
from dystream_ros.face.images import check_rgb
from dystream_ros.face.published_renderer import HeadAnimator, PublishedRendererConfig


def image_to_input(image_rgb_u8: np.ndarray, size: int) -> torch.Tensor:
    """App.py's transform (lines 174-178): resize to size x size, then (x / 255 - 0.5) / 0.5 -> (1, 3, size, size).

    The official code resizes a PIL image (bilinear, antialiased, rounded to uint8); here an image of another size
    is resized in float with torch's antialiased bilinear, which differs from PIL by rounding only.
    """
    image = check_rgb(image_rgb_u8, 'source image')
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() / 255.0  # (1, 3, H, W)
    if x.shape[2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode='bilinear', antialias=True, align_corners=False)
    return (x - 0.5) / 0.5


class RendererParts(Protocol):
    """The published renderer's three computations on some backend; float32 tensors on :attr:`device`."""

    config: PublishedRendererConfig
    device: torch.device

    def source(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Portrait (1, 3, 512, 512) in [-1, 1] -> appearance volume (1, 32, 16, 64, 64), motion latent (1, 512)."""

    def segmap(self, flow_from: torch.Tensor, driving: torch.Tensor, appearance: torch.Tensor) -> torch.Tensor:
        """The flow estimator's target from (1, 512) latents, the warp of the appearance -> (1, 256, 64, 64)."""

    def decode(self, seg: torch.Tensor) -> torch.Tensor:
        """The SPADE decoder: (1, 256, h, w) -> (1, 3, 8h, 8w) RGB in [-1, 1]."""


class TorchRendererParts:
    """:class:`RendererParts` of the converted network in torch, on ``device``."""

    def __init__(self, model: HeadAnimator, device: str | torch.device = 'cpu') -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval().requires_grad_(False)
        self.config = model.config

    def source(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Appearance volume and motion latent of the portrait."""
        return self.model.face_encoder(image), self.model.motion_encoder(image)

    def segmap(self, flow_from: torch.Tensor, driving: torch.Tensor, appearance: torch.Tensor) -> torch.Tensor:
        """The warped, projected appearance for ``driving``."""
        target = self.model.flow_estimator(flow_from, driving)
        return self.model.face_generator.warped_segmap(target, appearance)

    def decode(self, seg: torch.Tensor) -> torch.Tensor:
        """RGB in [-1, 1]."""
        return self.model.face_generator.decode(seg)


class PublishedRenderer:
    """Renders motion latents of the published DyStream generator with the published renderer.

    The source image is encoded once (:meth:`set_source`); each frame then costs a flow estimator and a face
    generator forward (:meth:`render_latent`).

    Which latent the flow estimator moves from: the official demo (app.py:401, 569) passes the **first generated
    latent** of the clip as the source, not the image's own latent, so by default (``flow_source='first_latent'``)
    the first latent rendered after :meth:`set_source` (or :meth:`restart_flow_source`) becomes the source for
    that frame and every later one. ``flow_source='image'`` moves from the source image's latent instead
    (:attr:`source_latent`, as in renderer training, head_animator.py:140-143, and the reference golden run).

    Args:
        model: a converted renderer (:func:`dystream_ros.face.published_weights.load_published_model`), run in
            torch, or another backend's :class:`RendererParts`.
        device: torch device for a torch model ('cpu', 'cuda', 'cuda:1').
        flow_source: 'first_latent' (app.py) or 'image'.
    """

    def __init__(self, model: HeadAnimator | RendererParts, device: str | torch.device = 'cpu',
                 flow_source: str = 'first_latent') -> None:
        if flow_source not in ('first_latent', 'image'):
            msg = f"flow_source must be 'first_latent' or 'image', got {flow_source!r}"
            raise ConfigError(msg)
        self.parts = TorchRendererParts(model, device) if isinstance(model, HeadAnimator) else model
        self.device, self.config = self.parts.device, self.parts.config
        self.flow_source = flow_source
        self._appearance: torch.Tensor | None = None  # (1, 32, 16, 64, 64)
        self._source_latent: torch.Tensor | None = None  # (1, 512), the image's
        self._flow_from: torch.Tensor | None = None  # (1, 512), what the flow estimator moves from

    @torch.no_grad()
    def set_source(self, image_rgb_u8: np.ndarray) -> None:
        """Encode the source portrait: (H, W, 3) uint8 RGB, resized to 512 x 512 if needed (a face crop)."""
        x = image_to_input(image_rgb_u8, self.config.image_size).to(self.device)
        self._appearance, self._source_latent = self.parts.source(x)
        self.restart_flow_source()

    def restart_flow_source(self) -> None:
        """Start a new clip: with flow_source='first_latent', the next latent rendered becomes the source."""
        self._flow_from = self._source_latent if self.flow_source == 'image' else None

    @property
    def size(self) -> int:
        """Frames are size x size pixels (512)."""
        return self.config.image_size

    def render(self, motion: np.ndarray) -> np.ndarray:
        """The :class:`~dystream_ros.face.renderers.Renderer` interface: ``motion`` is a published latent."""
        return self.render_latent(motion)

    @property
    def source_latent(self) -> np.ndarray:
        """The source image's motion latent (512,) float32: the generator's reference motion m0."""
        if self._source_latent is None:
            msg = 'set_source() must be called before the source latent exists'
            raise StreamError(msg)
        return self._source_latent[0].float().cpu().numpy()

    @torch.no_grad()
    def render_latent(self, latent: np.ndarray) -> np.ndarray:
        """Render one motion latent (512,) to a (512, 512, 3) uint8 RGB frame."""
        if self._appearance is None:
            msg = 'set_source() must be called before rendering'
            raise StreamError(msg)
        latent = np.asarray(latent, dtype=np.float32)
        if latent.shape != (self.config.latent_dim,) or not np.all(np.isfinite(latent)):
            msg = f'a motion latent must be ({self.config.latent_dim},) and finite, got {latent.shape}'
            raise StreamError(msg)
        driving = torch.from_numpy(latent)[None].to(self.device)
        if self._flow_from is None:
            self._flow_from = driving
        rgb = self.parts.decode(self.parts.segmap(self._flow_from, driving, self._appearance))[0]  # (3, 512, 512)
        # app.py:405-406: clip((x + 1) / 2 * 255), then a truncating cast to uint8
        pixels = ((rgb + 1.0) / 2.0 * 255.0).clamp(0.0, 255.0).to(torch.uint8)
        return pixels.permute(1, 2, 0).cpu().numpy()
