"""esper-lite's CNN seed blueprints (``src/esper/kasmina/blueprints/cnn.py`` at 2016337e).

Each factory ``create_*(dim, **kwargs)`` builds the same module as esper-lite's: the same
attribute names (so the same state_dict keys, in the same order), the same layers built in the
same order (so the same default init from the global RNG), the same zero-init, the same forward,
and esper-lite's ``ValueError`` for a keyword it does not take. ``dim`` is the slot's channel
count; inputs are [B, C, H, W]. esper-lite defines these classes inside its factories; here
they are at module level (same names), so they can be imported and pickled.

Not copied: esper-lite's ``ConvBlock`` (conv-BatchNorm-ReLU), which its hosts use and no
blueprint does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

# GroupNorm heuristic: target 16 channels per group (esper-lite's TARGET_CHANNELS_PER_GROUP).
TARGET_CHANNELS_PER_GROUP: int = 16


def get_num_groups(channels: int, target_group_size: int = TARGET_CHANNELS_PER_GROUP) -> int:
    """esper-lite's GroupNorm group count: the first of 32, 16, 8, 4, 2, 1 that divides
    ``channels`` with at least ``target_group_size`` channels per group, else the first that
    divides it (C=3: 1, 12: 4, 32: 2, 64: 4, 128: 8, 512: 32)."""
    for num_groups in [32, 16, 8, 4, 2, 1]:
        if channels % num_groups == 0 and channels // num_groups >= target_group_size:
            return num_groups
    for num_groups in [32, 16, 8, 4, 2, 1]:
        if channels % num_groups == 0:
            return num_groups
    return 1


def _no_kwargs(name: str, kwargs: dict[str, Any]) -> None:
    if kwargs:
        raise ValueError(f"Unexpected kwargs for cnn/{name}: {sorted(kwargs)}")


class NoopSeed(nn.Module):
    """Identity, no parameters."""

    def __init__(self, channels: int):
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class SeedConvBlock(nn.Module):
    """Conv(3x3, no bias)-GroupNorm-ReLU, default init (not zero)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3):
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False
        )
        self.gn = nn.GroupNorm(get_num_groups(out_channels), out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.gn(self.conv(x)))


class NormSeed(nn.Module):
    """``x + tanh(scale) * (groupnorm(x) - x)``; scale starts at 0 (identity at birth).
    Keys: scale [1], norm.weight [C], norm.bias [C]."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = nn.GroupNorm(num_groups=get_num_groups(channels), num_channels=channels)
        self.scale = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.tanh(self.scale) * (self.norm(x) - x)


class AttentionSeed(nn.Module):
    """Squeeze-and-excitation: ``x * sigmoid(fc(avgpool(x)))``, multiplicative, no residual.
    ``fc.2`` starts at weight 0, bias 3.0: every channel scaled by sigmoid(3) ~ 0.9526 at birth
    (not identity). Keys: fc.0.weight [r, C], fc.2.weight [C, r], fc.2.bias [C],
    r = max(1, C // reduction)."""

    def __init__(self, channels: int, reduction: int):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        reduced = max(1, channels // reduction)
        squeeze = nn.Linear(channels, reduced, bias=False)
        excite = nn.Linear(reduced, channels, bias=True)  # built second, as in esper-lite
        self.fc = nn.Sequential(squeeze, nn.ReLU(inplace=True), excite, nn.Sigmoid())
        nn.init.zeros_(excite.weight)
        nn.init.constant_(excite.bias, 3.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, _, _ = x.size()
        y = self.avg_pool(x).reshape(b, c)
        y = self.fc(y).reshape(b, c, 1, 1)
        return x * y.expand_as(x)


class DepthwiseSeed(nn.Module):
    """``x + relu(gn(pointwise(depthwise(x))))``, default init (not identity at birth)."""

    def __init__(self, channels: int):
        super().__init__()
        self.depthwise = nn.Conv2d(
            channels, channels, kernel_size=3, padding=1, groups=channels, bias=False
        )
        self.pointwise = nn.Conv2d(channels, channels, kernel_size=1, bias=False)
        self.gn = nn.GroupNorm(get_num_groups(channels), channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x
        x = self.depthwise(x)
        x = self.pointwise(x)
        x = self.gn(x)
        return residual + F.relu(x)


class BottleneckSeed(nn.Module):
    """``x + gn(up(relu(conv3x3(relu(down(x))))))`` through b = max(8, C // reduction)
    channels; ``up`` starts at 0 (identity at birth)."""

    def __init__(self, channels: int, reduction: int):
        super().__init__()
        bottleneck_dim = max(8, channels // reduction)
        self.down = nn.Conv2d(channels, bottleneck_dim, kernel_size=1, bias=False)
        self.conv = nn.Conv2d(bottleneck_dim, bottleneck_dim, kernel_size=3, padding=1, bias=False)
        self.up = nn.Conv2d(bottleneck_dim, channels, kernel_size=1, bias=False)
        self.gn = nn.GroupNorm(get_num_groups(channels), channels)
        nn.init.zeros_(self.up.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x
        x = F.relu(self.down(x))
        x = F.relu(self.conv(x))
        x = self.gn(self.up(x))
        return residual + x


class ConvSmallSeed(nn.Module):
    """``x + relu(gn(conv1x1(x)))``; the conv starts at 0 (identity at birth)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=1, bias=False)
        self.gn = nn.GroupNorm(get_num_groups(channels), channels)
        nn.init.zeros_(self.conv.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + F.relu(self.gn(self.conv(x)))


class ConvLightSeed(nn.Module):
    """``x + SeedConvBlock(x)``, default init (not identity at birth)."""

    def __init__(self, channels: int):
        super().__init__()
        self.enhance = SeedConvBlock(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.enhance(x)


class ConvHeavySeed(nn.Module):
    """``x + SeedConvBlock(SeedConvBlock(x))``, default init (not identity at birth)."""

    def __init__(self, channels: int):
        super().__init__()
        self.enhance = nn.Sequential(
            SeedConvBlock(channels, channels),
            SeedConvBlock(channels, channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.enhance(x)


def create_noop_seed(dim: int, **kwargs: Any) -> nn.Module:
    _no_kwargs("noop", kwargs)
    return NoopSeed(dim)


def create_norm_seed(dim: int, **kwargs: Any) -> nn.Module:
    _no_kwargs("norm", kwargs)
    return NormSeed(dim)


def create_attention_seed(dim: int, reduction: int = 4, **kwargs: Any) -> nn.Module:
    _no_kwargs("attention", kwargs)
    return AttentionSeed(dim, reduction)


def create_depthwise_seed(dim: int, **kwargs: Any) -> nn.Module:
    _no_kwargs("depthwise", kwargs)
    return DepthwiseSeed(dim)


def create_bottleneck_seed(dim: int, reduction: int = 4, **kwargs: Any) -> nn.Module:
    _no_kwargs("bottleneck", kwargs)
    return BottleneckSeed(dim, reduction)


def create_conv_small_seed(dim: int, **kwargs: Any) -> nn.Module:
    _no_kwargs("conv_small", kwargs)
    return ConvSmallSeed(dim)


def create_conv_light_seed(dim: int, **kwargs: Any) -> nn.Module:
    _no_kwargs("conv_light", kwargs)
    return ConvLightSeed(dim)


def create_conv_heavy_seed(dim: int, **kwargs: Any) -> nn.Module:
    _no_kwargs("conv_heavy", kwargs)
    return ConvHeavySeed(dim)


# name -> factory(dim, **kwargs), in esper-lite's registration order
BLUEPRINTS: dict[str, Callable[..., nn.Module]] = {
    "noop": create_noop_seed,
    "norm": create_norm_seed,
    "attention": create_attention_seed,
    "depthwise": create_depthwise_seed,
    "bottleneck": create_bottleneck_seed,
    "conv_small": create_conv_small_seed,
    "conv_light": create_conv_light_seed,
    "conv_heavy": create_conv_heavy_seed,
}
