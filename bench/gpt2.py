"""A GPT-2 in the shape of Hugging Face's GPT2Model (pre-norm blocks: fused qkv projection,
causal scaled-dot-product attention, a 4x GELU(tanh) MLP), with a SeedSlot after every block's
MLP, for the lifecycle-compile benchmark. Written out here so the benchmark needs nothing beyond
torch."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from esper_slot import SeedSlot


class Gpt2Block(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.ln_1 = nn.LayerNorm(width)
        self.c_attn = nn.Linear(width, 3 * width)
        self.c_proj = nn.Linear(width, width)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            nn.Linear(width, 4 * width), nn.GELU(approximate="tanh"), nn.Linear(4 * width, width)
        )
        self.slot = SeedSlot(width, "transformer")

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(c, dim=2)
        q, k, v = (z.view(b, t, self.heads, c // self.heads).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.c_proj(y.transpose(1, 2).reshape(b, t, c))
        return x + self.slot(self.mlp(self.ln_2(x)))


class Gpt2(nn.Module):
    """Token and position embeddings, ``blocks`` Gpt2Blocks, a final LayerNorm and a tied
    LM head."""

    def __init__(
        self, blocks: int = 12, width: int = 64, heads: int = 4, vocab: int = 512, context: int = 64
    ):
        super().__init__()
        self.wte = nn.Embedding(vocab, width)
        self.wpe = nn.Embedding(context, width)
        self.h = nn.ModuleList(Gpt2Block(width, heads) for _ in range(blocks))
        self.ln_f = nn.LayerNorm(width)

    @property
    def slots(self) -> list[SeedSlot]:
        return [block.slot for block in self.h]

    def forward(self, idx):
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1], device=idx.device))
        for block in self.h:
            x = block(x)
        return self.ln_f(x) @ self.wte.weight.t()


def lora_seed(width: int, rank: int = 8) -> nn.Module:
    """A low-rank seed, zero-initialised up-projection (function-preserving at alpha 1)."""
    up = nn.Linear(rank, width, bias=False)
    nn.init.zeros_(up.weight)
    return nn.Sequential(nn.Linear(width, rank, bias=False), up)


def mlp_seed(width: int) -> nn.Module:
    return nn.Sequential(
        nn.Linear(width, width), nn.GELU(approximate="tanh"), nn.Linear(width, width)
    )
