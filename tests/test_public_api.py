"""The public top level a notebook uses: ``import jaxvae as jv`` and every subpackage as an attribute."""

import subprocess
import sys

import pytest

import jaxvae as jv


def test_subpackages_are_attributes_imported_on_first_use():
    assert jv.distributions.Concrete.__name__ == "Concrete"
    assert jv.models.vae.Config.__name__ == "Config"
    assert jv.train.fit.__name__ == "fit" and jv.train.TrainConfig.__name__ == "TrainConfig"
    assert jv.metrics.iw_nll.__name__ == "jaxvae.metrics.iw_nll"
    assert callable(jv.train.make_multi_train_step) and callable(jv.config.check_one_of)
    assert "train" in dir(jv) and "fit" in dir(jv.train)
    for bad in (lambda: jv.nope, lambda: jv.models.nope, lambda: jv.train.nope):
        with pytest.raises(AttributeError, match="nope"):
            bad()


def test_the_notebook_path_imports_neither_orbax_nor_tensorboard():
    code = (
        "import sys, jaxvae as jv\n"
        "jv.distributions.Concrete; jv.models.vae; jv.train.fit; jv.train.make_train_step; jv.metrics.iw_nll\n"
        "names = ('orbax', 'tensorboardX', 'tensorflow', 'tensorflow_datasets', 'torch')\n"
        "heavy = [m for m in names if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "print('ok')\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0 and "ok" in p.stdout, p.stderr[-2000:]
