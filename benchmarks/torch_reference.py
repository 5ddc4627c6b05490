"""PyTorch twins of the benchmark VAEs, same shapes as the JAX models they are timed against.

* ``mlp_vae_512x2_z32``: 784-512-512-2x32 / 32-512-512-784, ReLU, Bernoulli.
* ``conv_vae_64x64_dsprites``: encoder 4 x Conv(k4, s2, p1) with 32-32-64-64 channels, Dense 256,
  Gaussian head (latent 10); decoder Dense 256, Dense 4x4x64, 4 x ConvTranspose(k4, s2, p1) through
  64-32-32-1; ReLU; Bernoulli.
* ``resnet_v2_vae_32x32``: the CPU-sized ResNetV2 encoder/decoder of :mod:`jaxvae.nets.resnet`
  (widths 32-32-32-32, one identity block per stage, bottleneck 8 channels, latent 32,
  LayerNorm over (H, W) on the input, pre-activation BatchNorm-ReLU-conv blocks, 3x3 stride-2
  transposed convolutions with ``output_padding=1`` for 'SAME' upsampling); Bernoulli.
* ``vaegan_32x32_adversarial``: Rivera's VAE-GAN at the CPU scale of ``experiments/mog_vaegan``
  (ResNetV2 VAE widths 16, no identity blocks, bottleneck 4, latent 16, linear output; PatchGAN
  16-16-1, strides 2-2-1, kernel 3, BatchNorm after every convolution, LeakyReLU 0.3, dropout 0.25)
  and its objective (5000 MAE + population KL of the batch means + 0.1 variance regularizer + 100
  non-saturating BCE), both players updated simultaneously from one forward pass, Adam(5e-4, b1 0.5).

The VAEs share one objective (one reparameterised sample, Bernoulli log-likelihood summed over
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


def _conv_out(cin, cout, k, stride=1):
    return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2 if stride == 1 else (k - 1) // 2)


class TorchConvVAE64(nn.Module):
    """The 64x64 dSprites conv VAE (Higgins et al. / Chen et al. shape), NCHW."""

    def __init__(self, channels=(32, 32, 64, 64), hidden: int = 256, z_dim: int = 10, in_ch: int = 1):
        super().__init__()
        enc, c = [], in_ch
        for co in channels:
            enc += [nn.Conv2d(c, co, 4, stride=2, padding=1), nn.ReLU()]
            c = co
        self.enc = nn.Sequential(*enc, nn.Flatten(), nn.Linear(c * 16, hidden), nn.ReLU(), nn.Linear(hidden, 2 * z_dim))
        self.grid = (channels[-1], 4, 4)
        dec = [nn.Linear(z_dim, hidden), nn.ReLU(), nn.Linear(hidden, channels[-1] * 16), nn.ReLU()]
        self.dec_fc = nn.Sequential(*dec)
        outs = list(reversed(channels[:-1])) + [in_ch]
        layers, c = [], channels[-1]
        for i, co in enumerate(outs):
            layers.append(nn.ConvTranspose2d(c, co, 4, stride=2, padding=1))
            if i < len(outs) - 1:
                layers.append(nn.ReLU())
            c = co
        self.dec_conv = nn.Sequential(*layers)

    def decode(self, z):
        return self.dec_conv(self.dec_fc(z).view((-1,) + self.grid))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _bernoulli_elbo(self, x)


def _bernoulli_elbo(model, x):
    loc, log_var = model.enc(x).chunk(2, dim=-1)
    z = loc + torch.exp(0.5 * log_var) * torch.randn_like(loc)
    logits = model.decode(z)
    log_px_z = -F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(-1)
    kl = 0.5 * (log_var.exp() + loc**2 - 1.0 - log_var).sum(-1)
    return (log_px_z - kl).mean()


def _bn_relu(c):
    return nn.Sequential(nn.BatchNorm2d(c, momentum=0.01, eps=1e-3), nn.ReLU())


class _Bottleneck(nn.Module):
    """``[BN-ReLU-Conv3x3] -> [BN-ReLU-Conv3x3] -> [BN-ReLU-Conv1x1(stride)]`` (+ shortcut)."""

    def __init__(self, cin, f, stride, shortcut):
        super().__init__()
        self.t = nn.Sequential(
            _bn_relu(cin), nn.Conv2d(cin, f, 3, padding=1), _bn_relu(f), nn.Conv2d(f, f, 3, padding=1), _bn_relu(f)
        )
        self.last = nn.Conv2d(f, f, 1, stride=stride)
        self.shortcut = nn.Sequential(_bn_relu(cin), nn.Conv2d(cin, f, 1, stride=stride)) if shortcut else None

    def forward(self, x):
        y = self.last(self.t(x))
        return y + (self.shortcut(x) if self.shortcut is not None else x)


class _UpBlock(nn.Module):
    """``[BN-ReLU-Conv1x1] -> [BN-ReLU-ConvT3x3(s2)]`` plus the shortcut ``[BN-ReLU-ConvT3x3(s2)]``."""

    def __init__(self, cin, f):
        super().__init__()
        self.y = nn.Sequential(
            _bn_relu(cin), nn.Conv2d(cin, f, 1), _bn_relu(f), nn.ConvTranspose2d(f, f, 3, 2, 1, output_padding=1)
        )
        self.s = nn.Sequential(_bn_relu(cin), nn.ConvTranspose2d(cin, f, 3, 2, 1, output_padding=1))

    def forward(self, x):
        return self.y(x) + self.s(x)


class TorchResNetV2VAE(nn.Module):
    """The CPU-sized ResNetV2 VAE of :mod:`jaxvae.nets.resnet` (32x32x1, latent 32), NCHW."""

    def __init__(self, size=32, in_ch=1, z_dim=32, widths=(32, 32, 32, 32), bottleneck=8, blocks=1):
        super().__init__()
        stages = len(widths) - 1
        g = size // 2**stages
        enc = [nn.LayerNorm([size, size], eps=1e-3), nn.Conv2d(in_ch, widths[0], 3, padding=1)]
        for s in range(stages):
            enc += [_Bottleneck(widths[s], widths[s], 1, False) for _ in range(blocks)]
            enc += [_Bottleneck(widths[s], widths[s + 1], 2, True)]
        enc += [nn.Conv2d(widths[-1], bottleneck, 1), nn.Flatten(), nn.Linear(bottleneck * g * g, 2 * z_dim)]
        self.enc = nn.Sequential(*enc)
        self.grid = (bottleneck, g, g)
        self.dense = nn.Linear(z_dim, bottleneck * g * g)
        dec = [nn.Conv2d(bottleneck, widths[0], 3, padding=1)]
        for s in range(stages):
            dec += [_Bottleneck(widths[s], widths[s], 1, False) for _ in range(blocks)]
            dec += [_UpBlock(widths[s], widths[s + 1])]
        dec += [nn.Conv2d(widths[-1], in_ch, 1)]
        self.dec = nn.Sequential(*dec)

    def decode(self, z):
        return self.dec(self.dense(z).view((-1,) + self.grid))

    def forward(self, x):
        return _bernoulli_elbo(self, x)


class TorchPatchGAN(nn.Module):
    """:class:`jaxvae.nets.PatchGAN` in NCHW: conv(k, stride) -> BN -> LeakyReLU (not last) -> dropout."""

    def __init__(self, in_ch=1, features=(16, 16, 1), strides=(2, 2, 1), k=3, slope=0.3, rate=0.25):
        super().__init__()
        layers, c = [], in_ch
        for i, (f, st) in enumerate(zip(features, strides)):
            layers += [nn.Conv2d(c, f, k, stride=st, padding=k // 2), nn.BatchNorm2d(f, momentum=0.01, eps=1e-3)]
            if i < len(features) - 1:
                layers.append(nn.LeakyReLU(slope))
            layers.append(nn.Dropout(rate))
            c = f
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


class TorchVAEGAN(nn.Module):
    """Rivera's VAE-GAN at the benchmark's CPU scale (module docstring); ``losses(x) -> (gen, disc)``."""

    def __init__(self, size=32, in_ch=1, z_dim=16):
        super().__init__()
        self.vae = TorchResNetV2VAE(size, in_ch, z_dim, widths=(16, 16, 16, 16), bottleneck=4, blocks=0)
        self.vae.dec[-1] = nn.Conv2d(16, in_ch, 1)  # linear output image in [-1, 1] units
        self.disc = TorchPatchGAN(in_ch)

    def losses(self, x):
        loc, log_var = self.vae.enc(x).chunk(2, dim=-1)
        x_hat = self.vae.decode(loc + torch.exp(0.5 * log_var) * torch.randn_like(loc))
        mae = (x - x_hat).abs().flatten(1).mean(-1)
        m, v = loc.mean(0), loc.var(0, unbiased=False)  # population KL of the batch means
        kl = 0.5 * (v + m**2 - 1.0 - torch.log(v)).sum()
        var_reg = 0.1 * (log_var.exp() - log_var - 1.0).sum(-1)
        real, fake = self.disc(x), self.disc(x_hat)
        adv = 100.0 * F.softplus(-fake).flatten(1).mean(-1)
        disc = 100.0 * (F.softplus(-real) + F.softplus(fake)).flatten(1).mean(-1)
        return (5000.0 * mae + kl + var_reg + adv).mean(), disc.mean()


TORCH_MODELS = {
    "mlp_vae_512x2_z32": lambda x_shape: TorchMLPVAE(x_dim=x_shape[0]),
    "conv_vae_64x64_dsprites": lambda x_shape: TorchConvVAE64(in_ch=x_shape[-1]),
    "resnet_v2_vae_32x32": lambda x_shape: TorchResNetV2VAE(size=x_shape[0], in_ch=x_shape[-1]),
    "vaegan_32x32_adversarial": lambda x_shape: TorchVAEGAN(size=x_shape[0], in_ch=x_shape[-1]),
}


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


def make_torch_fns(x_np: np.ndarray, *, model: str = "mlp_vae_512x2_z32", seed: int = 0, device: str | None = None):
    """Return ``(train_step, eval_step)`` zero-argument callables on a fixed batch ``x_np``.

    ``x_np`` is ``[B, D]`` for the MLP or ``[B, H, W, C]`` images (JAX's layout; moved to NCHW here).
    """
    if model not in TORCH_MODELS:
        raise ValueError(f"`model` must be one of {sorted(TORCH_MODELS)}; got {model!r}.")
    device = device or default_device()
    torch.manual_seed(seed)
    net = TORCH_MODELS[model](x_np.shape[1:]).to(device)
    adversarial = isinstance(net, TorchVAEGAN)
    if adversarial:
        players = (list(net.vae.parameters()), list(net.disc.parameters()))
        opts = [torch.optim.Adam(p, lr=5e-4, betas=(0.5, 0.999)) for p in players]
    else:
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    x_arr = np.array(x_np, dtype=np.float32, copy=True)
    if x_arr.ndim == 4:
        x_arr = np.ascontiguousarray(x_arr.transpose(0, 3, 1, 2))
    x = torch.from_numpy(x_arr).to(device)

    def adversarial_step():
        """Both players' gradients from one forward pass, then both Adam updates (simultaneous)."""
        net.train()
        gen, disc = net.losses(x)
        grads = torch.autograd.grad(gen, players[0], retain_graph=True) + torch.autograd.grad(disc, players[1])
        for p, g in zip(players[0] + players[1], grads):
            p.grad = g
        for o in opts:
            o.step()
        return float(gen.detach())

    def adversarial_eval():
        net.eval()
        with torch.no_grad():
            return float(net.losses(x)[0])

    if adversarial:
        return adversarial_step, adversarial_eval

    def train_step():
        net.train()
        opt.zero_grad(set_to_none=True)
        loss = -net(x)
        loss.backward()
        opt.step()
        return float(loss.detach())  # synchronises, like block_until_ready

    def eval_step():
        net.eval()
        with torch.no_grad():
            return float(net(x))

    return train_step, eval_step


def conv_layer_fns(spec: dict, batch_size: int, *, seed: int = 0):
    """``{'fwd', 'dw', 'dx'}`` zero-argument callables for one convolution layer (NCHW).

    ``spec``: ``size`` (input H = W), ``cin``, ``cout``, ``k``, ``stride``, ``padding``, ``transposed``
    (and ``output_padding`` for a transposed one). The gradients are what autograd runs in a train step,
    ``aten.convolution_backward`` with one output selected.
    """
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch_size, spec["cin"], spec["size"], spec["size"], generator=g)
    k, s, p, t = spec["k"], spec["stride"], spec["padding"], spec["transposed"]
    op = spec.get("output_padding", 0)
    w_shape = (spec["cin"], spec["cout"], k, k) if t else (spec["cout"], spec["cin"], k, k)
    w = torch.randn(*w_shape, generator=g) * 0.1
    if t:
        y = F.conv_transpose2d(x, w, stride=s, padding=p, output_padding=op)
    else:
        y = F.conv2d(x, w, stride=s, padding=p)
    dy = torch.randn(y.shape, generator=g)
    conv_args = ([s, s], [p, p], [1, 1], t, [op, op], 1)

    def fwd():
        with torch.no_grad():
            (
                F.conv_transpose2d(x, w, stride=s, padding=p, output_padding=op)
                if t
                else F.conv2d(x, w, stride=s, padding=p)
            )

    def dw():
        torch.ops.aten.convolution_backward(dy, x, w, None, *conv_args, [False, True, False])

    def dx():
        torch.ops.aten.convolution_backward(dy, x, w, None, *conv_args, [True, False, False])

    return {"fwd": fwd, "dw": dw, "dx": dx}


def torch_info() -> dict:
    return {
        "torch_version": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_device": default_device(),
        "torch_matmul_precision": torch.get_float32_matmul_precision(),
    }
