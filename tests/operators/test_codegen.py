"""Real-GPU code generation, checked without a GPU.

Triton compiles a kernel ahead of time for a target (``triton.compile(ASTSource(...),
target=GPUTarget("cuda", 90, 32))``), and its wheel ships ptxas and cuobjdump. So, on a CPU
machine, every kernel is compiled for sm_90 (H100) and sm_80 (A100) in the specialisations the
launchers produce, across the four dtypes, and each must:
- compile (with the launchers' options: 4 warps for BLOCK 1024, no fp contraction);
- move elements with 128-bit vector accesses (ld/st.global.v4.b32, or .v2.b64 for float64);
  scalar accesses only for the coefficients, the incubate flag and one partial sum per program;
- spill nothing (cuobjdump -res-usage: LOCAL:0, STACK:0);
- use at most MAX_REGISTERS registers per thread (MAX_REGISTERS_F64_TANH for float64 multiply).

MAX_REGISTERS = 64: with 128-thread programs, 64 registers still fit 8 programs (32 warps) per
SM on sm_80/sm_90 (65,536 registers), enough loads in flight for these streaming kernels; the
16/32-bit kernels measure 27-48 today and float64 lerp 38-48 (printed with -s). float64 multiply
needs a double-precision exp and log for its tanh and measures 140-161: bound 192, which still
fits 2 programs per SM. float64 is the verification dtype (gradcheck), not a training one.

Run ``pytest tests/operators/test_codegen.py -s`` for the table. Skipped under TRITON_INTERPRET=1
(the kernels are interpreter objects then) and without triton.
"""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass, field

import pytest

from kernels._backend import HAS_TRITON, INTERPRET

pytestmark = [
    pytest.mark.backend_independent,
    pytest.mark.skipif(
        not HAS_TRITON or INTERPRET, reason="needs triton's compiler (not the interpreter)"
    ),
]

MAX_REGISTERS = 64
MAX_REGISTERS_F64_TANH = 192
ARCHS = (90, 80)
ELEMENT = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16", "float64": "fp64"}
ELEMENT_POINTERS = (
    "host_ptr",
    "seed_ptr",
    "seed_input_ptr",
    "out_ptr",
    "grad_ptr",
    "grad_host_ptr",
    "grad_seed_ptr",
    "grad_seed_input_ptr",
)


@dataclass
class Spec:
    """One specialisation: a kernel, its constexprs, and the element and seed dtypes."""

    kernel: str  # "lerp.triton.fwd_kernel", ...
    dtype: str
    constants: dict
    seed_dtype: str | None = None  # the seed's own dtype (its gradient's), when not host's
    scalar_loads: int = 0  # coefficient/flag loads the kernel may make (per program)
    scalar_stores: int = 0  # partial sums, the nonfinite probe (per program)
    label: str = field(default="")


def specs() -> list[Spec]:
    out = []
    for dtype in ELEMENT:
        f64 = dtype == "float64"
        common = {"F64": f64, "BLOCK": 1024}
        mixed = "float32" if dtype == "bfloat16" else None  # bf16 host, float32 seed
        out += [
            Spec(
                "lerp.triton.fwd_kernel",
                dtype,
                {
                    **common,
                    "ALPHA_PS": False,
                    "HAS_GATE": False,
                    "GATE_PS": False,
                    "HAS_FLAG": True,
                    "HAS_PROBE": False,
                    "USE_INT64": False,
                },
                scalar_loads=2,
                label="add, slot",
            ),
            Spec(
                "lerp.triton.fwd_kernel",
                dtype,
                {
                    **common,
                    "ALPHA_PS": False,
                    "HAS_GATE": False,
                    "GATE_PS": False,
                    "HAS_FLAG": True,
                    "HAS_PROBE": True,
                    "USE_INT64": False,
                },
                scalar_loads=2,
                scalar_stores=2,
                label="add, slot, probed",
            ),
            Spec(
                "lerp.triton.fwd_kernel",
                dtype,
                {
                    **common,
                    "ALPHA_PS": True,
                    "HAS_GATE": True,
                    "GATE_PS": True,
                    "HAS_FLAG": False,
                    "HAS_PROBE": False,
                    "USE_INT64": True,
                },
                mixed,
                scalar_loads=2,
                label="gate, per-sample, int64",
            ),
            Spec(
                "lerp.triton.bwd_kernel",
                dtype,
                {
                    **common,
                    "ALPHA_PS": False,
                    "HAS_GATE": False,
                    "GATE_PS": False,
                    "HAS_FLAG": True,
                    "NEED_HOST": True,
                    "NEED_SEED": True,
                    "NEED_COEF": False,
                    "USE_INT64": False,
                },
                mixed,
                scalar_loads=2,
                label="add, slot",
            ),
            Spec(
                "lerp.triton.bwd_kernel",
                dtype,
                {
                    **common,
                    "ALPHA_PS": True,
                    "HAS_GATE": True,
                    "GATE_PS": False,
                    "HAS_FLAG": True,
                    "NEED_HOST": True,
                    "NEED_SEED": True,
                    "NEED_COEF": True,
                    "USE_INT64": True,
                },
                scalar_loads=3,
                scalar_stores=2,
                label="gate, all grads, int64",
            ),
            Spec(
                "multiply.triton.fwd_kernel",
                dtype,
                {
                    **common,
                    "ALPHA_PS": False,
                    "TIED": True,
                    "HAS_FLAG": True,
                    "HAS_PROBE": False,
                    "USE_INT64": False,
                },
                scalar_loads=2,
                label="tied, slot",
            ),
            Spec(
                "multiply.triton.fwd_kernel",
                dtype,
                {
                    **common,
                    "ALPHA_PS": False,
                    "TIED": True,
                    "HAS_FLAG": True,
                    "HAS_PROBE": True,
                    "USE_INT64": False,
                },
                scalar_loads=2,
                scalar_stores=2,
                label="tied, slot, probed",
            ),
            Spec(
                "multiply.triton.fwd_kernel",
                dtype,
                {
                    **common,
                    "ALPHA_PS": True,
                    "TIED": False,
                    "HAS_FLAG": False,
                    "HAS_PROBE": False,
                    "USE_INT64": True,
                },
                mixed,
                scalar_loads=1,
                label="seed_input, per-sample, int64",
            ),
            Spec(
                "multiply.triton.bwd_kernel",
                dtype,
                {
                    **common,
                    "ALPHA_PS": False,
                    "TIED": True,
                    "TIED_GRAD": True,
                    "HAS_FLAG": True,
                    "NEED_HOST": True,
                    "NEED_SEED": True,
                    "NEED_SEED_INPUT": False,
                    "NEED_ALPHA": False,
                    "USE_INT64": False,
                },
                mixed,
                scalar_loads=2,
                label="tied, slot",
            ),
            Spec(
                "multiply.triton.bwd_kernel",
                dtype,
                {
                    **common,
                    "ALPHA_PS": True,
                    "TIED": False,
                    "TIED_GRAD": False,
                    "HAS_FLAG": True,
                    "NEED_HOST": True,
                    "NEED_SEED": True,
                    "NEED_SEED_INPUT": True,
                    "NEED_ALPHA": True,
                    "USE_INT64": True,
                },
                scalar_loads=2,
                scalar_stores=2,
                label="all grads, per-sample, int64",
            ),
        ]
    return out


def signature(fn, spec: Spec) -> dict[str, str]:
    """Argument types as the launchers pass them: elements in host's dtype (the seed and its
    gradient in the seed's), coefficients float32 (float64 with F64), the flag as bool, the
    nonfinite probe as int32."""
    element = "*" + ELEMENT[spec.dtype]
    seed = "*" + ELEMENT[spec.seed_dtype or spec.dtype]
    compute = "*fp64" if spec.constants.get("F64") else "*fp32"
    wide = spec.constants.get("USE_INT64")
    types = {}
    for name in fn.arg_names:
        if name in spec.constants:
            types[name] = "constexpr"
        elif name == "flag_ptr":
            types[name] = "*i1"
        elif name == "probe_ptr":
            types[name] = "*i32"
        elif name in ("seed_ptr", "grad_seed_ptr"):
            types[name] = seed
        elif name in ELEMENT_POINTERS:
            types[name] = element
        elif name.endswith("_ptr"):  # alpha, gate, partial sums
            types[name] = compute
        else:  # inner, blocks_per_sample
            types[name] = "i64" if wide else "i32"
    return types


def compile_spec(spec: Spec, arch: int):
    import triton
    from triton.backends.compiler import GPUTarget

    module, name = spec.kernel.rsplit(".", 1)
    fn = getattr(importlib.import_module(f"kernels.{module}"), name)
    types = signature(fn, spec)
    # Triton's launcher marks 16-byte-aligned pointers and multiple-of-16 sizes; torch's
    # allocations are aligned, and ``inner`` is a multiple of 16 for realistic feature maps.
    aligned = {
        (i,): [["tt.divisibility", 16]]
        for i, (n, t) in enumerate(types.items())
        if t.startswith("*") or n == "inner"
    }
    source = triton.compiler.ASTSource(
        fn=fn, signature=types, constexprs=spec.constants, attrs=aligned
    )
    return triton.compile(
        source,
        target=GPUTarget("cuda", arch, 32),
        options={"num_warps": 4, "enable_fp_fusion": False},
    )


def resources(cubin: bytes) -> dict[str, int]:
    import triton

    tool = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        text = subprocess.run(
            [tool, "-res-usage", f.name], capture_output=True, text=True, check=True
        ).stdout
    return {k: int(v) for k, v in re.findall(r"\b(REG|STACK|LOCAL):(\d+)", text)}


def accesses(ptx: str) -> dict[str, int]:
    """Counts of global loads and stores, 128-bit vector or not."""
    counts = {"ld_vec": 0, "ld_scalar": 0, "st_vec": 0, "st_scalar": 0}
    for op, suffix in re.findall(r"\b(ld|st)\.global((?:\.\w+)*)", ptx):
        vector = ".v4.b32" in suffix or ".v2.b64" in suffix
        counts[f"{op}_{'vec' if vector else 'scalar'}"] += 1
    return counts


@pytest.mark.parametrize("arch", ARCHS, ids=lambda a: f"sm_{a}")
@pytest.mark.parametrize("spec", specs(), ids=lambda s: f"{s.kernel}-{s.dtype}-{s.label}")
def test_kernel_compiles_vectorised_without_spills(spec, arch):
    kernel = compile_spec(spec, arch)
    counts = accesses(kernel.asm["ptx"])
    usage = resources(kernel.asm["cubin"])
    print(
        f"sm_{arch} {spec.kernel:26s} {spec.dtype:9s} {spec.label:32s} "
        f"regs {usage['REG']:3d}  {counts}"
    )
    assert counts["ld_vec"] >= 1 and counts["st_vec"] >= 1
    assert counts["ld_scalar"] <= spec.scalar_loads, counts  # only coefficients and the flag
    assert counts["st_scalar"] <= spec.scalar_stores, counts  # only partial sums
    assert usage["LOCAL"] == 0 and usage["STACK"] == 0, usage  # no spills
    f64_tanh = spec.dtype == "float64" and spec.kernel.startswith("multiply.")
    assert usage["REG"] <= (MAX_REGISTERS_F64_TANH if f64_tanh else MAX_REGISTERS), usage


@pytest.mark.parametrize("arch", ARCHS, ids=lambda a: f"sm_{a}")
@pytest.mark.parametrize("f64", [False, True])
def test_coefficient_finish_kernel_compiles_without_spills(f64, arch):
    constants = {
        "ALPHA_PER_SAMPLE": True,
        "HAS_GATE": True,
        "GATE_PER_SAMPLE": False,
        "NEED_ALPHA": True,
        "NEED_GATE": True,
        "F64": f64,
        "RBLOCK": 1024,
    }
    spec = Spec("_coef_grad._finish_kernel", "float64" if f64 else "float32", constants)
    usage = resources(compile_spec(spec, arch).asm["cubin"])
    assert usage["LOCAL"] == 0 and usage["STACK"] == 0 and usage["REG"] <= MAX_REGISTERS, usage
