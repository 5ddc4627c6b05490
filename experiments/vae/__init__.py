"""Baseline VAE (Kingma & Welling, 2014) on MNIST: ``python -m experiments.vae.main``."""
