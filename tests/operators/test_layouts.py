"""Memory layouts, empty and 0-d tensors, and ste's zero-copy alias."""

from __future__ import annotations

import pytest
import torch

import kernels
from tests.support.cases import OPS, make_case
from tests.support.checks import assert_matches_oracle, same_layout


@pytest.mark.parametrize("host_layout", ["contiguous", "channels_last", "permuted"])
@pytest.mark.parametrize("op", OPS)
def test_output_keeps_host_layout(op, host_layout, device):
    case = make_case(
        op, (3, 4, 5, 6), torch.float32, device, alpha="per_sample", host_layout=host_layout
    )
    y = case.ours(*case.args)
    assert same_layout(y, case.args[0])
    grads = torch.autograd.grad(y, case.args, torch.randn_like(y))
    for g in grads:
        if g.numel() == y.numel():
            assert same_layout(g, case.args[0])


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize(
    "host_layout,seed_layout", [("channels_last", "contiguous"), ("contiguous", "permuted")]
)
def test_seed_in_another_layout(op, host_layout, seed_layout, device):
    case = make_case(
        op,
        (3, 4, 5, 6),
        torch.float32,
        device,
        alpha="per_sample",
        host_layout=host_layout,
        seed_layout=seed_layout,
    )
    assert same_layout(case.ours(*case.args), case.args[0])
    assert_matches_oracle(case, torch.randn(3, 4, 5, 6, device=device))


@pytest.mark.parametrize("op", OPS)
def test_batch_not_outermost_with_per_sample_alpha(op, device):
    """A [B, T] host stored transposed: samples are not contiguous runs of memory."""
    case = make_case(op, (6, 70), torch.float32, device, alpha="per_sample", host_layout="permuted")
    assert case.args[0].stride() == (1, 6)
    assert_matches_oracle(case, torch.randn(6, 70, device=device))


@pytest.mark.parametrize("op", OPS)
def test_non_dense_host(op, device):
    """A sliced (gapped) host and a broadcast (stride-0) gradient work too."""
    case = make_case(op, (4, 6, 10), torch.float32, device, alpha="per_sample")
    sliced = tuple(
        t[:, :, ::2]
        if t.dim() == 3 and t.shape[-1] == 10
        else t.reshape(4, 1, 1)
        if t.numel() == 4
        else t
        for t in (a.detach() for a in case.args)
    )
    sliced = tuple(t.requires_grad_() for t in sliced)
    case.args = sliced
    assert_matches_oracle(case, torch.ones(1, device=device).expand(4, 6, 5))


@pytest.mark.parametrize("shape", [(0,), (0, 3), (2, 0, 4)])
@pytest.mark.parametrize("op", OPS)
def test_empty_tensors(op, shape, device):
    case = make_case(op, shape, torch.float32, device, alpha="per_sample" if shape[0] else "scalar")
    y = case.ours(*case.args)
    assert y.shape == shape
    grads = torch.autograd.grad(y.sum(), case.args)
    for arg, g in zip(case.args, grads):
        assert g.shape == arg.shape
        if arg.numel():  # alpha/gate of an empty host: a sum over nothing
            assert torch.all(g == 0)


@pytest.mark.parametrize("op", OPS)
def test_zero_dim_host(op, device):
    case = make_case(op, (), torch.float64, device, alpha="scalar", gate="scalar")
    assert_matches_oracle(case, torch.tensor(0.7, dtype=torch.float64, device=device))


def test_ste_forward_is_a_zero_copy_alias(device):
    host = torch.randn(4, 8, 6, 6, device=device).to(memory_format=torch.channels_last)
    seed = torch.randn(4, 8, 6, 6, device=device, requires_grad=True)
    y = kernels.ste(host.requires_grad_(), seed)
    assert y.data_ptr() == host.data_ptr() and y.stride() == host.stride()
    with pytest.raises(RuntimeError, match="inplace|in-place"):
        y.relu_()  # PyTorch refuses in-place on a custom Function's alias: loud, never wrong


def test_identity_seed_passes_host_twice(device):
    """A seed that returns host itself (nn.Identity) is the same tensor in two inputs."""
    host = torch.randn(3, 4, device=device, dtype=torch.float64, requires_grad=True)
    alpha = torch.tensor(0.3, device=device, dtype=torch.float64)
    for fn in (
        lambda h: kernels.ste(h, h),
        lambda h: kernels.blend_add(h, h, alpha),
        lambda h: kernels.blend_multiply(h, h, alpha, h),
        lambda h: kernels.blend_gate(h, h, alpha, alpha),
    ):
        (g,) = torch.autograd.grad(fn(host).sum(), host)
        want = 2.0 if fn(host).data_ptr() == host.data_ptr() else 1.0  # ste: g to both inputs
        torch.testing.assert_close(g, torch.full_like(host, want))


def test_ste_copy_is_fresh_and_accepts_in_place_ops(device):
    host = torch.randn(4, 8, 6, 6, device=device).to(memory_format=torch.channels_last)
    seed = torch.randn(4, 8, 6, 6, device=device, requires_grad=True)
    host.requires_grad_()
    y = kernels.ste(host, seed, copy=True)
    assert y.data_ptr() != host.data_ptr() and y.stride() == host.stride()
    assert torch.equal(y, host)
    z = torch.relu_(y * 1)  # an in-place consumer
    g_host, g_seed = torch.autograd.grad(
        kernels.ste(host, seed, copy=True).relu_().sum(), (host, seed)
    )
    assert torch.equal(g_host, (host > 0).float()) and torch.equal(g_seed, g_host)
    assert z.shape == host.shape
    with pytest.raises(ValueError, match="copy must be a bool"):
        kernels.ste(host, seed, copy=1)


@pytest.mark.parametrize("op", ["add", "gate", "multiply"])
def test_sliced_and_expanded_coefficients(op, device):
    """alpha/gate that are not contiguous: a column sliced out of a gate network's output, and a
    scalar expanded to [B, 1, 1]."""
    case = make_case(op, (3, 4, 5), torch.float64, device, alpha="per_sample")
    host, seed, *rest = (a.detach() for a in case.args)
    alpha = torch.rand(3, 2, 1, dtype=torch.float64, device=device)[:, 1:]  # stride (2, 1, 1)
    assert not alpha.is_contiguous()
    gate = torch.tensor(0.4, dtype=torch.float64, device=device).reshape(1, 1, 1).expand(3, 1, 1)
    args = [host, seed, alpha] + ([gate] if op == "gate" else rest[1:] if op == "multiply" else [])
    case.args = tuple(a.requires_grad_() for a in args)
    assert_matches_oracle(case, torch.randn(3, 4, 5, dtype=torch.float64, device=device))


@pytest.mark.parametrize("op", OPS)
def test_int64_offsets_path(op, device, monkeypatch):
    """Force the kernels' int64-offset specialization (used past 2**31 elements) on a small
    tensor; it must give the same results as the oracle."""
    from kernels import _layout

    monkeypatch.setattr(_layout, "INT32_MAX", 1000)
    case = make_case(op, (4, 6, 70), torch.float32, device, alpha="per_sample")
    assert _layout.geometry(case.args[0], True).use_int64
    assert_matches_oracle(case, torch.randn(4, 6, 70, device=device))
