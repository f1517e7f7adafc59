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


class MultiSlotCnn(nn.Module):
    """A small CNN with a slot after each of ``n_slots`` conv blocks (BatchNorm included, so
    train and eval modes compile different graphs, as in real hosts)."""

    def __init__(self, n_slots=3, channels=8):
        super().__init__()
        self.stem = nn.Conv2d(3, channels, 3, padding=1)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.BatchNorm2d(channels))
            for _ in range(n_slots)
        )
        self.slots = nn.ModuleList(SeedSlot(channels, "cnn") for _ in range(n_slots))
        self.head = nn.Linear(channels, 4)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        for block, slot in zip(self.blocks, self.slots):
            x = torch.relu(slot(block(x)))
        return self.head(x.mean((2, 3)))


class TinyGptBlock(nn.Module):
    """A GPT-2 block (pre-norm causal self-attention and MLP) with a slot on its output."""

    def __init__(self, channels, heads=2):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(channels), nn.LayerNorm(channels)
        self.attn = nn.MultiheadAttention(channels, heads, batch_first=True)
        self.mlp = nn.Sequential(
            nn.Linear(channels, 4 * channels), nn.GELU(), nn.Linear(4 * channels, channels)
        )
        self.slot = SeedSlot(channels, "transformer")

    def forward(self, x):
        h = self.ln1(x)
        causal = torch.ones(x.shape[1], x.shape[1], dtype=torch.bool, device=x.device).triu(1)
        x = x + self.attn(h, h, h, attn_mask=causal, need_weights=False)[0]
        return self.slot(x + self.mlp(self.ln2(x)))


class TinyGpt(nn.Module):
    """A tiny GPT-2: token and position embeddings, ``n_blocks`` blocks with a slot each, and a
    tied LM head."""

    def __init__(self, n_blocks=2, channels=16, vocab=32, context=8):
        super().__init__()
        self.tokens = nn.Embedding(vocab, channels)
        self.positions = nn.Embedding(context, channels)
        self.blocks = nn.ModuleList(TinyGptBlock(channels) for _ in range(n_blocks))
        self.ln = nn.LayerNorm(channels)

    @property
    def slots(self):
        return [block.slot for block in self.blocks]

    def forward(self, idx):
        x = self.tokens(idx) + self.positions(torch.arange(idx.shape[1], device=idx.device))
        for block in self.blocks:
            x = block(x)
        return self.ln(x) @ self.tokens.weight.t()


class MultiSlotMlp(nn.Module):
    """The cheapest host to compile: ``n_slots`` Linear layers over [B, T, C] features, each
    followed by a transformer-topology slot (for tests that compile many structures)."""

    def __init__(self, n_slots=3, channels=4):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(channels, channels) for _ in range(n_slots))
        self.slots = nn.ModuleList(SeedSlot(channels, "transformer") for _ in range(n_slots))

    def forward(self, x):
        for layer, slot in zip(self.layers, self.slots):
            x = torch.tanh(slot(layer(x)))
        return x
