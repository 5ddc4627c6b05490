"""MetricWriter and make_grid: JSONL records, TensorBoard events, PNG grids, resume truncation."""

import glob
import json
import os

import numpy as np
import pytest
from PIL import Image

from jaxvae.train.writers import MetricWriter, make_grid


def test_grid_places_each_image_in_its_tile():
    rng = np.random.default_rng(0)
    imgs = rng.random((5, 4, 3))
    grid = make_grid(imgs, ncols=3, pad=1, pad_value=0.0)
    assert grid.shape == (2 * 5 + 1, 3 * 4 + 1) and grid.dtype == np.uint8
    for i in range(5):
        r, c = divmod(i, 3)
        tile = grid[1 + r * 5 : 1 + r * 5 + 4, 1 + c * 4 : 1 + c * 4 + 3]
        np.testing.assert_array_equal(tile, np.round(imgs[i] * 255).astype(np.uint8))
    # the empty sixth tile and the borders hold pad_value
    assert np.all(grid[6:10, 9:12] == 0)
    assert np.all(grid[0] == 0) and np.all(grid[:, 0] == 0)


def test_grid_rgb_and_single_channel():
    assert make_grid(np.ones((4, 2, 2, 3)), pad=0).shape == (4, 4, 3)
    assert make_grid(np.ones((4, 2, 2, 1)), pad=0).shape == (4, 4)


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.ones((2, 2)), "shape"),
        (np.ones((1, 2, 2, 2)), "channel"),
        (np.zeros((0, 2, 2)), "at least one"),
        (np.full((1, 2, 2), np.nan), "finite"),
        (np.full((1, 2, 2), 1.5), r"\[0, 1\]"),
    ],
)
def test_grid_rejects_bad_images(bad, match):
    with pytest.raises(ValueError, match=match):
        make_grid(bad)


def _records(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def test_scalars_go_to_jsonl_tensorboard_and_stdout(tmp_path):
    lines = []
    w = MetricWriter(tmp_path, print_fn=lines.append)
    w.write_scalars(1, {"loss": np.float32(2.5), "count": np.int64(3)})
    w.write_scalars(2, {"loss": 1.5})
    w.close()
    recs = _records(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in recs] == [1, 2]
    assert recs[0]["loss"] == 2.5 and recs[0]["count"] == 3 and "time" in recs[0]
    assert len(lines) == 2 and "loss=2.5" in lines[0]
    tags = _tb_scalars(tmp_path)
    assert tags["loss"] == [(1, 2.5), (2, 1.5)] and tags["count"] == [(1, 3.0)]


def _tb_events(logdir):
    """Parse TensorBoard event files (TFRecord framing: u64 length, u32 crc, payload, u32 crc)."""
    import struct

    from tensorboardX.proto import event_pb2

    events = []
    for path in sorted(glob.glob(os.path.join(logdir, "events.out.tfevents.*"))):
        data = open(path, "rb").read()
        i = 0
        while i < len(data):
            (n,) = struct.unpack("<Q", data[i : i + 8])
            ev = event_pb2.Event()
            ev.ParseFromString(data[i + 12 : i + 12 + n])
            events.append(ev)
            i += 12 + n + 4
    return events


def _tb_scalars(logdir):
    out = {}
    for ev in _tb_events(logdir):
        for v in ev.summary.value:
            if v.HasField("simple_value"):
                out.setdefault(v.tag, []).append((ev.step, v.simple_value))
    return out


def test_images_become_png_grids_and_tb_images(tmp_path):
    w = MetricWriter(tmp_path, stdout=False)
    imgs = np.random.default_rng(1).random((6, 28, 28))
    paths = w.write_images(10, {"samples": imgs, "eval/recon": imgs[..., None]})
    w.close()
    for p in paths.values():
        assert os.path.dirname(p) == str(tmp_path / "images")
        arr = np.asarray(Image.open(p))
        np.testing.assert_array_equal(arr, make_grid(imgs))
    tags = {v.tag for ev in _tb_events(tmp_path) for v in ev.summary.value if v.HasField("image")}
    assert tags == {"samples", "eval/recon"}


def test_resume_drops_records_past_the_checkpoint(tmp_path):
    w = MetricWriter(tmp_path, stdout=False)
    for s in (1, 2, 3, 4):
        w.write_scalars(s, {"a": float(s)})
    w.close()
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 5, "a": ')  # a line cut by SIGKILL
    w = MetricWriter(tmp_path, resume_step=2, stdout=False)
    w.write_scalars(3, {"a": 30.0})
    w.close()
    assert [(r["step"], r["a"]) for r in _records(tmp_path / "metrics.jsonl")] == [(1, 1.0), (2, 2.0), (3, 30.0)]


def test_fresh_run_in_used_directory_starts_a_fresh_log(tmp_path):
    w = MetricWriter(tmp_path, stdout=False, tensorboard=False)
    w.write_scalars(1, {"a": 1.0})
    w.close()
    w = MetricWriter(tmp_path, stdout=False, tensorboard=False)
    w.write_scalars(1, {"a": 2.0})
    w.close()
    assert [r["a"] for r in _records(tmp_path / "metrics.jsonl")] == [2.0]


def test_non_scalar_metric_is_an_error(tmp_path):
    w = MetricWriter(tmp_path, stdout=False, tensorboard=False)
    with pytest.raises(ValueError, match="scalar"):
        w.write_scalars(1, {"a": np.ones(3)})
    w.close()
