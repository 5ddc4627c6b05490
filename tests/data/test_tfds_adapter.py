"""load_tfds_arrays against a tiny ArrayRecord dataset this test writes itself (offline, no TF)."""

import struct
import zlib

import numpy as np
import pytest

from jaxvae.data.tfds_adapter import load_tfds_arrays

tfds = pytest.importorskip("tensorflow_datasets")
pytest.importorskip("PIL")

H, W, N_TRAIN, N_TEST = 6, 5, 14, 6


def _png_gray(a: np.ndarray) -> bytes:
    """Minimal 8-bit greyscale PNG encoder (so the builder needs neither TF nor PIL to write)."""
    h, w = a.shape
    raw = b"".join(b"\x00" + a[r].tobytes() for r in range(h))

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    rng = np.random.default_rng(123)
    x = rng.integers(0, 256, (N_TRAIN + N_TEST, H, W), dtype=np.uint8)
    y = rng.integers(0, 3, N_TRAIN + N_TEST)

    class JaxvaeTiny(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        name = "jaxvae_tiny"
        # A one-part module name makes tfds skip its package-resource lookup of the builder's code
        # (which needs the optional `importlib_resources` for a module inside a package like tests.data).
        __module__ = "jaxvae_tiny_builder"
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            features = tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(H, W, 1)),
                    "label": tfds.features.ClassLabel(num_classes=3),
                    "index": tfds.features.Scalar(dtype=np.int64),
                }
            )
            return tfds.core.DatasetInfo(builder=self, features=features)

        def _split_generators(self, dl_manager):
            return {
                "train": self._generate_examples(0, N_TRAIN),
                "test": self._generate_examples(N_TRAIN, N_TRAIN + N_TEST),
            }

        def _generate_examples(self, lo, hi):
            for i in range(lo, hi):  # images go in as PNG bytes: tfds would call tf.image.encode_png on arrays
                yield i, {"image": _png_gray(x[i]), "label": int(y[i]), "index": i}

    data_dir = tmp_path_factory.mktemp("tfds")
    JaxvaeTiny(data_dir=str(data_dir), file_format="array_record").download_and_prepare(
        download_config=tfds.download.DownloadConfig(try_download_gcs=False)
    )
    return data_dir, x, y


@pytest.mark.parametrize("split, lo, hi", [("train", 0, N_TRAIN), ("test", N_TRAIN, N_TRAIN + N_TEST)])
def test_round_trip_every_example_exactly(tiny, split, lo, hi):
    data_dir, x, y = tiny
    out = load_tfds_arrays("jaxvae_tiny", split, data_dir, chunk_size=4)  # several chunks, one partial
    assert set(out) == {"image", "label", "index"}
    assert out["image"].shape == (hi - lo, H, W, 1) and out["image"].dtype == np.uint8
    # TFDS shuffles records at write time: realign by the stored index, then compare bitwise.
    assert sorted(out["index"].tolist()) == list(range(lo, hi))
    order = np.argsort(out["index"])
    np.testing.assert_array_equal(out["image"][order, ..., 0], x[lo:hi])
    np.testing.assert_array_equal(out["label"][order], y[lo:hi])


def test_keys_and_max_examples(tiny):
    data_dir, _, _ = tiny
    full = load_tfds_arrays("jaxvae_tiny", "train", data_dir)
    part = load_tfds_arrays("jaxvae_tiny", "train", data_dir, keys=["label"], max_examples=5)
    assert set(part) == {"label"}
    np.testing.assert_array_equal(part["label"], full["label"][:5])
    sliced = load_tfds_arrays("jaxvae_tiny", "train[:3]", data_dir, keys=("index",))
    np.testing.assert_array_equal(sliced["index"], full["index"][:3])


def test_bad_arguments(tiny):
    data_dir, _, _ = tiny
    with pytest.raises(ValueError, match="keys"):
        load_tfds_arrays("jaxvae_tiny", "train", data_dir, keys=["nope"])
    with pytest.raises(ValueError, match="max_examples"):
        load_tfds_arrays("jaxvae_tiny", "train", data_dir, max_examples=-1)
    with pytest.raises(ValueError, match="chunk_size"):
        load_tfds_arrays("jaxvae_tiny", "train", data_dir, chunk_size=0)


def test_missing_dataset_fails_offline(tmp_path):
    with pytest.raises(ValueError, match="jaxvae_tiny"):  # tfds' DatasetNotFoundError; no download attempted
        load_tfds_arrays("jaxvae_tiny", "train", tmp_path)
