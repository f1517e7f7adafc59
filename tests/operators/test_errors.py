"""Bad input is a ValueError that says what is wrong, raised before anything runs."""

from __future__ import annotations

import pytest
import torch

import kernels

H = (2, 3, 4)


def t(shape=H, dtype=torch.float32, device="cpu", **kw):
    return torch.randn(shape, device=device, **kw).to(dtype)


def calls(host, seed, alpha, gate=None, seed_input=None):
    gate = alpha if gate is None else gate
    seed_input = host if seed_input is None else seed_input
    return {
        "ste": lambda: kernels.ste(host, seed),
        "blend_add": lambda: kernels.blend_add(host, seed, alpha),
        "blend_multiply": lambda: kernels.blend_multiply(host, seed, alpha, seed_input),
        "blend_gate": lambda: kernels.blend_gate(host, seed, alpha, gate),
    }


def expect(fn, *patterns):
    with pytest.raises(ValueError) as info:
        fn()
    for p in patterns:
        assert p in str(info.value), str(info.value)


@pytest.mark.parametrize("op", ["ste", "blend_add", "blend_multiply", "blend_gate"])
def test_shape_mismatch(op):
    expect(
        calls(t(), t((2, 3, 5)), torch.tensor(0.5))[op],
        op,
        "seed has shape (2, 3, 5)",
        "host has shape (2, 3, 4)",
        "match exactly",
    )


@pytest.mark.parametrize("op", ["ste", "blend_add", "blend_multiply", "blend_gate"])
def test_non_floating_dtype(op):
    expect(
        calls(t(dtype=torch.int64), t(), torch.tensor(0.5))[op],
        "host has dtype torch.int64",
        "floating",
    )
    expect(calls(t(), t(dtype=torch.int32), torch.tensor(0.5))[op], "seed has dtype torch.int32")


@pytest.mark.parametrize("op", ["blend_add", "blend_multiply", "blend_gate"])
@pytest.mark.parametrize("bad", [(3, 1, 1), (2, 3, 1), (2,), (2, 1), (1, 1, 1, 1), (2, 1, 1, 1)])
def test_alpha_neither_scalar_nor_per_sample(op, bad):
    expect(
        calls(t(), t(), torch.rand(bad))[op],
        f"alpha has shape {list(bad)}",
        "expected a scalar (0-d or [1]) or per-sample [B, 1, 1] with B = 2",
    )


def test_gate_shape_and_types():
    host = t()
    expect(
        lambda: kernels.blend_gate(host, t(), torch.tensor(0.5), torch.rand(2, 3, 1)),
        "gate has shape [2, 3, 1]",
    )
    expect(
        lambda: kernels.blend_gate(host, t(), torch.tensor(0.5), 0.3), "gate must be a torch.Tensor"
    )
    expect(
        lambda: kernels.blend_add(host, t(), 0.5),
        "alpha must be a torch.Tensor",
        "does not recompile",
    )
    expect(lambda: kernels.blend_add(host, t(), torch.tensor(1)), "alpha has dtype torch.int64")


def test_seed_input_checked():
    expect(
        lambda: kernels.blend_multiply(t(), t(), torch.tensor(0.5), t((2, 3))),
        "seed_input has shape (2, 3)",
    )


def test_not_a_tensor():
    expect(lambda: kernels.ste([1.0], t()), "host must be a torch.Tensor, got list")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a second device")
@pytest.mark.cuda
@pytest.mark.parametrize("op", ["ste", "blend_add", "blend_multiply", "blend_gate"])
def test_device_mismatch(op):
    expect(
        calls(t(device="cuda"), t(), torch.tensor(0.5, device="cuda"))[op],
        "seed is on cpu",
        "host is on cuda",
    )
    if op != "ste":  # a CPU 0-d alpha is not silently accepted with CUDA features
        expect(calls(t(device="cuda"), t(device="cuda"), torch.tensor(0.5))[op], "alpha is on cpu")


def test_device_mismatch_meta():
    """Without a GPU, a 'meta' tensor stands in for a second device."""
    expect(
        lambda: kernels.blend_add(t(), t(device="meta"), torch.tensor(0.5)),
        "seed is on meta",
        "host is on cpu",
        "same device",
    )
    expect(
        lambda: kernels.blend_add(t(), t(), torch.tensor(0.5, device="meta")), "alpha is on meta"
    )


def test_rejected_call_records_nothing():
    host = t(requires_grad=True)
    with pytest.raises(ValueError):
        kernels.blend_add(host, t((1, 3, 4)), torch.tensor(0.5))
    assert host.grad is None and host.grad_fn is None
