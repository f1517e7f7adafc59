"""torch.autograd.gradcheck in float64 for every differentiable input of every operator."""

from __future__ import annotations

import pytest
import torch
from torch.autograd import gradcheck

import kernels
from tests.support import reference
from tests.support.cases import make_case

# (shape, host layout): 4-D contiguous and channels_last, 3-D contiguous and permuted, 2-D.
GEOMETRIES = [
    ((2, 3, 2, 2), "contiguous"),
    ((2, 3, 2, 2), "channels_last"),
    ((2, 3, 4), "contiguous"),
    ((2, 3, 4), "permuted"),
    ((3, 5), "contiguous"),
]
GEO_IDS = [f"{len(s)}d-{lay}" for s, lay in GEOMETRIES]


BLEND_OPS = ["add", "multiply", "multiply_tied"]  # multiply_detached: see test_reference


@pytest.mark.parametrize("geometry", GEOMETRIES, ids=GEO_IDS)
@pytest.mark.parametrize("alpha", ["scalar", "per_sample"])
@pytest.mark.parametrize("op", BLEND_OPS)
def test_gradcheck_blend(op, alpha, geometry, device):
    shape, host_layout = geometry
    case = make_case(op, shape, torch.float64, device, alpha=alpha, host_layout=host_layout)
    assert gradcheck(case.ours, case.args)


@pytest.mark.parametrize("alpha", ["one", "wide"])
@pytest.mark.parametrize("op", BLEND_OPS)
def test_gradcheck_blend_clamp_regions(op, alpha, device):
    """[1]-shaped alpha, and alpha outside [0, 1] where the clamp zeroes its gradient."""
    case = make_case(op, (3, 2, 2), torch.float64, device, alpha=alpha)
    assert gradcheck(case.ours, case.args)


@pytest.mark.parametrize("geometry", GEOMETRIES, ids=GEO_IDS)
@pytest.mark.parametrize(
    "alpha,gate",
    [("scalar", "per_sample"), ("per_sample", "scalar"), ("per_sample", "per_sample")],
)
def test_gradcheck_gate(alpha, gate, geometry, device):
    shape, host_layout = geometry
    case = make_case(
        "gate", shape, torch.float64, device, alpha=alpha, gate=gate, host_layout=host_layout
    )
    assert gradcheck(case.ours, case.args)


@pytest.mark.parametrize("alpha,gate", [("one", "scalar"), ("wide", "wide"), ("scalar", "wide")])
def test_gradcheck_gate_clamp_regions(alpha, gate, device):
    case = make_case("gate", (3, 2, 2), torch.float64, device, alpha=alpha, gate=gate)
    assert gradcheck(case.ours, case.args)


@pytest.mark.parametrize("geometry", GEOMETRIES, ids=GEO_IDS)
def test_gradcheck_ste_host_and_exact_seed_gradient(geometry, device):
    """The STE's seed gradient is by definition not the derivative of its output (which does not
    depend on seed), so finite differences cannot check it: host is gradchecked, and seed's
    gradient is compared exactly with the reference host + (seed - seed.detach())."""
    shape, host_layout = geometry
    host, seed = make_case("ste", shape, torch.float64, device, host_layout=host_layout).args
    assert gradcheck(lambda h: kernels.ste(h, seed.detach()), (host,))
    grad = torch.randn(shape, dtype=torch.float64, device=device)
    ours = torch.autograd.grad(kernels.ste(host, seed), (host, seed), grad)
    ref = torch.autograd.grad(reference.ste(host, seed), (host, seed), grad)
    for o, r in zip(ours, ref):
        assert torch.equal(o, r)


def test_gradcheck_mixed_seed_dtype(device):
    """seed in float32 cast to a float64 host: the cast's gradient reaches seed in float32."""
    case = make_case(
        "add", (2, 3, 4), torch.float64, device, alpha="per_sample", seed_dtype=torch.float32
    )
    host, seed, alpha = case.args
    y = kernels.blend_add(host, seed, alpha)
    g_seed = torch.autograd.grad(y.sum(), seed)[0]
    assert g_seed.dtype == torch.float32
    assert gradcheck(lambda h, a: kernels.blend_add(h, seed.detach(), a), (host, alpha))


@pytest.mark.parametrize("alpha", ["scalar", "per_sample"])
def test_gradcheck_multiply_detached_seed_and_alpha(alpha, device):
    """host.detach() as seed_input is not a function of host alone, so host is held constant
    (its gradient is checked against the oracle in test_reference); seed and alpha are
    gradchecked."""
    host, seed, a = make_case(
        "multiply_detached", (2, 3, 4), torch.float64, device, alpha=alpha
    ).args
    assert gradcheck(lambda s, al: kernels.blend_multiply_detached(host.detach(), s, al), (seed, a))
