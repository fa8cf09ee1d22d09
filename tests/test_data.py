"""Data sets: the digits split, and the CIFAR-10 reader on files written in the real format."""

import pickle

import numpy as np
import pytest
import torch

from snn_norm_lite.data import CIFAR10_FOLDER, load_cifar10, load_dataset, load_digits, synthetic_channel_batch


def test_digits_split_is_seeded_stratified_and_scaled():
    a, b = load_digits(seed=0), load_digits(seed=0)
    assert torch.equal(a.x_train, b.x_train)
    assert a.x_train.shape[1:] == (1, 8, 8) and a.x_train.dtype == torch.float32
    assert a.sizes() == {"train": 1077, "val": 360, "test": 360}
    assert 0.0 <= a.x_train.min() and a.x_train.max() <= 1.0
    for labels in (a.y_val, a.y_test):
        counts = torch.bincount(labels, minlength=10)
        assert counts.min() >= 35  # stratified: every class about 36 times in 360
    assert not torch.equal(load_digits(seed=1).y_test, a.y_test)


def test_digits_parts_are_disjoint_and_cover_the_data_set():
    from sklearn.datasets import load_digits as sklearn_digits

    split = load_digits()
    rows = [tuple(image.flatten().tolist()) for part in (split.x_train, split.x_val, split.x_test) for image in part]
    assert len(rows) == 1797
    # Some digits images are exact duplicates of each other; compare as multisets.
    reference = sorted(tuple((image / 16.0).astype("float32").flatten().tolist()) for image in sklearn_digits().images)
    assert sorted(rows) == reference
    train = {tuple(image.flatten().tolist()) for image in split.x_train}
    duplicates_in_data = 1797 - len(set(reference))
    overlap = sum(tuple(image.flatten().tolist()) in train for image in split.x_test)
    assert overlap <= duplicates_in_data


@pytest.mark.parametrize("kwargs", [{"val_fraction": 0}, {"test_fraction": 1.0}, {"val_fraction": 0.5, "test_fraction": 0.5}])
def test_digits_fractions_are_checked(kwargs):
    with pytest.raises(ValueError, match="fraction"):
        load_digits(**kwargs)


def test_loaders_are_seeded():
    split = load_digits()
    first = [next(iter(split.loaders(batch_size=16, seed=3)[0]))[1] for _ in range(2)]
    assert torch.equal(first[0], first[1])
    train, val, test = split.loaders(batch_size=16)
    assert len(val.dataset) == len(test.dataset) == 360
    with pytest.raises(ValueError, match="batch_size"):
        split.loaders(batch_size=0)


def write_fake_cifar(root, images_per_batch=4):
    folder = root / CIFAR10_FOLDER
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    expected = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, size=(images_per_batch, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, size=images_per_batch).tolist()
        with open(folder / name, "wb") as handle:
            pickle.dump({b"batch_label": name.encode(), b"labels": labels, b"data": data, b"filenames": []}, handle)
        expected[name] = (data, labels)
    return expected


def test_cifar10_reader_on_files_in_the_official_format(tmp_path):
    expected = write_fake_cifar(tmp_path)
    split = load_cifar10(tmp_path, val_fraction=0.2)
    assert split.sizes() == {"train": 16, "val": 4, "test": 4}
    data, labels = expected["test_batch"]
    # test image 0, red channel, first row: the first 32 bytes, scaled to [0, 1]
    torch.testing.assert_close(split.x_test[0, 0, 0], torch.from_numpy(data[0, :32].astype(np.float32) / 255))
    # green channel starts at byte 1024
    torch.testing.assert_close(split.x_test[0, 1, 0], torch.from_numpy(data[0, 1024:1056].astype(np.float32) / 255))
    assert split.y_test.tolist() == labels
    # train + val hold exactly the 20 training images, each once
    everything = torch.cat([split.x_train, split.x_val]).flatten(1)
    originals = np.concatenate([expected[f"data_batch_{i}"][0] for i in range(1, 6)]).astype(np.float32) / 255
    assert sorted(map(tuple, everything.tolist())) == sorted(map(tuple, torch.from_numpy(originals).tolist()))
    assert load_cifar10(tmp_path, limit=3, val_fraction=0.2).sizes() == {"train": 2, "val": 1, "test": 3}
    with pytest.raises(ValueError, match="limit"):
        load_cifar10(tmp_path, limit=-1)


def test_cifar10_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="download=True"):
        load_cifar10(tmp_path)
    folder = tmp_path / CIFAR10_FOLDER
    folder.mkdir()
    with open(folder / "data_batch_1", "wb") as handle:
        pickle.dump({b"data": np.zeros((2, 100), dtype=np.uint8), b"labels": [0, 1]}, handle)
    with pytest.raises(ValueError, match="expected \\[N, 3072\\]"):
        load_cifar10(tmp_path)


def test_dataset_by_name_and_synthetic_batches():
    with pytest.raises(ValueError, match="unknown data set"):
        load_dataset("mnist")
    x = synthetic_channel_batch(torch.Generator().manual_seed(0), batch=512, channels=4, size=4)
    means = x.mean(dim=(0, 2, 3))
    torch.testing.assert_close(means, torch.linspace(-2.0, 3.0, 4), atol=0.2, rtol=0)
