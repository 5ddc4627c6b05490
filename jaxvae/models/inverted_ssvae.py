r"""Gemp et al.'s inverted semi-supervised VAE ("untapped" y-only data) and Kingma et al.'s M2.

Three networks are shared by the forward model (M2) and the reverse ("inverted") model:

- ``x -> y``: :math:`q_\phi(y|x)`, logits of a Concrete / Gumbel-Softmax (temperature ``tau``,
  1 by default) or, in ``unlabeled='enumerate'`` mode, of a categorical;
- ``(x, y) -> z``: :math:`q_\phi(z|x,y)`, a diagonal Gaussian :math:`\tilde z` pushed through the
  scaled sigmoid :math:`z = a + (b-a)\sigma(\tilde z)` onto the box :math:`[a, b]^D` (``z_space='box'``,
  Gemp et al. App. A, with the log-det of the map), or a plain Gaussian (``z_space='real'``, M2);
- ``(y, z) -> x``: :math:`p_\theta(x|y,z)`, Bernoulli logits.

Priors: :math:`p(y) = \mathrm{Cat}(1/C)`, :math:`p(z) = U[a,b]^D` (box) or :math:`N(0, I)` (real),
and the reverse model's image prior :math:`q(x) = \mathrm{Bern}(0.5)^{784}`.

Paper equation -> code (objectives in :mod:`jaxvae.objectives.semi_supervised`):

- eq. 3 (labeled pairs)    -> :func:`objective_terms` ``.j_fl`` via ``labeled_bound``
- eq. 4 (unlabeled x)      -> ``.j_fu`` via ``unlabeled_bound`` (one Concrete sample) or
  ``unlabeled_bound_enumerated`` (exact sum over the ``C`` labels, classic M2, Kingma et al. eq. 7)
- eq. 5 / eq. 17 (unfeatured y, reverse model) -> ``.j_ru`` via ``reverse_bound`` (``reverse='z_sampled'``)
  or ``reverse_bound_z_observed`` (``reverse='z_observed'``, the variant used in the paper's experiments)
- eq. 7 (discriminative)   -> ``.j_fd`` (cross-entropy of q(y|x)) and ``.j_rd`` (Euclidean norm of
  ``x - E[x|y,z]``)
- eq. 8 (total)            -> :func:`make_loss_fn`: ``loss = -(mean J_fl + mean J_fu + mean J_ru)
  + a_fd mean J_fd + a_rd mean J_rd`` with ``(a_fd, a_rd) = (10, 0.1)``; the M2 baseline is
  ``reverse='none'``. Per-term weights (the authors' code's ``coeff_*``) are selectable, see below.

Batch (one compiled step takes the three streams together; a stream may be absent when unused):

- ``"x_l"`` float ``[B_l, 784]`` in [0, 1] and ``"y_l"`` int ``[B_l]``: labeled pairs;
- ``"x_u"`` float ``[B_u, 784]``: unlabeled images;
- ``"y_u"`` float ``[B_r, C]`` on the simplex: unfeatured labels (the paper's 0.95 "close corners"),
  with optional ``"z_u"`` float ``[B_r, D]`` (inside the box); without it z is drawn in the loss,
  uniformly on the reverse box (:func:`reverse_box`; ``N(0, I)`` for ``z_space='real'``), a fresh draw
  each step, i.e. an infinite unfeatured set;
- optional ``"temperature"`` float ``[]``: overrides the Concrete temperature. A schedule needs none:
  ``Config.temperature_decay_rate`` decays it with the step the engine passes to the loss.

Differences from the authors' code (``imgemp/untapped``), all deliberate:

- The constant log-densities ``log p(y) = -log C``, ``log p(z) = -D log(b-a)``, ``log q(x) = -D log 2``
  are included (``include_constants=True``), so the reported bounds are true bounds; the code omits
  them. Gradients are identical.
- ``J_rd`` uses the same ``z ~ q(z|x,y)`` sample as ``J_fl``.
- The reverse pass feeds a hard Bernoulli sample :math:`\tilde x` with stopped gradient, as the code
  does (``reverse_sample='hard'``). ``reverse_sample='relaxed'`` is a documented **deviation**: a
  binary-Concrete (logistic) relaxation :math:`\tilde x = \sigma((\ell + L)/\lambda)` through which
  gradients reach the decoder; its :math:`\log p(\tilde x|y,z)` is the Bernoulli cross-entropy at the
  relaxed value, not the density of the relaxed sample.
- ``J_fd`` is the cross-entropy (paper); the code's ``KL(target || pred)`` equals it for one-hot targets
  *of the softmax*, but the code applies it to a Concrete sample (see below).

The authors' code (``imgemp/untapped``: ``untapped/S2S_DGM.py`` ``SSDGM._build_objectives``,
``untapped/M12.py`` ``M2``, ``sup_error``, ``KL``, ``L2``) weights and builds the terms differently from
the paper's eq. 8. Selectable here, the paper's choice being the default:

These switches are grouped in :class:`AuthorsCode` (the field ``Config.code``), whose defaults are the
paper's:

- per-term weights (``code.weight_fl``, ``code.weight_fu``, ``code.weight_ru``; with ``alpha_fd``,
  ``alpha_rd``): the code
  minimises ``coeff_x (-J_fl) [only if coeff_x_prob > 0] + coeff_x (-J_fu) + coeff_y (-J_ru)
  + coeff_x_dis D_fd + coeff_y_dis D_rd`` (every term a batch mean). Its MNIST demo's
  ``coeff_x = coeff_y = 0.1, coeff_x_dis = 1, coeff_y_dis = 0.01, coeff_x_prob = 0.1`` (a switch; it is
  ``coeff_x`` that weights J_fl) is the paper's eq. 8 with (10, 0.1) scaled by 0.1 overall;
- ``code.fd_loss='concrete_sample'``: the code's ``D_fd`` is ``KL(onehot || y_s)`` at a reparameterised
  Concrete sample ``y_s`` of q(y|x) (layer output in non-deterministic mode), i.e.
  ``-log max(y_s[label], 1e-6)`` up to ``1e-6``-weighted terms, an upper bound on the cross-entropy
  (Jensen) that asks for larger margins;
- ``code.rd_input='hard_sample'``: the code's ``D_rd`` is the Euclidean norm of ``x - x_s`` at a hard
  Bernoulli sample ``x_s`` of p(x|y,z) (a comparison of a uniform draw with the mean), through which no
  gradient flows: ``alpha_rd`` then changes the reported loss, not the training;
- ``code.init_std``: the later code (``M12.py`` with ``W=normal(.001)``, paired with ``DEMO_mnist5.py``)
  initialises every kernel from N(0, 0.001^2) instead of Glorot-uniform(sqrt 2).

The authors' Table-1 script ``examples/DEMO_mnist5.py`` with its ``untapped/M12.py`` (commit 1645523)
also parametrises q(z|x,y) and the z box differently; selectable here, our earlier behaviour the default:

- ``scale_param='softplus'`` (with ``min_scale=1e-5``): ``M12.py`` ``sample()`` builds the second head
  ``l_log_var`` as a dense layer with ``nonlinearity=softplus`` and passes it to ``SampleLayer(...,
  nonlinearity=lambda x: x)`` (``parmesan/layers/sample.py``: ``z = mu + nonlinearity(log_var) * eps``), and
  ``LL_rec`` scores it with ``parmesan/distributions.py`` ``log_normal(x, mean, std, eps=1e-5)`` (``std +=
  eps``): despite its name the head is a standard deviation ``sigma = softplus(a)``. Here ``sigma =
  softplus(a) + 1e-5`` is used for both the sample and the density (the code samples with ``softplus(a)`` and
  scores with ``softplus(a) + 1e-5``; the sample then has exactly the scored density, a 1e-5 change of scale);
- ``z_low, z_high`` = (-6, 6) with ``code.reverse_z_low, code.reverse_z_high`` = (-1.5, 1.5):
  ``DEMO_mnist5.py`` puts ``LogisticFlowLayer(lo=-6., hi=6.)`` (``parmesan/layers/flow.py``: ``z = lo +
  (hi-lo) sigmoid(u)``, log-det of the same map up to a ``1e-5`` inside the log) after q(z|x,y), while its
  unfeatured z's are ``np.random.uniform(low=-1.5, high=1.5)``. The q box is also the forward prior's support
  (``p(z) = U[z_low, z_high]^D``); the reverse box is where the unfeatured z's live (drawn in the loss when
  the batch has no ``z_u``, and its uniform density is ``log p(z)`` of ``reverse='z_sampled'``).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxvae.config import (
    as_shape,
    as_widths,
    check_finite_number,
    check_in_range,
    check_nonnegative,
    check_one_of,
    check_positive,
    check_positive_int,
    set_field,
)
from jaxvae.distributions import bijectors
from jaxvae.distributions.bernoulli import Bernoulli, bernoulli_log_prob
from jaxvae.distributions.concrete import Concrete, exponential_decay_temperature
from jaxvae.distributions.normal import kl_normal_std, normal_log_prob_logvar
from jaxvae.models.common import as_key
from jaxvae.nets.heads import SCALE_PARAMS, GaussianHead
from jaxvae.nets.mlp import ACTIVATIONS, MLP, get_activation
from jaxvae.objectives import semi_supervised as ss
from jaxvae.train.state import LossOutput
from jaxvae.typing import PRNGKey, PyTree

UNLABELED = ("relaxed", "enumerate")
REVERSE = ("z_observed", "z_sampled", "none")
Z_SPACES = ("box", "real")
REVERSE_SAMPLES = ("hard", "relaxed")
Y_PRIORS = ("categorical", "concrete")
FD_LOSSES = ("cross_entropy", "concrete_sample")
RD_INPUTS = ("mean", "hard_sample")
_FD_CLIP = 1e-6  # the authors' code's KL clips probabilities to [1e-6, 1]


@dataclasses.dataclass(frozen=True)
class AuthorsCode:
    """The authors' code's choices where it departs from the paper (see the module docstring).

    The defaults are the paper's; each field names the code's alternative.

    Attributes:
      weight_fl, weight_fu, weight_ru: weights of ``-J_fl``, ``-J_fu``, ``-J_ru`` (the paper: 1, 1, 1;
        the authors' MNIST demo: ``coeff_x``, ``coeff_x``, ``coeff_y`` = 0.1, 0.1, 0.1).
      fd_loss: ``'cross_entropy'`` (the paper: ``-log softmax(logits)[label]``) or ``'concrete_sample'``
        (the code: ``-log max(y_s[label], 1e-6)`` at a reparameterised Concrete sample ``y_s`` of q(y|x)
        with the current temperature).
      rd_input: ``'mean'`` (the paper as we read it: ``||x - E[x|y,z]||``, differentiable) or
        ``'hard_sample'`` (the code: ``||x - x_s||`` at a Bernoulli sample, no gradient).
      init_std: None (Glorot-uniform with ``Config.init_gain``, the paper-era code) or the standard
        deviation of a normal init of every kernel (0.001 in the later code of ``M12.py``).
      reverse_z_low, reverse_z_high: the box of the unfeatured z's drawn in the loss (None: the q box
        ``Config.z_low``, ``z_high``; ``DEMO_mnist5.py``: -1.5, 1.5 inside q's [-6, 6]). Box only.
    """

    weight_fl: float = 1.0
    weight_fu: float = 1.0
    weight_ru: float = 1.0
    fd_loss: str = "cross_entropy"
    rd_input: str = "mean"
    init_std: float | None = None
    reverse_z_low: float | None = None
    reverse_z_high: float | None = None

    def __post_init__(self):
        for name in ("weight_fl", "weight_fu", "weight_ru"):
            check_nonnegative(name, getattr(self, name))
        check_one_of("fd_loss", self.fd_loss, FD_LOSSES)
        check_one_of("rd_input", self.rd_input, RD_INPUTS)
        if self.init_std is not None:
            check_positive("init_std", self.init_std)
        for name in ("reverse_z_low", "reverse_z_high"):
            if getattr(self, name) is not None:
                check_finite_number(name, getattr(self, name))


@dataclasses.dataclass(frozen=True)
class Config:
    """Model and objective settings (defaults: Gemp et al. App. D, MNIST).

    Attributes:
      num_classes: ``C``.
      x_shape: shape of one image, ``(784,)``: images are flattened ``[B, 784]`` in [0, 1].
      latent_dim: ``D`` (2 in the paper; 50 for classic M2).
      z_space: ``'box'`` (Gaussian through the scaled sigmoid onto ``[z_low, z_high]^D``, uniform prior,
        single-sample KL) or ``'real'`` (Gaussian posterior, ``N(0, I)`` prior, closed-form KL).
      z_low, z_high: the box of q(z|x,y) and of the prior p(z) (``-1.5, 1.5``; ``DEMO_mnist5.py``: -6, 6).
      scale_param: q(z|x,y)'s scale head (:class:`~jaxvae.nets.GaussianHead`): ``'log_var'`` (a linear
        log-variance, Kingma & Welling; the default) or ``'softplus'`` (``sigma = softplus(a) +
        min_scale``; with ``min_scale=1e-5`` the authors' ``M12.py``, see the module docstring).
      min_scale: the floor of ``sigma`` under ``scale_param='softplus'``.
      hidden_y, hidden_z, hidden_x: hidden sizes of the three nets (``(50, 50)``, ``(10, 10)``,
        ``(250, 500)``); each needs at least one layer.
      activation: a name in :data:`jaxvae.nets.mlp.ACTIVATIONS` (the paper: ``'tanh'``).
      init_gain: Glorot-uniform gain of every kernel (``sqrt(2)``, the authors' code).
      unlabeled: ``'relaxed'`` (one Concrete sample of y, Gemp et al.) or ``'enumerate'`` (exact sum
        over the C labels, classic M2).
      temperature: Concrete temperature ``tau`` (> 0); with a decay, its value at step 0.
      temperature_decay_rate, temperature_floor: a Concrete temperature schedule,
        ``tau_t = max(min(floor, tau), tau rate^t)`` at step ``t`` (the engine passes the step to the
        loss); rate 1 keeps ``tau`` fixed (the paper).
      relaxed_y_prior: in relaxed mode, ``'categorical'`` (``log p(y) = -log C``, the authors' choice)
        or ``'concrete'`` (the density of a uniform-logit Concrete with the same ``tau`` at the sample).
      reverse: ``'z_observed'`` (eq. 17), ``'z_sampled'`` (eq. 5) or ``'none'`` (the M2 baseline).
      reverse_sample: ``'hard'`` (stop-gradient Bernoulli sample) or ``'relaxed'`` (deviation, see module doc).
      reverse_temperature: ``lambda`` of the relaxed Bernoulli (> 0).
      alpha_fd, alpha_rd: weights of the discriminative terms (the paper: 10, 0.1; the authors' code's
        MNIST demo: ``coeff_x_dis = 1``, ``coeff_y_dis = 0.01``).
      include_constants: include the constant prior log-densities in the bounds.
      code: the authors' code's departures from the paper (:class:`AuthorsCode`; defaults: the paper).
    """

    num_classes: int = 10
    x_shape: tuple[int, ...] = (784,)
    latent_dim: int = 2
    z_space: str = "box"
    z_low: float = -1.5
    z_high: float = 1.5
    scale_param: str = "log_var"
    min_scale: float = 1e-5
    hidden_y: tuple[int, ...] = (50, 50)
    hidden_z: tuple[int, ...] = (10, 10)
    hidden_x: tuple[int, ...] = (250, 500)
    activation: str = "tanh"
    init_gain: float = math.sqrt(2.0)
    unlabeled: str = "relaxed"
    temperature: float = 1.0
    temperature_decay_rate: float = 1.0
    temperature_floor: float = 0.5
    relaxed_y_prior: str = "categorical"
    reverse: str = "z_observed"
    reverse_sample: str = "hard"
    reverse_temperature: float = 0.5
    alpha_fd: float = 10.0
    alpha_rd: float = 0.1
    include_constants: bool = True
    code: AuthorsCode = AuthorsCode()

    def __post_init__(self):
        for name in ("hidden_y", "hidden_z", "hidden_x"):
            set_field(self, name, as_widths(name, getattr(self, name)))
        set_field(self, "x_shape", as_shape("x_shape", self.x_shape))
        if len(self.x_shape) != 1:
            raise ValueError(f"`x_shape` must be flat, (num_pixels,); got {self.x_shape!r}.")
        check_positive_int("latent_dim", self.latent_dim)
        if check_positive_int("num_classes", self.num_classes) < 2:
            raise ValueError(f"`num_classes` must be >= 2; got {self.num_classes!r}.")
        for name, allowed in (
            ("z_space", Z_SPACES),
            ("unlabeled", UNLABELED),
            ("reverse", REVERSE),
            ("reverse_sample", REVERSE_SAMPLES),
            ("relaxed_y_prior", Y_PRIORS),
            ("scale_param", SCALE_PARAMS),
            ("activation", tuple(ACTIVATIONS)),
        ):
            check_one_of(name, getattr(self, name), allowed)
        if not isinstance(self.code, AuthorsCode):
            raise ValueError(f"`code` must be an AuthorsCode; got {type(self.code).__name__}.")
        z_low, z_high = check_finite_number("z_low", self.z_low), check_finite_number("z_high", self.z_high)
        if not z_high > z_low:
            raise ValueError(f"need `z_low` < `z_high`; got {self.z_low!r}, {self.z_high!r}.")
        if self.z_space != "box" and (self.code.reverse_z_low is not None or self.code.reverse_z_high is not None):
            raise ValueError(
                f"`code.reverse_z_low`/`code.reverse_z_high` apply to z_space='box' only; got z_space={self.z_space!r}."
            )
        lo, hi = reverse_box(self)
        if not (z_low <= lo < hi <= z_high):
            raise ValueError(
                "need `z_low` <= `code.reverse_z_low` < `code.reverse_z_high` <= `z_high` (the unfeatured z's "
                f"must lie in q(z|x,y)'s box); got reverse box ({lo!r}, {hi!r}) in ({self.z_low!r}, {self.z_high!r})."
            )
        for name in ("temperature", "reverse_temperature", "init_gain", "min_scale", "temperature_floor"):
            check_positive(name, getattr(self, name))
        check_in_range("temperature_decay_rate", self.temperature_decay_rate, 0.0, 1.0, low_closed=False)
        for name in ("alpha_fd", "alpha_rd"):
            check_nonnegative(name, getattr(self, name))

    @property
    def x_dim(self) -> int:
        """Pixels per image."""
        return self.x_shape[0]


# ------------------------------------------------------------------------------------------ networks


class InvertedSSVAE(nn.Module):
    """The three shared networks (:class:`~jaxvae.nets.MLP` stacks). Methods map arrays to distribution
    parameters; no sampling here.

    The first layer of ``(x, y) -> z`` and of ``(y, z) -> x`` is a sum of one dense map per input
    (equal to a dense map of the concatenation), so that in enumeration mode the ``x`` part of the
    z-encoder is computed once per image rather than once per label.
    """

    config: Config

    def setup(self):
        c = self.config
        if c.code.init_std is None:
            init = nn.initializers.variance_scaling(c.init_gain**2, "fan_avg", "uniform")
        else:
            init = nn.initializers.normal(stddev=c.code.init_std)
        mlp = functools.partial(MLP, activation=c.activation, kernel_init=init)
        self.y_net = mlp(c.hidden_y + (c.num_classes,), name="y_net")
        self.z_in_x = nn.Dense(c.hidden_z[0], kernel_init=init, name="z_in_x")
        self.z_in_y = nn.Dense(c.hidden_z[0], use_bias=False, kernel_init=init, name="z_in_y")
        self.z_net = mlp(c.hidden_z[1:], activate_final=True, name="z_net") if len(c.hidden_z) > 1 else None
        self.z_head = GaussianHead(
            c.latent_dim, scale_param=c.scale_param, min_scale=c.min_scale, kernel_init=init, name="z_head"
        )
        self.x_in_y = nn.Dense(c.hidden_x[0], kernel_init=init, name="x_in_y")
        self.x_in_z = nn.Dense(c.hidden_x[0], use_bias=False, kernel_init=init, name="x_in_z")
        self.x_net = mlp(c.hidden_x[1:] + (c.x_dim,), name="x_net")

    def classify(self, x):
        """``[..., x_dim] -> [..., C]`` logits of q(y|x)."""
        return self.y_net(x)

    def z_features_x(self, x):
        """``[..., x_dim] -> [..., H]``: the x part of the first z-encoder layer (pre-activation)."""
        return self.z_in_x(x)

    def z_params(self, hx, y):
        """``hx [..., H]``, ``y [..., C]`` -> ``(loc, log_var)`` each ``[..., D]`` of the Gaussian z~."""
        h = get_activation(self.config.activation)(hx + self.z_in_y(y))
        if self.z_net is not None:
            h = self.z_net(h)
        return self.z_head(h)

    def encode_z(self, x, y):
        """``x [..., x_dim]``, ``y [..., C]`` -> ``(loc, log_var)`` of q(z~|x, y)."""
        return self.z_params(self.z_features_x(x), y)

    def decode(self, y, z):
        """``y [..., C]``, ``z [..., D]`` -> ``[..., x_dim]`` Bernoulli logits of p(x|y, z)."""
        return self.x_net(get_activation(self.config.activation)(self.x_in_y(y) + self.x_in_z(z)))

    def __call__(self, x, y, z):
        """All three nets (used for ``init``): returns (y logits, (loc, log_var), x logits)."""
        return self.classify(x), self.encode_z(x, y), self.decode(y, z)


@functools.partial(jax.jit, static_argnums=0)
def _init(config: Config, key: PRNGKey) -> dict:
    x = jnp.zeros((1, config.x_dim))
    y = jnp.zeros((1, config.num_classes))
    z = jnp.zeros((1, config.latent_dim))
    return InvertedSSVAE(config).init(key, x, y, z)


def init(config: Config, key) -> tuple[PyTree, PyTree]:
    """Initialise the parameters from a key or an int seed: returns ``(params, model_state={})``."""
    if not isinstance(config, Config):
        raise ValueError(f"`config` must be an inverted_ssvae.Config; got {type(config).__name__}.")
    return _init(config, as_key(key))["params"], {}


def _apply(config: Config, params: PyTree, method: str, *args):
    return InvertedSSVAE(config).apply({"params": params}, *args, method=getattr(InvertedSSVAE, method))


def classify(config: Config, params: PyTree, x) -> jax.Array:
    """``[B, x_dim] -> [B, C]`` logits of q(y|x)."""
    return _apply(config, params, "classify", x)


def encode_z(config: Config, params: PyTree, x, y) -> tuple[jax.Array, jax.Array]:
    """``x [B, x_dim]``, ``y [B, C]`` -> ``(loc, log_var)`` ``[B, D]`` of the Gaussian z~ of q(z|x,y)."""
    return _apply(config, params, "encode_z", x, y)


def decode_mean(config: Config, params: PyTree, y, z) -> jax.Array:
    """``[B, C], [B, D] -> [B, x_dim]`` pixel probabilities of p(x|y,z)."""
    return jax.nn.sigmoid(_apply(config, params, "decode", y, z))


# ------------------------------------------------------------------------------------------ q(z|x,y)


def box(config: Config) -> bijectors.ScaledSigmoid:
    """The scaled sigmoid ``z = z_low + (z_high - z_low) sigmoid(u)`` onto q(z|x,y)'s box."""
    return bijectors.ScaledSigmoid(config.z_low, config.z_high)


def z_posterior_sample(config: Config, key: PRNGKey, loc, log_var) -> tuple[jax.Array, jax.Array]:
    """Reparameterised ``z ~ q(z|x,y)``; returns ``(z, kl_z)`` with ``kl_z`` summed over D.

    box: ``kl_z = log q(z|x,y) - log p(z)`` at the sample (one-sample estimate, App. A);
    real: the closed-form ``KL(N(loc, e^{log_var}) || N(0, I))``.
    """
    eps = jax.random.normal(key, jnp.shape(loc), dtype=loc.dtype)
    u = loc + jnp.exp(0.5 * log_var) * eps
    if config.z_space == "real":
        return u, jnp.sum(kl_normal_std(loc, log_var), axis=-1)
    b = box(config)
    log_q = jnp.sum(normal_log_prob_logvar(u, loc, log_var), axis=-1) - b.forward_log_det_jacobian(u)
    return b.forward(u), log_q - _log_pz(config)


def z_posterior_log_prob(config: Config, z, loc, log_var):
    """``log q(z|x,y)`` at a given ``z`` (inside the box for ``'box'``), summed over D.

    box: ``log N(u; loc, e^{log_var}) - log|dz/du|`` with ``u`` the scaled-sigmoid pre-image of ``z``
    (change of variables, Gemp et al. App. A); real: the Gaussian log-density.
    """
    if config.z_space == "real":
        return jnp.sum(normal_log_prob_logvar(z, loc, log_var), axis=-1)
    b = box(config)
    u = b.inverse(z)
    return jnp.sum(normal_log_prob_logvar(u, loc, log_var), axis=-1) - b.forward_log_det_jacobian(u)


def z_posterior_mean(config: Config, params: PyTree, x, y) -> jax.Array:
    """``[B, D]``: the location of q(z|x,y) mapped into z-space (``a + (b-a) sigmoid(loc)`` for the box).

    This is the "mean z" of the evaluation protocol (the image of the Gaussian mean, not E[z]).
    """
    loc, _ = encode_z(config, params, x, y)
    return loc if config.z_space == "real" else box(config).forward(loc)


def reverse_z_sample(config: Config, key: PRNGKey, shape) -> tuple[jax.Array, jax.Array]:
    """An unfeatured ``z`` of the reverse stream and its log-density (``[B]``): ``N(0, I)`` (real) or
    uniform on the reverse box (box; the q box unless ``code.reverse_z_low/high`` are set)."""
    if config.z_space == "real":
        z = jax.random.normal(key, shape)
        return z, jnp.sum(normal_log_prob_logvar(z, 0.0, 0.0), axis=-1)
    lo, hi = reverse_box(config)
    z = jax.random.uniform(key, shape, minval=lo, maxval=hi)
    return z, jnp.full(shape[:-1], _log_pz_reverse(config))


def reverse_box(config: Config) -> tuple[float, float]:
    """``(low, high)`` of the unfeatured z's: ``code.reverse_z_low/high``, each defaulting to ``z_low/high``."""
    lo = config.z_low if config.code.reverse_z_low is None else config.code.reverse_z_low
    hi = config.z_high if config.code.reverse_z_high is None else config.code.reverse_z_high
    return lo, hi


def _log_pz(config: Config) -> float:
    if not config.include_constants:
        return 0.0
    return ss.log_uniform_box(config.latent_dim, config.z_low, config.z_high)


def _log_pz_reverse(config: Config) -> float:
    """``log`` of the uniform density of the unfeatured z's on the reverse box."""
    if not config.include_constants:
        return 0.0
    return ss.log_uniform_box(config.latent_dim, *reverse_box(config))


# ------------------------------------------------------------------------------------------ objective


class Terms(NamedTuple):
    """Per-example terms of eq. 8, one array per stream (``None`` where the stream is unused).

    Attributes:
      j_fl: ``[B_l]`` labeled bound (eq. 3).
      j_fd: ``[B_l]`` cross-entropy of q(y|x) at the label (eq. 7).
      j_rd: ``[B_l]`` Euclidean reconstruction error of the decoder mean (eq. 7).
      correct: ``[B_l]`` 1.0 where argmax q(y|x) is the label.
      j_fu: ``[B_u]`` unlabeled bound (eq. 4), or ``None``.
      entropy_y: ``[B_u]`` the y-entropy part of ``j_fu``: ``-log q(y_s|x)`` at the Concrete sample
        (relaxed) or the exact ``H[q(y|x)]`` (enumerate); ``j_fu - entropy_y`` is the expected
        labeled bound under q(y|x).
      j_ru: ``[B_r]`` reverse bound (eq. 17 or eq. 5), or ``None``.
    """

    j_fl: jax.Array | None
    j_fd: jax.Array | None
    j_rd: jax.Array | None
    correct: jax.Array | None
    j_fu: jax.Array | None
    entropy_y: jax.Array | None
    j_ru: jax.Array | None


def _check_batch(config: Config, batch: dict) -> None:
    """Static checks of the batch's keys, ranks and shapes (these run under ``jit`` too)."""
    if not isinstance(batch, dict):
        raise ValueError(f"`batch` must be a dict; got {type(batch).__name__}.")
    known = {"x_l", "y_l", "x_u", "y_u", "z_u", "temperature"}
    unknown = set(batch) - known
    if unknown:
        raise ValueError(f"`batch` has unknown key(s) {sorted(unknown)}; expected some of {sorted(known)}.")
    if ("x_l" in batch) != ("y_l" in batch):
        raise ValueError("`batch` must hold both 'x_l' and 'y_l' (labeled pairs) or neither.")
    if "x_l" not in batch and "x_u" not in batch:
        raise ValueError("`batch` needs labeled pairs ('x_l', 'y_l') or unlabeled images ('x_u').")
    if config.reverse != "none" and "y_u" not in batch:
        raise ValueError(
            f"reverse={config.reverse!r} needs unfeatured labels `batch['y_u']` [B_r, {config.num_classes}]; "
            "use reverse='none' for the M2 baseline."
        )
    if "z_u" in batch and "y_u" not in batch:
        raise ValueError("`batch['z_u']` is given without `batch['y_u']`.")
    for k in ("x_l", "x_u"):
        if k in batch and (np.ndim(batch[k]) != 2 or np.shape(batch[k])[1] != config.x_dim):
            raise ValueError(f"`batch['{k}']` must have shape [B, {config.x_dim}]; got {np.shape(batch[k])}.")
    if "y_l" in batch:
        y = batch["y_l"]
        if np.shape(y) != (np.shape(batch["x_l"])[0],) or not jnp.issubdtype(jnp.asarray(y).dtype, jnp.integer):
            raise ValueError(
                f"`batch['y_l']` must be int labels of shape [B_l] = [{np.shape(batch['x_l'])[0]}]; "
                f"got {np.shape(y)}, dtype {jnp.asarray(y).dtype}."
            )
    if "y_u" in batch and (np.ndim(batch["y_u"]) != 2 or np.shape(batch["y_u"])[1] != config.num_classes):
        raise ValueError(f"`batch['y_u']` must have shape [B_r, {config.num_classes}]; got {np.shape(batch['y_u'])}.")
    if "z_u" in batch and np.shape(batch["z_u"]) != (np.shape(batch["y_u"])[0], config.latent_dim):
        raise ValueError(
            f"`batch['z_u']` must have shape [B_r, {config.latent_dim}] = "
            f"{(np.shape(batch['y_u'])[0], config.latent_dim)}; got {np.shape(batch['z_u'])}."
        )
    if "temperature" in batch and np.ndim(batch["temperature"]) != 0:
        raise ValueError(f"`batch['temperature']` must be a scalar; got shape {np.shape(batch['temperature'])}.")
    # Value checks, only for concrete (eager) inputs.
    from jaxvae.distributions import _checks

    for k in ("x_l", "x_u"):
        if k in batch:
            _checks.check_probability(f"batch['{k}']", batch[k])
    if "y_l" in batch and _checks.is_concrete(batch["y_l"]):
        a = np.asarray(batch["y_l"])
        if a.size and (a.min() < 0 or a.max() >= config.num_classes):
            raise ValueError(f"`batch['y_l']` must lie in [0, {config.num_classes}); got [{a.min()}, {a.max()}].")
    if "y_u" in batch and _checks.is_concrete(batch["y_u"]):
        a = np.asarray(batch["y_u"])
        if not (np.all(a > 0) and np.allclose(a.sum(-1), 1.0, atol=1e-4)):
            raise ValueError("`batch['y_u']` rows must lie inside the simplex (entries > 0, summing to 1).")
    if "z_u" in batch and config.z_space == "box" and _checks.is_concrete(batch["z_u"]):
        a = np.asarray(batch["z_u"])
        if not np.all((a > config.z_low) & (a < config.z_high)):
            raise ValueError(f"`batch['z_u']` must lie inside the open box ({config.z_low}, {config.z_high}).")
    if "temperature" in batch:
        _checks.check_positive("batch['temperature']", batch["temperature"])


def _log_py(config: Config) -> float:
    return ss.log_uniform_categorical(config.num_classes) if config.include_constants else 0.0


def _log_qy(config: Config, logits, y, tau):
    """log q(y|x) at a simplex point ``y``: Concrete density (relaxed) or ``sum y log pi`` (enumerate)."""
    if config.unlabeled == "enumerate":
        return jnp.sum(y * jax.nn.log_softmax(logits, axis=-1), axis=-1)
    return Concrete(logits, tau).log_prob(y)


def _hard_sample(key: PRNGKey, logits: jax.Array) -> jax.Array:
    """A Bernoulli sample of p(x|y,z) through which no gradient flows (the authors' ``BernoulliSampleLayer``)."""
    return jax.lax.stop_gradient(Bernoulli(logits=logits).sample(key).astype(logits.dtype))


def temperature_at(config: Config, step: ArrayLike = 0) -> jax.Array:
    """The Concrete temperature at ``step`` under the config's schedule (``config.temperature`` without one)."""
    if config.temperature_decay_rate == 1.0:
        return jnp.asarray(config.temperature, jnp.float32)
    floor = min(config.temperature_floor, config.temperature)
    schedule = exponential_decay_temperature(config.temperature, config.temperature_decay_rate, floor)
    return jnp.asarray(schedule(step), jnp.float32)


def objective_terms(
    config: Config,
    params: PyTree,
    model_state: PyTree,
    batch: dict,
    key: PRNGKey,
    *,
    train: bool = True,
    temperature: ArrayLike | None = None,
) -> tuple[Terms, PyTree]:
    """Per-example terms of eq. 8 for the streams present in ``batch`` (see the module docstring).

    The key is split into one subkey per stream in a fixed order, so the labeled and unlabeled terms
    are bitwise the same whether or not the reverse stream is used (the M2 baseline and the untapped
    model see the same noise for the same key). The model has no batch statistics: ``train`` changes
    nothing and ``model_state`` comes back unchanged. The Concrete temperature is ``batch["temperature"]``
    when the batch has one, else ``temperature`` (e.g. :func:`temperature_at` the step), else
    ``config.temperature``.

    Raises:
      ValueError: for a malformed batch (missing stream, wrong shape, labels out of range, ...).
    """
    del train
    _check_batch(config, batch)
    c = config
    model = InvertedSSVAE(c)
    ap = lambda method, *a: model.apply({"params": params}, *a, method=getattr(InvertedSSVAE, method))
    k_l, k_u, k_r = jax.random.split(key, 3)
    tau = batch.get("temperature", c.temperature if temperature is None else temperature)
    tau = jnp.asarray(tau, jnp.float32)
    log_py = _log_py(c)
    j_fl = j_fd = j_rd = correct = j_fu = entropy_y = j_ru = None

    if "x_l" in batch:
        x, y = batch["x_l"], batch["y_l"]
        y1h = jax.nn.one_hot(y, c.num_classes, dtype=x.dtype)
        logits_y = ap("classify", x)
        loc, log_var = ap("encode_z", x, y1h)
        z, kl_z = z_posterior_sample(c, k_l, loc, log_var)
        logits_x = ap("decode", y1h, z)
        log_px = jnp.sum(bernoulli_log_prob(x, logits_x), axis=-1)
        j_fl = ss.labeled_bound(log_px, kl_z, log_py=log_py)
        if c.code.fd_loss == "cross_entropy":
            j_fd = ss.classification_cross_entropy(logits_y, y)
        else:  # the authors' code: KL(onehot || Concrete sample); separate noise keeps j_fl's key
            log_ys = Concrete(logits_y, tau).sample_log(jax.random.fold_in(k_l, 1))
            j_fd = -jnp.maximum(jnp.take_along_axis(log_ys, y[:, None], axis=-1)[:, 0], math.log(_FD_CLIP))
        if c.code.rd_input == "mean":
            j_rd = ss.l2_reconstruction_loss(x, jax.nn.sigmoid(logits_x))
        else:  # the authors' code: a hard Bernoulli sample, through which no gradient flows
            j_rd = ss.l2_reconstruction_loss(x, _hard_sample(jax.random.fold_in(k_l, 2), logits_x))
        correct = (jnp.argmax(logits_y, axis=-1) == y).astype(x.dtype)

    if "x_u" in batch:
        x = batch["x_u"]
        logits_y = ap("classify", x)
        if c.unlabeled == "relaxed":
            k_y, k_z = jax.random.split(k_u)
            q_y = Concrete(logits_y, tau)
            log_y = q_y.sample_log(k_y)  # log space: finite at low temperature
            y_s = jnp.exp(log_y)
            log_qy = q_y.log_prob_log_sample(log_y)
            if c.relaxed_y_prior == "concrete":
                log_py_s = Concrete(jnp.zeros_like(logits_y), tau).log_prob_log_sample(log_y)
            else:
                log_py_s = log_py
            loc, log_var = ap("encode_z", x, y_s)
            z, kl_z = z_posterior_sample(c, k_z, loc, log_var)
            log_px = jnp.sum(bernoulli_log_prob(x, ap("decode", y_s, z)), axis=-1)
            j_fu = ss.unlabeled_bound(log_px, kl_z, log_qy, log_py=log_py_s)
            entropy_y = -log_qy
        else:
            b, n = x.shape[0], c.num_classes
            eye = jnp.broadcast_to(jnp.eye(n, dtype=x.dtype), (b, n, n))  # [B, C, C]
            hx = ap("z_features_x", x)  # [B, H], once per image
            hx = jnp.broadcast_to(hx[:, None, :], (b, n, hx.shape[-1]))
            loc, log_var = ap("z_params", hx, eye)  # [B, C, D]
            z, kl_z = z_posterior_sample(c, k_u, loc, log_var)  # [B, C, D], [B, C]
            logits_x = ap("decode", eye, z)  # [B, C, x_dim]
            xb = jnp.broadcast_to(x[:, None, :], logits_x.shape)
            log_px = jnp.sum(bernoulli_log_prob(xb, logits_x), axis=-1)  # [B, C]
            j_fl_all = log_px + log_py - kl_z
            j_fu = ss.unlabeled_bound_enumerated(logits_y, j_fl_all)
            log_q = jax.nn.log_softmax(logits_y, axis=-1)
            entropy_y = -jnp.sum(jnp.exp(log_q) * log_q, axis=-1)

    if c.reverse != "none":
        y = batch["y_u"].astype(jnp.float32)
        k_z, k_x = jax.random.split(k_r)
        if "z_u" in batch:
            z = batch["z_u"].astype(jnp.float32)
            log_pz = None
        else:
            z, log_pz = reverse_z_sample(c, k_z, (y.shape[0], c.latent_dim))
        logits_x = ap("decode", y, z)
        if c.reverse_sample == "hard":
            x_t = _hard_sample(k_x, logits_x)
        else:
            noise = jax.random.logistic(k_x, logits_x.shape, logits_x.dtype)
            x_t = jax.nn.sigmoid((logits_x + noise) / c.reverse_temperature)
        log_px = jnp.sum(bernoulli_log_prob(x_t, logits_x), axis=-1)
        log_qy = _log_qy(c, ap("classify", x_t), y, tau)
        loc, log_var = ap("encode_z", x_t, y)
        log_qz = z_posterior_log_prob(c, z, loc, log_var)
        log_qx = ss.log_uniform_bernoulli(c.x_dim) if c.include_constants else 0.0
        if c.reverse == "z_observed":
            j_ru = ss.reverse_bound_z_observed(log_qy, log_qz, log_px, log_qx=log_qx)
        else:
            if log_pz is None:  # z given by the batch: its prior log-density
                log_pz = (
                    jnp.full(z.shape[:1], _log_pz_reverse(c))
                    if c.z_space == "box"
                    else jnp.sum(normal_log_prob_logvar(z, 0.0, 0.0), axis=-1)
                )
            j_ru = ss.reverse_bound(log_qy, log_qz, log_px, log_qx=log_qx, log_pz=log_pz)

    return Terms(j_fl, j_fd, j_rd, correct, j_fu, entropy_y, j_ru), model_state


def total_loss(config: Config, terms: Terms) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Eq. 8 as a loss to minimise (batch means per stream):

    ``-(w_fl J_fl + w_fu J_fu + w_ru J_ru) + a_fd J_fd + a_rd J_rd``, with ``w = 1`` in the paper and
    ``w = 0.1``, ``(a_fd, a_rd) = (1, 0.01)`` in the authors' MNIST demo (see :class:`AuthorsCode`).
    """
    c, w = config, config.code
    loss = jnp.zeros((), jnp.float32)
    metrics = {}
    if terms.j_fl is not None:
        m = {k: jnp.mean(getattr(terms, k)) for k in ("j_fl", "j_fd", "j_rd", "correct")}
        loss = loss - w.weight_fl * m["j_fl"] + c.alpha_fd * m["j_fd"] + c.alpha_rd * m["j_rd"]
        metrics.update(m)
    if terms.j_fu is not None:
        metrics["j_fu"] = jnp.mean(terms.j_fu)
        loss = loss - w.weight_fu * metrics["j_fu"]
    if terms.j_ru is not None:
        metrics["j_ru"] = jnp.mean(terms.j_ru)
        loss = loss - w.weight_ru * metrics["j_ru"]
    return loss, metrics


def make_loss_fn(config: Config) -> Callable:
    """``loss_fn(params, model_state, batch, key, *, step=0) -> LossOutput`` for the engine (eq. 8,
    minimised); the Concrete temperature follows the config's schedule at ``step`` (:func:`temperature_at`)."""

    def loss_fn(params, model_state, batch, key, *, step=0):
        tau = temperature_at(config, step)
        terms, model_state = objective_terms(config, params, model_state, batch, key, temperature=tau)
        loss, metrics = total_loss(config, terms)
        return LossOutput(loss, metrics, model_state)

    return loss_fn


def make_eval_fn(config: Config) -> Callable:
    """``eval_fn(params, model_state, batch, key) -> dict[str, Array[B]]`` on labeled data ``{'x', 'y'}``.

    Returns per-example ``'cross_entropy'`` (of q(y|x) at the label), ``'correct'``, ``'labeled_bound'``
    (J_fl, one z sample) and ``'unlabeled_bound'`` (J_fu in the model's unlabeled mode).
    """
    forward_only = dataclasses.replace(config, reverse="none")

    def eval_fn(params, model_state, batch, key):
        if not isinstance(batch, dict) or set(batch) != {"x", "y"}:
            raise ValueError(
                "eval `batch` must be a dict with keys 'x' and 'y'; got "
                f"{sorted(batch) if isinstance(batch, dict) else type(batch).__name__}."
            )
        streams = {"x_l": batch["x"], "y_l": batch["y"], "x_u": batch["x"]}
        t, _ = objective_terms(forward_only, params, model_state, streams, key, train=False)
        return {"cross_entropy": t.j_fd, "correct": t.correct, "labeled_bound": t.j_fl, "unlabeled_bound": t.j_fu}

    return eval_fn


def corner_labels(num_classes: int = 10, high: float = 0.95) -> np.ndarray:
    """The paper's unfeatured set: ``C`` "close corners" of the simplex, ``high`` on one class and
    ``(1 - high)/(C - 1)`` on the others. Returns float32 ``[C, C]``."""
    if not (0.0 < high < 1.0):
        raise ValueError(f"`high` must lie in (0, 1); got {high!r}.")
    low = (1.0 - high) / (num_classes - 1)
    return (np.full((num_classes, num_classes), low) + np.eye(num_classes) * (high - low)).astype(np.float32)
