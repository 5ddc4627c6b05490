"""PyTorch reference of the benchmark MLP VAE (784-512-512-2x32 / 32-512-512-784, ReLU, Bernoulli).

Same shapes, same objective (one reparameterised sample, Bernoulli log-likelihood summed over
pixels, analytic Gaussian KL, batch-mean ELBO) and the same optimizer (Adam, lr 1e-3) as the JAX
model it is timed against. Eager mode, PyTorch's default intra-op threads. ``bench`` extra only.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class TorchMLPVAE(nn.Module):
    def __init__(self, x_dim: int = 784, hidden: int = 512, z_dim: int = 32):
        super().__init__()
        self.enc = nn.Sequential(nn.Linear(x_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, 2 * z_dim))
        self.dec = nn.Sequential(nn.Linear(z_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, x_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Batch-mean ELBO."""
        loc, log_var = self.enc(x).chunk(2, dim=-1)
        z = loc + torch.exp(0.5 * log_var) * torch.randn_like(loc)
        log_px_z = -F.binary_cross_entropy_with_logits(self.dec(z), x, reduction="none").sum(-1)
        kl = 0.5 * (log_var.exp() + loc ** 2 - 1.0 - log_var).sum(-1)
        return (log_px_z - kl).mean()


def make_torch_fns(x_np: np.ndarray, *, seed: int = 0):
    """Return ``(train_step, eval_step)`` zero-argument callables on a fixed batch ``x_np``."""
    torch.manual_seed(seed)
    model = TorchMLPVAE(x_dim=x_np.shape[1])
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.from_numpy(np.array(x_np, dtype=np.float32, copy=True))

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
    return {"torch_version": torch.__version__, "torch_threads": torch.get_num_threads()}
