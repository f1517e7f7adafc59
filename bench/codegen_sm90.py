"""python -m bench.codegen_sm90: compile the operator kernels for sm_90 (H100) without a GPU and
report what the PTX moves per program: 128-bit vector loads/stores (ld/st .v4) and any local
memory (register spills). Triton's wheel ships ptxas, so this runs on a CPU machine; it checks
code generation only, never speed.

Each kernel is compiled with and without the incubate flag (HAS_FLAG), float32 and bfloat16,
pointers marked 16-byte aligned as Triton's launcher specialises them at run time.
"""

from __future__ import annotations

import importlib
import re

import triton
from triton.backends.compiler import GPUTarget

lerp = importlib.import_module("kernels.blend_lerp")
multiply = importlib.import_module("kernels.blend_multiply")

TARGET = GPUTarget("cuda", 90, 32)
TYPES = {"float32": "*fp32", "bfloat16": "*bf16"}


def compile_kernel(fn, pointers: dict[str, str], ints: list[str], constants: dict):
    signature = {**pointers, **{name: "i32" for name in ints},
                 **{name: "constexpr" for name in constants}}
    aligned = {(i,): [["tt.divisibility", 16]] for i, (name, kind) in enumerate(signature.items())
               if kind.startswith("*") or name == "inner"}
    source = triton.compiler.ASTSource(fn=fn, signature=signature, constexprs=constants,
                                       attrs=aligned)
    return triton.compile(source, target=TARGET, options={"num_warps": 4})


def summary(kernel) -> str:
    ptx = kernel.asm["ptx"]
    loads = len(re.findall(r"ld\.global(?:\.\w+)*\.v4", ptx))
    stores = len(re.findall(r"st\.global(?:\.\w+)*\.v4", ptx))
    return f"ld.v4 {loads:2d}  st.v4 {stores:2d}  local memory {'yes' if '.local' in ptx else 'no'}"


def main() -> None:
    common = {"ALPHA_PS": False, "F64": False, "BLOCK": 1024, "USE_INT64": False}
    for dtype, t in TYPES.items():
        for flag in (False, True):
            label = f"{dtype:8s} incubate={'yes' if flag else 'no '}"
            k = compile_kernel(
                lerp._fwd_kernel,
                {"host_ptr": t, "seed_ptr": t, "alpha_ptr": "*fp32", "gate_ptr": "*fp32",
                 "flag_ptr": "*i1", "out_ptr": t}, ["inner", "blocks_per_sample"],
                {**common, "HAS_GATE": False, "GATE_PS": False, "HAS_FLAG": flag})
            print(f"lerp fwd      {label}  {summary(k)}")
            k = compile_kernel(
                lerp._bwd_kernel,
                {"grad_ptr": t, "host_ptr": t, "seed_ptr": t, "alpha_ptr": "*fp32",
                 "gate_ptr": "*fp32", "flag_ptr": "*i1", "grad_host_ptr": t,
                 "grad_seed_ptr": t, "partial_ptr": "*fp32"}, ["inner", "blocks_per_sample"],
                {**common, "HAS_GATE": True, "GATE_PS": True, "HAS_FLAG": flag,
                 "NEED_HOST": True, "NEED_SEED": True, "NEED_COEF": True})
            print(f"lerp bwd      {label}  {summary(k)}")
            k = compile_kernel(
                multiply._fwd_kernel,
                {"host_ptr": t, "seed_ptr": t, "seed_input_ptr": t, "alpha_ptr": "*fp32",
                 "flag_ptr": "*i1", "out_ptr": t}, ["inner", "blocks_per_sample"],
                {**common, "TIED": True, "HAS_FLAG": flag})
            print(f"multiply fwd  {label}  {summary(k)}")
            k = compile_kernel(
                multiply._bwd_kernel,
                {"grad_ptr": t, "host_ptr": t, "seed_ptr": t, "seed_input_ptr": t,
                 "alpha_ptr": "*fp32", "flag_ptr": "*i1", "grad_host_ptr": t,
                 "grad_seed_ptr": t, "grad_seed_input_ptr": t, "partial_ptr": "*fp32"},
                ["inner", "blocks_per_sample"],
                {**common, "TIED": True, "TIED_GRAD": True, "HAS_FLAG": flag,
                 "NEED_HOST": True, "NEED_SEED": True, "NEED_SEED_INPUT": False,
                 "NEED_ALPHA": True})
            print(f"multiply bwd  {label}  {summary(k)}")


if __name__ == "__main__":
    main()
