"""CIFAR-10 on a miniature tarball in the official layout: md5 first, restricted unpickling."""

import io
import pickle

import numpy as np
import pytest
from miniatures import make_cifar_tarball, md5

from fmcore.data import DataError, load_labels, load_split, prepare
from fmcore.data.cifar10 import CIFAR10_MD5, RestrictedUnpickler


def cfg(path, **extra):
    return {"source": "cifar10", "md5": md5(path), **extra}


def test_miniature_round_trip(tmp_path):
    tar = tmp_path / "raw" / "cifar-10-python.tar.gz"
    content = make_cifar_tarball(tar, n=4)
    m = prepare("cifar10", cfg(tar), tmp_path / "out", raw=tar.parent)  # a directory holding the tarball
    assert m["shapes"] == {"train": [20, 3, 32, 32], "test": [4, 3, 32, 32]} and m["dtype"] == "uint8"
    assert m["source_checksums"]["cifar-10-python.tar.gz"] == f"md5:{md5(tar)}"
    train = np.load(tmp_path / "out/train.npy")
    expected = np.concatenate([content[f"data_batch_{i}"][0] for i in range(1, 6)]).reshape(20, 3, 32, 32)
    assert np.array_equal(train, expected)  # channel-major rows -> [3, 32, 32]
    assert load_labels(tmp_path / "out", "test").tolist() == content["test_batch"][1]
    x = load_split(tmp_path / "out", "train")[0]
    assert x.shape == (3, 32, 32) and -1 <= x.min() and x.max() < 1


def test_official_md5_is_the_default_and_checked_first(tmp_path):
    tar = tmp_path / "cifar-10-python.tar.gz"
    make_cifar_tarball(tar)
    with pytest.raises(DataError, match=f"md5 {md5(tar)}, expected {CIFAR10_MD5}"):
        prepare("cifar10", {"source": "cifar10"}, tmp_path / "out", raw=tar)
    assert not (tmp_path / "out").exists()


def test_truncated_archive(tmp_path):
    tar = tmp_path / "cifar-10-python.tar.gz"
    make_cifar_tarball(tar)
    tar.write_bytes(tar.read_bytes()[: tar.stat().st_size // 2])
    with pytest.raises(DataError, match="md5"):  # a truncated download fails the official md5
        prepare("cifar10", {"source": "cifar10"}, tmp_path / "out", raw=tar)
    with pytest.raises(DataError, match="truncated or corrupt archive"):  # even if md5 were made to match
        prepare("cifar10", cfg(tar), tmp_path / "out", raw=tar)


def test_missing_tarball_and_missing_member(tmp_path):
    with pytest.raises(DataError, match="nowhere.tar.gz: missing"):
        prepare("cifar10", {"source": "cifar10"}, tmp_path / "out", raw=tmp_path / "nowhere.tar.gz")
    tar = tmp_path / "cifar-10-python.tar.gz"
    make_cifar_tarball(tar, drop=("data_batch_3",))
    with pytest.raises(DataError, match="lacks cifar-10-batches-py/data_batch_3"):
        prepare("cifar10", cfg(tar), tmp_path / "out", raw=tar)


def test_wrong_image_size(tmp_path):
    bad = pickle.dumps({b"data": np.zeros((4, 3 * 16 * 16), np.uint8), b"labels": [0] * 4}, protocol=2)
    tar = tmp_path / "cifar-10-python.tar.gz"
    make_cifar_tarball(tar, overrides={"test_batch": bad})
    expected = r"test_batch: b'data' is uint8 \[4, 768\], expected uint8 \[N, 3072\]"
    with pytest.raises(DataError, match=expected):
        prepare("cifar10", cfg(tar), tmp_path / "out", raw=tar)


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_restricted_unpickler_refuses_code(tmp_path, capsys):
    evil = pickle.dumps({b"data": _Evil(), b"labels": []}, protocol=2)
    with pytest.raises(pickle.UnpicklingError, match="print. is not allowed"):
        RestrictedUnpickler(io.BytesIO(evil), encoding="bytes").load()
    tar = tmp_path / "cifar-10-python.tar.gz"
    make_cifar_tarball(tar, overrides={"data_batch_2": evil})
    with pytest.raises(DataError, match="data_batch_2: not a CIFAR-10 batch pickle"):
        prepare("cifar10", cfg(tar), tmp_path / "out", raw=tar)
    assert "pwned" not in capsys.readouterr().out


@pytest.mark.parametrize("legacy", [True, False])
def test_both_numpy_module_names_load(legacy):
    from miniatures import cifar_batch_pickle

    from fmcore.data.cifar10 import load_batch_bytes

    raw, data, labels = cifar_batch_pickle(3, seed=7, legacy_numpy_name=legacy)
    assert (b"numpy.core.multiarray\n" in raw) is legacy
    assert (b"numpy._core.multiarray\n" in raw) is not legacy
    images, got_labels = load_batch_bytes(raw, "batch")
    assert np.array_equal(images.reshape(3, -1), data) and got_labels.tolist() == labels


def _extract(tar_path, dest):
    import tarfile

    with tarfile.open(tar_path) as tar:
        tar.extractall(dest, filter="data")
    return dest / "cifar-10-batches-py"


def test_extracted_folder_checks_each_batch_md5_before_reading(tmp_path, capsys):
    tar = tmp_path / "cifar-10-python.tar.gz"
    content = make_cifar_tarball(tar, n=2)
    folder = _extract(tar, tmp_path / "raw")
    batch_md5 = {p.name: md5(p) for p in folder.iterdir() if "batch" in p.name and p.name != "batches.meta"}
    cfg_md5 = {"source": "cifar10", "batch_md5": batch_md5}
    m = prepare("cifar10", cfg_md5, tmp_path / "out", raw=tmp_path / "raw")
    assert m["info"]["read_from"] == "folder" and len(m["source_checksums"]) == 6
    assert np.array_equal(np.load(tmp_path / "out/test.npy").reshape(2, -1), content["test_batch"][0])
    # default: the official batch md5s, so a miniature (or a tampered batch) is refused unread
    (folder / "data_batch_4").write_bytes(pickle.dumps({b"data": _Evil()}, protocol=2))
    official = r"data_batch_1: md5 [0-9a-f]{32}, expected c99cafc152244af753f735de768cd75f"
    with pytest.raises(DataError, match=official):
        prepare("cifar10", {"source": "cifar10"}, tmp_path / "out2", raw=folder)
    with pytest.raises(DataError, match="data_batch_4: md5"):
        prepare("cifar10", {"source": "cifar10", "batch_md5": batch_md5}, tmp_path / "out2", raw=folder)
    assert "pwned" not in capsys.readouterr().out
    (folder / "test_batch").unlink()
    with pytest.raises(DataError, match="test_batch: missing"):
        prepare("cifar10", {"source": "cifar10"}, tmp_path / "out2", raw=folder)
    with pytest.raises(DataError, match="holds neither cifar-10-python.tar.gz nor cifar-10-batches-py/"):
        prepare("cifar10", {"source": "cifar10"}, tmp_path / "out2", raw=tmp_path / "out")
