"""Which implementation runs an operator on a device: fused Triton kernels or plain PyTorch.

CUDA tensors run Triton kernels. CPU tensors run the PyTorch formulas, unless TRITON_INTERPRET=1
was set before this package was imported: then they run the same Triton kernels in Triton's
interpreter (how CI exercises the real kernels without a GPU). The choice is made once, at import,
because Triton also reads TRITON_INTERPRET when the kernels are decorated.
"""

from __future__ import annotations

import logging
import os

import torch

logger = logging.getLogger(__name__)

INTERPRET: bool = os.environ.get("TRITON_INTERPRET", "0") == "1"

try:
    import triton
    import triton.language  # noqa: F401

    HAS_TRITON = True
except ImportError as err:  # e.g. macOS or Windows CPU installs: the PyTorch path still works
    if INTERPRET:  # asked for the interpreter explicitly: never fall back silently
        raise ImportError(
            f"TRITON_INTERPRET=1 asks for Triton's interpreter, but triton could not be imported "
            f"({err}); install triton and numpy (the interpreter needs it), or unset "
            "TRITON_INTERPRET to use the PyTorch path"
        ) from err
    HAS_TRITON = False
    log = logger.warning if torch.cuda.is_available() else logger.debug
    log("triton is not importable (%s); every device, CUDA included, uses the PyTorch path", err)


def active_backend(device: torch.device | str) -> str:
    """Return ``"triton"`` or ``"torch"``: the implementation the operators use on ``device``."""
    device = torch.device(device)
    if HAS_TRITON and (device.type == "cuda" or (device.type == "cpu" and INTERPRET)):
        return "triton"
    return "torch"


COMPILE_PATHS = ("formulas", "opaque")
_compile_path = "formulas"


def set_compile_path(path: str) -> None:
    """What the operators give torch.compile while it traces: "formulas" (default: the same math
    as tensor ops inside a traceable autograd.Function, which Inductor fuses with the
    neighbouring ops) or "opaque" (the registered ops, i.e. the fused Triton kernels on CUDA,
    which Inductor cannot fuse into). Eager calls always run the kernels (or the PyTorch path).
    Changing it recompiles graphs that contain the operators (torch.compile guards on it)."""
    global _compile_path
    if path not in COMPILE_PATHS:
        raise ValueError(f"compile path must be one of {COMPILE_PATHS}, got {path!r}")
    _compile_path = path


def compile_path() -> str:
    return _compile_path


def eager_cpu(t: torch.Tensor) -> bool:
    """True for a CPU tensor on the PyTorch path outside torch.compile: the operators then run
    as native PyTorch ops (no registered-op boundary, native autograd where it gives the
    contract's bits), since on a CPU the per-call overhead, not memory traffic, decides speed."""
    return t.is_cpu and not INTERPRET and not torch.compiler.is_compiling()


def tracing_formulas() -> bool:
    """True while torch.compile traces and the compile path is "formulas"."""
    return torch.compiler.is_compiling() and _compile_path == "formulas"
