"""DiscretizedLogisticMixture: normalisation over 256 bins, float64 oracle, edges, sampler law, gradients, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from scipy import special

from jaxvae.distributions.logistic_mixture import (
    DiscretizedLogisticMixture,
    bin_values,
    pixels_to_unit,
    unit_to_pixels,
)
from tests import stats


def _params(key, batch=(5,), k=4, scale_shift=-2.0, dtype=jnp.float32):
    k1, k2, k3 = jax.random.split(key, 3)
    return (
        jax.random.normal(k1, batch + (k,), dtype),
        jax.random.uniform(k2, batch + (k,), dtype, -1.2, 1.2),
        scale_shift + jax.random.normal(k3, batch + (k,), dtype),
    )


def _np_log_prob(x, logit_probs, means, log_scales, num_bins=256):
    """float64 transcription of the PixelCNN++ bin probabilities (direct CDF differences)."""
    x, lp, mu, ls = (np.asarray(a, np.float64) for a in (x, logit_probs, means, log_scales))
    h = 1.0 / (num_bins - 1)
    x = x[..., None]
    cdf_plus = special.expit((x - mu + h) / np.exp(ls))
    cdf_min = special.expit((x - mu - h) / np.exp(ls))
    p = np.where(x < -1 + h, cdf_plus, np.where(x > 1 - h, 1.0 - cdf_min, cdf_plus - cdf_min))
    w = special.softmax(lp, axis=-1)
    return np.log(np.sum(w * p, -1))


@pytest.mark.parametrize("scale_shift", [-6.0, -2.0, 1.0], ids=["narrow", "medium", "wide"])
def test_bins_sum_to_one(key, scale_shift):
    d = DiscretizedLogisticMixture(*_params(key, (6,), scale_shift=scale_shift))
    lp = d.bin_log_probs()
    assert lp.shape == (6, 256)
    np.testing.assert_allclose(jax.nn.logsumexp(lp, -1), 0.0, atol=2e-5)


def test_extreme_parameters_sum_to_one_and_finite():
    means = jnp.array([[-3.0, 0.0, 2.5], [1.0, 1.0, -1.0], [0.5 / 255, -1.0, 1.0]])
    log_scales = jnp.array([[-25.0, -12.0, 6.0], [-7.0, -7.0, -7.0], [-40.0, 3.0, -0.5]])
    logit_probs = jnp.array([[0.0, 40.0, -40.0], [1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    d = DiscretizedLogisticMixture(logit_probs, means, log_scales)
    lp = d.bin_log_probs()
    assert np.all(np.isfinite(lp) | (lp == -np.inf))
    np.testing.assert_allclose(jax.nn.logsumexp(lp, -1), 0.0, atol=2e-5)


def test_matches_float64_transcription(key):
    lp, mu, ls = _params(key, (7,), scale_shift=-2.5)
    x = jnp.stack([bin_values()[jnp.array([0, 1, 100, 128, 200, 254, 255])]] * 7, 1)  # [7 bins, 7 batch]
    d = DiscretizedLogisticMixture(lp, mu, ls)
    got = d.log_prob(x)
    want = _np_log_prob(x, lp, mu, ls)
    mask = want > -30  # the float64 direct difference itself loses accuracy far in the tails
    assert mask.mean() > 0.8
    np.testing.assert_allclose(np.asarray(got)[mask], want[mask], rtol=2e-5, atol=2e-5)


def test_tiny_width_regime_matches_pdf_and_oracle():
    """Wide logistics: bin probability ~ pdf * bin width, computed through the series branch."""
    mu, ls = jnp.array([0.1]), jnp.array([9.0])  # width 2h/s ~ 1e-6
    d = DiscretizedLogisticMixture(jnp.zeros(1), mu, ls)
    x = bin_values()[jnp.array([5, 130, 250])]
    s = np.exp(9.0)
    z = (np.asarray(x, np.float64) - 0.1) / s
    log_pdf_width = z - 9.0 - 2 * np.log1p(np.exp(z)) + np.log(2 / 255)
    np.testing.assert_allclose(d.log_prob(x), log_pdf_width, rtol=1e-5)


def test_edges():
    """x = -1 takes all mass left of -1 + h, x = 1 all mass right of 1 - h."""
    mu, ls = jnp.array([-1.5]), jnp.array([-1.0])
    d = DiscretizedLogisticMixture(jnp.zeros(1), mu, ls)
    h = 1 / 255
    s = np.exp(-1.0)
    np.testing.assert_allclose(d.log_prob(jnp.array(-1.0)), np.log(special.expit((-1 + h + 1.5) / s)), rtol=1e-6)
    np.testing.assert_allclose(d.log_prob(jnp.array(1.0)), np.log(1 - special.expit((1 - h + 1.5) / s)), rtol=1e-5)


@pytest.mark.statistical
def test_sample_bin_frequencies(key):
    lp, mu, ls = _params(jax.random.key(3), (), k=3, scale_shift=-1.5)
    d = DiscretizedLogisticMixture(lp, mu.at[0].set(-0.97), ls)  # some mass in the edge bin
    x = jax.jit(d.sample, static_argnums=1)(key, (30_000,))
    assert x.shape == (30_000,)
    k = np.asarray(unit_to_pixels(x))
    np.testing.assert_allclose(np.asarray(pixels_to_unit(k)), np.asarray(x), atol=1e-6)  # on the grid
    probs = np.exp(np.asarray(d.bin_log_probs(), np.float64))
    stats.chi2_test(np.bincount(k, minlength=256), probs, what="bin frequencies")


def test_sample_shapes(key):
    d = DiscretizedLogisticMixture(*_params(key, (2, 3)))
    assert jax.eval_shape(lambda d, k: d.sample(k, (4,)), d, key).shape == (4, 2, 3)
    assert jax.eval_shape(lambda d, k: d.sample(k), d, key).shape == (2, 3)
    assert jax.eval_shape(lambda d: d.mean(), d).shape == (2, 3)


def test_image_shaped_parameters(key):
    lp, mu, ls = _params(key, (2, 4, 4, 3), k=5)
    d = DiscretizedLogisticMixture(lp, mu, ls)
    x = pixels_to_unit(jax.random.randint(key, (2, 4, 4, 3), 0, 256))
    out = jax.jit(lambda d, x: d.log_prob(x))(d, x)
    assert out.shape == (2, 4, 4, 3)
    np.testing.assert_allclose(out, _np_log_prob(x, lp, mu, ls), rtol=1e-4, atol=1e-4)


def test_finite_grads_everywhere(key):
    lp, mu, ls = _params(key, (256,), scale_shift=-3.0)
    x = bin_values()  # includes both edge bins

    def loss(lp, mu, ls):
        return jnp.sum(DiscretizedLogisticMixture(lp, mu, ls).log_prob(x))

    for shift in (-40.0, -8.0, 0.0, 10.0):
        g = jax.grad(loss, argnums=(0, 1, 2))(lp, mu, ls + shift)
        assert all(np.all(np.isfinite(a)) for a in g), shift


def test_check_grads_x64():
    with jax.enable_x64():
        lp, mu, ls = _params(jax.random.key(4), (5,), scale_shift=-2.0, dtype=jnp.float64)
        x = bin_values(dtype=jnp.float64)[jnp.array([0, 60, 127, 200, 255])]

        def f(lp, mu, ls):
            return DiscretizedLogisticMixture(lp, mu, ls).log_prob(x)

        # order 2 in reverse mode, order 1 forward (an order-2 fwd check re-compiles the same derivatives)
        check_grads(jax.jit(f), (lp, mu, ls), order=1, modes=("fwd",))
        check_grads(jax.jit(f), (lp, mu, ls), order=2, modes=("rev",))


def test_jit_equals_nojit(key, variant):
    d = DiscretizedLogisticMixture(*_params(key, (8,)))
    x = pixels_to_unit(jnp.arange(8) * 36)
    np.testing.assert_allclose(variant(lambda d, x: d.log_prob(x))(d, x), d.log_prob(x), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(variant(lambda d, k: d.sample(k, (3,)))(d, key), d.sample(key, (3,)), atol=1e-6)


def test_mean_is_bin_expectation(key):
    d = DiscretizedLogisticMixture(*_params(key, (3,)))
    p = np.exp(np.asarray(d.bin_log_probs(), np.float64))
    np.testing.assert_allclose(d.mean(), (p * np.asarray(bin_values(), np.float64)).sum(-1), rtol=1e-5, atol=1e-6)


def test_bad_inputs(key):
    lp, mu, ls = _params(key)
    with pytest.raises(ValueError, match="`means`.*K = 4"):
        DiscretizedLogisticMixture(lp, mu[..., :3], ls)
    with pytest.raises(ValueError, match="`log_scales`"):
        DiscretizedLogisticMixture(lp, mu, ls.at[0, 0].set(jnp.nan))
    with pytest.raises(ValueError, match="`logit_probs`"):
        DiscretizedLogisticMixture(lp.at[0, 0].set(jnp.inf), mu, ls)
    with pytest.raises(ValueError, match="`num_bins`"):
        DiscretizedLogisticMixture(lp, mu, ls, num_bins=1)
    d = DiscretizedLogisticMixture(lp, mu, ls)
    with pytest.raises(ValueError, match="`x`.*\\[-1, 1\\]"):
        d.log_prob(jnp.full((5,), 1.5))
    with pytest.raises(ValueError, match="`x`.*finite"):
        d.log_prob(jnp.full((5,), jnp.nan))
