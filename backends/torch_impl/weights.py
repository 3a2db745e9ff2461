"""torch weight files -> canonical numpy arrays, and torchvision's download.

A torchvision ``state_dict`` already uses the canonical names (``layer1.0.conv1.weight``),
so reading one is: ``torch.load(weights_only=True)`` (a weights file is data, never code
to unpickle), drop ``num_batches_tracked``, strip the ``module.`` prefix that DataParallel
and DDP add, and make every tensor a contiguous float32 numpy array.

Mirrors ``backends/chainer_impl/weights.py``, which maps the same names onto Chainer links.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from harness.errors import BenchError

IGNORED_SUFFIXES = (".num_batches_tracked",)
# Where trainers nest the state_dict inside a checkpoint (bench's own .pt uses "model").
NESTED_KEYS = ("state_dict", "model", "model_state_dict")


def _tensors(obj: Any) -> Mapping[str, torch.Tensor] | None:
    if isinstance(obj, Mapping) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj
    return None


def canonical_arrays(state: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """A torch ``state_dict`` as canonical float32 numpy arrays."""
    out: dict[str, np.ndarray] = {}
    for name, tensor in state.items():
        if name.endswith(IGNORED_SUFFIXES):
            continue
        name = name.removeprefix("module.")
        if not tensor.is_floating_point():
            raise BenchError(f"{name} holds {tensor.dtype} values, not floating point: this is not a model "
                             "state_dict (pass the weights file itself)")
        out[name] = tensor.detach().to("cpu", torch.float32).contiguous().numpy().copy()
    if not out:
        raise BenchError("the state_dict holds no weights: pass a torchvision model's weights file")
    return out


def read_state_dict(path: Path) -> dict[str, np.ndarray]:
    """Canonical arrays from a torchvision ``state_dict`` file (or a checkpoint nesting one
    under ``state_dict``/``model``). BenchError if the file is not one."""
    path = Path(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise BenchError(f"weights file {path} does not exist: check the path") from None
    except Exception as exc:  # torch raises many types for a truncated or foreign file
        first = (str(exc).splitlines() or [""])[0]
        raise BenchError(f"cannot read {path} as torch weights ({type(exc).__name__}: {first}): the file is "
                         "damaged or not a state_dict saved with torch.save; download it again") from None
    state = _tensors(obj)
    if state is None and isinstance(obj, Mapping):
        state = next((s for s in (_tensors(obj.get(k)) for k in NESTED_KEYS) if s is not None), None)
    if state is None:
        raise BenchError(f"{path} holds a {type(obj).__name__}, not a state_dict of tensors: save "
                         "model.state_dict() with torch.save and pass that file")
    return canonical_arrays(state)


def download(url: str, dest: Path) -> None:
    """Download ``url`` to exactly ``dest`` with torchvision's machinery:
    ``torch.hub.load_state_dict_from_url`` writes into the torch hub cache folder and checks
    the sha256 prefix in the file name (``resnet50-0676ba61.pth``)."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.load_state_dict_from_url(url, model_dir=str(dest.parent), file_name=dest.name,
                                           map_location="cpu", check_hash=True, weights_only=True,
                                           progress=True)
    except RuntimeError as exc:  # "invalid hash value": a corrupted or intercepted download
        dest.unlink(missing_ok=True)
        raise BenchError(f"the download of {url} is damaged ({exc}): try again") from None
