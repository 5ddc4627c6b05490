"""jaxvae: variational autoencoders in JAX/Flax.

Layers (enforced by ``tests/test_layering.py``)::

    distributions <- objectives <- models <- experiments
    distributions <- nets <- models
    distributions, objectives <- metrics      (metrics and train never import models)
    train, data  <- experiments, benchmarks   (nothing imports experiments)
"""

__version__ = "0.1.0"
