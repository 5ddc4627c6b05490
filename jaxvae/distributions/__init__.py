"""Probabilistic primitives: immutable pytree distributions and explicitly named KLs (jax + numpy only).

Elementwise distributions (``Normal``, ``Bernoulli``, ``RectifiedNormal``) have no event dimensions:
``log_prob`` keeps the input shape. Vector-valued ones (``Categorical``, ``Concrete``,
``MixtureNormal``) reduce over the last axis. The mixture-KL estimator family lives in
:mod:`jaxvae.distributions.mixture_kl`.

**What is checked.** The classes validate their parameters and their ``log_prob`` inputs (NaN, off the
support, off the simplex, shapes that do not broadcast) with a ``ValueError`` naming the argument,
whenever the values are concrete (eager calls; under ``jit``/``vmap``/``grad`` only the static shape
checks run). The plain functions (``normal_log_prob``, ``bernoulli_log_prob``, ``mixture_log_prob``,
``concrete_log_prob_log_sample``, ``discretized_logistic_mixture_log_prob``, ``kl_normal_std``) are the
fast paths the models call inside compiled steps and check no values: ``normal_log_prob(x, 0, -1)`` is
NaN and ``bernoulli_log_prob(2, l)`` is a number; build the class to get the checks.
"""

from jaxvae.distributions import mixture_kl
from jaxvae.distributions.bernoulli import Bernoulli, bernoulli_log_prob, kl_bernoulli_bernoulli
from jaxvae.distributions.bijectors import ScaledSigmoid, SoftmaxCentered, Softplus, scaled_sigmoid_log_det
from jaxvae.distributions.categorical import Categorical, kl_categorical_categorical
from jaxvae.distributions.concrete import (
    Concrete,
    concrete_log_prob_log_sample,
    constant_temperature,
    exponential_decay_temperature,
)
from jaxvae.distributions.logistic_mixture import DiscretizedLogisticMixture, discretized_logistic_mixture_log_prob
from jaxvae.distributions.mixture import MixtureNormal, mixture_log_prob
from jaxvae.distributions.mixture_kl import population_kl
from jaxvae.distributions.normal import Normal, kl_normal_normal, kl_normal_std, normal_log_prob, normal_log_prob_logvar
from jaxvae.distributions.rectified_normal import RectifiedNormal, kl_rectified_mc, kl_rectified_rectified

__all__ = [
    "Bernoulli",
    "Categorical",
    "Concrete",
    "DiscretizedLogisticMixture",
    "MixtureNormal",
    "Normal",
    "RectifiedNormal",
    "ScaledSigmoid",
    "SoftmaxCentered",
    "Softplus",
    "bernoulli_log_prob",
    "concrete_log_prob_log_sample",
    "constant_temperature",
    "discretized_logistic_mixture_log_prob",
    "exponential_decay_temperature",
    "kl_bernoulli_bernoulli",
    "kl_categorical_categorical",
    "kl_normal_normal",
    "kl_normal_std",
    "kl_rectified_mc",
    "kl_rectified_rectified",
    "mixture_kl",
    "mixture_log_prob",
    "normal_log_prob",
    "normal_log_prob_logvar",
    "population_kl",
    "scaled_sigmoid_log_det",
]
