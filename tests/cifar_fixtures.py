"""Small CIFAR-10 files in the real distributed format, for tests that must not download.

The official ``cifar-10-python.tar.gz`` was written by Python 2 (cPickle, protocol 2),
where both dict keys and an ndarray's raw bytes are ``str`` and so pickle as
SHORT_BINSTRING/BINSTRING. Python 3's pickler never emits those opcodes, so
:class:`Py2Pickler` reproduces them with the pure-Python pickler: every ``str`` and
``bytes`` is written as a Python 2 ``str``. Such a file loads under
``pickle.load(f, encoding="bytes")`` with bytes keys, exactly as the real ones do.
"""
from __future__ import annotations

import io
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np

LABEL_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
BATCH_FILES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


class Py2Pickler(pickle._Pickler):  # type: ignore[name-defined]
    """Pickles ``str`` and ``bytes`` as Python 2 ``str`` (SHORT_BINSTRING / BINSTRING)."""

    dispatch = pickle._Pickler.dispatch.copy()  # type: ignore[attr-defined]

    def save_py2_str(self, obj: str | bytes) -> None:
        data = obj.encode("latin-1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[str] = save_py2_str
    dispatch[bytes] = save_py2_str


def dumps(obj: object, style: str) -> bytes:
    """``style``: "py2" (as the official files), "py3" (protocol 2) or "py3-5" (protocol 5)."""
    if style == "py2":
        buffer = io.BytesIO()
        Py2Pickler(buffer, protocol=2).dump(obj)
        return buffer.getvalue()
    return pickle.dumps(obj, protocol=5 if style == "py3-5" else 2)


def batch_dict(images_chw: np.ndarray, labels: list[int], name: str, style: str) -> dict:
    """A batch dict as the official files hold it; bytes keys for Python 2 style."""
    entries = {
        "batch_label": f"{name} of 5",
        "labels": labels,
        "data": images_chw.reshape(len(labels), 3072),
        "filenames": [f"img_{i:05d}.png" for i in range(len(labels))],
    }
    if style == "py2":
        return {k.encode(): (v.encode() if isinstance(v, str) else v) for k, v in entries.items()}
    return entries


def make_cifar(n: int = 20, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Random batches: name -> (data uint8 (n, 3072) channel-planar, labels int64 (n,))."""
    rng = np.random.default_rng(seed)
    return {name: (rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
                   rng.integers(0, 10, size=n).astype(np.int64)) for name in BATCH_FILES}


def write_folder(root: Path, batches: dict[str, tuple[np.ndarray, np.ndarray]], style: str = "py2") -> Path:
    """Write ``root/cifar-10-batches-py/`` and return it."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    for name, (data, labels) in batches.items():
        (folder / name).write_bytes(dumps(batch_dict(data, [int(x) for x in labels], name, style), style))
    meta = {"label_names": LABEL_NAMES, "num_cases_per_batch": len(labels), "num_vis": 3072}
    if style == "py2":
        meta = {k.encode(): ([s.encode() for s in v] if isinstance(v, list) else v) for k, v in meta.items()}
    (folder / "batches.meta").write_bytes(dumps(meta, style))
    return folder


def write_archive(folder: Path, archive: Path) -> Path:
    """Pack ``folder`` (a ``cifar-10-batches-py`` directory) as the official .tar.gz does."""
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname="cifar-10-batches-py")
    return archive


def expected_arrays(batches: dict[str, tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, ...]:
    """(train images NHWC, train labels, test images, test labels) by an independent route."""
    def nhwc(data: np.ndarray) -> np.ndarray:
        n = data.shape[0]
        out = np.empty((n, 32, 32, 3), dtype=np.uint8)
        for c in range(3):  # the format: 1024 red values, then green, then blue, row-major
            out[..., c] = data[:, c * 1024:(c + 1) * 1024].reshape(n, 32, 32)
        return out

    train = [batches[f"data_batch_{i}"] for i in range(1, 6)]
    return (np.concatenate([nhwc(d) for d, _ in train]), np.concatenate([l for _, l in train]),
            nhwc(batches["test_batch"][0]), batches["test_batch"][1])
