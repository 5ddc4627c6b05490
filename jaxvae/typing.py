"""Type aliases shared across jaxvae.

Shape letters used in docstrings: ``B`` batch, ``K`` importance samples, ``D`` latent dimension,
``C`` categories / mixture components, ``H W Ch`` image height, width, channels.
"""

from collections.abc import Mapping, Sequence
from typing import Any

import jax

PRNGKey = jax.Array
PyTree = Any
Shape = int | Sequence[int]
Metrics = Mapping[str, jax.Array]
