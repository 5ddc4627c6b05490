"""The MNIST evaluation classifier of the untapped protocol: a small JAX MLP trained on the 60k train set.

Gemp et al. classify the ten decoded one-hot images with "a logistic-regression classifier pre-trained
on all MNIST". Here: a 784-256-10 ReLU MLP (softmax output), Adam 1e-3, batch 128, on grey-level
train images in [0, 1] (the decoded images are Bernoulli means, i.e. grey levels), checked on the 10k
test set. The fitted weights are cached as ``.npz`` so every run of the experiment uses the same one.
"""

from __future__ import annotations

import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax


def _init(key, sizes=(784, 256, 10)):
    params = []
    for i, (m, n) in enumerate(zip(sizes[:-1], sizes[1:])):
        w = jax.random.normal(jax.random.fold_in(key, i), (m, n)) * np.sqrt(2.0 / m)
        params.append((w, jnp.zeros((n,))))
    return params


def logits_fn(params, x):
    """``[N, 784]`` in [0, 1] -> ``[N, 10]`` digit logits."""
    h = x
    for w, b in params[:-1]:
        h = jax.nn.relu(h @ w + b[None, :])  # explicit broadcast (the suite forbids rank promotion)
    w, b = params[-1]
    return h @ w + b[None, :]


def train_classifier(x_train, y_train, x_test, y_test, *, epochs: int = 3, batch_size: int = 128, seed: int = 0):
    """Fit the MLP; returns ``(params, test_accuracy, seconds)``."""
    t0 = time.time()
    params = _init(jax.random.key(seed))
    opt = optax.adam(1e-3)
    opt_state = opt.init(params)

    @jax.jit
    def step(params, opt_state, x, y):
        def loss(p):
            return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits_fn(p, x), y))

        g = jax.grad(loss)(params)
        upd, opt_state = opt.update(g, opt_state, params)
        return optax.apply_updates(params, upd), opt_state

    rng = np.random.default_rng(seed)
    n = len(x_train)
    for _ in range(epochs):
        order = rng.permutation(n)
        for i in range(0, n - batch_size + 1, batch_size):
            idx = order[i : i + batch_size]
            params, opt_state = step(params, opt_state, x_train[idx], y_train[idx])
    pred = np.concatenate(
        [np.asarray(jnp.argmax(logits_fn(params, x_test[i : i + 2000]), -1)) for i in range(0, len(x_test), 2000)]
    )
    acc = float(np.mean(pred == y_test))
    return params, acc, time.time() - t0


def load_or_train_on_mnist(path: str, mnist, *, train_examples: int = 60_000, epochs: int = 3):
    """:func:`load_or_train` on the first ``train_examples`` MNIST training images (grey levels in [0, 1]),
    checked on the 10k test set; ``mnist``: :func:`jaxvae.data.mnist.load_mnist`'s arrays."""
    from jaxvae.data.mnist import to_unit_float

    n = train_examples
    x_tr, y_tr = to_unit_float(mnist.x_train[:n]), mnist.y_train[:n].astype(np.int32)
    return load_or_train(path, x_tr, y_tr, to_unit_float(mnist.x_test), mnist.y_test.astype(np.int32), epochs=epochs)


def load_or_train(path: str, x_train, y_train, x_test, y_test, *, epochs: int = 3):
    """Load the cached classifier at ``path`` (``.npz``) or train and save it; returns ``(params, info)``."""
    if os.path.isfile(path):
        d = np.load(path)
        params = [(jnp.asarray(d[f"w{i}"]), jnp.asarray(d[f"b{i}"])) for i in range(int(d["n"]))]
        return params, {"test_accuracy": float(d["test_accuracy"]), "train_seconds": float(d["train_seconds"])}
    params, acc, secs = train_classifier(x_train, y_train, x_test, y_test, epochs=epochs)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    arrays = {f"w{i}": np.asarray(w) for i, (w, _) in enumerate(params)}
    arrays.update({f"b{i}": np.asarray(b) for i, (_, b) in enumerate(params)})
    tmp = path + ".tmp.npz"
    np.savez(tmp, n=len(params), test_accuracy=acc, train_seconds=secs, **arrays)
    os.replace(tmp, path)
    return params, {"test_accuracy": acc, "train_seconds": secs}
