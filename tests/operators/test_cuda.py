"""CUDA only (skipped without a GPU): the Triton kernels against the PyTorch path on the same
GPU tensors, at large sizes, in every dtype and layout, and past 2**31 elements."""

from __future__ import annotations

import pytest
import torch

import kernels
from kernels.lerp import torch_path as lerp_torch
from kernels.multiply import torch_path as multiply_torch

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

DTYPES = [torch.float32, torch.bfloat16, torch.float16]


def tol(dtype):
    return {"rtol": torch.finfo(dtype).eps if dtype != torch.float32 else 1e-5, "atol": 1e-5}


def inputs(shape, dtype, per_sample, channels_last=False):
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    h = torch.randn(shape, device="cuda", dtype=dtype).contiguous(memory_format=fmt)
    s = torch.randn(shape, device="cuda", dtype=dtype).contiguous(memory_format=fmt)
    a_shape = (shape[0],) + (1,) * (len(shape) - 1) if per_sample else ()
    return h, s, torch.rand(a_shape, device="cuda"), torch.rand(a_shape, device="cuda")


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_triton_matches_torch_path_large(dtype, per_sample, channels_last):
    shape = (16, 64, 128, 128)  # 16M elements
    h, s, a, g = inputs(shape, dtype, per_sample, channels_last)
    grad = torch.randn_like(h)
    assert kernels.active_backend(h.device) == "triton"
    # The launchers need triton: imported here, not at collection.
    from kernels.lerp import triton as lerp_triton
    from kernels.multiply import triton as multiply_triton

    pairs = [
        (lerp_triton.fwd_triton(h, s, a, g, None), lerp_torch.fwd_torch(h, s, a, g, None)),
        (lerp_triton.fwd_triton(h, s, a, None, None), lerp_torch.fwd_torch(h, s, a, None, None)),
        (
            multiply_triton.fwd_triton(h, s, a, s * 0.5, None),
            multiply_torch.fwd_torch(h, s, a, s * 0.5, None),
        ),
    ]
    needs = (True, True, True, True)
    lerp_args = (grad, h, s, a, g, None, s.dtype, *needs)  # no incubate flag
    for tri, ref in zip(lerp_triton.bwd_triton(*lerp_args), lerp_torch.bwd_torch(*lerp_args)):
        pairs.append((tri, ref))
    multiply_args = (grad, h, s, a, None, None, True, *needs)  # seed_input is host (tied)
    for tri, ref in zip(
        multiply_triton.bwd_triton(*multiply_args), multiply_torch.bwd_torch(*multiply_args)
    ):
        pairs.append((tri, ref))
    for tri, ref in pairs:
        assert tri.stride() == ref.stride()
        if tri.numel() == h.numel():
            torch.testing.assert_close(tri, ref, **tol(dtype))
        else:  # alpha/gate: sums over up to 16M terms in different orders
            torch.testing.assert_close(tri, ref, rtol=1e-3, atol=1e-3 * h.numel() ** 0.5)


def test_past_int32_offsets():
    """2**31 + 2**20 bfloat16 elements (about 4.3 GB per tensor): the kernels must index past
    2**31 with int64 offsets. Checked on the tail, where int32 offsets would wrap."""
    numel = 2**31 + 2**20
    free, _ = torch.cuda.mem_get_info()
    if free < 8 * numel * 2 + 2**30:
        pytest.skip(f"needs about {8 * numel * 2 / 2**30:.0f} GiB of free GPU memory")
    h = torch.randn(2, numel // 2, device="cuda", dtype=torch.bfloat16)
    s = torch.randn_like(h)
    a = torch.tensor([[0.25], [0.75]], device="cuda", requires_grad=True)
    y = kernels.blend_add(h, s, a)
    tail = slice(numel // 2 - 2**20, None)
    want = torch.lerp(h[1, tail].float(), s[1, tail].float(), 0.75).bfloat16()
    torch.testing.assert_close(y[1, tail], want, **tol(torch.bfloat16))
    del y
    (ga,) = torch.autograd.grad(kernels.blend_add(h, s, a), a, torch.ones_like(h))
    want_ga = torch.stack(
        [(s[i].float() - h[i].float()).sum(dtype=torch.float64) for i in range(2)]
    ).float()
    torch.testing.assert_close(ga.flatten(), want_ga, rtol=1e-3, atol=1e-3 * (numel / 2) ** 0.5)
