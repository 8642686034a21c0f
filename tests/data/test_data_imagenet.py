"""Downsampled-ImageNet npz batches and an ILSVRC-style JPEG folder, as miniatures."""

import shutil

import numpy as np
import pytest
from miniatures import make_imagenet_npz, make_jpeg_folder
from PIL import Image

from fmcore.data import DataError, load_labels, load_split, prepare
from fmcore.data.imagenet_folder import center_crop_arr


@pytest.mark.parametrize("size,compressed", [(32, True), (64, False)])
def test_npz_round_trip(tmp_path, size, compressed):
    content = make_imagenet_npz(tmp_path / "raw", size, n=3, compressed=compressed)
    m = prepare(f"imagenet{size}", {"source": "imagenet_npz", "resolution": size}, tmp_path / "out",
                raw=tmp_path / "raw")
    assert m["shapes"] == {"train": [30, 3, size, size], "test": [3, 3, size, size]}
    assert m["info"]["variant"] == "chrabaszcz2017" and len(m["source_checksums"]) == 11
    train = np.load(tmp_path / "out/train.npy")
    first = content["train_data_batch_1"]["data"].reshape(3, 3, size, size)
    assert np.array_equal(train[:3], first)
    last = content["train_data_batch_10"]["data"].reshape(3, 3, size, size)
    assert np.array_equal(train[-3:], last)  # batches concatenated in numeric order 1..10
    assert np.array_equal(load_labels(tmp_path / "out", "test"), content["val_data"]["labels"] - 1)
    assert load_split(tmp_path / "out", "test").get_batch([0, 2]).shape == (2, 3, size, size)


def test_npz_wrong_size_missing_truncated(tmp_path):
    make_imagenet_npz(tmp_path / "raw", 32)
    with pytest.raises(DataError, match=r"data is uint8 \[3, 3072\], expected uint8 \[N, 12288\]"):
        prepare("i64", {"source": "imagenet_npz", "resolution": 64}, tmp_path / "out", raw=tmp_path / "raw")
    (tmp_path / "raw/train_data_batch_7.npz").unlink()
    with pytest.raises(DataError, match="train_data_batch_7.npz: missing"):
        prepare("i32", {"source": "imagenet_npz", "resolution": 32}, tmp_path / "out", raw=tmp_path / "raw")
    make_imagenet_npz(tmp_path / "raw", 32)
    val = tmp_path / "raw/val_data.npz"
    val.write_bytes(val.read_bytes()[:-100])
    with pytest.raises(DataError, match="val_data.npz: truncated"):
        prepare("i32", {"source": "imagenet_npz", "resolution": 32}, tmp_path / "out", raw=tmp_path / "raw")
    assert not (tmp_path / "out").exists()
    np.savez(tmp_path / "raw/val_data.npz", data=np.zeros((2, 3072), np.uint8))
    with pytest.raises(DataError, match="expected 'data' and 'labels'"):
        prepare("i32", {"source": "imagenet_npz", "resolution": 32}, tmp_path / "out", raw=tmp_path / "raw")


def test_center_crop_arr_matches_adm():
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (200, 700, 3), dtype=np.uint8))
    out = center_crop_arr(img, 128)
    assert out.shape == (128, 128, 3) and out.dtype == np.uint8
    # reference: ADM's steps written out (200 < 2*128: no BOX halving; bicubic to short side 128)
    ref = np.asarray(img.resize((448, 128), resample=Image.BICUBIC))
    left = (ref.shape[1] - 128) // 2
    assert np.array_equal(out, ref[:, left:left + 128])
    big = Image.fromarray(np.random.default_rng(1).integers(0, 256, (600, 520, 3), dtype=np.uint8))
    # short side 520 >= 256 and then 260 >= 256: two BOX halvings, then bicubic 130 -> 128
    halved = big.resize((260, 300), resample=Image.BOX).resize((130, 150), resample=Image.BOX)
    ref = np.asarray(halved.resize((128, round(150 * 128 / 130)), resample=Image.BICUBIC))
    top = (ref.shape[0] - 128) // 2
    assert np.array_equal(center_crop_arr(big, 128), ref[top:top + 128])
    small = center_crop_arr(Image.fromarray(np.zeros((50, 40), np.uint8)), 128)  # upsampled, grey -> RGB
    assert small.shape == (128, 128, 3)


@pytest.mark.slow
def test_folder_round_trip_and_bad_jpeg(tmp_path):
    make_jpeg_folder(tmp_path / "raw")
    cfg = {"source": "imagenet_folder", "resolution": 32, "workers": 2}
    m = prepare("imagenet128", cfg, tmp_path / "out", raw=tmp_path / "raw")
    assert m["shapes"] == {"train": [6, 3, 32, 32], "test": [2, 3, 32, 32]}
    assert load_labels(tmp_path / "out", "train").tolist() == [0, 0, 0, 1, 1, 1]
    first = tmp_path / "raw/train/n01440764/n01440764_0.JPEG"
    expected = center_crop_arr(Image.open(first), 32).transpose(2, 0, 1)
    assert np.array_equal(np.load(tmp_path / "out/train.npy")[0], expected)
    good = (tmp_path / "out/train.npy").read_bytes()
    bad = tmp_path / "raw/val/n01443537/broken.JPEG"
    bad.write_bytes(first.read_bytes()[:200])
    with pytest.raises(DataError, match="broken.JPEG: cannot decode"):
        prepare("imagenet128", cfg, tmp_path / "out", raw=tmp_path / "raw", force=True)
    assert (tmp_path / "out/train.npy").read_bytes() == good  # the good output survived
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []
    shutil.copytree(tmp_path / "raw/train", tmp_path / "raw2/train")
    with pytest.raises(DataError, match="raw2/val: missing"):
        prepare("x", cfg, tmp_path / "out2", raw=tmp_path / "raw2")
