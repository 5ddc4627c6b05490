"""Rivera, "How to Train Your VAE": the population-KL ResNetV2 VAE with a PatchGAN, at CPU scale."""
