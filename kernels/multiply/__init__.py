"""The multiply family: blend_multiply and blend_multiply_detached, one kernel pair (seed_input
is optional: None reads host's values once).

    api.py        the public functions and their contracts
    router.py     route_multiply: every route a call can take, in order, and why
    cpu_fast.py   the eager-CPU shortcuts (native ops, tanh kept for backward)
    ops.py        the registered ops, their fakes, and BlendMultiply (autograd over the ops)
    torch_path.py the PyTorch path and the compile-path formulas, one gradient function
    triton.py     the Triton kernels and launchers (imported only when triton is)
    alloc.py      what the launchers, the PyTorch path and the fakes allocate
"""

from .api import blend_multiply, blend_multiply_detached

__all__ = ["blend_multiply", "blend_multiply_detached"]
