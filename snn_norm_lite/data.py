"""Data sets: scikit-learn's digits (offline default), CIFAR-10 (for readers online).

* **digits**: 1,797 real handwritten digits, 8x8 pixels with 17 grey levels, shipped inside
  scikit-learn, so every chapter runs without a download. Pixels are scaled to [0, 1] and the
  split into train, validation and test (60/20/20: 1,077 / 360 / 360 images) is disjoint,
  stratified by class and seeded.
* **CIFAR-10**: read from the official "python version" archive layout
  (``cifar-10-batches-py/data_batch_1..5`` and ``test_batch``, each a pickled dict with
  ``b"data"``, uint8 ``[N, 3072]`` in channel-major order, and ``b"labels"``). ``download=True``
  fetches and unpacks the archive first; that needs a network connection (e.g. Colab). The
  official test batch is the test set; a stratified, seeded part of the 50,000 training images
  is held out as the validation set.

Three disjoint sets, each with one job: the training set moves the weights; the validation set
is the only one that may choose or steer anything (epochs, depths, hyperparameters, AHSAR's
slow loop); the test set is read once, at the end, to report.
"""

from __future__ import annotations

import pickle
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@dataclass
class Split:
    """Disjoint train, validation and test tensors: images ``[N, C, H, W]`` float32, labels int64.

    Train moves the weights, validation chooses and steers (epochs, depths, controllers), and
    test is read once, at the end, to report.

    >>> split = load_digits()
    >>> split.name, split.image_shape, split.num_classes
    ('digits', (1, 8, 8), 10)
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])

    def sizes(self) -> dict[str, int]:
        """Number of images in each part: ``{"train": ..., "val": ..., "test": ...}``.

        >>> load_digits().sizes()
        {'train': 1077, 'val': 360, 'test': 360}
        """
        return {"train": len(self.y_train), "val": len(self.y_val), "test": len(self.y_test)}

    def subset(self, train: int, val: int, test: int) -> "Split":
        """The first ``train``, ``val`` and ``test`` images of each part (quick examples and tests).

        >>> load_digits().subset(64, 32, 32).sizes()
        {'train': 64, 'val': 32, 'test': 32}
        """
        wanted = {"train": train, "val": val, "test": test}
        for part, count in wanted.items():
            if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= self.sizes()[part]:
                raise ValueError(
                    f"Split.subset: {part} must be an int in 1..{self.sizes()[part]} (the images of that part), "
                    f"got {count!r}"
                )
        return Split(
            self.name,
            self.x_train[:train], self.y_train[:train],
            self.x_val[:val], self.y_val[:val],
            self.x_test[:test], self.y_test[:test],
            self.num_classes,
        )

    def loaders(self, batch_size: int = 64, seed: int = 0, eval_batch_size: int = 512):
        """``(train, val, test)`` loaders: the training one shuffled and seeded, the others in order.

        >>> train, val, test = load_digits().loaders(batch_size=32, seed=0)
        >>> images, labels = next(iter(train))
        >>> images.shape, labels.dtype, len(val.dataset), len(test.dataset)
        (torch.Size([32, 1, 8, 8]), torch.int64, 360, 360)
        """
        for value, name in ((batch_size, "batch_size"), (eval_batch_size, "eval_batch_size")):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Split.loaders: {name} must be a positive int, got {value!r}")
        generator = torch.Generator().manual_seed(seed)
        train = DataLoader(
            TensorDataset(self.x_train, self.y_train), batch_size=batch_size, shuffle=True, generator=generator
        )
        val = DataLoader(TensorDataset(self.x_val, self.y_val), batch_size=eval_batch_size)
        test = DataLoader(TensorDataset(self.x_test, self.y_test), batch_size=eval_batch_size)
        return train, val, test


def _check_fractions(val_fraction: float, test_fraction: float, caller: str) -> None:
    for value, name in ((val_fraction, "val_fraction"), (test_fraction, "test_fraction")):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
            raise ValueError(f"{caller}: {name} must be a number in (0, 1), got {value!r}")
    if val_fraction + test_fraction >= 1:
        raise ValueError(
            f"{caller}: val_fraction + test_fraction must leave images to train on, got "
            f"{val_fraction} + {test_fraction} >= 1"
        )


def load_digits(val_fraction: float = 0.2, test_fraction: float = 0.2, seed: int = 0) -> Split:
    """scikit-learn's 8x8 digits as ``[N, 1, 8, 8]`` in [0, 1], split three ways by class.

    The defaults give 60/20/20 of the 1,797 images: 1,077 to train, 360 to validate, 360 to
    test. The three parts are disjoint, each stratified by class, and the split depends on
    ``seed`` only (not on the training seed of a run).

    >>> split = load_digits(seed=0)
    >>> split.x_train.shape, float(split.x_train.min()), float(split.x_train.max())
    (torch.Size([1077, 1, 8, 8]), 0.0, 1.0)
    >>> counts = torch.bincount(split.y_test)               # stratified: about 36 test images per class
    >>> int(counts.min()) >= 35 and int(counts.max()) <= 37
    True
    """
    from sklearn.datasets import load_digits as sklearn_digits
    from sklearn.model_selection import train_test_split

    _check_fractions(val_fraction, test_fraction, "load_digits")
    bunch = sklearn_digits()
    images = bunch.images.astype(np.float32) / 16.0
    labels = bunch.target.astype(np.int64)
    x_rest, x_test, y_rest, y_test = train_test_split(
        images, labels, test_size=test_fraction, random_state=seed, stratify=labels
    )
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=val_fraction / (1 - test_fraction), random_state=seed, stratify=y_rest
    )
    as_images = lambda a: torch.from_numpy(a).unsqueeze(1)  # noqa: E731
    return Split(
        "digits",
        as_images(x_train), torch.from_numpy(y_train),
        as_images(x_val), torch.from_numpy(y_val),
        as_images(x_test), torch.from_numpy(y_test),
        num_classes=10,
    )


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with open(path, "rb") as handle:
        batch = pickle.load(handle, encoding="bytes")
    try:
        data, labels = batch[b"data"], batch[b"labels"]
    except KeyError as missing:
        raise ValueError(f"load_cifar10: {path} is not a CIFAR-10 batch (no key {missing})") from None
    data = np.asarray(data, dtype=np.uint8)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise ValueError(f"load_cifar10: {path} holds data of shape {data.shape}, expected [N, 3072]")
    if len(labels) != data.shape[0]:
        raise ValueError(f"load_cifar10: {path} has {data.shape[0]} images but {len(labels)} labels")
    return data.reshape(-1, 3, 32, 32), np.asarray(labels, dtype=np.int64)


def download_cifar10(root: str | Path) -> Path:
    """Fetch and unpack the official CIFAR-10 python archive under ``root`` (needs a network).

    >>> folder = download_cifar10("data/cifar10")           # doctest: +SKIP
    >>> sorted(p.name for p in folder.iterdir())[:2]        # doctest: +SKIP
    ['batches.meta', 'data_batch_1']
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    archive = root / "cifar-10-python.tar.gz"
    if not archive.exists():
        urllib.request.urlretrieve(CIFAR10_URL, archive)
    with tarfile.open(archive, "r:gz") as tar:
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        tar.extractall(root, **safe)
    return root / CIFAR10_FOLDER


def load_cifar10(
    root: str | Path = "data/cifar10",
    download: bool = False,
    limit: int | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
) -> Split:
    """CIFAR-10 from ``root/cifar-10-batches-py`` as ``[N, 3, 32, 32]`` floats in [0, 1].

    ``download=True`` fetches the archive when the folder is missing. The official test batch
    is the test set; ``val_fraction`` of the training images (stratified, seeded by ``seed``;
    5,000 of 50,000 by default) are held out for validation. ``limit`` keeps the first
    ``limit`` images of the training batches and of the test batch before the split (for quick
    CPU experiments).

    Offline, without the archive, it says what to do:

    >>> load_cifar10("no/such/folder")
    Traceback (most recent call last):
        ...
    FileNotFoundError: load_cifar10: no cifar-10-batches-py folder under no/such/folder; pass download=True when online
    """
    from sklearn.model_selection import train_test_split

    _check_fractions(val_fraction, 0.5, "load_cifar10")
    folder = Path(root) / CIFAR10_FOLDER
    if not folder.is_dir():
        if not download:
            raise FileNotFoundError(
                f"load_cifar10: no {CIFAR10_FOLDER} folder under {root}; pass download=True when online"
            )
        folder = download_cifar10(root)
    train_parts = [_read_cifar_batch(folder / f"data_batch_{i}") for i in range(1, 6)]
    x_train = np.concatenate([p[0] for p in train_parts])
    y_train = np.concatenate([p[1] for p in train_parts])
    x_test, y_test = _read_cifar_batch(folder / "test_batch")
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 2:
            raise ValueError(f"load_cifar10: limit must be an int of at least 2 (images per part), got {limit!r}")
        x_train, y_train, x_test, y_test = x_train[:limit], y_train[:limit], x_test[:limit], y_test[:limit]
    counts = np.bincount(y_train)
    present = counts[counts > 0]
    # Stratify when every class can appear in both parts; a tiny file gets a plain seeded split.
    can_stratify = present.min() >= 2 and int(val_fraction * len(y_train)) >= len(present)
    stratify = y_train if can_stratify else None
    x_train, x_val, y_train, y_val = train_test_split(
        x_train, y_train, test_size=val_fraction, random_state=seed, stratify=stratify
    )
    to_float = lambda a: torch.from_numpy(a.astype(np.float32) / 255.0)  # noqa: E731
    return Split(
        "cifar10",
        to_float(x_train), torch.from_numpy(y_train),
        to_float(x_val), torch.from_numpy(y_val),
        to_float(x_test), torch.from_numpy(y_test),
        10,
    )


def load_dataset(name: str = "digits", **kwargs) -> Split:
    """Load a data set by name: ``"digits"`` or ``"cifar10"``.

    >>> load_dataset("digits").sizes()["test"]
    360
    >>> load_dataset("mnist")
    Traceback (most recent call last):
        ...
    ValueError: load_dataset: unknown data set 'mnist'; choose from digits, cifar10
    """
    loaders = {"digits": load_digits, "cifar10": load_cifar10}
    if name not in loaders:
        raise ValueError(f"load_dataset: unknown data set {name!r}; choose from {', '.join(loaders)}")
    return loaders[name](**kwargs)


def synthetic_channel_batch(
    generator: torch.Generator,
    batch: int = 256,
    channels: int = 16,
    size: int = 8,
    shift: tuple[float, float] = (-2.0, 3.0),
    scale: tuple[float, float] = (0.2, 4.0),
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """A batch ``[batch, channels, size, size]`` from a stationary distribution.

    Channel ``c`` is Gaussian with mean and standard deviation spaced evenly over ``shift`` and
    ``scale`` across the channels: a stand-in for a convolution's output whose channels have
    very different offsets and gains, which is what a normaliser has to undo.

    >>> x = synthetic_channel_batch(torch.Generator().manual_seed(0), batch=512, channels=3)
    >>> x.shape
    torch.Size([512, 3, 8, 8])
    >>> [round(m, 1) for m in x.mean(dim=(0, 2, 3)).tolist()], [round(s, 1) for s in x.std(dim=(0, 2, 3)).tolist()]
    ([-2.0, 0.5, 3.0], [0.2, 2.1, 4.0])
    """
    means = torch.linspace(shift[0], shift[1], channels, dtype=dtype).view(1, channels, 1, 1)
    stds = torch.linspace(scale[0], scale[1], channels, dtype=dtype).view(1, channels, 1, 1)
    return torch.randn(batch, channels, size, size, generator=generator, dtype=dtype) * stds + means


def noisy_images(x: torch.Tensor, sigma: float, seed: int = 0) -> torch.Tensor:
    """``x`` plus seeded Gaussian noise of standard deviation ``sigma``, clamped to [0, 1].

    >>> x = torch.full((2, 1, 8, 8), 0.5)
    >>> noisy = noisy_images(x, sigma=0.1, seed=0)
    >>> torch.equal(noisy, noisy_images(x, sigma=0.1, seed=0)), float(noisy.min()) >= 0.0
    (True, True)
    """
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or sigma < 0:
        raise ValueError(f"noisy_images: sigma must be a non-negative number, got {sigma!r}")
    generator = torch.Generator().manual_seed(seed)
    return (x + sigma * torch.randn(x.shape, generator=generator, dtype=x.dtype)).clamp(0.0, 1.0)
