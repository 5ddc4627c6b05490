"""Models: one module per paper, every one in the same shape.

The template (``vae.py`` is the shortest instance; ``rectified_hvae.py`` adds batch statistics and a
hierarchy, ``inverted_ssvae.py`` several data streams):

1. ``Config``: a frozen dataclass (hashable: a static ``jit`` argument) validated in ``__post_init__``
   with :mod:`jaxvae.config` (``check_one_of``, ``check_positive_int``, ``as_widths``, ...). One name per
   concept across models: ``latent_dim``, ``hidden``, ``x_shape``, ``activation``, ``scale_param``,
   ``beta``. Settings that reproduce an author's code rather than the paper are grouped in a nested
   dataclass (e.g. ``inverted_ssvae.AuthorsCode``).
2. The Linen module(s), built from :mod:`jaxvae.nets` (``MLP``, ``GaussianHead``, conv and ResNet
   stacks), returning distribution parameters. Stochastic passes take their key as an argument.
3. ``Terms``: a NamedTuple of per-example ``[B]`` arrays, and
   ``objective_terms(config, params, model_state, batch, key, *, train) -> (Terms, model_state)``: the
   paper's equations line by line, every density and KL from :mod:`jaxvae.distributions` /
   :mod:`jaxvae.objectives`; with ``train`` the batch statistics are used and updated.
4. ``make_loss_fn(config)`` / ``make_eval_fn(config)``: a few lines reducing ``Terms`` to the engine's
   contract (:mod:`jaxvae.train.state`) with :func:`jaxvae.models.common.loss_output` /
   :func:`~jaxvae.models.common.per_example`.
5. ``init(config, key_or_seed) -> (params, model_state)`` (jitted), and the evaluation helpers a paper
   needs (``make_log_weight_fn`` for the IW-NLL, samples, reconstructions).

Each equation of a paper is in its model file (docstring and the line computing it), its test in
``tests/models/test_<paper>.py``, its number in ``experiments/<paper>/README.md``.
"""

import importlib
import pkgutil


def __getattr__(name: str):
    """``jaxvae.models.vae`` and every other model module, imported on first use."""
    if any(m.name == name for m in pkgutil.iter_modules(__path__)):
        module = importlib.import_module(f"jaxvae.models.{name}")
        globals()[name] = module
        return module
    names = sorted(m.name for m in pkgutil.iter_modules(__path__))
    raise AttributeError(f"module 'jaxvae.models' has no attribute {name!r}; its modules are {names}.")
