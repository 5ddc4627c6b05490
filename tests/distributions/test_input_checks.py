"""Eager value checks of the distributions' inputs: each bad input is a ValueError naming the argument,
never a silent NaN or a number off the support; under jit the same calls compile and stay checked by shape
only (documented)."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvae.distributions import (
    Bernoulli,
    Categorical,
    Concrete,
    DiscretizedLogisticMixture,
    MixtureNormal,
    Normal,
    RectifiedNormal,
    kl_bernoulli_bernoulli,
    kl_normal_normal,
    kl_rectified_rectified,
)

NAN = jnp.float32(jnp.nan)
MIX = MixtureNormal(jnp.zeros(2), jnp.zeros((2, 3)), jnp.ones((2, 3)))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: Normal(0.0, 1.0).log_prob(NAN), "`x` holds 1 NaN"),
        (lambda: Normal(jnp.zeros(3), 1.0).log_prob(jnp.array([0.0, NAN, 1.0])), "`x` holds 1 NaN value"),
        (lambda: MIX.log_prob(jnp.array([0.0, NAN, 1.0])), "`x` holds 1 NaN"),
        (lambda: RectifiedNormal(0.0, 1.0).log_prob(NAN), "`z` holds 1 NaN"),
        (lambda: RectifiedNormal(0.0, 1.0).log_prob(jnp.array([0.5, -0.1])), r"`z` must be >= 0"),
        (lambda: Concrete(jnp.zeros(3), 0.5).log_prob(jnp.array([0.9, 0.9, 0.9])), "`y` must lie on the simplex"),
        (lambda: Concrete(jnp.zeros(3), 0.5).log_prob(jnp.array([0.5, NAN, 0.5])), "`y` holds 1 NaN"),
        (lambda: Concrete(jnp.zeros(3), 0.5).log_prob(jnp.array([1.2, -0.2, 0.0])), "`y` must be >= 0"),
        (lambda: Concrete(jnp.zeros(3), 0.5).log_prob_log_sample(jnp.array([0.0, NAN, 0.0])), "`log_y` holds"),
        (lambda: Bernoulli(jnp.zeros(2)).log_prob(jnp.array([0.0, 2.0])), r"`x` must lie in \[0, 1\]"),
        (lambda: Categorical(jnp.zeros(3)).log_prob(jnp.array(3)), r"class indices in \[0, 3\)"),
        (lambda: DiscretizedLogisticMixture(jnp.zeros(2), jnp.zeros(2), jnp.zeros(2)).log_prob(1.5), r"\[-1, 1\]"),
    ],
)
def test_bad_log_prob_inputs_are_errors_naming_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_boundary_inputs_keep_their_documented_values():
    """What stays legal next to the refused values: the point mass at 0, an underflowed Concrete entry
    (-inf, the open simplex's boundary), infinities of a Normal (log-density -inf), a simplex point summing
    to 1 up to float32 rounding."""
    r = RectifiedNormal(0.0, 1.0)
    np.testing.assert_allclose(r.log_prob(0.0), np.log(0.5), rtol=1e-6)
    c = Concrete(jnp.zeros(3), 0.5)
    assert c.log_prob(jnp.array([1.0, 0.0, 0.0])) == -jnp.inf
    y = jax.nn.softmax(jnp.array([0.3, -1.2, 2.0]))
    assert jnp.isfinite(c.log_prob(y))
    assert Normal(0.0, 1.0).log_prob(jnp.inf) == -jnp.inf


def test_under_jit_the_same_calls_compile_and_score_off_support_as_minus_inf():
    r, c = RectifiedNormal(0.0, 1.0), Concrete(jnp.zeros(3), 0.5)
    assert jax.jit(r.log_prob)(jnp.float32(-0.1)) == -jnp.inf
    assert jax.jit(c.log_prob)(jnp.array([1.5, -0.5, 0.0])) == -jnp.inf
    assert jnp.isnan(jax.jit(Normal(0.0, 1.0).log_prob)(NAN))  # documented: values are not checked under jit


def test_parameters_given_as_lists_are_arrays_and_validated():
    with pytest.raises(ValueError, match="`scale` must be > 0"):
        Normal([0.0], [-1.0])
    with pytest.raises(ValueError, match="`scale` must be > 0"):
        RectifiedNormal([0.0, 1.0], (1.0, 0.0))
    with pytest.raises(ValueError, match="`logits` must be finite"):
        Bernoulli([0.0, float("nan")])
    n = Normal([0.0, 1.0], [1.0, 2.0])
    assert isinstance(n.loc, jax.Array) and n.batch_shape == (2,)
    np.testing.assert_allclose(
        n.log_prob(jnp.array([0.0, 1.0])),
        Normal(jnp.array([0.0, 1.0]), jnp.array([1.0, 2.0])).log_prob(jnp.array([0.0, 1.0])),
    )
    with pytest.raises(ValueError, match="`loc` must be an array"):
        Normal([[0.0], [1.0, 2.0]], 1.0)  # ragged


@pytest.mark.parametrize(
    "kl, q, p",
    [
        (kl_normal_normal, Normal(jnp.zeros(3), 1.0), Normal(jnp.zeros(4), 1.0)),
        (kl_bernoulli_bernoulli, Bernoulli(jnp.zeros((2, 3))), Bernoulli(jnp.zeros((2, 4)))),
        (kl_rectified_rectified, RectifiedNormal(jnp.zeros(3), 1.0), RectifiedNormal(jnp.zeros(2), 1.0)),
    ],
)
def test_kl_of_mismatched_shapes_names_both(kl, q, p):
    with pytest.raises(ValueError, match=re.escape(f"`q` {q.batch_shape}, `p` {p.batch_shape}")):
        kl(q, p)


def test_kl_normal_normal_still_broadcasts_batch_shapes():
    q = Normal(jnp.zeros((2, 1)), jnp.ones((2, 1)))
    p = Normal(jnp.arange(3.0), 2.0)
    out = kl_normal_normal(q, p)
    assert out.shape == (2, 3)
    want = np.log(2.0) + (1.0 + np.arange(3.0) ** 2) / 8.0 - 0.5
    np.testing.assert_allclose(out, np.broadcast_to(want, (2, 3)), rtol=1e-6)
