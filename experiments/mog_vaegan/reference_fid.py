"""MNIST-FID reference points for the comparison's scale: real training images and blank images against
the test images the models are scored on.

    python -m experiments.mog_vaegan.reference_fid [--out experiments/mog_vaegan/results] [--num-images 10000]

Writes ``mnist_fid_reference.json``: the first ``num_images`` training images (the floor a perfect sampler
reaches, up to finite-sample bias) and as many all-background images (-1 plus N(0, 1e-6) noise, so that
the feature covariance is not singular), each against the first ``num_images`` test images padded to 32x32.
"""

from __future__ import annotations

import argparse
import os

import numpy as np

from experiments._common import write_results
from experiments.mog_vaegan.configs.vaegan import get_config
from experiments.mog_vaegan.data import load_data


def main(argv=None) -> dict:
    from jaxvae.data.mnist import load_mnist, pad_images
    from jaxvae.metrics.image_quality import frechet_distance_from_features
    from jaxvae.metrics.mnist_features import load_mnist_feature_net

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    p.add_argument("--num-images", type=int, default=10_000, help="training, blank and test images (each)")
    args = p.parse_args(argv)
    if not 2 <= args.num_images <= 10_000:
        raise ValueError(f"`--num-images` must be in [2, 10000] (the MNIST test set); got {args.num_images}.")
    _, test = load_data(get_config())
    test = {"x": test["x"][: args.num_images]}
    train = pad_images(np.asarray(load_mnist().x_train)[: args.num_images], (32, 32)).astype(np.float32) / 127.5 - 1.0
    blank = -1.0 + 1e-3 * np.random.default_rng(0).normal(size=test["x"].shape).astype(np.float32)
    net = load_mnist_feature_net()
    f_test = net.features(test["x"], value_range=(-1.0, 1.0))

    def fid(x):
        return frechet_distance_from_features(net.features(x.reshape(-1, 32, 32, 1), value_range=(-1.0, 1.0)), f_test)

    out = {
        f"mnist_fid_train{args.num_images}_vs_test": fid(train),
        "mnist_fid_blank_vs_test": fid(blank),
        "test_images": int(len(test["x"])),
        "mnist_feature_net_sha256": net.sha256,
    }
    print(out)
    return write_results(os.path.join(args.out, "mnist_fid_reference.json"), out)


if __name__ == "__main__":
    main()
