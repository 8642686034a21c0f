"""scikit-learn digits: exact grey-level mapping, stratified seeded split, loader range."""

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from fmcore.data import load_labels, load_split, prepare, to_uint8
from fmcore.data.digits import digits_to_uint8

CFG = {"source": "sklearn_digits", "test_fraction": 0.2, "seed": 0}


def test_level_mapping_exact():
    v = np.arange(17)
    out = digits_to_uint8(v)
    assert out.dtype == np.uint8
    assert out.tolist() == [int(np.floor(x * 255 / 16 + 0.5)) for x in v]
    assert out[0] == 0 and out[8] == 128 and out[16] == 255


@pytest.fixture(scope="module")
def digits_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("d") / "digits"
    prepare("digits", CFG, out)
    return out


def test_split_shapes_labels_stratified(digits_dir):
    train = np.load(digits_dir / "train.npy")
    test = np.load(digits_dir / "test.npy")
    assert train.shape == (1437, 1, 8, 8) and test.shape == (360, 1, 8, 8) and train.dtype == np.uint8
    y_tr, y_te = load_labels(digits_dir, "train"), load_labels(digits_dir, "test")
    assert np.bincount(y_te).min() >= 35 and np.bincount(y_te).max() <= 37  # stratified: ~36 each
    # the union is exactly the scikit-learn set, mapped
    all_imgs = digits_to_uint8(load_digits().images)
    got = np.concatenate([train[:, 0], test[:, 0]]).reshape(1797, -1)
    assert sorted(map(bytes, got)) == sorted(map(bytes, all_imgs.reshape(1797, -1)))


def test_loader_dequantizes_into_bins(digits_dir):
    ds = load_split(digits_dir, "train", generator=torch.Generator().manual_seed(0))
    x = ds.get_batch(np.arange(64))
    assert x.dtype == torch.float32 and x.shape == (64, 1, 8, 8)
    assert x.min() >= -1 and x.max() < 1
    raw = torch.from_numpy(np.array(ds.array[:64]))
    assert torch.equal(to_uint8(x), raw)  # noise stays within each 1/256 bin
    assert (x - ((raw.float() + 0.5) / 128 - 1)).abs().max() > 1e-3  # and is really added
    centre = load_split(digits_dir, "train", dequantize=False)[0]
    assert torch.allclose(centre, (raw[0].float() + 0.5) / 128 - 1)
    assert len(ds) == 1437 and ds[5].shape == (1, 8, 8)
    assert ds.get_batch(torch.tensor([3, 1])).shape == (2, 1, 8, 8)  # torch indices too
    loader = torch.utils.data.DataLoader(ds, batch_size=32, shuffle=True)
    assert next(iter(loader)).shape == (32, 1, 8, 8)
