"""Latent traversals, 2-D grids and interpolations (as in show_warps.py); image grids through make_grid."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from jaxvae.metrics.traversals import image_grid, interpolate, latent_grid, latent_traversal, to_unit_range
from jaxvae.train.writers import make_grid

Z = jnp.asarray([0.5, -1.0, 2.0, 0.0])


def test_traversal_moves_one_unit_per_row():
    t = jnp.asarray([-2.0, 0.0, 3.0])
    out = latent_traversal(Z, [1, 3], t)
    assert out.shape == (2, 3, 4)
    expected = np.tile(np.asarray(Z), (2, 3, 1))
    expected[0, :, 1] += np.asarray(t)
    expected[1, :, 3] += np.asarray(t)
    np.testing.assert_allclose(out, expected)
    # Offsets in units of a per-dimension scale (the posterior sd of show_warps.py).
    scaled = latent_traversal(Z, 2, t, scale=jnp.asarray([1.0, 1.0, 0.5, 1.0]))
    np.testing.assert_allclose(scaled[0, :, 2], 2.0 + 0.5 * np.asarray(t))


def test_grid_matches_plot_latent_space():
    sd = jnp.asarray([0.1, 0.2, 0.3, 0.4])
    t = np.linspace(-20, 20, 3)
    g = latent_grid(Z, (0, 3), t[::-1], t, scale=sd)
    assert g.shape == (3, 3, 4)
    for i, yi in enumerate(t[::-1]):
        for j, xj in enumerate(t):
            ref = np.asarray(Z).copy()
            ref[0] += 0.1 * yi
            ref[3] += 0.4 * xj
            np.testing.assert_allclose(g[i, j], ref, rtol=1e-6, atol=1e-6)


def test_linear_interpolation_is_rivera_convex_combination():
    z2 = jnp.asarray([1.0, 1.0, 1.0, 1.0])
    out = interpolate(Z, z2, 6)
    alpha = np.arange(6) / 5
    np.testing.assert_allclose(out, (1 - alpha)[:, None] * np.asarray(Z) + alpha[:, None] * np.asarray(z2), atol=1e-6)


def test_spherical_interpolation():
    e1, e2 = jnp.asarray([1.0, 0.0]), jnp.asarray([0.0, 2.0])
    out = interpolate(e1, e2, 3, method="spherical")
    np.testing.assert_allclose(out[0], e1, atol=1e-6)
    np.testing.assert_allclose(out[-1], e2, atol=1e-6)
    # Midpoint of slerp between orthogonal vectors: (e1 + e2) sin(pi/4) / sin(pi/2).
    np.testing.assert_allclose(out[1], np.sqrt(0.5) * np.asarray([1.0, 2.0]), atol=1e-6)
    # Parallel codes fall back to the linear path (no division by sin 0).
    par = interpolate(e1, 3 * e1, 3, method="spherical")
    np.testing.assert_allclose(par, interpolate(e1, 3 * e1, 3), atol=1e-6)
    assert np.all(np.isfinite(interpolate(jnp.zeros(2), e1, 3, method="spherical")))


def test_image_grid_rows_and_value_range():
    imgs = np.linspace(-1, 1, 2 * 3 * 4 * 4).reshape(2, 3, 4, 4, 1)
    grid = image_grid(imgs, pad=1)
    np.testing.assert_array_equal(grid, make_grid(((imgs + 1) / 2).reshape(6, 4, 4, 1), ncols=3, pad=1))
    assert grid.shape == (2 * 5 + 1, 3 * 5 + 1)
    np.testing.assert_allclose(to_unit_range([-3.0, 0.0, 3.0]), [0.0, 0.5, 1.0])
    np.testing.assert_allclose(to_unit_range([0.25], (0, 1)), [0.25])
    flat = image_grid(imgs.reshape(6, 4, 4, 1), ncols=2)
    assert flat.shape == (3 * 6 + 2, 2 * 6 + 2)


def test_errors():
    with pytest.raises(ValueError, match=r"`z` must be one latent code \[D\]"):
        latent_traversal(jnp.zeros((2, 3)), 0, [1.0])
    with pytest.raises(ValueError, match=r"`dims` must be latent indices in \[0, 4\)"):
        latent_traversal(Z, [4], [1.0])
    with pytest.raises(ValueError, match="`scale` must be"):
        latent_traversal(Z, 0, [1.0], scale=jnp.ones(3))
    with pytest.raises(ValueError, match="two different latent indices"):
        latent_grid(Z, (1, 1), [0.0], [0.0])
    with pytest.raises(ValueError, match="`num` must be an int >= 2"):
        interpolate(Z, Z, 1)
    with pytest.raises(ValueError, match="`method` must be one of"):
        interpolate(Z, Z, 3, method="cubic")
    with pytest.raises(ValueError, match="must have one shape"):
        interpolate(Z, Z[:3], 3)
    with pytest.raises(ValueError, match="C in"):
        image_grid(np.zeros((2, 4, 4)))
    with pytest.raises(ValueError, match="`value_range`"):
        to_unit_range([0.0], (1, 1))
