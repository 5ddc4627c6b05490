"""PyTorch reference of the benchmark MLP VAE (784-512-512-2x32 / 32-512-512-784, ReLU, Bernoulli).

Same shapes, same objective (one reparameterised sample, Bernoulli log-likelihood summed over
pixels, analytic Gaussian KL, batch-mean ELBO) and the same optimizer (Adam, lr 1e-3) as the JAX
model it is timed against. Eager mode, PyTorch's default intra-op threads. ``bench`` extra only.

On a GPU the model runs on CUDA when JAX does too (``device='cuda'``); ``float(loss)`` synchronises
there as on the CPU. The float32 matmul precision is set to match JAX's (:func:`match_precision`).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class TorchMLPVAE(nn.Module):
    def __init__(self, x_dim: int = 784, hidden: int = 512, z_dim: int = 32):
        super().__init__()
        self.enc = nn.Sequential(
            nn.Linear(x_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 2 * z_dim)
        )
        self.dec = nn.Sequential(
            nn.Linear(z_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, x_dim)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Batch-mean ELBO."""
        loc, log_var = self.enc(x).chunk(2, dim=-1)
        z = loc + torch.exp(0.5 * log_var) * torch.randn_like(loc)
        log_px_z = -F.binary_cross_entropy_with_logits(self.dec(z), x, reduction="none").sum(-1)
        kl = 0.5 * (log_var.exp() + loc**2 - 1.0 - log_var).sum(-1)
        return (log_px_z - kl).mean()


def default_device() -> str:
    """``'cuda'`` when JAX runs on a GPU and PyTorch sees one, else ``'cpu'``."""
    import jax

    return "cuda" if jax.devices()[0].platform == "gpu" and torch.cuda.is_available() else "cpu"


def match_precision(jax_precision: str) -> str:
    """Set PyTorch's float32 matmul precision to JAX's; returns the PyTorch setting.

    JAX's ``'default'`` and ``'high'`` let a GPU use TF32 for float32 matmuls (PyTorch ``'high'``);
    ``'highest'`` is full float32 (PyTorch ``'highest'``). On a CPU, XLA computes float32 matmuls in
    full float32 at any setting, so PyTorch is left at its default, ``'highest'``.
    """
    on_cpu = default_device() == "cpu"
    setting = "highest" if on_cpu or jax_precision in ("highest", "float32") else "high"
    torch.set_float32_matmul_precision(setting)
    torch.backends.cudnn.allow_tf32 = setting == "high"
    return setting


def make_torch_fns(x_np: np.ndarray, *, seed: int = 0, device: str | None = None):
    """Return ``(train_step, eval_step)`` zero-argument callables on a fixed batch ``x_np``."""
    device = device or default_device()
    torch.manual_seed(seed)
    model = TorchMLPVAE(x_dim=x_np.shape[1]).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.from_numpy(np.array(x_np, dtype=np.float32, copy=True)).to(device)

    def train_step():
        opt.zero_grad(set_to_none=True)
        loss = -model(x)
        loss.backward()
        opt.step()
        return float(loss.detach())  # synchronises, like block_until_ready

    def eval_step():
        with torch.no_grad():
            return float(model(x))

    return train_step, eval_step


def torch_info() -> dict:
    return {
        "torch_version": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_device": default_device(),
        "torch_matmul_precision": torch.get_float32_matmul_precision(),
    }
