"""The default gate network for BlendMode.GATE: a per-sample gate in [0, 1] from the seed's
input."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class DefaultGate(nn.Module):
    """mean-pool the features per sample, then Linear(channels, 1) and a sigmoid.

    Input: cnn [B, C, H, W] (pooled over H, W) or transformer [B, T, C] (pooled over T).
    Output: [B, 1, ..., 1] with the input's number of dims, in the input's dtype, values in [0, 1].
    Zero-initialised, so every sample starts at gate 0.5 and learns from there.
    """

    def __init__(self, channels: int, topology: str):
        super().__init__()
        self.channel_dim = 1 if topology == "cnn" else -1
        self.proj = nn.Linear(channels, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, features: Tensor) -> Tensor:
        channels_last = features.movedim(self.channel_dim, -1)
        pooled = channels_last.reshape(features.shape[0], -1, channels_last.shape[-1]).mean(1)
        gate = torch.sigmoid(self.proj(pooled))  # [B, 1]
        return gate.reshape((features.shape[0],) + (1,) * (features.dim() - 1))
