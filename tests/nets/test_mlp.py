import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvae.nets.mlp import ACTIVATIONS, MLP, get_activation


@pytest.mark.parametrize("lead", [(), (3,), (2, 3)], ids=["no-batch", "B", "K-B"])
def test_output_shape_keeps_leading_axes(key, lead):
    net = MLP((7, 5))
    x = jnp.ones(lead + (4,))
    params = net.init(key, x)
    assert net.apply(params, x).shape == lead + (5,)


def test_leading_axes_are_batch_axes(key):
    """A [K, B, F] call equals calling each [B, F] slice separately (rows are independent)."""
    net = MLP((6, 3), activation="tanh")
    x = jax.random.normal(key, (4, 2, 5))
    params = net.init(key, x)
    full = net.apply(params, x)
    for k in range(4):
        np.testing.assert_allclose(full[k], net.apply(params, x[k]), rtol=1e-6, atol=1e-6)


def test_activate_final_bounds_output_with_tanh(key):
    x = 100.0 * jax.random.normal(key, (16, 3))
    params = MLP((8, 8)).init(key, x)
    out_final = MLP((8, 8), activation="tanh", activate_final=True).apply(params, x)
    out_plain = MLP((8, 8), activation="tanh").apply(params, x)
    assert jnp.all(jnp.abs(out_final) <= 1.0)
    np.testing.assert_allclose(out_final, jnp.tanh(out_plain), rtol=1e-6, atol=1e-6)
    assert jnp.max(jnp.abs(out_plain)) > 1.0  # so the bound above is informative


def test_jit_matches_nojit(key, variant):
    net = MLP((9, 4), activation="relu")
    x = jax.random.normal(key, (5, 3))
    params = net.init(key, x)
    np.testing.assert_allclose(variant(net.apply)(params, x), net.apply(params, x), rtol=1e-6, atol=1e-6)


def test_activation_names_and_callables():
    assert get_activation("relu")(jnp.array(-1.0)) == 0.0
    assert get_activation(jnp.sin) is jnp.sin
    for name in ACTIVATIONS:
        assert jnp.isfinite(get_activation(name)(jnp.array(0.3)))
    with pytest.raises(ValueError, match="activation"):
        get_activation("nope")


def test_bad_features_raise(key):
    with pytest.raises(ValueError, match="features"):
        MLP(()).init(key, jnp.ones((2, 3)))
    with pytest.raises(ValueError, match="features"):
        MLP((3, 0)).init(key, jnp.ones((2, 3)))


def test_gradient_through_sample_axis_needs_no_transposed_copy(key):
    """Leading axes are flattened before the layers, so the weight gradients are plain 2-D products.

    With ``[K, B, D]`` inputs fed to ``Dense`` as they are, XLA:CPU copies each incoming gradient
    ``[K, B, F]`` into a transposed ``[F, K*B]`` array before the weight-gradient product (three such
    copies cost the benchmark VAE's batch-8192 train step 1.15x in speed). Checked on the optimized program.
    """
    k, b, d, f = 1, 96, 24, 40
    model = MLP((32, f), "relu")
    x = jax.random.normal(key, (k, b, d))
    params = model.init(key, x)

    def loss(p):
        return jnp.sum(jnp.square(model.apply(p, x)))

    hlo = jax.jit(jax.grad(loss)).lower(params).compile().as_text()
    transposed = [ln for ln in hlo.splitlines() if f"f32[{f},{k * b}]" in ln or f"f32[32,{k * b}]" in ln]
    assert not transposed, "\n".join(transposed)


def test_batch_norm_layers_use_batch_statistics_in_training_and_running_averages_otherwise(key):
    """Dense (no bias) -> BatchNorm -> activation per activated layer; train updates batch_stats."""
    net = MLP((6, 3), activation="relu", batch_norm=True, bn_momentum=0.5)
    x = 3.0 + 2.0 * jax.random.normal(key, (64, 4))
    variables = net.init(key, x)
    assert "bias" not in variables["params"]["dense_0"] and "bias" in variables["params"]["dense_1"]
    assert set(variables["batch_stats"]) == {"bn_0"}  # the last layer is not activated, not normalised
    _, updates = net.apply(variables, x, train=True, mutable=["batch_stats"])
    h = x @ variables["params"]["dense_0"]["kernel"]
    np.testing.assert_allclose(updates["batch_stats"]["bn_0"]["mean"], 0.5 * h.mean(0), rtol=1e-4, atol=1e-5)
    # eval mode reads the running averages (initially mean 0, var 1): the layer is then the identity
    h_eval = MLP((6,), activation="identity", activate_final=True, batch_norm=True).apply(
        {"params": {k: variables["params"][k] for k in ("dense_0", "bn_0")}, "batch_stats": variables["batch_stats"]},
        x,
    )
    np.testing.assert_allclose(h_eval, h / np.sqrt(1 + 1e-5), rtol=1e-5, atol=1e-5)


def test_kernel_init_is_used_by_every_layer(key):
    from flax import linen as nn

    net = MLP((5, 3), kernel_init=nn.initializers.constant(0.25))
    params = net.init(key, jnp.ones((2, 4)))["params"]
    for name in ("dense_0", "dense_1"):
        np.testing.assert_array_equal(params[name]["kernel"], 0.25)
