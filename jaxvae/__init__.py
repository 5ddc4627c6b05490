"""jaxvae: variational autoencoders in JAX/Flax.

``import jaxvae as jv`` gives every subpackage as an attribute, imported on first use (so a notebook
pays for Orbax or TensorBoard only when it writes checkpoints or logs)::

    jv.distributions.Concrete(logits, temperature=0.5)
    jv.models.vae.init(jv.models.vae.Config(), 0)
    jv.train.fit(state, step, batches, jv.train.TrainConfig(num_steps=500))
    jv.metrics.iw_log_likelihood(log_weight_fn, x, key)

Layers (enforced by ``tests/test_layering.py``)::

    distributions <- objectives <- models <- experiments
    distributions <- nets <- models
    distributions, objectives <- metrics      (metrics and train never import models)
    train, data  <- experiments, benchmarks   (nothing imports experiments)
"""

import importlib

__version__ = "0.1.0"

SUBPACKAGES = ("config", "data", "distributions", "metrics", "models", "nets", "objectives", "train", "typing")
__all__ = list(SUBPACKAGES)


def __getattr__(name: str):
    if name in SUBPACKAGES:
        module = importlib.import_module(f"jaxvae.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'jaxvae' has no attribute {name!r}; its subpackages are {list(SUBPACKAGES)}.")


def __dir__():
    return sorted(list(globals()) + list(SUBPACKAGES))
