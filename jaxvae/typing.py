"""Type aliases shared across jaxvae.

Shape letters used in docstrings: ``B`` batch, ``K`` importance samples, ``D`` latent dimension,
``C`` categories / mixture components, ``H W Ch`` image height, width, channels.
"""

from typing import Any, Mapping, Sequence, Union

import jax

PRNGKey = jax.Array
PyTree = Any
Shape = Union[int, Sequence[int]]
Metrics = Mapping[str, jax.Array]
