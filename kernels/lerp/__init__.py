"""The lerp family: blend_add and blend_gate, one kernel pair (the gate is optional).

api.py        the public functions and their contracts
router.py     route_lerp: every route a call can take, in order, and why
cpu_fast.py   the eager-CPU shortcuts (torch.lerp with native autograd)
ops.py        the registered ops, their fakes, and BlendLerp (autograd over the ops)
torch_path.py the PyTorch path and the compile-path formulas, one gradient function
triton.py     the Triton kernels and launchers (imported only when triton is)
alloc.py      what the launchers, the PyTorch path and the fakes allocate
"""

from .api import blend_add, blend_gate

__all__ = ["blend_add", "blend_gate"]
