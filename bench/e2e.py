"""End to end: one training step (forward, backward, SGD step) of a small CNN and a small
transformer block whose slots are in BLENDING: our SeedSlot vs the same model with a slot
running esper-lite's eager formulas, each eager and torch.compile'd."""

from __future__ import annotations

import torch
from torch import nn

from esper_slot import BlendMode, SeedSlot, Stage


class FormulaSlot(SeedSlot):
    """SeedSlot's forward written as esper-lite's eager formulas (the baseline): its STE
    ``h + (s - s.detach())`` in TRAINING, the blend formulas after."""

    def forward(self, host):
        seed_input = host.detach() if self.isolate_gradients else host
        s = self.seed(seed_input)
        if self.stage == Stage.TRAINING:
            return host + (s - s.detach())
        a = self.alpha.clamp(0, 1).to(host.dtype)
        if self.blend_mode == BlendMode.ADD:
            return torch.lerp(host, s, a)
        if self.blend_mode == BlendMode.MULTIPLY:
            return host * (1 + a * torch.tanh(s - seed_input))
        return torch.lerp(host, s, (a * self.gate(seed_input)).clamp(0, 1).to(host.dtype))


class Cnn(nn.Module):
    def __init__(self, slot_cls, channels, classes=10):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, channels, 3, padding=1), nn.BatchNorm2d(channels), nn.ReLU()
        )
        self.block1 = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1), nn.BatchNorm2d(channels)
        )
        self.slot1 = slot_cls(channels, "cnn")
        self.block2 = nn.Sequential(
            nn.ReLU(), nn.Conv2d(channels, channels, 3, padding=1), nn.BatchNorm2d(channels)
        )
        self.slot2 = slot_cls(channels, "cnn")
        self.head = nn.Sequential(
            nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, classes)
        )

    def forward(self, x):
        return self.head(self.slot2(self.block2(self.slot1(self.block1(self.stem(x))))))

    def grow(self):
        for slot in (self.slot1, self.slot2):
            c = slot.channels
            slot.germinate(
                nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.GELU()), blend=BlendMode.ADD
            )


class TransformerBlock(nn.Module):
    def __init__(self, slot_cls, dim, heads=4, classes=10):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.slot_attn = slot_cls(dim, "transformer")
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        self.slot_mlp = slot_cls(dim, "transformer")
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        h = self.norm1(x)
        x = x + self.slot_attn(self.attn(h, h, h, need_weights=False)[0])
        x = x + self.slot_mlp(self.mlp(self.norm2(x)))
        return self.head(x.mean(1))

    def grow(self):
        d = self.slot_attn.channels
        self.slot_attn.germinate(nn.Sequential(nn.Linear(d, d), nn.GELU()), blend=BlendMode.GATE)
        self.slot_mlp.germinate(nn.Sequential(nn.Linear(d, d), nn.Tanh()), blend=BlendMode.MULTIPLY)


# Model sizes: (cnn channels, cnn batch, cnn image side), (transformer dim, batch, sequence).
# "small": CPU; "big": the GPU default; "realistic": a ResNet-style stage of 256 channels at
# 56x56 with batch 64, and a transformer block of dim 1024 over 2048 tokens (GPU only).
SIZES = {
    "small": ((16, 8, 16), (64, 4, 32)),
    "big": ((64, 64, 32), (256, 32, 128)),
    "realistic": ((256, 64, 56), (1024, 4, 2048)),
}


def build(
    name: str, slot_cls, device, big: bool = False, stage: str = "BLENDING", size: str | None = None
):
    """The model (slots grown, in ``stage``), its input and labels. ``size`` is a key of
    SIZES; without it, "big" if ``big`` else "small"."""
    torch.manual_seed(0)
    (channels, cnn_batch, side), (dim, tf_batch, tokens) = SIZES[
        size or ("big" if big else "small")
    ]
    if name == "cnn":
        model = Cnn(slot_cls, channels)
        x = torch.randn(cnn_batch, 3, side, side)
    else:
        model = TransformerBlock(slot_cls, dim, heads=max(4, dim // 64))
        x = torch.randn(tf_batch, tokens, dim)
    model.grow()
    for slot in (m for m in model.modules() if isinstance(m, SeedSlot)):
        if stage == "TRAINING":
            continue
        slot.start_blending(100)
        for _ in range(30):
            slot.step()
    model = model.to(device)
    if name == "cnn" and device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
        x = x.to(memory_format=torch.channels_last)
    return model, x.to(device), torch.randint(0, 10, (x.shape[0],), device=device)


def training_step(model, x, labels, compiled: bool, device, compile_fn=None):
    """One training step as a closure: ``compile_fn(model)`` (else torch.compile fullgraph when
    ``compiled``, else eager) in bfloat16 autocast on CUDA."""
    forward = (
        compile_fn(model)
        if compile_fn is not None
        else torch.compile(model, fullgraph=True)
        if compiled
        else model
    )
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")

    def step():
        opt.zero_grad(set_to_none=True)
        with autocast:
            loss = nn.functional.cross_entropy(forward(x).float(), labels)
        loss.backward()
        opt.step()

    return step
