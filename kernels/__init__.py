"""Fused STE/blend operators for morphogenetic training (see docs/semantics.md).

    ste(host, seed)                               host values, gradient straight through to both
    blend_add(host, seed, alpha)                  lerp(host, seed, clamp(alpha, 0, 1))
    blend_multiply(host, seed, alpha, seed_input)
        = host (1 + clamp(alpha, 0, 1) tanh(seed - seed_input))
    blend_gate(host, seed, alpha, gate)           lerp(host, seed, clamp(clamp(alpha) clamp(gate)))
    active_backend(device)                        "triton" or "torch"

Under torch.compile they are their formulas (see set_compile_path), so Inductor fuses them.
CUDA tensors run fused Triton kernels (one launch forward, one backward plus a tiny reduction
launch when alpha/gate need gradients); CPU tensors run the same math in PyTorch, or the Triton
kernels in Triton's interpreter when TRITON_INTERPRET=1 was set before import.
"""

from ._backend import active_backend, compile_path, set_compile_path
from .lerp import blend_add, blend_gate
from .multiply import blend_multiply, blend_multiply_detached
from .ste import ste

__all__ = [
    "active_backend",
    "blend_add",
    "blend_gate",
    "blend_multiply",
    "blend_multiply_detached",
    "compile_path",
    "set_compile_path",
    "ste",
]
