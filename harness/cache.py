"""Content digests (sha256) and bench's cache folder: how bench names what it has computed
or read, and where it keeps it.

Digests identify a dataset (run.json's ``dataset.sha256``), a weights file, an exported
model, a configuration (``group``), a machine (``machine_id``) and the key of every cached
file (converted weights, features, the matmul peak). They are computed here and nowhere else,
so the same thing always gets the same name. The byte layouts hashed are part of the results
schema (a dataset digest in a folder from another machine must match): change none of them.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

_CHUNK = 1 << 20
_FILE_SHA: dict[tuple[str, int, int], str] = {}


def bench_cache_dir() -> Path:
    """$BENCH_CACHE_DIR, else $XDG_CACHE_HOME/bench, else ~/.cache/bench (an empty variable
    counts as unset, as the XDG specification says)."""
    default = os.path.join(os.getenv("XDG_CACHE_HOME") or "~/.cache", "bench")
    return Path(os.path.expanduser(os.getenv("BENCH_CACHE_DIR") or default))


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes, remembered per (path, size, mtime) so a run of two backends
    hashes a 230 MB weights file once."""
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _FILE_SHA:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(_CHUNK), b""):
                digest.update(chunk)
        _FILE_SHA[key] = digest.hexdigest()
    return _FILE_SHA[key]


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def json_sha256(data: Any) -> str:
    """sha256 of ``data`` as canonical JSON (sorted keys; non-JSON values as str), so equal
    settings give equal keys whatever order they were built in."""
    return text_sha256(json.dumps(data, sort_keys=True, default=str))


def arrays_sha256(*arrays: Any) -> str:
    """SHA-256 over dtype, shape and bytes of each array, in order.

    Shape and dtype are hashed too, so (2, 6) and (3, 4) arrays of the same bytes differ.
    """
    import numpy as np

    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.data.cast("B"))
    return digest.hexdigest()
