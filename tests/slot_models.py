"""Small hosts with one SeedSlot, for the slot tests."""

from __future__ import annotations

import torch
from torch import nn

from esper_slot import SeedSlot


class CountingSeed(nn.Module):
    """A seed that counts its calls (to prove DORMANT never calls it)."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.inner(x)


class CnnHost(nn.Module):
    def __init__(self, channels=8):
        super().__init__()
        self.stem = nn.Conv2d(3, channels, 3, padding=1)
        self.norm = nn.BatchNorm2d(channels)
        self.slot = SeedSlot(channels, "cnn")
        self.head = nn.Conv2d(channels, 4, 3, padding=1)

    def forward(self, x):
        return self.head(torch.relu(self.slot(self.norm(self.stem(x)))))


class TransformerHost(nn.Module):
    def __init__(self, channels=16):
        super().__init__()
        self.embed = nn.Linear(6, channels)
        self.slot = SeedSlot(channels, "transformer")
        self.head = nn.Linear(channels, 3)

    def forward(self, x):
        return self.head(torch.nn.functional.gelu(self.slot(self.embed(x))))


def cnn_seed(channels=8):
    return nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.GELU())


def transformer_seed(channels=16):
    return nn.Sequential(nn.Linear(channels, channels), nn.Tanh())


def host_and_input(topology, device="cpu"):
    if topology == "cnn":
        return CnnHost().to(device), torch.randn(4, 3, 8, 8, device=device), cnn_seed
    return TransformerHost().to(device), torch.randn(4, 5, 6, device=device), transformer_seed
