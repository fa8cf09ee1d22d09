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

import hashlib
import http.client
import os
import pickle
import re
import shutil
import socket
import tarfile
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data.distributed import DistributedSampler

from .checks import (
    check_bool,
    check_finite_number,
    check_floating,
    check_nonnegative_int,
    check_positive_int,
    check_positive_number,
)
from .distributed import is_data_parallel, world_size

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"  # the published checksum of that archive
CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)
DATASETS = ("digits", "cifar10")  # the names load_dataset knows
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
        >>> load_digits().subset(64, 0, 32)
        Traceback (most recent call last):
            ...
        ValueError: Split.subset: val must be positive (an int >= 1), got 0
        """
        wanted = {"train": train, "val": val, "test": test}
        sizes = self.sizes()
        for part, count in wanted.items():
            check_positive_int(count, part, "Split.subset")
            if count > sizes[part]:
                raise ValueError(
                    f"Split.subset: {part} must be at most {sizes[part]} (the images of that part), got {count}"
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

        In a data-parallel run (``torch.distributed`` initialised with W > 1 processes) the
        training loader gives this process its part of every epoch (``DistributedSampler``,
        shuffled with ``seed``, a new order each epoch once :func:`~snn_norm_lite.training.fit`
        calls ``set_epoch``; it repeats up to W - 1 images so that every process gets as many)
        in batches of ``batch_size / W``, so that the global batch is still ``batch_size``
        (which must be divisible by W). Every process evaluates the whole
        validation and test sets, so all of them report the same accuracies.

        >>> train, val, test = load_digits().loaders(batch_size=32, seed=0)
        >>> images, labels = next(iter(train))
        >>> images.shape, labels.dtype, len(val.dataset), len(test.dataset)
        (torch.Size([32, 1, 8, 8]), torch.int64, 360, 360)
        """
        check_positive_int(batch_size, "batch_size", "Split.loaders")
        check_positive_int(eval_batch_size, "eval_batch_size", "Split.loaders")
        check_nonnegative_int(seed, "seed", "Split.loaders")
        train_set = TensorDataset(self.x_train, self.y_train)
        if is_data_parallel():
            train = _data_parallel_loader(train_set, batch_size, seed)
        else:
            generator = torch.Generator().manual_seed(seed)
            train = DataLoader(train_set, batch_size=batch_size, shuffle=True, generator=generator)
        val = DataLoader(TensorDataset(self.x_val, self.y_val), batch_size=eval_batch_size)
        test = DataLoader(TensorDataset(self.x_test, self.y_test), batch_size=eval_batch_size)
        return train, val, test


def _data_parallel_loader(dataset: TensorDataset, batch_size: int, seed: int) -> DataLoader:
    """This process's training loader in a data-parallel run: a global batch of ``batch_size``."""
    processes = world_size()
    if batch_size % processes:
        raise ValueError(
            f"Split.loaders: the global batch size {batch_size} must be divisible by the {processes} processes of "
            f"this data-parallel run (each takes an equal part); use a batch size that is a multiple of {processes}"
        )
    sampler = DistributedSampler(dataset, shuffle=True, seed=seed)
    return DataLoader(dataset, batch_size=batch_size // processes, sampler=sampler)


def _check_fraction(value, name: str, caller: str) -> float:
    value = check_finite_number(value, name, caller)
    if not 0 < value < 1:
        raise ValueError(f"{caller}: {name} must be a number in (0, 1), got {value}")
    return value


def _check_fractions(val_fraction: float, test_fraction: float, caller: str) -> None:
    _check_fraction(val_fraction, "val_fraction", caller)
    _check_fraction(test_fraction, "test_fraction", caller)
    if val_fraction + test_fraction >= 1:
        raise ValueError(
            f"{caller}: val_fraction + test_fraction must leave images to train on, got "
            f"{val_fraction} + {test_fraction} >= 1"
        )


# sklearn's random_state takes seeds in 0 .. 2**32 - 1
_MAX_SPLIT_SEED = 2**32 - 1


def _check_split_seed(seed, caller: str) -> int:
    seed = check_nonnegative_int(seed, "seed", caller)
    if seed > _MAX_SPLIT_SEED:
        raise ValueError(f"{caller}: seed must be at most 2**32 - 1, got {seed}")
    return seed


def _split(caller: str, *arrays, test_size, random_state, stratify):
    """``train_test_split`` whose refusals (a part too small for every class) name ``caller``."""
    from sklearn.model_selection import train_test_split

    try:
        return train_test_split(*arrays, test_size=test_size, random_state=random_state, stratify=stratify)
    except ValueError as error:
        raise ValueError(
            f"{caller}: cannot split {len(arrays[0])} images with a held-out fraction of {test_size:g} ({error})"
        ) from None


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
    >>> load_digits(val_fraction=0.0)
    Traceback (most recent call last):
        ...
    ValueError: load_digits: val_fraction must be a number in (0, 1), got 0.0
    """
    from sklearn.datasets import load_digits as sklearn_digits

    _check_fractions(val_fraction, test_fraction, "load_digits")
    seed = _check_split_seed(seed, "load_digits")
    bunch = sklearn_digits()
    images = bunch.images.astype(np.float32) / 16.0
    labels = bunch.target.astype(np.int64)
    x_rest, x_test, y_rest, y_test = _split(
        "load_digits", images, labels, test_size=test_fraction, random_state=seed, stratify=labels
    )
    x_train, x_val, y_train, y_val = _split(
        "load_digits", x_rest, y_rest, test_size=val_fraction / (1 - test_fraction), random_state=seed, stratify=y_rest
    )
    as_images = lambda a: torch.from_numpy(a).unsqueeze(1)  # noqa: E731
    return Split(
        "digits",
        as_images(x_train), torch.from_numpy(y_train),
        as_images(x_val), torch.from_numpy(y_val),
        as_images(x_test), torch.from_numpy(y_test),
        num_classes=10,
    )


# -- CIFAR-10 -----------------------------------------------------------------------------------


def _broken_folder(path: Path, problem: str) -> str:
    """The one message for a CIFAR-10 folder that cannot be read: which file, what, and the fix."""
    return (
        f"load_cifar10: {path} {problem}; the folder {path.parent} is incomplete or corrupt (an interrupted "
        f"download or unpacking?): delete it and load again with download=True"
    )


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One batch file of the official python archive: images ``[N, 3, 32, 32]`` uint8, labels int64."""
    if not path.is_file():
        raise FileNotFoundError(_broken_folder(path, "is missing"))
    try:
        with open(path, "rb") as handle:
            batch = pickle.load(handle, encoding="bytes")
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError, IndexError) as error:
        raise ValueError(_broken_folder(path, f"is not a readable pickle ({type(error).__name__}: {error})")) from None
    if not isinstance(batch, dict):
        raise ValueError(_broken_folder(path, f"holds a {type(batch).__name__}, not a CIFAR-10 batch (a dict)"))
    missing = [key for key in (b"data", b"labels") if key not in batch]
    if missing:
        raise ValueError(_broken_folder(path, f"is not a CIFAR-10 batch (no key {', '.join(map(repr, missing))})"))
    data, labels = np.asarray(batch[b"data"]), np.asarray(batch[b"labels"])
    if data.dtype != np.uint8:
        raise ValueError(_broken_folder(path, f"holds data of dtype {data.dtype}, expected uint8 pixels"))
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise ValueError(_broken_folder(path, f"holds data of shape {data.shape}, expected [N, 3072]"))
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(_broken_folder(path, f"holds labels of dtype {labels.dtype} and shape {labels.shape}, expected N integers"))
    if len(labels) != data.shape[0]:
        raise ValueError(_broken_folder(path, f"has {data.shape[0]} images but {len(labels)} labels"))
    if len(labels) and (labels.min() < 0 or labels.max() >= len(CIFAR10_CLASSES)):
        outside = sorted({int(v) for v in labels if not 0 <= v < len(CIFAR10_CLASSES)})
        raise ValueError(_broken_folder(path, f"has labels outside 0..9: {outside[:5]}"))
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def _file_md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fetch(url: str, target: Path, md5: str, timeout: float) -> None:
    """Download ``url`` to a temporary file next to ``target``; keep it (``os.replace``) only when
    it is complete and its MD5 is ``md5``. On any failure nothing new is left behind."""
    handle = tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{target.name}.", suffix=".part", delete=False)
    partial = Path(handle.name)
    try:
        with handle:
            digest, received = hashlib.md5(), 0
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    expected_length = response.headers.get("Content-Length")
                    for chunk in iter(lambda: response.read(1 << 20), b""):
                        handle.write(chunk)
                        digest.update(chunk)
                        received += len(chunk)
            except (socket.timeout, TimeoutError) as error:
                raise TimeoutError(
                    f"download_cifar10: no answer from {url} within {timeout:g} s ({error}); check the connection "
                    "and retry, or pass a larger timeout"
                ) from None
            except urllib.error.URLError as error:
                if isinstance(error.reason, (socket.timeout, TimeoutError)):
                    raise TimeoutError(
                        f"download_cifar10: no answer from {url} within {timeout:g} s; check the connection "
                        "and retry, or pass a larger timeout"
                    ) from None
                raise ConnectionError(f"download_cifar10: could not download {url}: {error}") from None
            except (OSError, http.client.HTTPException) as error:  # a connection reset or closed half-way
                raise ConnectionError(f"download_cifar10: the download of {url} failed: {error}") from None
        if expected_length is not None and expected_length.isdigit() and received != int(expected_length):
            raise ConnectionError(
                f"download_cifar10: the download of {url} was cut short: {received} of {expected_length} bytes; retry"
            )
        if digest.hexdigest() != md5:
            raise OSError(
                f"download_cifar10: the file downloaded from {url} ({received} bytes) has MD5 {digest.hexdigest()}, "
                f"expected {md5} (a truncated or altered archive); it was not kept, retry"
            )
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def _check_md5(md5) -> str:
    if not isinstance(md5, str):
        raise TypeError(f"download_cifar10: md5 must be a str of 32 hex digits, got {type(md5).__name__}")
    if not re.fullmatch(r"[0-9a-f]{32}", md5.lower()):
        raise ValueError(f"download_cifar10: md5 must be 32 hex digits, got {md5!r}")
    return md5.lower()


def download_cifar10(
    root: str | Path, *, url: str = CIFAR10_URL, md5: str = CIFAR10_MD5, timeout: float = 60.0
) -> Path:
    """Fetch, check and unpack the official CIFAR-10 python archive under ``root`` (needs a network).

    The archive is downloaded to a temporary file in ``root``, its MD5 compared with ``md5``
    (the published checksum by default), and only then moved to ``root/cifar-10-python.tar.gz``
    (``os.replace``); an archive already there is used when its MD5 matches and downloaded
    again otherwise. It is unpacked into a temporary folder, which then replaces
    ``root/cifar-10-batches-py``. A failed or interrupted download or unpacking leaves nothing
    that breaks a retry. ``timeout`` (seconds) bounds every network operation (connect, each
    read): a server that stops answering raises ``TimeoutError`` naming the URL.

    >>> folder = download_cifar10("data/cifar10")           # doctest: +SKIP
    >>> sorted(p.name for p in folder.iterdir())[:2]        # doctest: +SKIP
    ['batches.meta', 'data_batch_1']
    >>> download_cifar10("data/cifar10", timeout=0)
    Traceback (most recent call last):
        ...
    ValueError: download_cifar10: timeout must be a positive number, got 0.0
    """
    if not isinstance(root, (str, os.PathLike)):
        raise TypeError(f"download_cifar10: root must be a str or a path, got {type(root).__name__}")
    if not isinstance(url, str):
        raise TypeError(f"download_cifar10: url must be a str, got {type(url).__name__}")
    md5 = _check_md5(md5)
    timeout = check_positive_number(timeout, "timeout", "download_cifar10")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    archive = root / CIFAR10_ARCHIVE
    if not (archive.is_file() and _file_md5(archive) == md5):
        _fetch(url, archive, md5, timeout)
    unpacked = Path(tempfile.mkdtemp(dir=root, prefix=".cifar-10-unpack-"))
    try:
        try:
            with tarfile.open(archive, "r:gz") as tar:
                safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
                tar.extractall(unpacked, **safe)
        except (tarfile.TarError, EOFError, OSError) as error:
            raise OSError(
                f"download_cifar10: {archive} could not be unpacked ({type(error).__name__}: {error}); "
                "delete it and retry"
            ) from None
        if not (unpacked / CIFAR10_FOLDER).is_dir():
            raise OSError(f"download_cifar10: {archive} holds no {CIFAR10_FOLDER} folder; delete it and retry")
        folder = root / CIFAR10_FOLDER
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(unpacked / CIFAR10_FOLDER, folder)
    finally:
        shutil.rmtree(unpacked, ignore_errors=True)
    return folder


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
    5,000 of 50,000 by default) are held out for validation. ``limit`` (None, or an int >= 2)
    keeps the first ``limit`` images of the training batches and of the test batch before the
    split (for quick CPU experiments).

    Offline, without the archive, it says what to do:

    >>> load_cifar10("no/such/folder")
    Traceback (most recent call last):
        ...
    FileNotFoundError: load_cifar10: no cifar-10-batches-py folder under no/such/folder; pass download=True when online
    >>> load_cifar10("no/such/folder", limit=-1)
    Traceback (most recent call last):
        ...
    ValueError: load_cifar10: limit must be None or an int of at least 2 (one image to train, one to validate), got -1
    """
    if not isinstance(root, (str, os.PathLike)):
        raise TypeError(f"load_cifar10: root must be a str or a path, got {type(root).__name__}")
    check_bool(download, "download", "load_cifar10")
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise TypeError(f"load_cifar10: limit must be None or an int, got {type(limit).__name__} {limit!r}")
        if limit < 2:
            raise ValueError(
                f"load_cifar10: limit must be None or an int of at least 2 (one image to train, one to validate), "
                f"got {limit}"
            )
    _check_fraction(val_fraction, "val_fraction", "load_cifar10")
    if val_fraction >= 0.5:
        raise ValueError(f"load_cifar10: val_fraction must be below 0.5 (most images train), got {val_fraction}")
    seed = _check_split_seed(seed, "load_cifar10")
    folder = Path(root) / CIFAR10_FOLDER
    if not folder.is_dir():
        if not download:
            raise FileNotFoundError(
                f"load_cifar10: no {CIFAR10_FOLDER} folder under {root}; pass download=True when online"
            )
        folder = download_cifar10(root)
    train_parts = [_read_cifar_batch(folder / name) for name in CIFAR10_FILES[:-1]]
    x_train = np.concatenate([p[0] for p in train_parts])
    y_train = np.concatenate([p[1] for p in train_parts])
    x_test, y_test = _read_cifar_batch(folder / CIFAR10_FILES[-1])
    if limit is not None:
        x_train, y_train, x_test, y_test = x_train[:limit], y_train[:limit], x_test[:limit], y_test[:limit]
    if len(y_train) < 2 or len(y_test) < 1:
        raise ValueError(
            f"load_cifar10: {folder} holds {len(y_train)} training and {len(y_test)} test images, too few to split "
            "(at least 2 and 1); the folder is incomplete or corrupt: delete it and load again with download=True"
        )
    counts = np.bincount(y_train)
    present = counts[counts > 0]
    # Stratify when every class can appear in both parts; a tiny file gets a plain seeded split.
    can_stratify = present.min() >= 2 and int(val_fraction * len(y_train)) >= len(present)
    stratify = y_train if can_stratify else None
    x_train, x_val, y_train, y_val = _split(
        "load_cifar10", x_train, y_train, test_size=val_fraction, random_state=seed, stratify=stratify
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
    """Load a data set by name: ``"digits"`` or ``"cifar10"`` (:data:`DATASETS`).

    >>> load_dataset("digits").sizes()["test"]
    360
    >>> load_dataset("mnist")
    Traceback (most recent call last):
        ...
    ValueError: load_dataset: unknown data set 'mnist'; choose from digits, cifar10
    """
    loaders = {"digits": load_digits, "cifar10": load_cifar10}
    if not isinstance(name, str):
        raise TypeError(f"load_dataset: name must be a str (one of {', '.join(DATASETS)}), got {type(name).__name__}")
    if name not in loaders:
        raise ValueError(f"load_dataset: unknown data set {name!r}; choose from {', '.join(DATASETS)}")
    return loaders[name](**kwargs)


def _check_pair(pair, name: str, caller: str, positive: bool = False) -> tuple[float, float]:
    if not isinstance(pair, (tuple, list)) or len(pair) != 2:
        raise TypeError(f"{caller}: {name} must be a pair (first, last) of numbers, got {pair!r}")
    check = check_positive_number if positive else check_finite_number
    return check(pair[0], f"{name}[0]", caller), check(pair[1], f"{name}[1]", caller)


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
    very different offsets and gains, which is what a normaliser has to undo. Both ends of
    ``scale`` must be positive.

    >>> x = synthetic_channel_batch(torch.Generator().manual_seed(0), batch=512, channels=3)
    >>> x.shape
    torch.Size([512, 3, 8, 8])
    >>> [round(m, 1) for m in x.mean(dim=(0, 2, 3)).tolist()], [round(s, 1) for s in x.std(dim=(0, 2, 3)).tolist()]
    ([-2.0, 0.5, 3.0], [0.2, 2.1, 4.0])
    >>> synthetic_channel_batch(torch.Generator(), scale=(0.0, 1.0))
    Traceback (most recent call last):
        ...
    ValueError: synthetic_channel_batch: scale[0] must be a positive number, got 0.0
    """
    caller = "synthetic_channel_batch"
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"{caller}: generator must be a torch.Generator, got {type(generator).__name__}")
    for value, name in ((batch, "batch"), (channels, "channels"), (size, "size")):
        check_positive_int(value, name, caller)
    shift = _check_pair(shift, "shift", caller)
    scale = _check_pair(scale, "scale", caller, positive=True)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"{caller}: dtype must be a floating-point torch.dtype, got {dtype!r}")
    means = torch.linspace(shift[0], shift[1], channels, dtype=dtype).view(1, channels, 1, 1)
    stds = torch.linspace(scale[0], scale[1], channels, dtype=dtype).view(1, channels, 1, 1)
    return torch.randn(batch, channels, size, size, generator=generator, dtype=dtype) * stds + means


def noisy_images(x: torch.Tensor, sigma: float, seed: int = 0) -> torch.Tensor:
    """``x`` plus seeded Gaussian noise of standard deviation ``sigma``, clamped to [0, 1].

    ``x`` holds images with pixels in [0, 1] (any shape); ``sigma`` is a finite number >= 0.

    >>> x = torch.full((2, 1, 8, 8), 0.5)
    >>> noisy = noisy_images(x, sigma=0.1, seed=0)
    >>> torch.equal(noisy, noisy_images(x, sigma=0.1, seed=0)), float(noisy.min()) >= 0.0
    (True, True)
    >>> noisy_images(x, sigma=float("nan"))
    Traceback (most recent call last):
        ...
    ValueError: noisy_images: sigma must be a finite number, got nan
    """
    check_floating(x, "noisy_images")
    sigma = check_finite_number(sigma, "sigma", "noisy_images")
    if sigma < 0:
        raise ValueError(f"noisy_images: sigma must be a number >= 0, got {sigma}")
    seed = check_nonnegative_int(seed, "seed", "noisy_images")
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
    return (x + sigma * noise).clamp(0.0, 1.0)
