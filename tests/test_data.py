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
    assert len(a.x_train) + len(a.x_test) == 1797
    assert 0.0 <= a.x_train.min() and a.x_train.max() <= 1.0
    counts = torch.bincount(a.y_test, minlength=10)
    assert counts.min() >= 35  # stratified: every class about 36 times in 360
    assert not torch.equal(load_digits(seed=1).y_test, a.y_test)


def test_loaders_are_seeded():
    split = load_digits()
    first = [next(iter(split.loaders(batch_size=16, seed=3)[0]))[1] for _ in range(2)]
    assert torch.equal(first[0], first[1])


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
    split = load_cifar10(tmp_path)
    assert split.x_train.shape == (20, 3, 32, 32) and split.x_test.shape == (4, 3, 32, 32)
    data, labels = expected["data_batch_2"]
    # image 0 of batch 2, red channel, first row: the first 32 bytes, scaled to [0, 1]
    torch.testing.assert_close(split.x_train[4, 0, 0], torch.from_numpy(data[0, :32].astype(np.float32) / 255))
    # green channel starts at byte 1024
    torch.testing.assert_close(split.x_train[4, 1, 0], torch.from_numpy(data[0, 1024:1056].astype(np.float32) / 255))
    assert split.y_train[4:8].tolist() == labels
    assert load_cifar10(tmp_path, limit=3).x_train.shape[0] == 3


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
