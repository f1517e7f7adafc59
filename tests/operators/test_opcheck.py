"""torch.library.opcheck of the registered ops (schema, fake tensors, AOT dispatch with dynamic
shapes) on compact, channels_last and permuted inputs. The ops are called the way the
autograd.Functions call them, with inputs that need no gradient: autograd lives in the Functions
(by design the raw ops have no autograd kernel), so opcheck's autograd-registration utility has
nothing to check and is not run."""

from __future__ import annotations

import pytest
import torch

from kernels.lerp.ops import blend_lerp_bwd, blend_lerp_fwd, blend_lerp_fwd_probed
from kernels.multiply.ops import (
    blend_multiply_bwd,
    blend_multiply_fwd,
    blend_multiply_fwd_probed,
)
from tests.support.cases import layout

UTILS = ("test_schema", "test_faketensor", "test_aot_dispatch_dynamic")
LAYOUTS = [
    ("contiguous", "contiguous"),
    ("channels_last", "channels_last"),
    ("permuted", "permuted"),
    ("channels_last", "contiguous"),
]


def tensors(host_layout, seed_layout, device, dtype=torch.float32, per_sample=True):
    shape = (3, 4, 5, 2)
    host = layout(torch.randn(shape, dtype=dtype), host_layout).to(device)
    seed = layout(torch.randn(shape), seed_layout).to(device)  # float32: cast in the kernel
    coef_shape = (3, 1, 1, 1) if per_sample else ()
    alpha = torch.rand(coef_shape, device=device)
    gate = torch.rand(3, 1, 1, 1, device=device)
    grad = layout(torch.randn(shape, dtype=dtype), seed_layout).to(device)
    return host, seed, alpha, gate, grad


FLAGS = (None, torch.tensor(True), torch.tensor([False]))  # no flag, incubating, blending


def flag_for(host_layout, seed_layout, per_sample, device):
    """One incubate flag per case, rotating so every flag meets several layouts (opcheck is slow:
    all three flags on every case would triple the time)."""
    flag = FLAGS[(LAYOUTS.index((host_layout, seed_layout)) + per_sample) % len(FLAGS)]
    return flag if flag is None else flag.to(device)


@pytest.mark.parametrize("per_sample", [True, False])
@pytest.mark.parametrize("host_layout,seed_layout", LAYOUTS)
def test_opcheck_lerp(host_layout, seed_layout, per_sample, device):
    host, seed, alpha, gate, grad = tensors(
        host_layout, seed_layout, device, torch.bfloat16, per_sample
    )
    flag = flag_for(host_layout, seed_layout, per_sample, device)
    for g in (None, gate):
        torch.library.opcheck(blend_lerp_fwd, (host, seed, alpha, g, flag), test_utils=UTILS)
    for needs in [(True, True, True, True), (True, True, False, False), (False, True, True, False)]:
        torch.library.opcheck(
            blend_lerp_bwd,
            (grad, host, seed, alpha, gate, flag, seed.dtype, *needs),
            test_utils=UTILS,
        )
    # host and seed are not kept when no coefficient needs a gradient
    torch.library.opcheck(
        blend_lerp_bwd,
        (grad, None, None, alpha, None, flag, seed.dtype, True, True, False, False),
        test_utils=UTILS,
    )


@pytest.mark.parametrize("per_sample", [True, False])
@pytest.mark.parametrize("host_layout,seed_layout", LAYOUTS)
def test_opcheck_multiply(host_layout, seed_layout, per_sample, device):
    host, seed, alpha, _, grad = tensors(
        host_layout, seed_layout, device, torch.float32, per_sample
    )
    seed_input = seed * 0.5
    flag = flag_for(host_layout, seed_layout, per_sample, device)
    for s_in in (seed_input, None):
        torch.library.opcheck(blend_multiply_fwd, (host, seed, alpha, s_in, flag), test_utils=UTILS)
    for s_in, tied in ((seed_input, False), (None, True), (None, False)):
        for needs in [(True, True, True, True), (False, True, False, False)]:
            torch.library.opcheck(
                blend_multiply_bwd,
                (grad, host, seed, alpha, s_in, flag, tied, *needs),
                test_utils=UTILS,
            )


@pytest.mark.parametrize("flag", [None, True])
def test_opcheck_nonfinite_probe(flag, device):
    """The probed forwards declare the probe mutated (Tensor(a!)): schema, fake and AOT
    dispatch agree, with a clean seed, and with a NaN one while incubating (the output is then
    host's: opcheck compares outputs without equal_nan, so a blended NaN is not checked so)."""
    host, seed, alpha, gate, _ = tensors("channels_last", "contiguous", device)
    incubate = None if flag is None else torch.tensor(flag, device=device)
    bad = seed.clone()
    bad[0, 0, 0, 0] = float("nan")
    for s in (seed, bad) if flag else (seed,):
        probe = torch.zeros(1, dtype=torch.int32, device=device)
        torch.library.opcheck(
            blend_lerp_fwd_probed, (host, s, alpha, gate, incubate, probe), test_utils=UTILS
        )
        probe = torch.zeros(1, dtype=torch.int32, device=device)
        torch.library.opcheck(
            blend_multiply_fwd_probed, (host, s, alpha, None, incubate, probe), test_utils=UTILS
        )
