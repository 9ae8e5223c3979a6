"""The published DyStream renderer: LIA-3D's "head animator" in eval form, as plain torch.

DyStream (arXiv 2512.24408) renders each 512-d motion latent with a frozen renderer that ships as a Lightning
checkpoint (``epoch=0-step=312000.ckpt``, class ``HeadAnimatorModule``, official head_animator.py:22-158). Four
sub-nets make a frame (official app.py:397-403):

1. ``face_encoder`` (face_encoder.py:12-60): the source image -> a (32, 16, 64, 64) appearance volume, once.
2. ``motion_encoder`` (motion_encoder.py:10-58): an image -> its 512-d motion latent (a StyleGAN2-style
   discriminator trunk).
3. ``flow_estimator`` (flow_estimator.py:12-49): ``target = source + Q fc(driving)``, with Q an orthonormal
   (512, 64) basis: only a 64-d affine image of the driving latent moves the face.
4. ``face_generator`` (face_generator.py:61-199): the target latent -> a 3-D warping field (VASA-1-style blocks
   with adaptive GroupNorm), the appearance volume warped by it, then a SPADE decoder to a 512x512 RGB frame.

The training-only machinery is folded away by :mod:`dystream_ros.face.published_weights` when converting, so the
modules here hold plain weights: equalised-lr scales, spectral norm (from the stored u, v), weight standardisation
and the Direction QR are baked in, and the Blur kernel and the identity grid are constants rebuilt here. Parameter
names follow the official state_dict keys (``weight_orig`` becomes ``weight``, ``direction.weight`` becomes
``direction.basis``), so a converted file maps back to the official one key by key.

Checked against the official code on random weights (``test/test_published_renderer.py``,
``tools/check_published_renderer.py``).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from dystream_ros.errors import ConfigError

FUSED_LEAKY_SLOPE = 0.2  # StyleGAN2's FusedLeakyReLU: leaky_relu(x + b, 0.2) * sqrt(2)
FUSED_LEAKY_GAIN = math.sqrt(2.0)
SPADE_LEAKY_SLOPE = 0.2  # the SPADE blocks' activation and the one before conv_img
PROJECTION_LEAKY_SLOPE = 0.01  # nn.LeakyReLU()'s default, in the projection's SameBlock2d
NORM_EPS = 1e-5  # BatchNorm, GroupNorm and InstanceNorm, all at torch's default
WARP_CODE_SIDE = 4  # the face generator's warp code is 512 x 4 x 4 (hard-coded, face_generator.py:62-131)
SPADE_HIDDEN = 128
# The face generator's 3-D blocks: (in, out) channels and the upsampling (depth, height, width) before each.
WARP_BLOCKS = ((512, 256, (2, 2, 2)), (256, 128, (2, 2, 2)), (128, 64, (1, 2, 2)), (64, 32, (1, 2, 2)))


@dataclass(frozen=True)
class PublishedRendererConfig:
    """The sizes of the published renderer (official configs/head_animator_best_0506.yaml, lines 14-53).

    Only these are free in the official code; the face generator's widths, the (16, 64, 64) warp grid and the
    motion encoder's channels (fixed by ``image_size``) are hard-coded there and here.
    """

    image_size: int = 512  # input and output are image_size x image_size RGB
    latent_dim: int = 512  # the motion latent
    motion_space: int = 64  # the flow estimator's basis: directions the target latent can move in
    block_expansion: int = 64  # face encoder: width of its first block, doubled by each down block
    num_down_blocks: int = 3
    max_features: int = 512
    reshape_channel: int = 32  # appearance volume: channels ...
    reshape_depth: int = 16  # ... and depth; reshape_channel * reshape_depth = max_features
    num_resblocks: int = 6  # face encoder 3-D residual blocks
    group_norm_channel: int = 32  # channels per group of the face generator's adaptive GroupNorm

    def __post_init__(self) -> None:
        if (self.image_size, self.latent_dim, self.max_features) != (512, 512, 512):
            msg = (f'the published face generator is hard-coded for 512 px, a 512-d latent and 512 features, '
                   f'got image_size={self.image_size}, latent_dim={self.latent_dim}, '
                   f'max_features={self.max_features}')
            raise ConfigError(msg)
        if self.reshape_channel * self.reshape_depth != self.max_features:
            msg = f'reshape_channel x reshape_depth must be max_features ({self.max_features})'
            raise ConfigError(msg)
        if self.block_expansion * 2 ** self.num_down_blocks > self.max_features:
            msg = 'the face encoder would widen past max_features'
            raise ConfigError(msg)

    @classmethod
    def from_official(cls, subnet_kwargs: dict[str, dict[str, object]]) -> PublishedRendererConfig:
        """The config from the four sub-nets' constructor kwargs (``renderer_config.json["subnet_kwargs"]``)."""
        fe, me = subnet_kwargs['face_encoder'], subnet_kwargs['motion_encoder']
        fl, fg = subnet_kwargs['flow_estimator'], subnet_kwargs['face_generator']
        if me['size'] != fe['image_size'] or fg['outputsize'] != fe['image_size'] or not fg.get(
                'flag_estimate_occlusion_map', True):
            msg = f'unsupported renderer kwargs: {subnet_kwargs}'
            raise ConfigError(msg)
        return cls(image_size=int(fe['image_size']), latent_dim=int(me['latent_dim']),
                   motion_space=int(fl['motion_space']), block_expansion=int(fe['block_expansion']),
                   num_down_blocks=int(fe['num_down_blocks']), max_features=int(fe['max_features']),
                   reshape_channel=int(fe['reshape_channel']), reshape_depth=int(fe['reshape_depth']),
                   num_resblocks=int(fe['num_resblocks']), group_norm_channel=int(fg['group_norm_channel']))

    def to_json(self) -> str:
        """The config as JSON (stored in the converted file's metadata)."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> PublishedRendererConfig:
        """Inverse of :meth:`to_json`."""
        return cls(**json.loads(text))

    @property
    def motion_channels(self) -> list[int]:
        """The motion encoder's widths from image_size px down to 4 px: [32, 64, 128, 256, 512, 512, 512, 512]."""
        width = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64, 512: 32}
        return [width[self.image_size >> i] for i in range(int(math.log2(self.image_size)) - 1)]


# --- motion encoder (LIA's StyleGAN2 trunk, LIA/modules.py) ---
class FusedLeakyReLU(nn.Module):
    """A bias then leaky_relu(0.2) times sqrt(2); the bias is this module's, not the conv's."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> the same shape."""
        return F.leaky_relu(x + self.bias, FUSED_LEAKY_SLOPE) * FUSED_LEAKY_GAIN


def blur_kernel() -> torch.Tensor:
    """StyleGAN2's make_kernel([1, 3, 3, 1]): the normalised outer product, (4, 4)."""
    taps = torch.tensor([1.0, 3.0, 3.0, 1.0])
    return torch.outer(taps, taps) / 64.0


class Blur(nn.Module):
    """StyleGAN2's anti-aliasing FIR, outer([1, 3, 3, 1]) / 64, per channel, after zero padding ``pad``."""

    def __init__(self, pad: int) -> None:
        super().__init__()
        self.pad = pad
        self.register_buffer('kernel', blur_kernel(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H + 2 pad - 3, W + 2 pad - 3)."""
        channels = x.shape[1]
        x = F.pad(x, [self.pad] * 4)
        # symmetric kernel: correlation = upfirdn2d's convolution
        return F.conv2d(x, self.kernel[None, None].expand(channels, 1, 4, 4), groups=channels)


def conv_layer(in_channels: int, out_channels: int, kernel_size: int, downsample: bool = False,
               activate: bool = True) -> nn.Sequential:
    """LIA's ConvLayer: [Blur], EqualConv2d (its scale baked in), [FusedLeakyReLU]; official key layout."""
    layers: list[nn.Module] = []
    if downsample:  # blur padding (4 - 2 + k - 1) split evenly, then a stride-2 unpadded conv
        layers.append(Blur(pad=(2 + kernel_size - 1) // 2))
        layers.append(nn.Conv2d(in_channels, out_channels, kernel_size, stride=2, bias=False))
    else:
        layers.append(nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False))
    if activate:
        layers.append(FusedLeakyReLU(out_channels))
    return nn.Sequential(*layers)


class MotionResBlock(nn.Module):
    """A StyleGAN2 discriminator block: two convs (the second halves the size) plus a blurred 1x1 skip, / sqrt(2)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = conv_layer(in_channels, in_channels, 3)
        self.conv2 = conv_layer(in_channels, out_channels, 3, downsample=True)
        self.skip = conv_layer(in_channels, out_channels, 1, downsample=True, activate=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, H, W) -> (B, C_out, H / 2, W / 2)."""
        return (self.conv2(self.conv1(x)) + self.skip(x)) / math.sqrt(2.0)


class MotionEncoder(nn.Module):
    """(B, 3, 512, 512) image in [-1, 1] -> (B, 512) motion latent: a 1x1 conv, 7 blocks to 4 px, a 4x4 conv.

    The official forward first resizes any input to 512 px (motion_encoder.py:44-45); :func:`image_to_input` does.
    """

    def __init__(self, config: PublishedRendererConfig) -> None:
        super().__init__()
        channels = config.motion_channels
        blocks: list[nn.Module] = [conv_layer(3, channels[0], 1)]
        blocks += [MotionResBlock(a, b) for a, b in zip(channels[:-1], channels[1:])]
        blocks.append(nn.Conv2d(channels[-1], config.latent_dim, 4, bias=False))  # 4 px -> 1 px
        self.convs = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, 512, 512) -> (B, 512); the official module also returns the pyramid, which nothing here uses."""
        return self.convs(x).flatten(1)  # (B, 512)


# --- flow estimator ---
class FlowEstimator(nn.Module):
    """target = source + Q fc(driving): fc is 5 affine layers (no activation) to the motion space, Q is fixed."""

    def __init__(self, config: PublishedRendererConfig) -> None:
        super().__init__()
        widths = [config.latent_dim] * 5 + [config.motion_space]
        self.fc = nn.Sequential(*[nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:])])
        self.direction = nn.Module()
        # Q of qr(direction.weight + 1e-8), reduced mode, made once by the converter: (latent_dim, motion_space)
        self.direction.register_buffer('basis', torch.zeros(config.latent_dim, config.motion_space))

    def forward(self, source: torch.Tensor, driving: torch.Tensor) -> torch.Tensor:
        """(B, 512) source and driving latents -> (B, 512) target latent."""
        return source + self.fc(driving) @ self.direction.basis.T


# --- face encoder (LivePortrait's appearance feature extractor) ---
class SameBlock2d(nn.Module):
    """Conv, BatchNorm (eval), then ReLU or leaky ReLU."""

    def __init__(self, in_channels: int, out_channels: int, leaky_slope: float | None = None) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm = nn.BatchNorm2d(out_channels, eps=NORM_EPS)
        self.leaky_slope = leaky_slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, H, W) -> (B, C_out, H, W)."""
        x = self.norm(self.conv(x))
        return F.relu(x) if self.leaky_slope is None else F.leaky_relu(x, self.leaky_slope)


class DownBlock2d(SameBlock2d):
    """SameBlock2d (ReLU) then 2x2 average pooling."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, H, W) -> (B, C_out, H / 2, W / 2)."""
        return F.avg_pool2d(super().forward(x), 2)


class ResBlock3d(nn.Module):
    """Pre-activation 3-D residual block: (BatchNorm, ReLU, conv) twice, plus the input."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv3d(channels, channels, 3, padding=1)
        self.norm1 = nn.BatchNorm3d(channels, eps=NORM_EPS)
        self.norm2 = nn.BatchNorm3d(channels, eps=NORM_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, D, H, W) -> the same shape."""
        out = self.conv1(F.relu(self.norm1(x)))
        return x + self.conv2(F.relu(self.norm2(out)))


class FaceEncoder(nn.Module):
    """(B, 3, 512, 512) image in [-1, 1] -> (B, 32, 16, 64, 64) appearance volume.

    The official forward first resizes any input to 512 px (face_encoder.py:48-49); :func:`image_to_input` does.
    """

    def __init__(self, config: PublishedRendererConfig) -> None:
        super().__init__()
        self.config = config
        width = config.block_expansion
        self.first = SameBlock2d(3, width)
        widths = [min(config.max_features, width * 2 ** i) for i in range(config.num_down_blocks + 1)]
        self.down_blocks = nn.ModuleList([DownBlock2d(a, b) for a, b in zip(widths[:-1], widths[1:])])
        self.second = nn.Conv2d(widths[-1], config.max_features, 1)
        self.resblocks_3d = nn.Sequential()
        for i in range(config.num_resblocks):
            self.resblocks_3d.add_module(f'3dr{i}', ResBlock3d(config.reshape_channel))

    def volume(self, x: torch.Tensor) -> torch.Tensor:
        """The 2-D trunk, viewed as a volume: (B, 3, H, W) -> (B, 32, 16, H / 8, W / 8)."""
        x = self.first(x)
        for block in self.down_blocks:
            x = block(x)
        x = self.second(x)
        batch, _, height, width = x.shape
        return x.view(batch, self.config.reshape_channel, self.config.reshape_depth, height, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, 512, 512) -> (B, 32, 16, 64, 64)."""
        return self.resblocks_3d(self.volume(x))


# --- face generator: warping branch (VASA-1-style blocks, VASA1/building_blocks.py) ---
class AdaptiveGroupNorm(nn.Module):
    """GroupNorm without affine, then x * scale + shift with (scale, shift) = u @ cond @ v per channel."""

    def __init__(self, channels: int, latent_dim: int, cond_len: int, group_channels: int) -> None:
        super().__init__()
        self.groups = channels // group_channels
        self.u = nn.Parameter(torch.zeros(channels, latent_dim))
        self.v = nn.Parameter(torch.zeros(cond_len, 2))

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """X (B, C, D, H, W), cond (B, 512, 16)."""
        scale, shift = (self.u[None] @ cond @ self.v[None]).unbind(-1)  # (B, C) each
        x = F.group_norm(x, self.groups, eps=NORM_EPS)
        return x * scale[..., None, None, None] + shift[..., None, None, None]


class ResBlock3dStar(nn.Module):
    """Conditioned 3-D residual block: (adaptive GN, ReLU, conv) twice plus a 3x3x3 skip conv; no biases.

    conv1 was a weight-standardised conv (WSConv3d); the converter stores its standardised weight.
    """

    def __init__(self, in_channels: int, out_channels: int, config: PublishedRendererConfig) -> None:
        super().__init__()
        cond_len = WARP_CODE_SIDE * WARP_CODE_SIDE
        self.skip_layer = nn.Conv3d(in_channels, out_channels, 3, padding=1, bias=False)
        self.agn1 = AdaptiveGroupNorm(in_channels, config.latent_dim, cond_len, config.group_norm_channel)
        self.conv1 = nn.Conv3d(in_channels, out_channels, 3, padding=1, bias=False)
        self.agn2 = AdaptiveGroupNorm(out_channels, config.latent_dim, cond_len, config.group_norm_channel)
        self.conv2 = nn.Conv3d(out_channels, out_channels, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """X (B, C_in, D, H, W), cond (B, 512, 16) -> (B, C_out, D, H, W)."""
        out = self.conv1(F.relu(self.agn1(x, cond)))
        out = self.conv2(F.relu(self.agn2(out, cond)))
        return out + self.skip_layer(x)


# --- face generator: SPADE decoder (SPADE / LivePortrait's SPADEDecoder) ---
class Spade(nn.Module):
    """Instance norm (no affine) modulated by the segmap: x_hat * (1 + gamma) + beta."""

    def __init__(self, channels: int, label_channels: int) -> None:
        super().__init__()
        self.mlp_shared = nn.Sequential(nn.Conv2d(label_channels, SPADE_HIDDEN, 3, padding=1), nn.ReLU())
        self.mlp_gamma = nn.Conv2d(SPADE_HIDDEN, channels, 3, padding=1)
        self.mlp_beta = nn.Conv2d(SPADE_HIDDEN, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        """X (B, C, H, W), seg (B, 256, h, w), resized to (H, W) nearest -> (B, C, H, W)."""
        seg = F.interpolate(seg, size=x.shape[2:], mode='nearest')
        hidden = self.mlp_shared(seg)
        return F.instance_norm(x, eps=NORM_EPS) * (1 + self.mlp_gamma(hidden)) + self.mlp_beta(hidden)


class SpadeResBlock(nn.Module):
    """SPADE residual block; its convs were spectral-normalised, the converter stores weight_orig / sigma."""

    def __init__(self, in_channels: int, out_channels: int, label_channels: int) -> None:
        super().__init__()
        middle = min(in_channels, out_channels)
        self.conv_0 = nn.Conv2d(in_channels, middle, 3, padding=1)
        self.conv_1 = nn.Conv2d(middle, out_channels, 3, padding=1)
        self.norm_0 = Spade(in_channels, label_channels)
        self.norm_1 = Spade(middle, label_channels)
        self.learned_shortcut = in_channels != out_channels
        if self.learned_shortcut:
            self.conv_s = nn.Conv2d(in_channels, out_channels, 1, bias=False)
            self.norm_s = Spade(in_channels, label_channels)

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        """X (B, C_in, H, W), seg (B, 256, h, w) -> (B, C_out, H, W)."""
        skip = self.conv_s(self.norm_s(x, seg)) if self.learned_shortcut else x
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, seg), SPADE_LEAKY_SLOPE))
        dx = self.conv_1(F.leaky_relu(self.norm_1(dx, seg), SPADE_LEAKY_SLOPE))
        return skip + dx


def identity_grid(depth: int, height: int, width: int) -> torch.Tensor:
    """(D, H, W, 3) sampling grid of the identity warp for grid_sample: (x, y, z) in [-1, 1]."""
    axes = [torch.linspace(-1.0, 1.0, n) for n in (depth, height, width)]
    z, y, x = torch.meshgrid(*axes, indexing='ij')
    return torch.stack([x, y, z], dim=-1)


class FaceGenerator(nn.Module):
    """(B, 512) target latent and (B, 32, 16, 64, 64) appearance volume -> (B, 3, 512, 512) RGB in [-1, 1]."""

    def __init__(self, config: PublishedRendererConfig) -> None:
        super().__init__()
        latent, side = config.latent_dim, WARP_CODE_SIDE
        self.extend_layer = nn.Linear(latent, latent * side * side, bias=False)
        self.conv1 = nn.Conv2d(latent, latent * side, 1, bias=False)
        for i, (a, b, _) in enumerate(WARP_BLOCKS, start=1):
            self.add_module(f'resblock{i}', ResBlock3dStar(a, b, config))
        channels = config.reshape_channel
        self.gn = nn.GroupNorm(channels // config.group_norm_channel, channels, eps=NORM_EPS)
        self.conv2 = nn.Conv3d(channels, 3, 3, padding=1, bias=False)
        flat = config.reshape_channel * config.reshape_depth  # 512
        self.occlusion = nn.Conv2d(flat, 1, 7, padding=3)
        # (B, 32, 16, H, W) -> (B, 256, H, W): index 0 is the official ReshapeTo2D
        self.projection = nn.Sequential(nn.Flatten(1, 2), SameBlock2d(flat, 256, PROJECTION_LEAKY_SLOPE),
                                        nn.Conv2d(256, 256, 1))
        self.fc = nn.Conv2d(256, 512, 3, padding=1)
        for i in range(6):
            self.add_module(f'G_middle_{i}', SpadeResBlock(512, 512, 256))
        self.up_0 = SpadeResBlock(512, 256, 256)
        self.up_1 = SpadeResBlock(256, 64, 256)
        self.conv_img = nn.Sequential(nn.Conv2d(64, 3 * 4, 3, padding=1), nn.PixelShuffle(2))
        # a constant of the official module, not in its state_dict
        self.register_buffer('identity_grid', identity_grid(config.reshape_depth, 64, 64), persistent=False)

    def condition(self, target: torch.Tensor) -> torch.Tensor:
        """The warp code: (B, 512) -> (B, 8192); viewed (B, 512, 16) it conditions every 3-D block."""
        return self.extend_layer(target)

    def warp_volume(self, code: torch.Tensor) -> torch.Tensor:
        """The warp code (B, 8192) -> the last 3-D block's output (B, 32, 16, 64, 64)."""
        batch, latent = code.shape[0], self.extend_layer.in_features
        cond = code.view(batch, latent, -1)  # (B, 512, 16)
        x = self.conv1(code.view(batch, latent, WARP_CODE_SIDE, WARP_CODE_SIDE))  # (B, 2048, 4, 4)
        x = x.view(batch, latent, WARP_CODE_SIDE, WARP_CODE_SIDE, WARP_CODE_SIDE)  # (B, 512, 4, 4, 4)
        for i, (_, _, factor) in enumerate(WARP_BLOCKS, start=1):
            x = F.interpolate(x, scale_factor=factor, mode='nearest')
            x = getattr(self, f'resblock{i}')(x, cond)
        return x

    def deltas(self, volume: torch.Tensor) -> torch.Tensor:
        """(B, 32, D, H, W) -> (B, D, H, W, 3) offsets of the warp, in [-1, 1]."""
        return torch.tanh(self.conv2(F.relu(self.gn(volume)))).permute(0, 2, 3, 4, 1)

    def segmap(self, warped: torch.Tensor) -> torch.Tensor:
        """Warped volume (B, 32, 16, H, W) -> (B, 256, H, W): projected features times the visibility."""
        return self.projection(warped) * torch.sigmoid(self.occlusion(warped.flatten(1, 2)))

    def decode(self, seg: torch.Tensor) -> torch.Tensor:
        """SPADE decoder: (B, 256, h, w) segmap -> (B, 3, 8h, 8w) RGB in [-1, 1]."""
        x = self.fc(seg)
        for i in range(6):
            x = getattr(self, f'G_middle_{i}')(x, seg)
        x = self.up_0(F.interpolate(x, scale_factor=2, mode='nearest'), seg)
        x = self.up_1(F.interpolate(x, scale_factor=2, mode='nearest'), seg)
        return torch.tanh(self.conv_img(F.leaky_relu(x, SPADE_LEAKY_SLOPE)))

    def warped_segmap(self, target: torch.Tensor, appearance: torch.Tensor) -> torch.Tensor:
        """Target latent (B, 512), appearance volume (B, 32, 16, 64, 64) -> the decoder's input (B, 256, 64, 64)."""
        field = self.identity_grid + self.deltas(self.warp_volume(self.condition(target)))  # (B, 16, 64, 64, 3)
        warped = F.grid_sample(appearance, field, mode='bilinear', padding_mode='zeros', align_corners=False)
        return self.segmap(warped)

    def forward(self, target: torch.Tensor, appearance: torch.Tensor) -> torch.Tensor:
        """Target latent (B, 512), appearance volume (B, 32, 16, 64, 64) -> (B, 3, 512, 512) in [-1, 1]."""
        return self.decode(self.warped_segmap(target, appearance))


class HeadAnimator(nn.Module):
    """The four sub-nets under the official attribute names (head_animator.py:87-90)."""

    def __init__(self, config: PublishedRendererConfig) -> None:
        super().__init__()
        self.config = config
        self.motion_encoder = MotionEncoder(config)
        self.flow_estimator = FlowEstimator(config)
        self.face_generator = FaceGenerator(config)
        self.face_encoder = FaceEncoder(config)

    def rebuild_constants(self) -> None:
        """Remake the constant buffers (Blur kernels, identity grid) on the CPU, e.g. after a meta-device build."""
        for module in self.modules():
            if isinstance(module, Blur):
                module.kernel = blur_kernel()
        self.face_generator.identity_grid = identity_grid(self.config.reshape_depth, 64, 64)
