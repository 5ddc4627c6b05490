"""dSprites rendered here: the factor grid and its order, each factor's effect, determinism, loaders."""

import math
import pickle

import numpy as np
import pytest

from jaxvae.data import dsprites as ds
from jaxvae.data.dsprites import (
    DSPRITES_RENDERED_NAME,
    FACTOR_NAMES,
    FACTOR_SIZES,
    NUM_IMAGES,
    DspritesArrays,
    check_official_order,
    classes_to_index,
    classes_to_values,
    dsprites_arrays,
    dsprites_batches,
    dsprites_transform,
    eval_indices,
    factor_values,
    index_to_classes,
    load_dsprites_npz,
    load_packed,
    render_dsprites,
    render_sprites,
    unpack_images,
)

STEP = 40.0 / 31.0  # pixels per position class


def idx(shape=0, scale=5, orient=0, x=16, y=16):
    return int(classes_to_index(np.array([[0, shape, scale, orient, x, y]]))[0])


def centroid(img):
    """(x, y) of the white pixels' centres, y downwards (pixel units)."""
    r, c = np.nonzero(img)
    return c.mean() + 0.5, r.mean() + 0.5


# ---------------------------------------------------------------------------- the grid and its order
def test_grid_size_names_and_values():
    assert FACTOR_NAMES == ("color", "shape", "scale", "orientation", "posX", "posY")
    assert FACTOR_SIZES == (1, 3, 6, 40, 32, 32) and NUM_IMAGES == 737_280
    vals = factor_values()
    assert [len(v) for v in vals] == list(FACTOR_SIZES)
    np.testing.assert_array_equal(vals[1], [1.0, 2.0, 3.0])
    np.testing.assert_allclose(vals[2], [0.5, 0.6, 0.7, 0.8, 0.9, 1.0], rtol=0, atol=1e-15)
    assert vals[3][0] == 0.0 and vals[3][-1] == pytest.approx(2 * math.pi, abs=1e-15)
    np.testing.assert_allclose(np.diff(vals[3]), 2 * math.pi / 39, rtol=1e-12)
    for v in vals[4:]:
        assert v[0] == 0.0 and v[-1] == 1.0 and np.allclose(np.diff(v), 1 / 31)


def test_index_order_is_mixed_radix_with_pos_y_fastest():
    all_idx = np.arange(NUM_IMAGES)
    c = index_to_classes(all_idx)
    assert c.dtype == np.int64 and c.shape == (NUM_IMAGES, 6)
    np.testing.assert_array_equal(c, np.stack(np.unravel_index(all_idx, FACTOR_SIZES), axis=1))
    np.testing.assert_array_equal(classes_to_index(c), all_idx)
    # one step of each factor, from the fastest to the slowest
    for k, stride in zip([5, 4, 3, 2, 1], [1, 32, 32 * 32, 40 * 32 * 32, 6 * 40 * 32 * 32]):
        expected = np.zeros(6, np.int64)
        expected[k] = 1
        np.testing.assert_array_equal(index_to_classes(np.array([stride]))[0], expected)
    assert np.bincount(c[:, 1]).tolist() == [245_760] * 3  # every combination exactly once


def test_classes_to_values_uses_the_factor_values():
    rng = np.random.default_rng(0)
    c = index_to_classes(rng.integers(0, NUM_IMAGES, 500))
    v = classes_to_values(c)
    for k, vals in enumerate(factor_values()):
        np.testing.assert_array_equal(v[:, k], vals[c[:, k]])


# ---------------------------------------------------------------------------- each factor's effect
def test_position_moves_the_sprite_by_the_documented_step():
    for shape in range(3):
        for orient in (0, 7, 23):
            xs = render_dsprites(np.array([idx(shape, 3, orient, x=k) for k in range(32)]))
            ys = render_dsprites(np.array([idx(shape, 3, orient, y=k) for k in range(32)]))
            cx = np.array([centroid(im) for im in xs])
            cy = np.array([centroid(im) for im in ys])
            # posX moves the centroid right by 40/31 px per class and leaves the row alone; posY moves it down
            assert np.polyfit(np.arange(32), cx[:, 0], 1)[0] == pytest.approx(STEP, abs=0.03)
            assert np.polyfit(np.arange(32), cy[:, 1], 1)[0] == pytest.approx(STEP, abs=0.03)
            assert np.ptp(cx[:, 1]) < 0.5 and np.ptp(cy[:, 0]) < 0.5
            # pixelisation only: the sprite's pixel count barely changes with position
            assert np.ptp(xs.sum((1, 2))) <= 0.12 * xs.sum((1, 2)).mean()


def test_sprite_centroid_is_the_documented_centre():
    for shape in range(3):
        for x, y in ((0, 0), (31, 5), (16, 31)):
            imgs = render_dsprites(np.array([idx(shape, 5, o, x, y) for o in range(40)]))
            c = np.array([centroid(im) for im in imgs]).mean(axis=0)
            np.testing.assert_allclose(c, [12 + 40 * x / 31, 12 + 40 * y / 31], atol=0.25)


def test_every_sprite_stays_inside_the_frame():
    corners = [(x, y) for x in (0, 31) for y in (0, 31)] + [(0, 16), (31, 16), (16, 0), (16, 31)]
    batch = np.array([idx(s, 5, o, x, y) for s in range(3) for o in range(40) for x, y in corners])
    imgs = render_dsprites(batch)
    border = imgs[:, 0, :].sum() + imgs[:, -1, :].sum() + imgs[:, :, 0].sum() + imgs[:, :, -1].sum()
    assert border == 0
    centred = render_dsprites(np.array([idx(s, 5, o) for s in range(3) for o in range(40) for _ in corners]))
    np.testing.assert_allclose(imgs.sum((1, 2)), centred.sum((1, 2)), rtol=0.12)


def test_scale_multiplies_the_area_by_scale_squared():
    areas = {0: 256.0, 1: 60.5 * math.pi, 2: 3.66196 * 64}  # closed-form areas at scale 1 (heart: quadrature)
    for shape, area in areas.items():
        for si, s in enumerate(factor_values()[2]):
            imgs = render_dsprites(
                np.array([idx(shape, si, o, x, y) for o in range(40) for x, y in ((3, 7), (20, 11))])
            )
            # mean over 80 placements: the pixelisation error averages out to well below 3%
            assert imgs.sum((1, 2)).mean() == pytest.approx(area * s * s, rel=0.03), (shape, s)


def test_orientation_turns_the_sprite_counter_clockwise():
    angles = factor_values()[3]
    imgs = render_dsprites(np.array([idx(1, 5, o) for o in range(40)]))  # ellipse, major axis horizontal at 0
    for im, theta in zip(imgs, angles):
        r, c = np.nonzero(im)
        x, y = c - c.mean(), -(r - r.mean())  # y up
        phi = 0.5 * math.atan2(2 * (x * y).mean(), (x * x).mean() - (y * y).mean())
        diff = (phi - theta + math.pi / 2) % math.pi - math.pi / 2  # axis angle is defined modulo pi
        assert abs(diff) < math.radians(3), (theta, phi)


def test_heart_points_down_at_zero_and_turns_counter_clockwise():
    one = lambda theta: render_sprites([2], [1.0], [theta], [0.5], [0.5])[0]
    cx = cy = 12 + 40 * 0.5

    def reach(img):  # how far the sprite extends right, left, down, up from the centre (pixel centres)
        r, c = np.nonzero(img)
        return c.max() + 0.5 - cx, cx - c.min() - 0.5, r.max() + 0.5 - cy, cy - r.min() - 0.5

    right, left, down, up = reach(one(0.0))
    # tip at the bottom (v = -0.997 below the centroid), lobes on top (v = 1.236), symmetric left-right
    assert down == pytest.approx((0.99737 + ds.HEART_CENTROID_V) * 8, abs=1.0)
    assert up == pytest.approx((1.23593 - ds.HEART_CENTROID_V) * 8, abs=1.0)
    assert right == pytest.approx(1.13841 * 8, abs=1.0) and abs(right - left) < 1.0
    right, left, down, up = reach(one(math.pi / 2))  # a quarter turn counter-clockwise: the tip points right
    assert right == pytest.approx((0.99737 + ds.HEART_CENTROID_V) * 8, abs=1.0)
    assert left == pytest.approx((1.23593 - ds.HEART_CENTROID_V) * 8, abs=1.0) and abs(down - up) < 1.0


def test_heart_centroid_constant():
    n = 2000
    u = np.linspace(-1.2, 1.2, n)
    v = np.linspace(-1.1, 1.3, n)
    uu, vv = np.meshgrid(u, v)
    inside = (uu**2 + vv**2 - 1) ** 3 - uu**2 * vv**3 <= 0
    assert (vv * inside).sum() / inside.sum() == pytest.approx(ds.HEART_CENTROID_V, abs=2e-3)
    assert inside.sum() * (u[1] - u[0]) * (v[1] - v[0]) == pytest.approx(3.66196, rel=2e-3)


def test_shapes_differ_and_colour_is_the_only_value():
    imgs = render_dsprites(np.array([idx(s, 5, 3) for s in range(3)]))
    assert not np.array_equal(imgs[0], imgs[1]) and not np.array_equal(imgs[1], imgs[2])
    assert set(np.unique(imgs)) == {0, 1}


def test_orientation_0_and_2pi_coincide_as_in_the_dataset_card():
    a = render_dsprites(np.array([idx(s, si, 0, 5, 9) for s in range(3) for si in range(6)]))
    b = render_dsprites(np.array([idx(s, si, 39, 5, 9) for s in range(3) for si in range(6)]))
    np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------------------- determinism and dtypes
def test_rendering_is_deterministic_and_batch_independent():
    rng = np.random.default_rng(1)
    batch = rng.integers(0, NUM_IMAGES, 300)
    a = render_dsprites(batch)
    np.testing.assert_array_equal(a, render_dsprites(batch))
    perm = rng.permutation(300)
    np.testing.assert_array_equal(render_dsprites(batch[perm]), a[perm])
    singles = np.concatenate([render_dsprites(batch[i : i + 1]) for i in range(0, 300, 37)])
    np.testing.assert_array_equal(singles, a[::37])
    assert a.dtype == np.uint8 and a.shape == (300, 64, 64)
    f = render_dsprites(batch, dtype=np.float32)
    assert f.dtype == np.float32 and np.array_equal(f, a.astype(np.float32))
    assert render_dsprites(np.array([], np.int64)).shape == (0, 64, 64)


def _full_frame_reference(indices):
    """Every pixel of the 64 x 64 frame tested against the shape (no window), one image at a time."""
    c = index_to_classes(indices)
    v = classes_to_values(c)
    centres = np.arange(64) + 0.5
    out = []
    for shape, scale, theta, px, py in zip(c[:, 1], v[:, 2], v[:, 3], v[:, 4], v[:, 5]):
        dx = (centres[None, :] - (12 + 40 * px)) / scale
        dy = ((12 + 40 * py) - centres[:, None]) / scale
        u = np.cos(theta) * dx + np.sin(theta) * dy
        w = np.cos(theta) * dy - np.sin(theta) * dx
        out.append(ds._inside(int(shape), u, w))
    return np.stack(out).astype(np.uint8)


def test_windowed_rendering_equals_the_full_frame():
    """The 25 x 25 window around the centre never clips a sprite: same pixels as testing the whole frame."""
    rng = np.random.default_rng(7)
    corners = [idx(s, 5, o, x, y) for s in range(3) for o in range(0, 40, 3) for x in (0, 31) for y in (0, 31)]
    batch = np.concatenate([rng.integers(0, NUM_IMAGES, 300), corners])
    np.testing.assert_array_equal(render_dsprites(batch), _full_frame_reference(batch))


def test_render_sprites_matches_the_grid():
    c = index_to_classes(np.array([12345, 600_000]))
    v = classes_to_values(c)
    np.testing.assert_array_equal(
        render_sprites(c[:, 1], v[:, 2], v[:, 3], v[:, 4], v[:, 5]), render_dsprites(np.array([12345, 600_000]))
    )


# ---------------------------------------------------------------------------- arrays, subsets, iterators
def test_dsprites_arrays_layout():
    sub = np.array([0, 1, 99_999, NUM_IMAGES - 1])
    a = dsprites_arrays(sub)
    assert isinstance(a, DspritesArrays) and a.name == DSPRITES_RENDERED_NAME == "dSprites (rendered here)"
    np.testing.assert_array_equal(a.imgs, render_dsprites(sub))
    np.testing.assert_array_equal(a.latents_classes, index_to_classes(sub))
    np.testing.assert_array_equal(a.latents_values, classes_to_values(a.latents_classes))
    assert tuple(a.metadata["latents_sizes"]) == FACTOR_SIZES and a.metadata["latents_names"] == FACTOR_NAMES


def test_eval_indices_fixed_sorted_distinct():
    a = eval_indices(5000, seed=3)
    np.testing.assert_array_equal(a, eval_indices(5000, seed=3))
    assert len(np.unique(a)) == 5000 and np.all(np.diff(a) > 0) and a.min() >= 0 and a.max() < NUM_IMAGES
    assert not np.array_equal(a, eval_indices(5000, seed=4))
    for bad in (0, NUM_IMAGES + 1, 2.0, True):
        with pytest.raises(ValueError, match="`num`"):
            eval_indices(bad)
    with pytest.raises(ValueError, match="`seed`"):
        eval_indices(10, seed=-1)


def test_batches_render_the_served_indices_and_resume_exactly():
    it = dsprites_batches(64, seed=5, with_factors=True)
    first = [next(it) for _ in range(3)]
    b = first[0]
    assert b["x"].shape == (64, 64, 64, 1) and b["x"].dtype == np.float32
    np.testing.assert_array_equal(b["x"][..., 0], render_dsprites(b["index"], dtype=np.float32))
    np.testing.assert_array_equal(b["classes"], index_to_classes(b["index"]))
    np.testing.assert_array_equal(b["values"], classes_to_values(b["classes"]))
    state = it.get_state()
    expect = next(it)
    resumed = dsprites_batches(64, seed=5, with_factors=True)
    resumed.set_state(state)
    got = next(resumed)
    for k in expect:
        np.testing.assert_array_equal(got[k], expect[k])
    # an explicit index set (the fixed evaluation subset) and several processes
    sub = eval_indices(256, seed=0)
    p0 = next(dsprites_batches(32, seed=1, indices=sub, process_index=0, process_count=2))
    p1 = next(dsprites_batches(32, seed=1, indices=sub, process_index=1, process_count=2))
    assert set(p0["index"]).isdisjoint(p1["index"]) and set(p0["index"]) | set(p1["index"]) <= set(sub)


def test_packed_source_gives_the_rendered_images():
    rng = np.random.default_rng(2)
    chosen = rng.choice(NUM_IMAGES, 40, replace=False)
    packed = np.zeros((NUM_IMAGES, 512), np.uint8)  # calloc: only the touched rows use memory
    packed[chosen] = np.packbits(render_dsprites(chosen).reshape(40, -1), axis=1)
    np.testing.assert_array_equal(unpack_images(packed[chosen]), render_dsprites(chosen))
    t = dsprites_transform(packed=packed, with_factors=False, dtype=np.uint8)
    out = t({"index": chosen}, np.random.default_rng(0))
    np.testing.assert_array_equal(out["x"][..., 0], render_dsprites(chosen))
    assert "classes" not in out
    with pytest.raises(ValueError, match="`packed`"):
        dsprites_transform(packed=packed[:10])
    with pytest.raises(ValueError, match="`packed_rows`"):
        unpack_images(np.zeros((3, 100), np.uint8))
    with pytest.raises(ValueError, match="entry 'index'"):
        t({"x": chosen}, np.random.default_rng(0))


@pytest.mark.slow
def test_load_packed_builds_caches_and_rebuilds_a_stale_cache(tmp_path):
    a = load_packed(tmp_path)
    assert a.shape == (NUM_IMAGES, 512) and a.dtype == np.uint8
    probe = np.random.default_rng(0).choice(NUM_IMAGES, 500, replace=False)
    expected = render_dsprites(probe)
    np.testing.assert_array_equal(unpack_images(np.asarray(a[probe])), expected)
    cache = tmp_path / "dsprites_rendered_v1.npy"
    assert cache.is_file()
    del a  # drop the memory map before the file is overwritten
    np.save(cache, np.zeros((NUM_IMAGES, 512), np.uint8))  # stale content: rebuilt
    b = load_packed(tmp_path, mmap=False)
    assert isinstance(b, np.ndarray) and not isinstance(b, np.memmap)
    np.testing.assert_array_equal(unpack_images(b[probe]), expected)
    c = load_packed(tmp_path)  # the rebuilt cache is read back
    np.testing.assert_array_equal(unpack_images(np.asarray(c[probe])), expected)


# ---------------------------------------------------------------------------- the official file
def _write_npz(path, n=6, **override):
    sub = np.array([0, 1, 31, 1024, 300_000, NUM_IMAGES - 1])[:n]
    c = index_to_classes(sub)
    meta = {"latents_names": FACTOR_NAMES, "latents_sizes": np.array(FACTOR_SIZES), "title": "dSprites"}
    arrays = {
        "imgs": render_dsprites(sub),
        "latents_values": classes_to_values(c),
        "latents_classes": c,
        "metadata": np.array(meta, dtype=object),
    }
    arrays.update(override)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return sub


def test_load_official_npz_layout(tmp_path):
    path = tmp_path / "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
    sub = _write_npz(path)
    a = load_dsprites_npz(path)
    assert a.name == "dSprites (official npz)"
    assert a.imgs.dtype == np.uint8 and a.latents_values.dtype == np.float64 and a.latents_classes.dtype == np.int64
    np.testing.assert_array_equal(a.imgs, render_dsprites(sub))
    np.testing.assert_array_equal(a.latents_classes, index_to_classes(sub))
    assert a.metadata["title"] == "dSprites" and tuple(a.metadata["latents_sizes"]) == FACTOR_SIZES


@pytest.mark.parametrize(
    "override, match",
    [
        ({"metadata": None}, "lacks key"),
        ({"imgs": np.zeros((6, 32, 32), np.uint8)}, "`imgs`"),
        ({"imgs": np.full((6, 64, 64), 255, np.uint8)}, "0/1"),
        ({"latents_values": np.zeros((5, 6))}, "`latents_values`"),
        ({"latents_classes": np.full((6, 6), 7)}, "latents_classes"),
        ({"metadata": np.array([1, 2])}, "`metadata`"),
    ],
)
def test_load_official_npz_rejects_bad_files(tmp_path, override, match):
    path = tmp_path / "bad.npz"
    _write_npz(path, **override)
    with pytest.raises(ValueError, match=match):
        load_dsprites_npz(path)


def test_load_official_npz_missing_or_not_npz(tmp_path):
    with pytest.raises(FileNotFoundError, match="`path`"):
        load_dsprites_npz(tmp_path / "nope.npz")
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="not a readable"):
        load_dsprites_npz(junk)
    pickled = tmp_path / "pickled.npz"
    pickled.write_bytes(pickle.dumps({"imgs": 1}))
    with pytest.raises(ValueError, match="not a readable"):
        load_dsprites_npz(pickled)


def test_check_official_order():
    c = index_to_classes(np.arange(NUM_IMAGES))
    empty = np.zeros((0, 64, 64), np.uint8)
    full = DspritesArrays(empty, classes_to_values(c[:1]), c, {}, "x")
    check_official_order(full)
    swapped = c.copy()
    swapped[[10, 11]] = swapped[[11, 10]]
    with pytest.raises(ValueError, match="row 10"):
        check_official_order(full._replace(latents_classes=swapped))
    with pytest.raises(ValueError, match="all 737280"):
        check_official_order(full._replace(latents_classes=c[:5]))


# ---------------------------------------------------------------------------- errors name the argument
@pytest.mark.parametrize(
    "bad, match",
    [
        (np.array([0.5]), "integer"),
        (np.array([[1, 2]]), "1-D"),
        (np.array([-1]), r"\[0, 737280\)"),
        (np.array([NUM_IMAGES]), r"\[0, 737280\)"),
        (np.array([True]), "integer"),
    ],
)
def test_bad_indices(bad, match):
    with pytest.raises(ValueError, match="`indices`.*" + match):
        render_dsprites(bad)
    with pytest.raises(ValueError, match="`indices`"):
        index_to_classes(bad)


def test_bad_classes_and_sprite_arguments():
    with pytest.raises(ValueError, match=r"`classes` must be \[B, 6\]"):
        classes_to_index(np.zeros((2, 5), int))
    with pytest.raises(ValueError, match=r"`classes\[:, 3\]` \(orientation\)"):
        classes_to_index(np.array([[0, 0, 0, 40, 0, 0]]))
    with pytest.raises(ValueError, match="`classes`.*integer"):
        classes_to_values(np.zeros((1, 6)))
    good = dict(shape=[0], scale=[1.0], orientation=[0.0], pos_x=[0.5], pos_y=[0.5])
    for k, v, match in [
        ("shape", [3], "`shape`"),
        ("shape", [0.0], "`shape`.*integer"),
        ("scale", [0.0], "`scale` must be > 0"),
        ("pos_x", [1.5], r"`pos_x` must lie in \[0, 1\]"),
        ("pos_y", [-0.1], r"`pos_y` must lie in \[0, 1\]"),
        ("orientation", [np.nan], "`orientation` must be finite"),
        ("scale", [1.0, 1.0], "`scale` must be 1-D with the batch length"),
    ]:
        with pytest.raises(ValueError, match=match):
            render_sprites(**{**good, k: v})
    with pytest.raises(ValueError, match="`dtype`"):
        render_sprites(**good, dtype=np.int32)
    with pytest.raises(ValueError, match="`dtype`"):
        dsprites_transform(dtype=np.float64)
