"""Run every operator forward and backward once and print which backend ran it.

bash scripts/main.sh                      # CPU: PyTorch path (CUDA: Triton kernels)
TRITON_INTERPRET=1 bash scripts/main.sh   # CPU: the Triton kernels in Triton's interpreter
"""

from __future__ import annotations

import torch

import kernels


def main() -> None:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    shape = (8, 16, 12, 12)  # a CNN feature map [B, C, H, W], channels_last like a real host
    host = torch.randn(shape, device=device).to(memory_format=torch.channels_last)
    host.requires_grad_()
    seed = torch.randn(shape, device=device, requires_grad=True)
    alpha = torch.tensor(0.25, device=device, requires_grad=True)
    gate = torch.rand(shape[0], 1, 1, 1, device=device, requires_grad=True)
    print(
        f"device {device}, backend {kernels.active_backend(device)}, host {list(shape)} "
        f"channels_last"
    )
    cases = {
        "ste": lambda: kernels.ste(host, seed),
        "blend_add": lambda: kernels.blend_add(host, seed, alpha),
        "blend_multiply": lambda: kernels.blend_multiply(host, seed, alpha, host),
        "blend_gate": lambda: kernels.blend_gate(host, seed, alpha, gate),
    }
    for name, run in cases.items():
        for t in (host, seed, alpha, gate):
            t.grad = None
        y = run()
        (y * y).sum().backward()
        grads = {
            n: t.grad
            for n, t in (("host", host), ("seed", seed), ("alpha", alpha), ("gate", gate))
            if t.grad is not None
        }
        norms = ", ".join(f"|d{n}| {g.norm():.4g}" for n, g in grads.items())
        layout = "channels_last" if y.is_contiguous(memory_format=torch.channels_last) else "other"
        print(f"{name:15s} y mean {y.mean():+.4f} ({layout}); {norms}")


if __name__ == "__main__":
    main()
