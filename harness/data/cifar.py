"""CIFAR-10 from its official "python version" distribution.

Format (https://www.cs.toronto.edu/~kriz/cifar.html): ``cifar-10-python.tar.gz`` holds
``cifar-10-batches-py/`` with ``data_batch_1`` .. ``data_batch_5`` (10 000 images each),
``test_batch`` and ``batches.meta``. Each batch is a pickled dict: ``data`` a uint8
N x 3072 array (1024 red, then green, then blue values, rows top to bottom) and ``labels``
a list of N ints in 0..9; ``batches.meta`` has ``label_names``.

The official files were written by Python 2, whose ``str`` keys and raw array bytes
unpickle as ``bytes`` under ``encoding="bytes"`` (the site's own recipe); files written by
Python 3 have ``str`` keys. Keys are normalised to ``str`` so both load the same way.

Unpickling runs only the few numpy constructors an array needs (Python docs, "Restricting
Globals"), so a tampered file cannot execute code.

md5 policy: the official archive's md5 (from the page above) is checked after a download
and, by default, for an archive found in the data directory; pass ``md5=None`` to accept
a locally built archive, which is then validated by structure like an extracted folder.
"""
from __future__ import annotations

import hashlib
import http.client
import io
import pickle
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from pathlib import Path
from typing import Any, BinaryIO, Callable

import numpy as np

from harness.data.dataset import Dataset, arrays_sha256
from harness.errors import BenchError
from harness.schema.io import atomic_path

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
ARCHIVE_NAME = "cifar-10-python.tar.gz"
FOLDER_NAME = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
META_FILE = "batches.meta"
DOWNLOAD_TIMEOUT_S = 30.0
_CHUNK = 1 << 20

# (module, name) pairs an ndarray pickle needs; numpy 2 writes numpy._core.*.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),  # protocol 5
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("copy_reg", "_reconstructor"),
    ("copyreg", "_reconstructor"),
    ("_codecs", "encode"),  # how Python 3 writes bytes at protocol 2 (harmless)
    ("__builtin__", "object"),
    ("builtins", "object"),
}

Opener = Callable[..., BinaryIO]


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"refers to {module}.{name}, which a CIFAR batch never does")
        if module.startswith("numpy._core.") and not hasattr(np, "_core"):
            module = "numpy.core." + module[len("numpy._core."):]
        return super().find_class(module, name)


def _corrupt(where: str, problem: str) -> BenchError:
    """``where`` is a path, or ``archive:member`` for a file inside the archive."""
    culprit = where.split(".tar.gz:")[0] + ".tar.gz" if ".tar.gz:" in where else "it"
    return BenchError(
        f"{where} is not a valid CIFAR-10 file ({problem}): delete {culprit} and run again to "
        f"re-download (or put a fresh copy from {CIFAR10_URL} there), or run with --dataset synthetic"
    )


def _unpickle(raw: bytes, where: str) -> dict[str, Any]:
    try:
        obj = _NumpyOnlyUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as exc:  # truncated or foreign pickles raise many different types
        raise _corrupt(where, f"cannot unpickle: {type(exc).__name__}: {exc}") from None
    if not isinstance(obj, dict):
        raise _corrupt(where, f"holds a {type(obj).__name__}, not a dict")
    return {k.decode("latin-1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def parse_batch(raw: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 32, 32, 3) uint8 and labels (N,) int64 from one pickled batch."""
    batch = _unpickle(raw, where)
    for key in ("data", "labels"):
        if key not in batch:
            raise _corrupt(where, f"no {key!r} entry; it has {sorted(map(str, batch))}")
    data = batch["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        shape = getattr(data, "shape", None)
        raise _corrupt(where, f"'data' must be a uint8 N x 3072 array, got {type(data).__name__} "
                              f"{getattr(data, 'dtype', '')} {shape}")
    try:
        labels = np.asarray(batch["labels"])
    except (TypeError, ValueError):
        labels = np.asarray([None])
    if labels.dtype.kind not in "iu" and labels.size:
        raise _corrupt(where, "'labels' is not a list of integers")
    labels = labels.astype(np.int64)
    if labels.shape != (data.shape[0],):
        raise _corrupt(where, f"{labels.size} labels for {data.shape[0]} images")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise _corrupt(where, f"labels outside 0..9 (min {labels.min()}, max {labels.max()})")
    # Rows are channel-planar (3 x 32 x 32): to NHWC, the layout Batch carries.
    images = np.ascontiguousarray(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    return images, labels


def parse_meta(raw: bytes, where: str) -> list[str]:
    meta = _unpickle(raw, where)
    names = meta.get("label_names")
    if not isinstance(names, (list, tuple)) or len(names) != 10:
        raise _corrupt(where, "'label_names' must be a list of 10 class names")
    return [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names]


def _read_folder(folder: Path) -> dict[str, bytes]:
    raws: dict[str, bytes] = {}
    for name in (*TRAIN_FILES, TEST_FILE, META_FILE):
        path = folder / name
        try:
            raws[name] = path.read_bytes()
        except FileNotFoundError:
            raise BenchError(
                f"{path} is missing: delete {folder} and run again to re-download, or extract "
                f"{ARCHIVE_NAME} there again, or run with --dataset synthetic"
            ) from None
        except OSError as exc:
            raise BenchError(f"cannot read {path} ({exc}): check its permissions") from None
    return raws


def _read_archive(archive: Path) -> dict[str, bytes]:
    """The batch files, read straight out of the .tar.gz in one sequential pass."""
    wanted = {f"{FOLDER_NAME}/{n}": n for n in (*TRAIN_FILES, TEST_FILE, META_FILE)}
    raws: dict[str, bytes] = {}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                name = wanted.get(member.name.lstrip("./"))
                if name is not None and member.isfile():
                    handle = tar.extractfile(member)
                    assert handle is not None
                    raws[name] = handle.read()
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise _corrupt(str(archive), f"unreadable archive, probably truncated: {exc}") from None
    missing = [f"{FOLDER_NAME}/{n}" for n in (*TRAIN_FILES, TEST_FILE, META_FILE) if n not in raws]
    if missing:
        raise _corrupt(str(archive), f"missing {', '.join(missing)}")
    return raws


def _file_md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def download_file(url: str, dest: Path, *, md5: str | None, timeout: float = DOWNLOAD_TIMEOUT_S,
             opener: Opener = urllib.request.urlopen) -> None:
    """Fetch ``url`` to ``dest`` atomically: stream into a temporary file beside it,
    check the md5, then rename. A failure leaves nothing behind but the old state.

    Network problems raise :class:`OSError` subclasses (URLError, timeouts) or
    ``http.client.HTTPException``; the caller words them for the user.
    """
    with atomic_path(dest, suffix=".part") as tmp:
        digest = hashlib.md5()
        with open(tmp, "wb") as out, opener(url, timeout=timeout) as response:
            while chunk := response.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
        if md5 is not None and digest.hexdigest() != md5:
            raise BenchError(
                f"the file downloaded from {url} has md5 {digest.hexdigest()}, expected {md5} "
                f"(a broken or intercepted download): run again, or put {dest.name} in "
                f"{dest.parent} yourself, or run with --dataset synthetic"
            )


def _fetch(data_dir: Path, *, url: str, md5: str | None, timeout: float) -> Path:
    archive = data_dir / ARCHIVE_NAME
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        probe = tempfile.TemporaryFile(dir=data_dir)
        probe.close()
    except OSError as exc:
        raise BenchError(
            f"CIFAR-10 is not in {data_dir} and that directory is not writable ({exc}): pass a "
            f"writable --data-dir, or put {ARCHIVE_NAME} (from {url}) there, or run with --dataset synthetic"
        ) from None
    print(f"bench: downloading CIFAR-10 (163 MiB) from {url} to {data_dir}", file=sys.stderr)
    try:
        download_file(url, archive, md5=md5, timeout=timeout)
    except (OSError, http.client.HTTPException, ValueError) as exc:
        if isinstance(exc, urllib.error.HTTPError):
            reason: object = f"HTTP {exc.code} {exc.reason}"
        elif isinstance(exc, urllib.error.URLError):
            reason = exc.reason
        else:
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise BenchError(
            f"CIFAR-10 is not in {data_dir} and could not be downloaded ({reason}). Put "
            f"{ARCHIVE_NAME} (from {url}) or its extracted {FOLDER_NAME}/ in {data_dir}, "
            f"or run with --dataset synthetic"
        ) from None
    return archive


def load_cifar10(data_dir: Path, *, download: bool = True, url: str = CIFAR10_URL,
                 md5: str | None = CIFAR10_MD5, timeout: float = DOWNLOAD_TIMEOUT_S) -> Dataset:
    """CIFAR-10 from ``data_dir``: the extracted folder if present, else the archive (read
    without extracting), else a download of the archive when ``download`` is allowed.

    ``md5`` is checked for a downloaded archive and for an archive found on disk; None
    skips it (a locally built archive), leaving the structural checks.
    """
    data_dir = Path(data_dir)
    folder, archive = data_dir / FOLDER_NAME, data_dir / ARCHIVE_NAME
    if folder.is_dir():
        source, raws = folder, _read_folder(folder)
    else:
        if archive.is_file():
            if md5 is not None and (actual := _file_md5(archive)) != md5:
                raise _corrupt(str(archive), f"md5 {actual}, expected {md5}")
        elif download:
            archive = _fetch(data_dir, url=url, md5=md5, timeout=timeout)
        else:
            raise BenchError(
                f"CIFAR-10 is not in {data_dir} (downloading is turned off). Put {ARCHIVE_NAME} "
                f"(from {url}) or its extracted {FOLDER_NAME}/ in {data_dir}, or run with --dataset synthetic"
            )
        source, raws = archive, _read_archive(archive)

    def where(name: str) -> str:
        return str(folder / name) if source == folder else f"{archive}:{FOLDER_NAME}/{name}"

    parts = [parse_batch(raws[n], where(n)) for n in TRAIN_FILES]
    train_images = np.concatenate([p[0] for p in parts])
    train_labels = np.concatenate([p[1] for p in parts])
    test_images, test_labels = parse_batch(raws[TEST_FILE], where(TEST_FILE))
    class_names = parse_meta(raws[META_FILE], where(META_FILE))
    identity = {
        "name": "cifar10",
        "train_size": int(train_images.shape[0]),
        "test_size": int(test_images.shape[0]),
        "sha256": arrays_sha256(train_images, train_labels, test_images, test_labels),
        "source": str(source),
    }
    return Dataset("cifar10", train_images, train_labels, test_images, test_labels, class_names, identity)
