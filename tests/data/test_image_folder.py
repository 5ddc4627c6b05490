"""Image folders on PNGs and JPEGs written here: listing order, Keras' split, decoding, flips, scaling, resumption."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jaxvae.data import pad_images
from jaxvae.data.image_folder import (
    ImageFolder,
    horizontal_flip,
    list_images,
    read_image,
    read_images,
    scale_images,
    split_files,
)
from tests import stats

SIZE = 8  # images are written at 8x8 (PNG: exact pixels) or 12x10 (resized)


def _pattern(i: int, h: int = SIZE, w: int = SIZE) -> np.ndarray:
    """A smooth, asymmetric RGB image, different for each i (so flips and identities are visible)."""
    yy, xx = np.mgrid[0:h, 0:w]
    r = (xx * 255 // (w - 1) + 7 * i) % 256
    g = (yy * 255 // (h - 1) + 13 * i) % 256
    b = np.full((h, w), (37 * i) % 256)
    return np.stack([r, g, b], -1).astype(np.uint8)


def _smooth(j: int) -> np.ndarray:
    """A smooth RGB gradient without wrap-around (what JPEG compresses faithfully)."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    return np.stack([xx * 30 + 10 * j, yy * 30, np.full_like(xx, 100)], -1).astype(np.uint8)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """25 PNGs (RGB, one grey, one RGBA, one upper-case suffix) in two directories, 3 JPEGs, and non-images."""
    root = tmp_path_factory.mktemp("images")
    (root / "sub").mkdir()
    for i in range(25):
        img = _pattern(i)
        name = f"img_{i:02d}.png" if i != 3 else f"img_{i:02d}.PNG"
        path = (root / "sub" / name) if i >= 20 else (root / name)
        if i == 1:
            Image.fromarray(img[..., 0], mode="L").save(path)
        elif i == 2:
            Image.fromarray(np.concatenate([img, np.full((SIZE, SIZE, 1), 128, np.uint8)], -1), mode="RGBA").save(path)
        else:
            Image.fromarray(img).save(path)
    for j in range(3):
        Image.fromarray(_smooth(j)).save(root / f"photo_{j}.jpg", quality=95, subsampling=0)
    (root / "notes.txt").write_text("not an image")
    (root / "sub" / "data.npy").write_bytes(b"\x93NUMPY")
    return root


def test_list_images_order_and_filter(folder):
    files = list_images(folder)
    rel = [str(Path(f).relative_to(folder)) for f in files]
    top = sorted(n.name for n in folder.iterdir() if n.is_file() and n.suffix.lower() in (".png", ".jpg"))
    sub = sorted(n.name for n in (folder / "sub").iterdir() if n.suffix.lower() == ".png")
    assert rel == top + [f"sub/{n}" for n in sub]  # directories in path order, names sorted in each
    assert len(files) == 28 and "img_03.PNG" in rel[3]  # case-insensitive suffix
    assert list_images(folder, extensions=(".jpg",)) == [str(folder / f"photo_{j}.jpg") for j in range(3)]


def test_split_is_keras_semantics():
    """RandomState(seed).shuffle of the list, last int(f N) for validation: Keras' split, 80/20 by default."""
    files = [f"f{i:03d}.png" for i in range(103)]
    train, val = split_files(files)
    perm = np.random.RandomState(1967).permutation(103)
    assert val == [files[i] for i in perm[-20:]]
    assert train == [files[i] for i in perm[:-20]]
    assert len(train) == 83 and len(val) == 20 and not set(train) & set(val)
    assert split_files(files) == (train, val)  # deterministic
    assert split_files(files, seed=1)[1] != val
    assert split_files(files, validation_fraction=0.0) == ([files[i] for i in perm], [])
    # CelebA-HQ's 30,000 files: 24,000 / 6,000.
    t, v = split_files([str(i) for i in range(30_000)])
    assert (len(t), len(v)) == (24_000, 6_000)


def test_read_image_png_exact_and_conversions(folder):
    np.testing.assert_array_equal(read_image(folder / "img_00.png"), _pattern(0))
    grey = read_image(folder / "img_01.png")  # grey file -> RGB replicates the channel
    np.testing.assert_array_equal(grey, np.repeat(_pattern(1)[..., :1], 3, -1))
    np.testing.assert_array_equal(read_image(folder / "img_02.png"), _pattern(2))  # alpha dropped
    luma = read_image(folder / "img_00.png", channels=1)
    ref = np.round(_pattern(0).astype(np.float64) @ [0.299, 0.587, 0.114])
    assert luma.shape == (SIZE, SIZE, 1) and np.max(np.abs(luma[..., 0] - ref)) <= 1
    resized = read_image(folder / "img_00.png", image_size=(12, 10))
    assert resized.shape == (12, 10, 3) and resized.dtype == np.uint8
    jpg = read_image(folder / "photo_0.jpg")
    assert np.max(np.abs(jpg.astype(int) - _smooth(0))) <= 8  # JPEG is lossy (quality 95, 4:4:4)


def test_read_images_parallel_equals_serial(folder):
    files = list_images(folder)
    a = read_images(files, image_size=(6, 6), num_workers=4)
    b = read_images(files, image_size=(6, 6), num_workers=1)
    assert a.shape == (28, 6, 6, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)


def test_scale_images():
    x = np.array([0, 127, 255], np.uint8)
    np.testing.assert_allclose(scale_images(x), x / 127.5 - 1, rtol=0, atol=1e-7)
    np.testing.assert_allclose(scale_images(x, (0, 1)), x / 255, atol=1e-7)
    assert scale_images(x).dtype == np.float32
    assert scale_images(x).min() == -1.0 and scale_images(x).max() == 1.0


def _png_folder(folder):
    return ImageFolder(folder, image_size=None, extensions=(".png",), validation_fraction=0.2)


def _decoded(ff, subset):
    """Exact float images of a subset of PNGs (files written from _pattern)."""
    return {f: scale_images(read_image(f)) for f in ff.subset_files(subset)}


def test_image_folder_split_and_load(folder):
    ff = _png_folder(folder)
    assert len(ff) == 25
    train, val = ff.subset_files("train"), ff.subset_files("validation")
    assert (len(train), len(val)) == (20, 5) and set(train) | set(val) == set(ff.files)
    assert (list(train), list(val)) == split_files(list_images(folder, extensions=(".png",)))
    x = ff.load("validation")
    assert x.shape == (5, SIZE, SIZE, 3) and x.dtype == np.float32
    np.testing.assert_array_equal(x, np.stack(list(_decoded(ff, "validation").values())))


def test_train_iterator_flips_scales_and_covers_an_epoch(folder):
    ff = _png_folder(folder)
    ref = list(_decoded(ff, "train").values())
    it = ff.iterator("train", batch_size=5, seed=0)
    assert it.steps_per_epoch == 4
    seen, flipped = [], 0
    for _ in range(4):
        x = next(it)["x"]
        assert x.shape == (5, SIZE, SIZE, 3) and x.dtype == np.float32
        assert x.min() >= -1.0 and x.max() <= 1.0
        for img in x:
            match = [i for i, r in enumerate(ref) if np.array_equal(img, r)]
            match_f = [i for i, r in enumerate(ref) if np.array_equal(img, r[:, ::-1])]
            assert len(match) + len(match_f) == 1
            seen.extend(match + match_f)
            flipped += len(match_f)
    assert sorted(seen) == list(range(20))  # one epoch: every training image once
    assert 0 < flipped < 20


def test_flip_probability_is_one_half():
    t = horizontal_flip()
    x = np.arange(2 * 4000).reshape(4000, 1, 2, 1).astype(np.float32)
    out = t({"x": x}, np.random.default_rng(0))["x"]
    frac = np.mean(out[:, 0, 0, 0] != x[:, 0, 0, 0])
    stats.assert_close_clt(frac, 0.5, stats.binomial_se(0.5, 4000), what="flip fraction")
    flipped = out[:, 0, 0, 0] != x[:, 0, 0, 0]
    np.testing.assert_array_equal(out[flipped], x[flipped][:, :, ::-1])  # exact mirrors
    # One draw per example, shared by the keys: paired arrays stay aligned.
    both = horizontal_flip(("x", "y"))({"x": x, "y": x + 1}, np.random.default_rng(2))
    np.testing.assert_array_equal(both["y"], both["x"] + 1)


def test_validation_iterator_does_not_flip_by_default(folder):
    ff = _png_folder(folder)
    ref = _decoded(ff, "validation")
    batch = next(ff.iterator("validation", batch_size=5, seed=0, shuffle=False))["x"]
    np.testing.assert_array_equal(batch, np.stack(list(ref.values())))


def test_resume_is_bitwise_with_flips(folder):
    ff = _png_folder(folder)
    it = ff.iterator("train", batch_size=4, seed=3)
    for _ in range(7):  # into the second epoch
        next(it)
    state = json.loads(json.dumps(it.get_state()))
    expected = [next(it)["x"] for _ in range(4)]
    resumed = ff.iterator("train", batch_size=4, seed=3)
    resumed.set_state(state)
    for e in expected:
        np.testing.assert_array_equal(next(resumed)["x"], e)


def test_process_slices_union_is_the_global_batch(folder):
    ff = _png_folder(folder)
    glob = ff.iterator("train", batch_size=4, seed=5, flip=False)
    parts = [ff.iterator("train", batch_size=4, seed=5, flip=False, process_index=p, process_count=2) for p in (0, 1)]
    for _ in range(3):
        g = next(glob)["x"]
        p0, p1 = next(parts[0])["x"], next(parts[1])["x"]
        assert p0.shape == (2, SIZE, SIZE, 3)
        np.testing.assert_array_equal(np.concatenate([p0, p1]), g)


def test_cache_gives_the_same_batches(folder):
    ff = _png_folder(folder)
    a = ff.iterator("train", batch_size=5, seed=1, cache=True)
    b = ff.iterator("train", batch_size=5, seed=1, cache=False)
    for _ in range(5):
        np.testing.assert_array_equal(next(a)["x"], next(b)["x"])


def test_eval_batches_cover_the_subset_once(folder):
    ff = _png_folder(folder)
    total = np.zeros((SIZE, SIZE, 3))
    count = 0
    for batch, mask in ff.eval_batches("validation", batch_size=3):
        assert batch["x"].shape == (3, SIZE, SIZE, 3)
        total += (batch["x"] * mask[:, None, None, None]).sum(0)
        count += int(mask.sum())
    assert count == 5
    np.testing.assert_allclose(total, ff.load("validation").sum(0), rtol=1e-6, atol=1e-5)


def test_mixed_formats_resized_grey_and_unit_range(folder):
    ff = ImageFolder(folder, image_size=(4, 6), channels=1, value_range=(0, 1), validation_fraction=0.25)
    assert len(ff) == 28
    x = next(ff.iterator("all", batch_size=28, seed=0, shuffle=False))["x"]
    assert x.shape == (28, 4, 6, 1) and x.min() >= 0 and x.max() <= 1


def test_pad_images_mnist_to_32():
    x = np.arange(2 * 28 * 28, dtype=np.int64).reshape(2, 28, 28).astype(np.uint8)
    p = pad_images(x)
    assert p.shape == (2, 32, 32) and p.dtype == np.uint8
    np.testing.assert_array_equal(p[:, 2:30, 2:30], x)
    assert p[:, :2].sum() == p[:, 30:].sum() == p[:, :, :2].sum() == p[:, :, 30:].sum() == 0
    q = pad_images(x[..., None].astype(np.float32) / 127.5 - 1, value=-1.0)
    assert q.shape == (2, 32, 32, 1) and q[0, 0, 0, 0] == -1.0
    assert pad_images(x, size=(29, 31)).shape == (2, 29, 31)
    with pytest.raises(ValueError, match="`size`"):
        pad_images(x, size=(20, 32))
    with pytest.raises(ValueError, match=r"`x` must be \[N, H, W\]"):
        pad_images(x[0])


def test_errors(folder, tmp_path):
    with pytest.raises(ValueError, match="`directory` must be an existing directory"):
        ImageFolder(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no file"):
        ImageFolder(tmp_path / "empty")
    (tmp_path / "mixed").mkdir()
    Image.fromarray(_pattern(0)).save(tmp_path / "mixed" / "a.png")
    Image.fromarray(_pattern(1, 6, 8)).save(tmp_path / "mixed" / "b.png")
    with pytest.raises(ValueError, match="images have different sizes"):
        ImageFolder(tmp_path / "mixed", image_size=None).load("all")
    assert ImageFolder(tmp_path / "mixed", image_size=(8, 8)).load("all").shape == (2, 8, 8, 3)
    ff = _png_folder(folder)
    with pytest.raises(ValueError, match="`subset` must be one of"):
        ff.iterator("test", batch_size=2, seed=0)
    with pytest.raises(ValueError, match="`value_range`"):
        ImageFolder(folder, value_range=(1, -1))
    with pytest.raises(ValueError, match="`channels`"):
        ImageFolder(folder, channels=4)
    with pytest.raises(ValueError, match="`image_size`"):
        ImageFolder(folder, image_size=(0, 4))
    with pytest.raises(ValueError, match="`resample`"):
        ImageFolder(folder, resample="cubic")
    with pytest.raises(ValueError, match="`validation_fraction` must lie in"):
        split_files(["a"], validation_fraction=1.0)
    with pytest.raises(ValueError, match="`seed`"):
        split_files(["a"], seed=-1)
    with pytest.raises(ValueError, match="`extensions`"):
        list_images(folder, extensions=("png",))
    with pytest.raises(ValueError, match="is empty"):
        ImageFolder(folder, validation_fraction=0.0).subset_files("validation")
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(ValueError, match="cannot decode image file"):
        read_image(bad)
    with pytest.raises(ValueError, match="`x` must be uint8"):
        scale_images(np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="`probability`"):
        horizontal_flip(probability=1.5)
    with pytest.raises(ValueError, match=r"must be images \[B, H, W, C\]"):
        horizontal_flip()({"x": np.zeros((2, 3))}, np.random.default_rng(0))
