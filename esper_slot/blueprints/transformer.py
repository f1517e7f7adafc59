"""esper-lite's transformer seed blueprints (``src/esper/kasmina/blueprints/transformer.py`` at
2016337e).

Each factory ``create_*(dim, **kwargs)`` builds the same module as esper-lite's: the same
attribute names (so the same state_dict keys, in the same order), the same layers built in the
same order (so the same default init from the global RNG), the same zero-init, the same forward,
and esper-lite's ``ValueError`` for a keyword it does not take. ``dim`` is the embedding width;
inputs are [B, T, D]. esper-lite defines these classes inside its factories; here they are at
module level (same names).

Differences from esper-lite, all in ``flex_attention``:

* esper-lite imports FlexAttention at module level, so where it cannot be imported no
  transformer blueprint registers at all. Here only ``flex_attention`` is unavailable: it stays
  a known name, and building it raises ImportError saying why (``FLEX_IMPORT_ERROR``).
* esper-lite builds (and caches) the causal block mask on every call, even when the CPU
  fallback then ignores it, and its cache lookup is ``@torch.compiler.disable``, which breaks a
  ``fullgraph=True`` graph. Here the mask is built only when flex_attention runs: in eager from
  the same LRU cache (8 entries keyed (seq_len, device, dtype), cleared by ``.to()``), and under
  ``torch.compile`` inside the traced graph (no cache), so the seed compiles in one graph.
  Outputs are the same.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint as torch_checkpoint


def _import_flex() -> tuple[Any, ImportError | None]:
    try:
        from torch.nn.attention import flex_attention
    except ImportError as err:  # pragma: no cover - torch < 2.5, or a build without it
        return None, err
    return flex_attention, None


_FLEX, FLEX_IMPORT_ERROR = _import_flex()
FLEX_AVAILABLE: bool = _FLEX is not None


def _no_kwargs(name: str, kwargs: dict[str, Any]) -> None:
    if kwargs:
        raise ValueError(f"Unexpected kwargs for transformer/{name}: {sorted(kwargs)}")


class TransformerNormSeed(nn.Module):
    """``x + tanh(scale) * (layernorm(x) - x)``; scale starts at 0 (identity at birth).
    Keys: scale [1], norm.weight [D], norm.bias [D]."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.scale = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.tanh(self.scale) * (self.norm(x) - x)


class LoRASeed(nn.Module):
    """``x + up(down(x))``, both without bias; ``up`` starts at 0 (identity at birth).
    Keys: down.weight [rank, D], up.weight [D, rank]."""

    def __init__(self, dim: int, rank: int):
        super().__init__()
        self.down = nn.Linear(dim, rank, bias=False)
        self.up = nn.Linear(rank, dim, bias=False)
        nn.init.zeros_(self.up.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.up(self.down(x))


class LoRALargeSeed(LoRASeed):
    """``lora_large``: LoRASeed at rank 32 by default."""


def _heads(
    x: torch.Tensor, qkv: torch.Tensor, n_head: int, head_dim: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    b, t, _ = x.shape
    qkv = qkv.reshape(b, t, 3, n_head, head_dim).permute(2, 0, 3, 1, 4)
    return qkv[0], qkv[1], qkv[2]


class TransformerAttentionSeed(nn.Module):
    """``x + proj(causal_sdpa(qkv(x)))`` over ``n_head`` heads; ``proj`` starts at 0 (identity
    at birth). Keys: qkv.weight [3D, D], qkv.bias [3D], proj.weight [D, D], proj.bias [D]."""

    def __init__(self, dim: int, n_head: int):
        super().__init__()
        self.n_head = n_head
        self.head_dim = dim // n_head
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = _heads(x, self.qkv(x), self.n_head, self.head_dim)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        out = out.transpose(1, 2).reshape(b, t, c)
        return x + self.proj(out)


def _causal(
    b: torch.Tensor, h: torch.Tensor, q_idx: torch.Tensor, kv_idx: torch.Tensor
) -> torch.Tensor:
    return q_idx >= kv_idx


class FlexAttentionSeed(nn.Module):
    """TransformerAttentionSeed's layers and init, attending through FlexAttention with a causal
    block mask; on CPU with grad enabled (FlexAttention has no CPU backward) it falls back to
    causal SDPA, as esper-lite does. On CPU under no_grad it runs flex_attention's unfused
    implementation (torch warns that it is not compiled)."""

    _MAX_CACHE_SIZE = 8  # LRU bound on cached masks (eager only)

    def __init__(self, dim: int, n_head: int):
        super().__init__()
        if _FLEX is None:
            raise ImportError(
                f"the flex_attention blueprint needs torch's FlexAttention "
                f"(torch.nn.attention.flex_attention), which failed to import: "
                f"{FLEX_IMPORT_ERROR}"
            )
        self.n_head = n_head
        self.head_dim = dim // n_head
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)
        # (seq_len, str(device), str(dtype)) -> BlockMask; a plain attribute, not state
        self._block_mask_cache: OrderedDict[tuple[int, str, str], Any] = OrderedDict()

    def _apply(self, fn: Any, recurse: bool = True) -> Any:
        """Clear the mask cache on device/dtype moves (stale masks)."""
        self._block_mask_cache.clear()
        return super()._apply(fn, recurse)

    def _causal_block_mask(self, seq_len: int, device: torch.device, dtype: torch.dtype) -> Any:
        if torch.compiler.is_compiling():  # traced into the graph: no Python cache to guard on
            return _FLEX.create_block_mask(
                _causal, B=None, H=None, Q_LEN=seq_len, KV_LEN=seq_len, device=device
            )
        key = (seq_len, str(device), str(dtype))
        cache = self._block_mask_cache
        if key in cache:
            cache.move_to_end(key)
        else:
            if len(cache) >= self._MAX_CACHE_SIZE:
                cache.popitem(last=False)
            cache[key] = _FLEX.create_block_mask(
                _causal, B=None, H=None, Q_LEN=seq_len, KV_LEN=seq_len, device=device
            )
        return cache[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = _heads(x, self.qkv(x), self.n_head, self.head_dim)
        if x.device.type == "cpu" and torch.is_grad_enabled():
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            block_mask = self._causal_block_mask(t, x.device, x.dtype)
            out = _FLEX.flex_attention(q, k, v, block_mask=block_mask)
        out = out.transpose(1, 2).reshape(b, t, c)
        return x + self.proj(out)


class TransformerMLPSeed(nn.Module):
    """``x + fc2(gelu(fc1(x)))`` with hidden width ``dim * expansion``; ``fc2`` starts at 0
    (identity at birth). ``use_checkpoint``: recompute the MLP in backward (activation
    checkpointing, non-reentrant) when training with an input that requires grad.
    Keys: fc1.weight [eD, D], fc1.bias [eD], fc2.weight [D, eD], fc2.bias [D]."""

    def __init__(self, dim: int, expansion: int, use_checkpoint: bool):
        super().__init__()
        self.fc1 = nn.Linear(dim, dim * expansion)
        self.fc2 = nn.Linear(dim * expansion, dim)
        self.use_checkpoint = use_checkpoint
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)

    def _mlp_forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_checkpoint and self.training and x.requires_grad:
            out: torch.Tensor = torch_checkpoint(self._mlp_forward, x, use_reentrant=False)
            return x + out
        return x + self._mlp_forward(x)


class TransformerMLPSmallSeed(TransformerMLPSeed):
    """``mlp_small``: TransformerMLPSeed at expansion 2 by default."""


def create_transformer_noop_seed(dim: int, **kwargs: Any) -> nn.Module:
    _no_kwargs("noop", kwargs)
    return nn.Identity()


def create_transformer_norm_seed(dim: int, **kwargs: Any) -> nn.Module:
    _no_kwargs("norm", kwargs)
    return TransformerNormSeed(dim)


def create_lora_seed(dim: int, rank: int = 8, **kwargs: Any) -> nn.Module:
    _no_kwargs("lora", kwargs)
    return LoRASeed(dim, rank)


def create_lora_large_seed(dim: int, rank: int = 32, **kwargs: Any) -> nn.Module:
    _no_kwargs("lora_large", kwargs)
    return LoRALargeSeed(dim, rank)


def create_transformer_attention_seed(dim: int, n_head: int = 4, **kwargs: Any) -> nn.Module:
    _no_kwargs("attention", kwargs)
    if dim % n_head != 0:
        raise ValueError(
            f"Transformer attention seed requires dim % n_head == 0, got dim={dim}, n_head={n_head}"
        )
    return TransformerAttentionSeed(dim, n_head)


def create_flex_attention_seed(dim: int, n_head: int = 4, **kwargs: Any) -> nn.Module:
    _no_kwargs("flex_attention", kwargs)
    if dim % n_head != 0:
        raise ValueError(
            f"FlexAttention seed requires dim % n_head == 0, got dim={dim}, n_head={n_head}"
        )
    return FlexAttentionSeed(dim, n_head)


def create_transformer_mlp_small_seed(
    dim: int, expansion: int = 2, checkpoint: bool = False, **kwargs: Any
) -> nn.Module:
    _no_kwargs("mlp_small", kwargs)
    return TransformerMLPSmallSeed(dim, expansion, checkpoint)


def create_transformer_mlp_seed(
    dim: int, expansion: int = 4, checkpoint: bool = False, **kwargs: Any
) -> nn.Module:
    _no_kwargs("mlp", kwargs)
    return TransformerMLPSeed(dim, expansion, checkpoint)


# name -> factory(dim, **kwargs), in esper-lite's registration order
BLUEPRINTS: dict[str, Callable[..., nn.Module]] = {
    "norm": create_transformer_norm_seed,
    "lora": create_lora_seed,
    "lora_large": create_lora_large_seed,
    "attention": create_transformer_attention_seed,
    "mlp_small": create_transformer_mlp_small_seed,
    "mlp": create_transformer_mlp_seed,
    "flex_attention": create_flex_attention_seed,
    "noop": create_transformer_noop_seed,
}
