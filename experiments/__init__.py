"""Paper reproductions: thin ``main.py`` jobs over the ``jaxvae`` library, one package per paper.

Each job runs as ``python -m experiments.<paper>.main --config experiments/<paper>/configs/<name>.py
--workdir DIR [--set key=value ...]`` (see :mod:`experiments._cli`). Nothing in ``jaxvae`` imports
this package.
"""
