"""ResNetV2 encoder/decoder: the paper's parameter counts, shapes, modes, residual structure, errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvae.nets import (
    RIVERA_DECODER,
    RIVERA_ENCODER,
    RIVERA_PATCHGAN,
    ResBlockConvTV2,
    ResBlockConvV2,
    ResBlockIdV2,
    ResNetV2Decoder,
    ResNetV2Encoder,
    count_parameters,
)

# Tiny configuration: 16x16x1 images, two stages (16 -> 8 -> 4), latent 6, bottleneck 4x4x2.
SHAPE = (16, 16, 1)
ENC = ResNetV2Encoder(image_shape=SHAPE, latent_dim=6, widths=(4, 4, 8), blocks_per_stage=2, bottleneck_channels=2)
DEC = ResNetV2Decoder(image_shape=SHAPE, widths=(8, 4, 4), blocks_per_stage=1, bottleneck_channels=2)


def _jit_apply(module, train=False, mutable=False):
    """``jit(module.apply)`` with the mode fixed (eager Linen applies of conv nets are slow on CPU)."""
    return jax.jit(lambda v, x: module.apply(v, x, train=train, mutable=mutable))


def _jit_init(module, x):
    # An "rbg" key: its random-bits kernels compile several times faster on CPU than threefry's.
    return jax.jit(lambda k, x: module.init(k, x, train=False))(jax.random.key(0, impl="rbg"), x)


def _shapes(module, *args):
    return jax.eval_shape(lambda k: module.init(k, *args, train=False), jax.random.key(0))


@pytest.fixture(scope="module")
def variables():
    return _jit_init(ENC, jnp.zeros((2,) + SHAPE)), _jit_init(DEC, jnp.zeros((2, 6)))


def test_paper_parameter_counts_match_the_keras_summary():
    """Counts ``params + batch_stats`` (Keras' "Total params": BatchNorm moving mean/variance included).

    The authors' summary (README of marianorivera/How2TrainUrVAE) lists ``vae`` 9,932,466 and
    ``discriminator`` 412,101, total 10,344,567, of which 25,352 non-trainable. Our VAE counts
    10,982,066: 1,049,600 more, exactly the Gaussian head (two Dense layers 1024 -> 512 for mu and
    log sigma^2: 2 x (1024 * 512 + 512)). In the official code that head is a custom Keras layer
    (``Sampler``) whose Dense sublayers are built lazily on the first call, and the summary was
    printed before any call, so they are missing from it; the network that trains has them. Without
    the head the count is exactly the summary's.
    """
    ve = _shapes(RIVERA_ENCODER, jnp.zeros((2, 256, 256, 3)))
    vd = _shapes(RIVERA_DECODER, jnp.zeros((2, 512)))
    vdis = _shapes(RIVERA_PATCHGAN, jnp.zeros((2, 256, 256, 3)))
    head = count_parameters({"params": ve["params"]["head"]})
    vae = count_parameters(ve) + count_parameters(vd)
    assert head == 2 * (1024 * 512 + 512) == 1_049_600
    assert vae == 10_982_066
    assert vae - head == 9_932_466  # Keras summary, "vae"
    assert count_parameters(vdis) == 412_101  # Keras summary, "discriminator"
    # Non-trainable (BatchNorm moving statistics) and trainable totals of the summary.
    non_trainable = sum(count_parameters(v, ("batch_stats",)) for v in (ve, vd, vdis))
    assert non_trainable == 25_352
    trainable = sum(count_parameters(v, ("params",)) for v in (ve, vd, vdis)) - head
    assert trainable == 10_319_215
    # The input LayerNorm over (H, W) has [H, W] scale and bias, as Keras' LayerNormalization(axis=(1, 2)).
    assert ve["params"]["input_norm"]["scale"].shape == (256, 256)
    assert ve["params"]["input_norm"]["bias"].shape == (256, 256)


def test_paper_geometry():
    ve = _shapes(RIVERA_ENCODER, jnp.zeros((2, 256, 256, 3)))
    loc, log_var = jax.eval_shape(lambda v, x: RIVERA_ENCODER.apply(v, x, train=False), ve, jnp.zeros((2, 256, 256, 3)))
    assert loc.shape == log_var.shape == (2, 512)
    # 4x4x64 bottleneck flattened to 1024 features before the head.
    assert ve["params"]["head"]["loc"]["kernel"].shape == (1024, 512)
    vd = _shapes(RIVERA_DECODER, jnp.zeros((2, 512)))
    assert vd["params"]["dense"]["kernel"].shape == (512, 4 * 4 * 64)
    out = jax.eval_shape(lambda v, z: RIVERA_DECODER.apply(v, z, train=False), vd, jnp.zeros((2, 512)))
    assert out.shape == (2, 256, 256, 3)


@pytest.mark.parametrize("lead", [(3,), (2, 3)], ids=["B", "K-B"])
def test_shapes_with_leading_axes(variables, lead):
    ve, vd = variables
    loc, log_var = jax.jit(lambda v, x: ENC.apply(v, x, train=False))(ve, jnp.ones(lead + SHAPE))
    assert loc.shape == log_var.shape == lead + (6,)
    x = jax.jit(lambda v, z: DEC.apply(v, z, train=False))(vd, jnp.ones(lead + (6,)))
    assert x.shape == lead + SHAPE


def test_train_mode_uses_and_updates_batch_statistics(variables):
    ve, _ = variables
    x = jax.random.normal(jax.random.key(1), (4,) + SHAPE)
    (loc_t, _), upd = _jit_apply(ENC, True, ("batch_stats",))(ve, x)
    loc_e, _ = _jit_apply(ENC)(ve, x)
    # Batch statistics differ from the initial running averages (mean 0, var 1), so do the outputs.
    assert not np.allclose(loc_t, loc_e, atol=1e-4)
    old = jax.tree_util.tree_leaves(ve["batch_stats"])
    new = jax.tree_util.tree_leaves(upd["batch_stats"])
    assert len(old) == len(new) > 0 and all(o.shape == n.shape for o, n in zip(old, new))
    assert any(not np.allclose(o, n) for o, n in zip(old, new))
    # Eval mode needs no mutable collection and is deterministic.
    np.testing.assert_array_equal(_jit_apply(ENC)(ve, x)[0], loc_e)


def test_every_parameter_receives_a_gradient(variables):
    ve, vd = variables
    x = jax.random.normal(jax.random.key(2), (4,) + SHAPE)

    def loss(pe, pd):
        (loc, log_var), _ = ENC.apply({**ve, "params": pe}, x, train=True, mutable=["batch_stats"])
        xh, _ = DEC.apply({**vd, "params": pd}, loc + jnp.exp(0.5 * log_var), train=True, mutable=["batch_stats"])
        return jnp.sum(jnp.square(xh - x))

    ge, gd = jax.jit(jax.grad(loss, argnums=(0, 1)))(ve["params"], vd["params"])
    for path, g in jax.tree_util.tree_leaves_with_path((ge, gd)):
        assert np.all(np.isfinite(g)), path
        assert np.any(g != 0), f"no gradient reaches {jax.tree_util.keystr(path)}"


def test_input_layer_norm_removes_per_channel_offsets(variables):
    """LayerNorm over (H, W) per channel: adding a constant per (example, channel) changes nothing."""
    ve, _ = variables
    x = jax.random.uniform(jax.random.key(3), (2,) + SHAPE)
    shift = jnp.asarray([0.7, -2.0]).reshape(2, 1, 1, 1)
    apply = _jit_apply(ENC)
    np.testing.assert_allclose(apply(ve, x)[0], apply(ve, x + shift)[0], rtol=1e-4, atol=1e-4)
    enc_raw = ENC.clone(input_norm=False)
    vr = {**ve, "params": {k: v for k, v in ve["params"].items() if k != "input_norm"}}
    assert "input_norm" not in _shapes(enc_raw, x)["params"]
    apply_raw = _jit_apply(enc_raw)
    assert not np.allclose(apply_raw(vr, x)[0], apply_raw(vr, x + shift)[0])


def test_identity_block_is_residual():
    """With the bottleneck's last convolution zeroed, ResBlockIdV2 is the identity."""
    block = ResBlockIdV2(4)
    x = jax.random.normal(jax.random.key(4), (2, 8, 8, 4))
    v = _jit_init(block, x)
    params = dict(v["params"])
    params["conv_2"] = jax.tree_util.tree_map(jnp.zeros_like, params["conv_2"])
    apply = _jit_apply(block)
    np.testing.assert_array_equal(apply({**v, "params": params}, x), x)
    assert not np.allclose(apply(v, x), x)


def test_down_and_up_blocks_change_resolution_and_width():
    x = jnp.ones((2, 8, 8, 4))
    down = ResBlockConvV2(6)
    v = _shapes(down, x)
    assert jax.eval_shape(lambda v, x: down.apply(v, x, train=False), v, x).shape == (2, 4, 4, 6)
    # Bottleneck 3x3, 3x3, 1x1 (stride on the 1x1) and a 1x1 strided shortcut.
    assert v["params"]["conv_0"]["kernel"].shape == (3, 3, 4, 6)
    assert v["params"]["conv_2"]["kernel"].shape == (1, 1, 6, 6)
    assert v["params"]["shortcut_conv"]["kernel"].shape == (1, 1, 4, 6)
    up = ResBlockConvTV2(3)
    vu = _shapes(up, x)
    assert jax.eval_shape(lambda v, x: up.apply(v, x, train=False), vu, x).shape == (2, 16, 16, 3)
    assert vu["params"]["conv_0"]["kernel"].shape == (1, 1, 4, 3)
    assert vu["params"]["conv_t_1"]["kernel"].shape == (3, 3, 3, 3)
    assert vu["params"]["shortcut_conv_t"]["kernel"].shape == (3, 3, 4, 3)


def test_batch_norm_axis_name_gives_global_statistics(variables):
    """Under vmap over shards with ``bn_axis_name``, train-mode outputs equal the unsharded batch's."""
    ve, _ = variables
    x = jax.random.normal(jax.random.key(5), (4,) + SHAPE)
    full = _jit_apply(ENC, True, ("batch_stats",))(ve, x)[0][0]
    enc = ENC.clone(bn_axis_name="shards")
    shards = x.reshape((2, 2) + SHAPE)
    sharded = jax.jit(
        jax.vmap(lambda xs: enc.apply(ve, xs, train=True, mutable=["batch_stats"])[0][0], axis_name="shards")
    )(shards)
    np.testing.assert_allclose(sharded.reshape(full.shape), full, rtol=1e-4, atol=1e-4)
    # Without the axis name each shard uses its own statistics.
    local = jax.jit(jax.vmap(lambda xs: ENC.apply(ve, xs, train=True, mutable=["batch_stats"])[0][0]))(shards)
    assert not np.allclose(local.reshape(full.shape), full, atol=1e-4)


def test_softplus_head_option(variables):
    ve, _ = variables
    enc = ENC.clone(scale_param="softplus")
    _, log_var = _jit_apply(enc)(ve, jnp.ones((2,) + SHAPE))
    np.testing.assert_array_less(2 * np.log(1e-4) - 1e-3, log_var)


@pytest.mark.parametrize(
    "module, arg, match",
    [
        (ENC.clone(widths=(4,)), jnp.ones((1,) + SHAPE), "`widths` must hold at least 2"),
        (ENC.clone(widths=(4, 0)), jnp.ones((1,) + SHAPE), "`widths`"),
        (ENC.clone(image_shape=(18, 16, 1)), jnp.ones((1, 18, 16, 1)), r"divisible by 4"),
        (ENC.clone(image_shape=(16, 16)), jnp.ones((1, 16, 16)), r"`image_shape` must be \(H, W, C\)"),
        (ENC, jnp.ones((1, 16, 16, 3)), r"`x` must end with the image shape \(16, 16, 1\)"),
        (ENC.clone(latent_dim=0), jnp.ones((1,) + SHAPE), "`latent_dim`"),
        (ENC.clone(blocks_per_stage=-1), jnp.ones((1,) + SHAPE), "`blocks_per_stage`"),
        (ENC.clone(scale_param="exp"), jnp.ones((1,) + SHAPE), "`scale_param`"),
        (DEC, jnp.ones(()), r"`z` must be \[..., latent_dim\]"),
        (DEC.clone(image_shape=(12, 12, 1), widths=(4, 4, 4, 4)), jnp.ones((1, 6)), r"divisible by 8"),
        (DEC.clone(bottleneck_channels=0), jnp.ones((1, 6)), "`bottleneck_channels`"),
    ],
)
def test_bad_configuration_raises(module, arg, match):
    with pytest.raises(ValueError, match=match):
        jax.eval_shape(lambda k: module.init(k, arg, train=False), jax.random.key(0))


def test_identity_block_width_mismatch_raises():
    with pytest.raises(ValueError, match="ResBlockIdV2: `x` must have 4 channels"):
        _shapes(ResBlockIdV2(4), jnp.ones((1, 4, 4, 3)))


def test_count_parameters_collections():
    v = {"params": {"a": jnp.ones((2, 3))}, "batch_stats": {"m": jnp.ones((5,))}}
    assert count_parameters(v) == 11
    assert count_parameters(v, ("params",)) == 6
    assert count_parameters({"params": {}}) == 0
