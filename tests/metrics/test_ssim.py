"""SSIM against dm-pix, the 5-scale MS-SSIM against pytorch-msssim, and the small-image convention."""

import dm_pix
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from jaxvae.metrics.ssim import MS_SSIM_WEIGHTS, _gaussian_window, ms_ssim, ms_ssim_weights, ssim, ssim_and_cs


def pair(shape, seed=0, noise=0.1, dtype=np.float32):
    """A smooth image batch ``[..., H, W, C]`` and a noisy copy clipped to [0, 1]."""
    rng = np.random.default_rng(seed)
    a = gaussian_filter(rng.random(shape), sigma=[0] * (len(shape) - 3) + [2, 2, 0])
    b = np.clip(a + noise * rng.standard_normal(shape), 0, 1)
    return a.astype(dtype), b.astype(dtype)


@pytest.mark.parametrize("shape", [(4, 32, 32, 1), (2, 48, 40, 3), (2, 3, 20, 24, 1)])
def test_ssim_matches_dm_pix(shape):
    a, b = pair(shape)
    got = jax.jit(ssim)(a, b)
    flat = (-1,) + shape[-3:]
    want = np.asarray(dm_pix.ssim(jnp.asarray(a.reshape(flat)), jnp.asarray(b.reshape(flat)))).reshape(shape[:-3])
    assert got.shape == shape[:-3]
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-5)


def _torch_ms_ssim(a, b, weights=None, win=None):
    torch = pytest.importorskip("torch")
    pytorch_msssim = pytest.importorskip("pytorch_msssim")
    t = lambda v: torch.from_numpy(np.ascontiguousarray(np.moveaxis(v, -1, 1)))
    out = pytorch_msssim.ms_ssim(t(a), t(b), data_range=1.0, size_average=False, weights=weights, win=win)
    return out.numpy()


@pytest.mark.parametrize("shape", [(3, 176, 176, 1), (2, 192, 256, 3)])
def test_five_scale_ms_ssim_matches_pytorch_msssim(shape):
    a, b = pair(shape)
    got = jax.jit(ms_ssim)(a, b)
    np.testing.assert_allclose(got, _torch_ms_ssim(a, b), rtol=0, atol=1e-4)


def test_five_scale_ms_ssim_matches_pytorch_msssim_in_float64():
    """With the same (float64) window the two agree to rounding: the residual in float32 is the window's."""
    torch = pytest.importorskip("torch")
    with jax.enable_x64():
        a, b = pair((2, 176, 192, 2), seed=1, dtype=np.float64)
        got = np.asarray(ms_ssim(a, b))
        win = torch.from_numpy(np.array(_gaussian_window(11, 1.5, jnp.float64)))[None, None, None].repeat(2, 1, 1, 1)
    np.testing.assert_allclose(got, _torch_ms_ssim(a, b, win=win), rtol=0, atol=1e-12)


def test_fewer_scales_match_pytorch_msssim_with_the_same_weights():
    a, b = pair((2, 176, 176, 1), seed=2)
    w = ms_ssim_weights(32)
    np.testing.assert_allclose(ms_ssim(a, b, weights=w), _torch_ms_ssim(a, b, weights=list(w)), rtol=0, atol=1e-4)


def test_small_image_weights():
    w2 = (0.0448 / 0.3304, 0.2856 / 0.3304)
    np.testing.assert_allclose(ms_ssim_weights(32), w2, rtol=1e-12)
    np.testing.assert_allclose(ms_ssim_weights(28), w2, rtol=1e-12)
    assert ms_ssim_weights(176) == MS_SSIM_WEIGHTS
    assert len(ms_ssim_weights(175)) == 4 and abs(sum(ms_ssim_weights(175)) - 1) < 1e-12
    assert ms_ssim_weights(11) == (1.0,)
    with pytest.raises(ValueError, match="window"):
        ms_ssim_weights(10)


def test_ms_ssim_on_32px_is_the_two_scale_product():
    a, b = pair((5, 32, 32, 1), seed=3, noise=0.3)
    got = ms_ssim(a, b)
    w1, w2 = ms_ssim_weights(32)
    _, cs1 = ssim_and_cs(a, b)
    pool = lambda v: v.reshape(5, 16, 2, 16, 2, 1).mean(axis=(2, 4))
    s2, _ = ssim_and_cs(pool(a), pool(b))
    want = np.maximum(cs1[:, 0], 0) ** w1 * np.maximum(s2[:, 0], 0) ** w2
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert np.all(got < 0.99)


def test_identity_symmetry_and_ordering():
    a, b = pair((3, 32, 32, 1), seed=4)
    np.testing.assert_allclose(ms_ssim(a, a), 1.0, rtol=1e-6)
    np.testing.assert_allclose(ssim(a, a), 1.0, rtol=1e-6)
    np.testing.assert_allclose(ms_ssim(a, b), ms_ssim(b, a), rtol=1e-6)
    _, worse = pair((3, 32, 32, 1), seed=4, noise=0.4)
    assert np.all(np.asarray(ms_ssim(a, worse)) < np.asarray(ms_ssim(a, b)))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda a: ssim(a, a[..., :1, :]), "same shape"),
        (lambda a: ssim(a[0, 0], a[0, 0]), "images"),
        (lambda a: ssim(a[:, :8, :8], a[:, :8, :8]), "filter_size"),
        (lambda a: ms_ssim(a, a, weights=MS_SSIM_WEIGHTS), "coarsest"),
        (lambda a: ms_ssim(a, a, weights=(0.5, -0.5)), "weights"),
        (lambda a: ssim(a, a, max_val=0.0), "max_val"),
    ],
)
def test_errors(call, match):
    a = np.zeros((2, 32, 32, 1), np.float32)
    with pytest.raises(ValueError, match=match):
        call(a)
