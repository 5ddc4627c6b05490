import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvae.metrics.active_units import active_units


def test_counts_units_whose_mean_varies_across_data():
    """Synthetic posterior means: units with std 1, 0.3 and 0.2 are active (variance 1, 0.09, 0.04);
    std 0.05 (variance 0.0025) and constant units are not."""
    rng = np.random.default_rng(0)
    n = 5000
    stds = np.array([1.0, 0.3, 0.2, 0.05, 0.0, 0.0])
    means = 3.0 + rng.normal(size=(n, stds.size)) * stds  # the offset must not matter
    count, variances = active_units(jnp.asarray(means, jnp.float32))
    assert count == 3
    assert variances.shape == (6,)
    # Sample variance has se ~ var * sqrt(2 / (n - 1)) for Gaussian data.
    se = stds**2 * np.sqrt(2.0 / (n - 1))
    np.testing.assert_array_less(np.abs(np.asarray(variances, np.float64) - stds**2), 5 * se + 1e-6)


def test_threshold_and_ddof():
    means = jnp.array([[0.0, 0.0], [0.2, 2.0]])  # unbiased variances 0.02 and 2.0
    count, variances = active_units(means)
    np.testing.assert_allclose(variances, [0.02, 2.0], rtol=1e-5)
    assert count == 2
    assert active_units(means, threshold=0.5)[0] == 1
    assert active_units(means, threshold=5.0)[0] == 0


def test_works_on_encoder_outputs(key):
    """End to end on means from a function of x: units that ignore x are inactive."""
    x = jax.random.normal(key, (400, 3))
    means = jnp.concatenate([x[:, :2], jnp.zeros((400, 2)) + 0.7], axis=1)
    assert active_units(means)[0] == 2


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="posterior_means"):
        active_units(jnp.zeros((5,)))
    with pytest.raises(ValueError, match="posterior_means"):
        active_units(jnp.zeros((1, 3)))
    with pytest.raises(ValueError, match="posterior_means"):
        active_units(jnp.array([[0.0, 1.0], [jnp.nan, 2.0]]))
    with pytest.raises(ValueError, match="posterior_means"):
        active_units(jnp.zeros((4, 3), jnp.int32))
    with pytest.raises(ValueError, match="threshold"):
        active_units(jnp.zeros((4, 3)), threshold=-1.0)
