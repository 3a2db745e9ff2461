"""Where a run's starting weights come from: ``--weights none | imagenet | PATH``.

- ``none``: the harness's canonical initial weights (:mod:`harness.init_weights`).
- ``imagenet``: torchvision's ``IMAGENET1K_V1`` file for resnet18..152, from torchvision's
  own cache (``$TORCH_HOME/hub/checkpoints/``, default ``~/.cache/torch/hub/checkpoints/``),
  downloaded there by ``torch.hub`` when missing and downloads are allowed. Offline with no
  file is an error that says where the file goes, never a silent random init.
- ``PATH``: a torchvision ``state_dict`` (``.pth``/``.pt``), or an ``.npz`` of canonical
  arrays written by ``bench weights convert``.

Every backend receives the same canonical arrays (torchvision names, float32). The torch
backend reads ``.pth`` files itself; other backends get a converted ``.npz`` cached under
``$BENCH_CACHE_DIR/weights/<sha256 of the source>.npz`` (default ``~/.cache/bench``), made
once by a ``bench weights convert`` subprocess, so a Chainer run never imports torch (which
would change its thread pools and memory figures).

Weights replace the canonical init everywhere except in the classifier head when its shape
differs (ImageNet's 1000 classes vs the run's), and in ``--no-skip`` blocks: their function
changed, so they start from the canonical init and train (the seed notebook's
``noSkipBottleneck`` is likewise a fresh module). run.json records which parts were loaded.

This module imports no framework; reading ``.pth`` files is delegated to
``backends/torch_impl/weights.py``, imported only when a ``.pth`` must be read.
"""
from __future__ import annotations

import importlib
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.cache import bench_cache_dir, file_sha256  # noqa: F401 (part of this module's API)
from harness.catalogue import IMAGENET_LAYERS, BOTTLENECK_DEPTHS, model_info
from harness.errors import BenchError
from harness.schema.io import atomic_path

# torchvision.models.ResNet*_Weights.IMAGENET1K_V1 (torchvision 0.13+). The 8 hex digits in
# each name are the start of the file's sha256, which torch.hub checks after downloading.
IMAGENET_FILES = {
    "resnet18": "resnet18-f37072fd.pth",
    "resnet34": "resnet34-b627a593.pth",
    "resnet50": "resnet50-0676ba61.pth",
    "resnet101": "resnet101-63fe2227.pth",
    "resnet152": "resnet152-394f9c45.pth",
}
URL_BASE = "https://download.pytorch.org/models/"
# Backends that read torch files in-process; all others get the converted .npz.
TORCH_NATIVE_BACKENDS = ("torch",)
_SHOW = 5  # mismatches named in an error


# ----------------------------------------------------------------------------- Locations
def torch_home() -> Path:
    """torch.hub's ``_get_torch_home()``: $TORCH_HOME, else $XDG_CACHE_HOME/torch, else ~/.cache/torch."""
    default = os.path.join(os.getenv("XDG_CACHE_HOME", "~/.cache"), "torch")
    return Path(os.path.expanduser(os.getenv("TORCH_HOME", default)))


def checkpoints_dir() -> Path:
    """Where torchvision keeps downloaded weights (``torch.hub.get_dir()/checkpoints``)."""
    return torch_home() / "hub" / "checkpoints"


def imagenet_location(model: str) -> tuple[Path, str]:
    """(cache path, URL) of torchvision's ImageNet weights for ``model``."""
    info = model_info(model)
    if model not in IMAGENET_FILES:
        raise BenchError(f"--weights imagenet exists for {', '.join(IMAGENET_FILES)} only, not {model} "
                         f"({info.family}): use --weights none or a state_dict file of this model")
    name = IMAGENET_FILES[model]
    return checkpoints_dir() / name, URL_BASE + name


def converted_path(sha256: str) -> Path:
    """The cached canonical .npz of a torch weights file, keyed by the file's sha256."""
    return bench_cache_dir() / "weights" / f"{sha256}.npz"


_WARNED: set[str] = set()  # checksums already warned about in this process


# ----------------------------------------------------------------------------- Resolving
@dataclass(frozen=True)
class WeightsSource:
    """A resolved ``--weights`` value. ``path``/``sha256`` are None for ``none``."""

    kind: str  # "none" | "imagenet" | "file"
    path: Path | None = None
    sha256: str | None = None
    url: str | None = None
    official: bool | None = None  # imagenet: sha256 starts with the hash in torchvision's file name

    @property
    def is_npz(self) -> bool:
        return self.path is not None and self.path.suffix == ".npz"

    def describe(self) -> dict[str, Any]:
        """For run.json."""
        out: dict[str, Any] = {"source": self.kind}
        if self.path is not None:
            out.update(path=str(self.path), sha256=self.sha256)
        if self.url is not None:
            out.update(url=self.url, official_checksum=self.official)
        return out


def check_spec(spec: str, model: str, *, download: bool = True) -> None:
    """Flag-level checks for config.validate(): nothing is read or downloaded."""
    if spec == "none":
        return
    if spec == "imagenet":
        path, url = imagenet_location(model)
        if not download and not path.is_file():
            _download(model, path, url, allowed=False)
        return
    path = Path(spec).expanduser()
    if not path.is_file():
        raise BenchError(f"--weights {spec}: no such file. Pass none, imagenet, or the path of a torchvision "
                         f"state_dict (.pth) or a `bench weights convert` .npz")


def resolve(spec: str, model: str, *, download: bool) -> WeightsSource:
    """Find the weights file for ``spec`` (downloading ImageNet weights if allowed)."""
    check_spec(spec, model, download=download)
    if spec == "none":
        return WeightsSource("none")
    if spec == "imagenet":
        path, url = imagenet_location(model)
        if not path.is_file():
            _download(model, path, url, allowed=download)
        sha = file_sha256(path)
        official = sha.startswith(path.stem.rsplit("-", 1)[-1])
        if not official and sha not in _WARNED:
            _WARNED.add(sha)
            print(f"bench: warning: {path} does not have the checksum of torchvision's file "
                  f"(sha256 {sha[:12]}...); using it as torchvision would", file=sys.stderr)
        return WeightsSource("imagenet", path, sha, url, official)
    path = Path(spec).expanduser().resolve()
    return WeightsSource("file", path, file_sha256(path))


def _download(model: str, path: Path, url: str, *, allowed: bool) -> None:
    where = (f"download {url} and save it as {path} (the torchvision cache; set TORCH_HOME to move it), "
             f"or pass --weights PATH")
    if not allowed:
        raise BenchError(f"ImageNet weights for {model} are not in the torchvision cache and --no-download "
                         f"is set: {where}")
    torch_weights = torch_weights_module("downloading ImageNet weights")
    try:
        torch_weights.download(url, path)
    except OSError as exc:  # URLError, timeouts, DNS failures, a read-only cache
        raise BenchError(f"ImageNet weights for {model} are not in the torchvision cache and could not be "
                         f"downloaded ({type(exc).__name__}: {exc}): {where}") from None


def torch_weights_module(why: str):  # type: ignore[no-untyped-def]
    try:
        return importlib.import_module("backends.torch_impl.weights")
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] in ("torch", "torchvision"):
            raise BenchError(f"{why} needs torch, which is not installed: `pip install torch==2.14.1`, "
                             f"or convert the file with `bench weights convert` where torch is installed "
                             f"and pass the .npz") from None
        raise


# ----------------------------------------------------------------------------- Reading
def load_npz(path: Path) -> dict[str, np.ndarray]:
    """Canonical arrays from an .npz (float32); BenchError if it is not one."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: np.asarray(data[k], dtype=np.float32) for k in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise BenchError(f"cannot read {path} as an .npz of weights ({exc}): convert the torch file again "
                         f"with `bench weights convert`") from None


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` to exactly ``path``, atomically (schema.io.atomic_path), streamed to
    the file rather than built in memory first: a feature cache can be hundreds of MiB."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:  # a file object: np.savez appends no ".npz"
        np.savez(f, **arrays)


def read_arrays(source: WeightsSource, backend_name: str, *, quiet: bool = True) -> tuple[dict[str, np.ndarray], str]:
    """(canonical arrays, the file they were read from) for ``backend_name``."""
    assert source.path is not None and source.sha256 is not None
    if source.is_npz:
        return load_npz(source.path), str(source.path)
    if backend_name in TORCH_NATIVE_BACKENDS:
        return torch_weights_module(f"reading {source.path}").read_state_dict(source.path), str(source.path)
    npz = converted_path(source.sha256)
    if not npz.is_file():
        convert_in_subprocess(source.path, npz, quiet=quiet)
    return load_npz(npz), str(npz)


def convert_in_subprocess(src: Path, out: Path, *, quiet: bool = True) -> None:
    """``bench weights convert SRC --out OUT`` in a child process (which imports torch, so
    this one need not)."""
    if not quiet:
        print(f"converting {src} for Chainer -> {out} (once; cached by checksum)", file=sys.stderr, flush=True)
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "weights", "convert", str(src), "--out", str(out)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        message = lines[-1] if lines else f"exit code {proc.returncode}"
        raise BenchError(message.removeprefix("bench: error: "))


# ----------------------------------------------------------------------------- Fitting
def head_prefix(model: str) -> str:
    """The classifier's state prefix (``head_name`` in both backends' models)."""
    return "fc3" if model_info(model).family == "small_cnn" else "fc"


def _under(name: str, prefixes: tuple[str, ...] | list[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def guess_architecture(arrays: dict[str, np.ndarray]) -> str | None:
    """Which catalogue model a canonical state looks like (ResNets by block counts), or None."""
    if "conv3.weight" in arrays and "fc3.weight" in arrays:
        return "small_cnn"
    stages: dict[int, int] = {}
    for name in arrays:
        parts = name.split(".")
        if len(parts) > 2 and parts[0].startswith("layer") and parts[0][5:].isdigit() and parts[1].isdigit():
            stage = int(parts[0][5:])
            stages[stage] = max(stages.get(stage, 0), int(parts[1]) + 1)
    counts = tuple(stages[s] for s in sorted(stages))
    if len(counts) == 4:
        bottleneck = "layer1.0.conv3.weight" in arrays
        for depth, layers in IMAGENET_LAYERS.items():
            if layers == counts and (depth in BOTTLENECK_DEPTHS) == bottleneck:
                return f"resnet{depth}"
    if len(counts) == 3 and len(set(counts)) == 1:
        return f"resnet{6 * counts[0] + 2}"
    return None


def mismatches(expected: dict[str, tuple[int, ...]], arrays: dict[str, np.ndarray]) -> list[str]:
    problems = [f"{k}: {tuple(arrays[k].shape)} but the model has {tuple(shape)}"
                for k, shape in expected.items() if k in arrays and tuple(arrays[k].shape) != tuple(shape)]
    problems += [f"missing {k}" for k in expected if k not in arrays]
    problems += [f"unexpected {k}" for k in arrays if k not in expected]
    return problems


def fit(arrays: dict[str, np.ndarray], shapes: dict[str, tuple[int, ...]], *, model: str,
        no_skip: tuple[str, ...] = (), what: str = "the weights") -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The arrays to load over the canonical init, and what was (not) loaded, for run.json.

    The backbone must match exactly (names and shapes): BenchError naming the first
    mismatches otherwise. The head is loaded only if it matches too; ``no_skip`` blocks
    are never loaded (they keep the canonical init)."""
    head = head_prefix(model)
    body = {k: v for k, v in shapes.items() if not _under(k, [head])}
    problems = mismatches(body, {k: v for k, v in arrays.items() if not _under(k, [head])})
    if problems:
        guess = guess_architecture(arrays)
        looks = f" They look like {guess}'s weights." if guess and guess != model else ""
        more = f" (and {len(problems) - _SHOW} more)" if len(problems) > _SHOW else ""
        raise BenchError(f"{what} do not fit {model}: {'; '.join(problems[:_SHOW])}{more}.{looks} "
                         f"Pass weights of {model}, or the --model they were made for")
    model_head = {k: v for k, v in shapes.items() if _under(k, [head])}
    file_head = {k: tuple(v.shape) for k, v in arrays.items() if _under(k, [head])}
    head_fits = file_head == {k: tuple(v) for k, v in model_head.items()}
    load = {k: v for k, v in arrays.items() if k in shapes and not _under(k, list(no_skip))
            and (head_fits or not _under(k, [head]))}
    if head_fits:
        head_note = "loaded from the weights"
    else:
        theirs = ", ".join(f"{k} {s}" for k, s in file_head.items()) or "none"
        head_note = f"new, canonical init (the weights' head does not fit this run: {theirs})"
    info = {"head": head_note, "reinitialised": ([] if head_fits else [head]) + list(no_skip),
            "loaded_tensors": len(load)}
    return load, info


def apply(backend: Any, *, spec: str, model: str, no_skip: tuple[str, ...], download: bool,
          quiet: bool = True) -> dict[str, Any]:
    """Load ``--weights spec`` into a built ``backend`` that already holds the canonical
    init; returns run.json's ``model.weights`` entry."""
    source = resolve(spec, model, download=download)
    if source.kind == "none":
        return source.describe()
    arrays, read_from = read_arrays(source, backend.name, quiet=quiet)
    shapes = {k: tuple(v.shape) for k, v in backend.state_arrays().items()}
    label = f"--weights {spec}" if spec != "imagenet" else f"the ImageNet weights {source.path}"
    load, info = fit(arrays, shapes, model=model, no_skip=no_skip, what=label)
    backend.load_arrays(load, strict=False)
    out = source.describe()
    out.update(info, read_from=read_from)
    return out
