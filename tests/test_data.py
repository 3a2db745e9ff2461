"""harness.data: CIFAR-10 in its real format, Dataset, load_dataset, no framework imports.

Stream/augment/resize tests are in test_data_stream.py; synthetic and image folders in
test_data_sources.py. Nothing here touches the network: downloads go to a local server.
"""
from __future__ import annotations

import hashlib
import http.server
import pickle
import pickletools
import io
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from harness.data import DATASET_CHOICES, Dataset, load_dataset
from harness.data import cifar
from harness.data.cifar import load_cifar10
from harness.errors import BenchError

try:
    from tests import cifar_fixtures as cf
except ImportError:  # tests/ is not a package: pytest put it on sys.path
    import cifar_fixtures as cf  # type: ignore[no-redef]

UNREACHABLE = "http://127.0.0.1:9/cifar-10-python.tar.gz"  # discard port: refused at once
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def batches():
    return cf.make_cifar(n=20, seed=0)


def load_local(data_dir: Path, **kw) -> Dataset:
    """load_cifar10 that never reaches the network and accepts locally built archives."""
    kw.setdefault("url", UNREACHABLE)
    kw.setdefault("md5", None)
    return load_cifar10(data_dir, **kw)


def assert_matches(ds: Dataset, batches) -> None:
    train_x, train_y, test_x, test_y = cf.expected_arrays(batches)
    np.testing.assert_array_equal(ds.train_images, train_x)
    np.testing.assert_array_equal(ds.train_labels, train_y)
    np.testing.assert_array_equal(ds.test_images, test_x)
    np.testing.assert_array_equal(ds.test_labels, test_y)
    assert ds.train_images.dtype == np.uint8 and ds.train_images.shape == (100, 32, 32, 3)
    assert ds.train_labels.dtype == np.int64
    assert ds.class_names == cf.LABEL_NAMES


# --- the fixtures really are in the Python 2 format ----------------------------------------

def test_py2_fixture_uses_py2_string_opcodes_and_loads_with_bytes_keys(batches):
    data, labels = batches["data_batch_1"]
    raw = cf.dumps(cf.batch_dict(data, labels.tolist(), "data_batch_1", "py2"), "py2")
    listing = io.StringIO()
    pickletools.dis(raw, out=listing)
    ops = {line.split()[2] for line in listing.getvalue().splitlines() if len(line.split()) > 2}
    assert {"SHORT_BINSTRING", "BINSTRING"} <= ops  # keys and the 60 kB of pixel bytes
    assert not ops & {"BINUNICODE", "SHORT_BINUNICODE", "BINBYTES", "SHORT_BINBYTES"}
    loaded = pickle.loads(raw, encoding="bytes")
    assert set(loaded) == {b"batch_label", b"labels", b"data", b"filenames"}
    np.testing.assert_array_equal(loaded[b"data"], data)


# --- loading --------------------------------------------------------------------------------

@pytest.mark.parametrize("style", ["py2", "py3", "py3-5"])
def test_folder_and_archive_load_the_same_arrays(tmp_path, batches, style):
    folder = cf.write_folder(tmp_path / "src", batches, style)
    (tmp_path / "a").mkdir()
    cf.write_archive(folder, tmp_path / "a" / cifar.ARCHIVE_NAME)
    from_folder = load_local(tmp_path / "src")
    from_archive = load_local(tmp_path / "a")
    assert_matches(from_folder, batches)
    assert_matches(from_archive, batches)
    assert from_folder.identity["sha256"] == from_archive.identity["sha256"]
    assert from_folder.identity["source"] == str(folder)
    assert from_archive.identity["source"].endswith(cifar.ARCHIVE_NAME)
    assert from_folder.identity["train_size"] == 100 and from_folder.identity["test_size"] == 20


def test_folder_wins_over_archive_and_md5_is_checked_on_an_existing_archive(tmp_path, batches):
    folder = cf.write_folder(tmp_path / "src", batches)
    archive = cf.write_archive(folder, tmp_path / cifar.ARCHIVE_NAME)
    with pytest.raises(BenchError, match="md5"):  # the official md5 by default
        load_cifar10(tmp_path, url=UNREACHABLE)
    good_md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    assert_matches(load_cifar10(tmp_path, url=UNREACHABLE, md5=good_md5), batches)
    cf.write_folder(tmp_path, batches)  # the extracted folder is preferred, unhashed
    assert load_cifar10(tmp_path, url=UNREACHABLE).identity["source"].endswith(cifar.FOLDER_NAME)


def test_missing_data_names_the_fix(tmp_path):
    with pytest.raises(BenchError) as err:
        load_local(tmp_path / "empty")
    message = str(err.value)
    assert "could not be downloaded" in message and "--dataset synthetic" in message
    assert cifar.ARCHIVE_NAME in message and str(tmp_path / "empty") in message
    assert not any((tmp_path / "empty").iterdir())  # no partial download left behind
    with pytest.raises(BenchError, match="downloading is turned off.*--dataset synthetic"):
        load_local(tmp_path / "empty", download=False)


def test_unwritable_data_dir(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(BenchError, match="not writable.*--data-dir"):
        load_local(blocker / "data")


def _corrupt_cases():
    def truncated(raw):
        return raw[: len(raw) // 2]

    def repickle(change):
        def edit(raw):
            batch = pickle.loads(raw, encoding="bytes")
            change(batch)
            return cf.dumps(batch, "py2")
        return edit

    def wrong_shape(b):
        b[b"data"] = np.zeros((20, 3000), dtype=np.uint8)

    def bad_label(b):
        b[b"labels"] = [10] * 20

    def short_labels(b):
        b[b"labels"] = [0] * 19

    def float_labels(b):
        b[b"labels"] = [0.5] * 20

    def float_data(b):
        b[b"data"] = b[b"data"].astype(np.float32)

    def no_data(b):
        del b[b"data"]

    return {
        "truncated pickle": (truncated, "cannot unpickle"),
        "N x 3000": (repickle(wrong_shape), "N x 3072"),
        "label 10": (repickle(bad_label), "outside 0..9"),
        "19 labels for 20 images": (repickle(short_labels), "19 labels for 20 images"),
        "float data": (repickle(float_data), "uint8"),
        "float labels": (repickle(float_labels), "not a list of integers"),
        "missing key": (repickle(no_data), "no 'data' entry"),
        "not a dict": (lambda raw: pickle.dumps([1, 2, 3]), "not a dict"),
        "code in the pickle": (lambda raw: pickle.dumps(os.getcwd), "refers to posix.getcwd"),
    }


@pytest.mark.parametrize("case", list(_corrupt_cases()))
@pytest.mark.parametrize("packed", [False, True], ids=["folder", "archive"])
def test_corrupt_batch_is_a_bench_error_naming_the_file(tmp_path, batches, case, packed):
    edit, problem = _corrupt_cases()[case]
    folder = cf.write_folder(tmp_path / "src", batches)
    target = folder / "data_batch_3"
    target.write_bytes(edit(target.read_bytes()))
    data_dir = tmp_path / "src"
    if packed:
        data_dir = tmp_path / "packed"
        data_dir.mkdir()
        cf.write_archive(folder, data_dir / cifar.ARCHIVE_NAME)
    with pytest.raises(BenchError) as err:
        load_local(data_dir)
    message = str(err.value)
    assert "data_batch_3" in message and problem in message
    assert "--dataset synthetic" in message
    assert f"delete {data_dir / cifar.ARCHIVE_NAME} and" in message if packed else "delete it and" in message


def test_missing_batch_file_in_folder(tmp_path, batches):
    folder = cf.write_folder(tmp_path, batches)
    (folder / "data_batch_5").unlink()
    with pytest.raises(BenchError, match=r"data_batch_5 is missing"):
        load_local(tmp_path)


def test_truncated_and_incomplete_archives(tmp_path, batches):
    folder = cf.write_folder(tmp_path / "src", batches)
    archive = cf.write_archive(folder, tmp_path / cifar.ARCHIVE_NAME)
    raw = archive.read_bytes()
    archive.write_bytes(raw[: len(raw) * 2 // 3])
    with pytest.raises(BenchError, match=r"cifar-10-python\.tar\.gz.*truncated.*delete it"):
        load_local(tmp_path)
    (folder / "test_batch").unlink()
    cf.write_archive(folder, archive)
    with pytest.raises(BenchError, match="missing cifar-10-batches-py/test_batch"):
        load_local(tmp_path)


# --- downloading ----------------------------------------------------------------------------

@pytest.fixture
def server(tmp_path):
    """A local HTTP server over tmp_path/www, yielding (www, base_url)."""
    www = tmp_path / "www"
    www.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(www), **kwargs)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield www, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def test_download_verifies_md5_and_renames_atomically(tmp_path, batches, server):
    www, base = server
    folder = cf.write_folder(tmp_path / "src", batches)
    archive = cf.write_archive(folder, www / cifar.ARCHIVE_NAME)
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    data_dir = tmp_path / "data" / "nested"
    ds = load_cifar10(data_dir, url=f"{base}/{cifar.ARCHIVE_NAME}", md5=md5)
    assert_matches(ds, batches)
    assert sorted(p.name for p in data_dir.iterdir()) == [cifar.ARCHIVE_NAME]
    assert (data_dir / cifar.ARCHIVE_NAME).read_bytes() == archive.read_bytes()


def test_download_md5_mismatch_leaves_nothing(tmp_path, batches, server):
    www, base = server
    cf.write_archive(cf.write_folder(tmp_path / "src", batches), www / cifar.ARCHIVE_NAME)
    data_dir = tmp_path / "data"
    with pytest.raises(BenchError, match="md5.*expected 0{32}"):
        load_cifar10(data_dir, url=f"{base}/{cifar.ARCHIVE_NAME}", md5="0" * 32)
    assert list(data_dir.iterdir()) == []


def test_download_http_error_is_reported(tmp_path, server):
    _, base = server
    with pytest.raises(BenchError, match="could not be downloaded.*HTTP 404.*--dataset synthetic"):
        load_cifar10(tmp_path / "d", url=f"{base}/nothing-here.tar.gz")
    assert list((tmp_path / "d").iterdir()) == []


# --- Dataset and load_dataset ---------------------------------------------------------------

def test_subset_takes_the_first_images_and_rehashes(tmp_path, batches):
    cf.write_folder(tmp_path, batches)
    ds = load_local(tmp_path)
    small = ds.subset(30, 5)
    np.testing.assert_array_equal(small.train_images, ds.train_images[:30])
    np.testing.assert_array_equal(small.test_labels, ds.test_labels[:5])
    assert small.identity["train_size"] == 30 and small.identity["test_size"] == 5
    assert small.identity["sha256"] != ds.identity["sha256"]
    assert small.identity["subset_of"]["sha256"] == ds.identity["sha256"]
    assert ds.subset(None, None) is ds
    with pytest.raises(BenchError, match="--train-size 101 is out of range.*has 100 train"):
        ds.subset(101, None)
    with pytest.raises(BenchError, match="--test-size"):
        ds.subset(None, 21)


def test_load_dataset_names(tmp_path, batches):
    cf.write_folder(tmp_path, batches)
    ds = load_dataset("cifar10", data_dir=tmp_path, train_size=50, test_size=None, seed=0)
    assert ds.train_images.shape[0] == 50 and ds.test_images.shape[0] == 20
    syn = load_dataset("synthetic", data_dir=tmp_path, train_size=40, test_size=None, seed=3)
    assert syn.train_images.shape == (40, 32, 32, 3) and syn.test_images.shape[0] == 1000
    assert syn.identity["sha256"] == "synthetic, seed 3"
    for bad in ("cifar100", "imagefolder:", "CIFAR10"):
        with pytest.raises(BenchError, match="unknown dataset.*" + "|".join(DATASET_CHOICES).replace("|", ".*")):
            load_dataset(bad, data_dir=tmp_path, train_size=None, test_size=None, seed=0)


def test_harness_data_imports_no_framework():
    code = ("import sys, harness.data, harness.data.augment, harness.data.resize; "
            "bad = [m for m in ('torch', 'torchvision', 'chainer', 'cupy') if m in sys.modules]; "
            "sys.exit(f'imported {bad}' if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
