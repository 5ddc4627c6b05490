"""The public names of jaxvae.distributions resolve, and importing them pulls in no flax."""

import subprocess
import sys

import jaxvae.distributions as D


def test_all_names_resolve():
    missing = [n for n in D.__all__ if not hasattr(D, n)]
    assert not missing, f"__all__ lists names the package does not define: {missing}"


def test_kl_functions_are_named_functions():
    for name in ("kl_normal_normal", "kl_rectified_rectified", "kl_categorical_categorical", "kl_bernoulli_bernoulli"):
        assert callable(getattr(D, name)), name


def test_import_does_not_load_flax():
    code = "import sys, jaxvae.distributions; print('flax' in sys.modules, 'optax' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"], f"jaxvae.distributions pulled in flax/optax: {out}"
