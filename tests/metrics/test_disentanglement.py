"""Disentanglement metrics on constructed representations with known answers, and their invariances."""

import math

import jax
import numpy as np
import pytest

from jaxvae.metrics.disentanglement import (
    FactorVaeScore,
    MigResult,
    factor_vae_score,
    mutual_information_gap,
    mutual_information_gap_discrete,
    sap_score,
)
from tests import stats as tstats

SIZES = (1, 4, 5, 6)  # a constant factor (like dSprites' colour) and three varying ones


def grid_classes(sizes):
    return np.stack(np.unravel_index(np.arange(math.prod(sizes)), sizes), axis=1)


def centred(classes, sizes):
    """Factor classes mapped to [-1, 1] (0 for a one-value factor)."""
    s = np.maximum(np.asarray(sizes) - 1, 1)
    return 2.0 * classes / s - (np.asarray(sizes) > 1)


def identity_codes(sizes=SIZES):
    """One dimension per varying factor, equal to it (rescaled)."""
    c = grid_classes(sizes)
    return centred(c, sizes)[:, [k for k, s in enumerate(sizes) if s > 1]]


def rotate45(codes, i=0, j=1):
    out = codes.copy()
    out[:, i], out[:, j] = (codes[:, i] + codes[:, j]) / math.sqrt(2), (codes[:, i] - codes[:, j]) / math.sqrt(2)
    return out


SPLIT_SIZES = (36, 4, 5)


def split_codes():
    """Factor 0 (36 values) split over dims 0, 1 (v // 6, v % 6); factors 1 and 2 in dims 2 and 3."""
    c = grid_classes(SPLIT_SIZES)
    return np.stack([c[:, 0] // 6 / 5, c[:, 0] % 6 / 5, c[:, 1] / 3, c[:, 2] / 4], axis=1) * 2 - 1


# ---------------------------------------------------------------------------- MIG, sampled from posteriors
def mig(codes, sizes, scale=0.01, **kw):
    return mutual_information_gap(jax.random.key(0), codes, np.full_like(codes, scale), grid_classes(sizes), **kw)


def test_mig_identity_is_one_and_constant_factor_skipped():
    r = mig(identity_codes(), SIZES)
    assert isinstance(r, MigResult) and r.factor_indices == (1, 2, 3)
    np.testing.assert_allclose(r.factor_entropy, np.log([4, 5, 6]))
    assert r.mig > 0.999 and np.all(r.gaps > 0.999)
    # I(z_k; v_k) = H(v_k); every other dimension carries nothing about v_k (the grid's factors are independent)
    np.testing.assert_allclose(np.diag(r.mutual_info), np.log([4, 5, 6]), atol=2e-3)
    np.testing.assert_allclose(r.mutual_info - np.diag(np.diag(r.mutual_info)), 0.0, atol=1e-4)


def test_mig_of_a_representation_that_ignores_the_image_is_zero():
    codes = np.zeros((120, 3))  # q(z|x) = N(0, 1) for every image: pure noise
    r = mig(codes, SIZES, scale=1.0)
    np.testing.assert_allclose(r.mutual_info, 0.0, atol=1e-5)
    assert abs(r.mig) < 1e-4


def test_mig_45_degree_rotation_has_no_gap_for_the_rotated_factors():
    sizes = (1, 4, 6, 6)  # factors 2 and 3 (6 values each) mixed in dims 1 and 2
    codes = rotate45(identity_codes(sizes), 1, 2)
    r = mig(codes, sizes)
    # both rotated dimensions know the same about each rotated factor (symmetry b -> -b swaps them)
    assert np.all(np.abs(r.gaps[1:]) < 0.03) and r.gaps[0] > 0.999
    assert r.mig == pytest.approx(1 / 3, abs=0.02)


def test_group_mig_rewards_a_factor_split_within_one_group():
    codes = split_codes()
    per_dim = mig(codes, SPLIT_SIZES)
    grouped = mig(codes, SPLIT_SIZES, group_size=2)
    # MIG: the split factor's two dims know log 6 each -> no gap; the others are captured alone
    assert per_dim.gaps[0] == pytest.approx(0.0, abs=0.02) and np.all(per_dim.gaps[1:] > 0.99)
    assert per_dim.mig == pytest.approx(2 / 3, abs=0.02)
    # group MIG: group (0, 1) holds the whole split factor, group (2, 3) the other two
    np.testing.assert_allclose(grouped.mutual_info[0, 0], math.log(36), atol=5e-3)
    assert grouped.mig > 0.99 and grouped.mig > per_dim.mig + 0.3
    assert grouped.mutual_info.shape == (2, 3) and per_dim.mutual_info.shape == (4, 3)


def test_mig_invariances():
    rng = np.random.default_rng(0)
    codes = split_codes() + 0.05 * rng.normal(size=(720, 4))
    scale = np.exp(rng.uniform(-3, -1, size=codes.shape))
    z = codes + scale * rng.normal(size=codes.shape)
    key = jax.random.key(1)
    CS = grid_classes(SPLIT_SIZES)
    base = mutual_information_gap(key, codes, scale, CS, z=z, num_samples=300)
    base_g = mutual_information_gap(key, codes, scale, CS, z=z, num_samples=300, group_size=2)
    # permuting dimensions (with their samples) permutes the rows of I and keeps MIG
    perm = [3, 1, 0, 2]
    p = mutual_information_gap(key, codes[:, perm], scale[:, perm], CS, z=z[:, perm], num_samples=300)
    np.testing.assert_allclose(p.mutual_info, base.mutual_info[perm], rtol=1e-4, atol=1e-5)
    assert p.mig == pytest.approx(base.mig, abs=1e-5)
    # swapping whole groups and dims within a group keeps the group MIG
    gperm = [3, 2, 1, 0]
    pg = mutual_information_gap(key, codes[:, gperm], scale[:, gperm], CS, z=z[:, gperm], num_samples=300, group_size=2)
    np.testing.assert_allclose(pg.mutual_info, base_g.mutual_info[::-1], rtol=1e-4, atol=1e-5)
    # rescaling (and flipping) a dimension shifts both entropies by log|a|: MI unchanged
    a = np.array([2.0, -0.5, 3.0, 1e-2])
    s = mutual_information_gap(key, codes * a, scale * np.abs(a), CS, z=z * a, num_samples=300)
    np.testing.assert_allclose(s.mutual_info, base.mutual_info, rtol=1e-3, atol=2e-4)
    # group_size = 1 is MIG
    np.testing.assert_array_equal(
        mutual_information_gap(key, codes, scale, CS, z=z, num_samples=300, group_size=1).mutual_info,
        base.mutual_info,
    )


def test_mig_subsampling_and_chunking():
    """Fewer samples than images, and chunks that do not divide the sets, estimate the same MI."""
    codes = identity_codes()
    full = mig(codes, SIZES)
    chunked = mig(codes, SIZES, query_chunk=7, reference_chunk=13)
    np.testing.assert_allclose(chunked.mutual_info, full.mutual_info, rtol=1e-4, atol=1e-5)
    sub = mig(codes, SIZES, num_samples=50)
    # identity posteriors: every image's log-ratio log q(z_k | v_k) - log q(z_k) is log |V_k| (or 0),
    # so a subsample gives the same value up to float rounding
    np.testing.assert_allclose(sub.mutual_info, full.mutual_info, atol=1e-4)


def test_mig_errors():
    codes = identity_codes()
    scale = np.full_like(codes, 0.1)
    c = grid_classes(SIZES)
    key = jax.random.key(0)
    with pytest.raises(ValueError, match=r"`factors` must be \[N, F\] with N = 119"):
        mutual_information_gap(key, codes[:-1], scale[:-1], c)
    with pytest.raises(ValueError, match="`factors` must be integer"):
        mutual_information_gap(key, codes, scale, c.astype(float))
    with pytest.raises(ValueError, match="`loc` and `scale` must both be"):
        mutual_information_gap(key, codes, scale[:, :2], c)
    with pytest.raises(ValueError, match="`scale` must be > 0"):
        mutual_information_gap(key, codes, -scale, c)
    with pytest.raises(ValueError, match="no factor that varies"):
        mutual_information_gap(key, codes, scale, np.zeros_like(c))
    with pytest.raises(ValueError, match="a gap needs at least two"):
        mutual_information_gap(key, codes, scale, c, group_size=3)
    with pytest.raises(ValueError, match="`group_size`"):
        mutual_information_gap(key, codes, scale, c, group_size=4)
    with pytest.raises(ValueError, match="`num_samples`"):
        mutual_information_gap(key, codes, scale, c, num_samples=0)
    with pytest.raises(ValueError, match="`z` must have the shape"):
        mutual_information_gap(key, codes, scale, c, z=codes[:, :2])


# ---------------------------------------------------------------------------- MIG, discretised
def test_discrete_mig_known_answers():
    c = grid_classes(SIZES)
    ident = mutual_information_gap_discrete(identity_codes(), c, factor_sizes=SIZES)
    assert ident.mig == pytest.approx(1.0, abs=1e-12) and ident.factor_indices == (1, 2, 3)
    sizes = (1, 4, 6, 6)
    cl = grid_classes(sizes)
    a, b = 2 * cl[:, 2] - 5, 2 * cl[:, 3] - 5  # exactly symmetric integer grids, rotated by 45 degrees (unscaled)
    rot = mutual_information_gap_discrete(np.stack([cl[:, 1], a + b, a - b], 1).astype(float), cl)
    assert rot.gaps[1:] == pytest.approx([0.0, 0.0], abs=1e-12) and rot.mig == pytest.approx(1 / 3, abs=1e-12)
    cs = grid_classes(SPLIT_SIZES)
    per_dim = mutual_information_gap_discrete(split_codes(), cs)
    grouped = mutual_information_gap_discrete(split_codes(), cs, group_size=2)
    assert per_dim.mig == pytest.approx(2 / 3, abs=1e-12)
    assert grouped.mig == pytest.approx(1.0, abs=1e-12)


def test_discrete_mig_of_noise_is_small():
    """Codes independent of the factors: MI is only the plug-in bias, (cells - 1)(|V| - 1) / 2n nats."""
    rng = np.random.default_rng(0)
    n = 40_000
    classes = rng.integers(0, SIZES, size=(n, 4))
    r = mutual_information_gap_discrete(rng.normal(size=(n, 3)), classes)
    bias = 19 * 5 / (2 * n)  # the largest factor's bias with 20 bins
    assert np.all(r.mutual_info < 3 * bias) and r.mig < 3 * bias / math.log(4)


def test_discrete_mig_invariances():
    rng = np.random.default_rng(1)
    c = grid_classes(SPLIT_SIZES)
    codes = split_codes() + 0.02 * rng.normal(size=(720, 4))
    base = mutual_information_gap_discrete(codes, c)
    p = mutual_information_gap_discrete(codes[:, [2, 0, 3, 1]], c)
    np.testing.assert_allclose(p.mutual_info, base.mutual_info[[2, 0, 3, 1]], rtol=1e-12)
    s = mutual_information_gap_discrete(codes * np.array([3.0, 0.1, 7.0, 2.0]) + 5.0, c)
    np.testing.assert_allclose(s.mutual_info, base.mutual_info, rtol=1e-9)


def test_discrete_mig_errors():
    c = grid_classes(SIZES)
    codes = identity_codes()
    with pytest.raises(ValueError, match=r"`codes` must be \[n, D\]"):
        mutual_information_gap_discrete(codes[:, 0], c)
    with pytest.raises(ValueError, match=r"`factors` must be \[n, F\] with n = 120"):
        mutual_information_gap_discrete(codes, c[:5])
    with pytest.raises(ValueError, match="`factors` must be integer"):
        mutual_information_gap_discrete(codes, c.astype(float))
    with pytest.raises(ValueError, match="`factors` must hold classes"):
        mutual_information_gap_discrete(codes, c, factor_sizes=(1, 4, 5, 5))
    with pytest.raises(ValueError, match="`num_bins`"):
        mutual_information_gap_discrete(codes, c, num_bins=1)
    with pytest.raises(ValueError, match="no factor that varies"):
        mutual_information_gap_discrete(codes, np.zeros_like(c))
    with pytest.raises(ValueError, match="`codes` must be finite"):
        mutual_information_gap_discrete(np.full_like(codes, np.inf), c)


# ---------------------------------------------------------------------------- SAP
def test_sap_known_answers():
    c = grid_classes(SIZES)
    ident = sap_score(identity_codes(), c)
    assert ident.sap == pytest.approx(1.0, abs=1e-12) and ident.factor_indices == (1, 2, 3)
    sizes = (1, 4, 6, 6)
    rot = sap_score(rotate45(identity_codes(sizes), 1, 2), grid_classes(sizes))
    np.testing.assert_allclose(rot.score_matrix[1:3, 1:], 0.5, atol=1e-12)  # R^2 = 1/2 for both
    assert rot.sap == pytest.approx(1 / 3, abs=1e-12)
    rng = np.random.default_rng(0)
    n = 20_000
    classes = rng.integers(0, SIZES, size=(n, 4))
    noise = sap_score(rng.normal(size=(n, 3)), classes)
    # R^2 of independent variables: n R^2 ~ chi^2_1, so every entry is < 30 / n with overwhelming probability
    assert np.all(noise.score_matrix < 30 / n) and noise.sap < 30 / n


def test_sap_discrete_factors_have_a_chance_floor():
    rng = np.random.default_rng(1)
    c = grid_classes(SIZES)
    train = identity_codes() + 0.01 * rng.normal(size=(120, 3))  # fitted on noisy codes, tested on clean ones
    r = sap_score(train, c, identity_codes(), c, discrete=[False, True, False, False])
    assert r.score_matrix[0, 0] == 1.0  # the matching dimension classifies factor 1 (4 classes) perfectly
    # the other dims are independent of factor 1 on the grid: nearest-class-mean accuracy about 1/4
    assert np.all(np.abs(r.score_matrix[1:, 0] - 0.25) < 0.1)
    assert r.score_matrix[1, 1] == pytest.approx(1.0, abs=1e-3) and r.score_matrix[2, 2] == pytest.approx(1.0, abs=1e-3)
    assert r.sap == pytest.approx((1.0 - np.max(r.score_matrix[1:, 0]) + 2.0) / 3, abs=2e-3)


def test_sap_invariances_and_errors():
    rng = np.random.default_rng(2)
    c = grid_classes(SPLIT_SIZES)
    codes = split_codes() + 0.1 * rng.normal(size=(720, 4))
    base = sap_score(codes, c)
    np.testing.assert_allclose(sap_score(codes[:, [3, 2, 1, 0]], c).score_matrix, base.score_matrix[::-1])
    np.testing.assert_allclose(sap_score(codes * [2.0, -1.0, 0.3, 5.0] + 1.0, c).score_matrix, base.score_matrix)
    with pytest.raises(ValueError, match="`codes_test` and `factors_test` are required"):
        sap_score(codes, c, discrete=True)
    with pytest.raises(ValueError, match="`discrete` must be one bool or one per factor"):
        sap_score(codes, c, codes, c, discrete=[True])
    with pytest.raises(ValueError, match="at least two dimensions"):
        sap_score(codes[:, :1], c)
    with pytest.raises(ValueError, match="`factors_train`"):
        sap_score(codes, c[:10])


# ---------------------------------------------------------------------------- FactorVAE score
def _fn(codes_of):
    return lambda classes: codes_of(np.asarray(classes))


def test_factor_vae_identity_scores_one():
    fn = _fn(lambda cl: centred(cl, SIZES)[:, 1:])
    r = factor_vae_score(fn, SIZES, seed=0, num_train=300, num_eval=200, num_variance_estimate=500)
    assert isinstance(r, FactorVaeScore)
    assert r.eval_accuracy == 1.0 and r.train_accuracy == 1.0 and r.num_active_dims == 3
    assert r.factor_indices == (1, 2, 3)


def test_factor_vae_noise_is_at_chance_and_rotation_in_between():
    rng = np.random.default_rng(5)
    noise = _fn(lambda cl: rng.normal(size=(len(cl), 3)))
    num_eval = 2000
    r = factor_vae_score(noise, SIZES, seed=1, num_train=2000, num_eval=num_eval, num_variance_estimate=1000)
    # the majority vote of a dimension is one factor out of 3, right for about a third of the votes
    tstats.assert_close_clt(r.eval_accuracy, 1 / 3, tstats.binomial_se(1 / 3, num_eval), what="chance")
    sizes = (1, 4, 6, 6)
    rot = _fn(lambda cl: rotate45(centred(cl, sizes)[:, 1:], 1, 2))
    r = factor_vae_score(rot, sizes, seed=2, num_train=1000, num_eval=num_eval, num_variance_estimate=1000)
    # factors 2 and 3 share dims 1 and 2 (equal relative variances) so one of them is always misclassified
    tstats.assert_close_clt(r.eval_accuracy, 2 / 3, tstats.binomial_se(2 / 3, num_eval), what="rotation")


def test_factor_vae_invariances_and_pruning():
    base_codes = lambda cl: centred(cl, SIZES)[:, 1:] + 0.3 * np.sin(7.0 * cl[:, [2, 3, 1]])
    kw = dict(seed=3, num_train=300, num_eval=300, num_variance_estimate=500)
    base = factor_vae_score(_fn(base_codes), SIZES, **kw)
    scaled = factor_vae_score(_fn(lambda cl: base_codes(cl) * [5.0, 0.2, -3.0]), SIZES, **kw)
    assert scaled == base  # normalised by the global variances
    perm = factor_vae_score(_fn(lambda cl: base_codes(cl)[:, [2, 0, 1]]), SIZES, **kw)
    assert perm.eval_accuracy == base.eval_accuracy and perm.train_accuracy == base.train_accuracy
    collapsed = factor_vae_score(_fn(lambda cl: np.c_[base_codes(cl), np.zeros(len(cl))]), SIZES, **kw)
    assert collapsed.num_active_dims == 3 and collapsed.eval_accuracy == base.eval_accuracy
    dead = factor_vae_score(_fn(lambda cl: np.zeros((len(cl), 2))), SIZES, **kw)
    assert dead.eval_accuracy == 0.0 and dead.num_active_dims == 0


def test_factor_vae_errors():
    fn = _fn(lambda cl: centred(cl, SIZES)[:, 1:])
    with pytest.raises(ValueError, match="`seed`"):
        factor_vae_score(fn, SIZES, seed=-1)
    with pytest.raises(ValueError, match="`batch_size`"):
        factor_vae_score(fn, SIZES, seed=0, batch_size=1)
    with pytest.raises(ValueError, match="`prune_threshold`"):
        factor_vae_score(fn, SIZES, seed=0, prune_threshold=-1.0)
    with pytest.raises(ValueError, match="`representation_fn` must map"):
        factor_vae_score(_fn(lambda cl: np.zeros(len(cl))), SIZES, seed=0)
    with pytest.raises(ValueError, match="non-finite"):
        factor_vae_score(_fn(lambda cl: np.full((len(cl), 2), np.nan)), SIZES, seed=0)
