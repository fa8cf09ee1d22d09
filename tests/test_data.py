"""Data sets: the digits split, and the CIFAR-10 reader on files written in the real format."""

import pickle

import numpy as np
import pytest
import torch

from snn_norm_lite.data import CIFAR10_FOLDER, load_cifar10, load_dataset, load_digits, noisy_images, synthetic_channel_batch


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


# -- download: a local server, archives built here in the official layout ---------------------

import hashlib  # noqa: E402
import http.server  # noqa: E402
import io  # noqa: E402
import socket  # noqa: E402
import tarfile  # noqa: E402
import threading  # noqa: E402

from snn_norm_lite import data  # noqa: E402
from snn_norm_lite.data import CIFAR10_ARCHIVE, CIFAR10_MD5, download_cifar10  # noqa: E402


def fake_archive(tmp_path):
    """A small tar.gz with the official layout (cifar-10-batches-py/...), its bytes and MD5."""
    source = tmp_path / "source"
    write_fake_cifar(source)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(source / CIFAR10_FOLDER, arcname=CIFAR10_FOLDER)
    payload = buffer.getvalue()
    return payload, hashlib.md5(payload).hexdigest()


@pytest.fixture
def no_proxy(monkeypatch):
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1")


@pytest.fixture
def server(no_proxy):
    """A threaded HTTP server on 127.0.0.1; set ``state["payload"]`` and ``state["truncate"]``."""
    state = {"payload": b"", "truncate": False, "requests": 0}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the http.server name
            state["requests"] += 1
            payload = state["payload"]
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload[: len(payload) // 2] if state["truncate"] else payload)
            self.wfile.flush()
            self.close_connection = True

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    state["url"] = f"http://127.0.0.1:{httpd.server_address[1]}/{CIFAR10_ARCHIVE}"
    yield state
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


def leftovers(root):
    """Everything in ``root`` but a complete archive and the unpacked folder."""
    return sorted(p.name for p in root.iterdir() if p.name not in (CIFAR10_ARCHIVE, CIFAR10_FOLDER))


def test_download_checks_the_md5_and_unpacks(tmp_path, server):
    payload, md5 = fake_archive(tmp_path)
    server["payload"] = payload
    root = tmp_path / "data"
    folder = download_cifar10(root, url=server["url"], md5=md5, timeout=10)
    assert folder == root / CIFAR10_FOLDER and sorted(p.name for p in folder.iterdir()) == sorted(data.CIFAR10_FILES)
    assert (root / CIFAR10_ARCHIVE).read_bytes() == payload and leftovers(root) == []
    assert load_cifar10(root, val_fraction=0.2).sizes() == {"train": 16, "val": 4, "test": 4}
    # an archive already in place with the right MD5 is not downloaded again
    download_cifar10(root, url=server["url"], md5=md5, timeout=10)
    assert server["requests"] == 1


def test_the_published_md5_is_the_default_and_a_mismatch_keeps_nothing(tmp_path, server):
    assert CIFAR10_MD5 == "c58f30108f718f92721af3b95e74349a"
    payload, md5 = fake_archive(tmp_path)
    server["payload"] = payload
    root = tmp_path / "data"
    with pytest.raises(OSError, match=f"MD5 {md5}, expected {CIFAR10_MD5}") as error:
        download_cifar10(root, url=server["url"], timeout=10)
    assert server["url"] in str(error.value)
    assert list(root.iterdir()) == []  # no archive, no temporary file
    assert download_cifar10(root, url=server["url"], md5=md5, timeout=10).is_dir()  # a retry works


def test_a_truncated_download_keeps_nothing_and_a_retry_works(tmp_path, server):
    payload, md5 = fake_archive(tmp_path)
    server.update(payload=payload, truncate=True)
    root = tmp_path / "data"
    with pytest.raises(OSError, match="cut short") as error:
        download_cifar10(root, url=server["url"], md5=md5, timeout=10)
    assert server["url"] in str(error.value) and list(root.iterdir()) == []
    server["truncate"] = False
    assert download_cifar10(root, url=server["url"], md5=md5, timeout=10).is_dir()


def test_a_broken_archive_left_by_an_earlier_download_does_not_break_a_retry(tmp_path, server):
    payload, md5 = fake_archive(tmp_path)
    server["payload"] = payload
    root = tmp_path / "data"
    root.mkdir()
    (root / CIFAR10_ARCHIVE).write_bytes(payload[:50])  # what an interrupted urlretrieve used to leave
    folder = download_cifar10(root, url=server["url"], md5=md5, timeout=10)
    assert folder.is_dir() and (root / CIFAR10_ARCHIVE).read_bytes() == payload and leftovers(root) == []


def test_a_server_that_never_answers_times_out_naming_the_url(tmp_path, no_proxy):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)  # the connection is accepted by the kernel, nobody ever answers
    url = f"http://127.0.0.1:{silent.getsockname()[1]}/{CIFAR10_ARCHIVE}"
    root = tmp_path / "data"
    try:
        with pytest.raises(TimeoutError, match="no answer from") as error:
            download_cifar10(root, url=url, timeout=0.3)
    finally:
        silent.close()
    assert url in str(error.value) and list(root.iterdir()) == []


def test_load_cifar10_downloads_when_asked(tmp_path, server, monkeypatch):
    payload, md5 = fake_archive(tmp_path)
    server["payload"] = payload
    real = data.download_cifar10
    monkeypatch.setattr(data, "download_cifar10", lambda root: real(root, url=server["url"], md5=md5, timeout=10))
    split = load_cifar10(tmp_path / "data", download=True, val_fraction=0.2)
    assert split.sizes() == {"train": 16, "val": 4, "test": 4}


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"timeout": 0}, ValueError, "timeout must be a positive number"),
        ({"timeout": float("inf")}, ValueError, "timeout must be a finite number"),
        ({"timeout": "60"}, TypeError, "timeout must be a real number"),
        ({"md5": "abc"}, ValueError, "md5 must be 32 hex digits"),
        ({"md5": None}, TypeError, "md5 must be a str"),
        ({"url": None}, TypeError, "url must be a str"),
    ],
)
def test_download_arguments_are_checked(tmp_path, kwargs, error, message):
    with pytest.raises(error, match=message):
        download_cifar10(tmp_path, **kwargs)
    assert list(tmp_path.iterdir()) == []


# -- a corrupt or partial folder: one error naming the file and the fix ------------------------


def _corrupt(folder, name):
    path = folder / name
    if name == "missing":
        (folder / "data_batch_3").unlink()
        return folder / "data_batch_3"
    if name == "truncated":
        path = folder / "data_batch_2"
        path.write_bytes(path.read_bytes()[:100])
    elif name == "wrong keys":
        path = folder / "test_batch"
        with open(path, "wb") as handle:
            pickle.dump({b"pixels": np.zeros((2, 3072), dtype=np.uint8)}, handle)
    elif name == "labels outside 0..9":
        path = folder / "data_batch_4"
        with open(path, "wb") as handle:
            pickle.dump({b"data": np.zeros((2, 3072), dtype=np.uint8), b"labels": [3, 10]}, handle)
    elif name == "not a dict":
        path = folder / "data_batch_5"
        with open(path, "wb") as handle:
            pickle.dump([1, 2, 3], handle)
    elif name == "float pixels":
        path = folder / "data_batch_1"
        with open(path, "wb") as handle:
            pickle.dump({b"data": np.full((2, 3072), 300.0), b"labels": [3, 1]}, handle)
    return path


@pytest.mark.parametrize(
    "damage, error, message",
    [
        ("missing", FileNotFoundError, "is missing"),
        ("truncated", ValueError, "is not a readable pickle"),
        ("wrong keys", ValueError, "no key b'data', b'labels'"),
        ("labels outside 0..9", ValueError, r"labels outside 0..9: \[10\]"),
        ("not a dict", ValueError, "not a CIFAR-10 batch"),
        ("float pixels", ValueError, "expected uint8 pixels"),
    ],
)
def test_a_corrupt_folder_names_the_file_and_the_fix(tmp_path, damage, error, message):
    write_fake_cifar(tmp_path)
    path = _corrupt(tmp_path / CIFAR10_FOLDER, damage)
    with pytest.raises(error, match=message) as info:
        load_cifar10(tmp_path)
    assert str(path) in str(info.value) and "delete it and load again with download=True" in str(info.value)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"limit": -1}, ValueError, "limit must be None or an int of at least 2"),
        ({"limit": 1}, ValueError, "limit must be None or an int of at least 2"),
        ({"limit": 0}, ValueError, "limit"),
        ({"limit": 2.5}, TypeError, "limit must be None or an int"),
        ({"limit": True}, TypeError, "limit must be None or an int"),
        ({"download": "yes"}, TypeError, "download must be True or False"),
        ({"val_fraction": 0.0}, ValueError, "val_fraction"),
        ({"val_fraction": 0.5}, ValueError, "below 0.5"),
        ({"val_fraction": float("nan")}, ValueError, "val_fraction must be a finite number"),
        ({"seed": -1}, ValueError, "seed must be an int >= 0"),
        ({"seed": 1.0}, TypeError, "seed must be an int"),
        ({"root": 3}, TypeError, "root must be a str or a path"),
    ],
)
def test_load_cifar10_arguments_are_checked_before_reading(tmp_path, kwargs, error, message):
    write_fake_cifar(tmp_path)
    with pytest.raises(error, match=message):
        load_cifar10(**{"root": tmp_path, **kwargs})


def test_cifar10_limit_keeps_exactly_limit_images(tmp_path):
    write_fake_cifar(tmp_path)
    sizes = load_cifar10(tmp_path, limit=2, val_fraction=0.2).sizes()
    assert sizes == {"train": 1, "val": 1, "test": 2}


# -- the other data functions check their arguments -----------------------------------------


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: load_digits(seed=-1), ValueError, "load_digits: seed must be an int >= 0"),
        (lambda: load_digits(seed=2**32), ValueError, "at most 2\\*\\*32 - 1"),
        (lambda: load_digits(val_fraction="0.2"), TypeError, "val_fraction must be a real number"),
        (lambda: load_digits(test_fraction=True), TypeError, "test_fraction must be a real number"),
        (lambda: load_digits(val_fraction=0.001), ValueError, "load_digits: cannot split"),
        (lambda: load_digits().subset(0, 1, 1), ValueError, "train must be positive"),
        (lambda: load_digits().subset(10, 361, 1), ValueError, "val must be at most 360"),
        (lambda: load_digits().subset(10, 10, 2.0), TypeError, "test must be an int"),
        (lambda: load_digits().loaders(batch_size=True), TypeError, "batch_size must be an int"),
        (lambda: load_digits().loaders(eval_batch_size=0), ValueError, "eval_batch_size must be positive"),
        (lambda: load_digits().loaders(seed=-3), ValueError, "seed must be an int >= 0"),
        (lambda: load_dataset(3), TypeError, "load_dataset: name must be a str"),
        (lambda: noisy_images(torch.zeros(2, 1, 8, 8), sigma=-0.1), ValueError, "sigma must be a number >= 0"),
        (lambda: noisy_images(torch.zeros(2, 1, 8, 8), sigma=float("inf")), ValueError, "sigma must be a finite"),
        (lambda: noisy_images(torch.zeros(2, 1, 8, 8), sigma=True), TypeError, "sigma must be a real number"),
        (lambda: noisy_images(torch.zeros(2, 8, dtype=torch.long), sigma=0.1), TypeError, "floating-point"),
        (lambda: noisy_images(torch.zeros(2, 8), sigma=0.1, seed=-1), ValueError, "seed must be an int >= 0"),
        (lambda: synthetic_channel_batch(0), TypeError, "generator must be a torch.Generator"),
        (lambda: synthetic_channel_batch(torch.Generator(), batch=0), ValueError, "batch must be positive"),
        (lambda: synthetic_channel_batch(torch.Generator(), channels=2.0), TypeError, "channels must be an int"),
        (lambda: synthetic_channel_batch(torch.Generator(), size=-1), ValueError, "size must be positive"),
        (lambda: synthetic_channel_batch(torch.Generator(), shift=(0.0,)), TypeError, "shift must be a pair"),
        (lambda: synthetic_channel_batch(torch.Generator(), shift=(0.0, float("nan"))), ValueError, "shift\\[1\\]"),
        (lambda: synthetic_channel_batch(torch.Generator(), scale=(-1.0, 1.0)), ValueError, "scale\\[0\\] must be a positive"),
        (lambda: synthetic_channel_batch(torch.Generator(), dtype=torch.int64), TypeError, "dtype must be a floating-point"),
    ],
)
def test_data_helpers_check_their_arguments(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_noisy_images_is_seeded_and_stays_in_the_unit_interval():
    x = torch.full((4, 1, 8, 8), 0.5)
    assert torch.equal(noisy_images(x, 0.0), x)
    a, b = noisy_images(x, 0.3, seed=1), noisy_images(x, 0.3, seed=2)
    assert not torch.equal(a, b) and a.min() >= 0 and a.max() <= 1
