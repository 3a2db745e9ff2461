"""Chainer parameters <-> canonical (torchvision) names, and canonical weight files.

Chainer names a parameter by its link path and its own attribute names
(``/layer1/0/conv1/W``, ``/layer1/0/bn1/avg_mean``); the harness and the torch backend use
torchvision's ``state_dict`` names (``layer1.0.conv1.weight``, ``layer1.0.bn1.running_mean``).
Layouts already agree (OIHW convolutions, (out, in) linears), so the mapping is by name only:

    Convolution2D, Linear   W -> weight, b -> bias
    BatchNormalization      gamma -> weight, beta -> bias,
                            avg_mean -> running_mean, avg_var -> running_var
                            (Chainer's ``N`` counter, like torch's ``num_batches_tracked``,
                            is not part of the canonical state: neither framework's
                            BatchNorm reads it with a fixed momentum.)

A link may carry ``canonical_child_names`` to rename its children where the two frameworks
number them differently (see ``models.common.MLPHead``). The state is listed in torch's order
(children in registration order, weight before bias before running statistics).
"""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from ._compat import chainer
import chainer.links as L

from harness.errors import BenchError

# Per link type, Chainer attribute -> canonical leaf, in torch's state_dict order.
LEAVES: dict[type, dict[str, str]] = {
    L.Convolution2D: {"W": "weight", "b": "bias"},
    L.Linear: {"W": "weight", "b": "bias"},
    L.BatchNormalization: {"gamma": "weight", "beta": "bias", "avg_mean": "running_mean", "avg_var": "running_var"},
}
# torchvision state_dicts carry these; they are not part of the canonical state.
IGNORED_SUFFIXES = (".num_batches_tracked",)


def _leaf_map(link: chainer.Link) -> dict[str, str]:
    for link_type, leaves in LEAVES.items():
        if isinstance(link, link_type):
            return leaves
    return {}


def _children(link: chainer.Link) -> list[tuple[str, chainer.Link]]:
    """(Chainer name, child) in registration order (a Chain keeps its children in a set,
    but their attributes sit in ``__dict__`` in the order they were assigned)."""
    if isinstance(link, chainer.ChainList):
        return [(str(i), child) for i, child in enumerate(link)]
    if isinstance(link, chainer.Chain):
        return [(name, value) for name, value in vars(link).items() if name in link._children]
    return []


def canonical_entries(model: chainer.Link) -> dict[str, tuple[chainer.Link, str, str]]:
    """canonical name -> (link, Chainer attribute, Chainer path) for every parameter and
    BatchNorm running statistic of ``model``."""
    out: dict[str, tuple[chainer.Link, str, str]] = {}

    def walk(link: chainer.Link, canonical: str, path: str) -> None:
        for attr, leaf in _leaf_map(link).items():
            if getattr(link, attr, None) is not None:
                out[f"{canonical}{leaf}"] = (link, attr, f"{path}/{attr}")
        renames = getattr(link, "canonical_child_names", {})
        for name, child in _children(link):
            walk(child, f"{canonical}{renames.get(name, name)}.", f"{path}/{name}")

    walk(model, "", "")
    return out


def chainer_to_canonical(model: chainer.Link) -> dict[str, str]:
    """``{"/layer1/0/conv1/W": "layer1.0.conv1.weight", ...}``."""
    return {path: name for name, (_, _, path) in canonical_entries(model).items()}


def _array(link: chainer.Link, attr: str):
    value = getattr(link, attr)
    return value.array if isinstance(value, chainer.Variable) else value


def state_arrays(model: chainer.Link) -> dict[str, np.ndarray]:
    """The canonical state as float32 numpy copies (from the GPU if the model is there)."""
    return {name: np.array(chainer.backend.CpuDevice().send(_array(link, attr)), dtype=np.float32)
            for name, (link, attr, _) in canonical_entries(model).items()}


def state_shapes(model: chainer.Link) -> dict[str, tuple[int, ...]]:
    return {name: tuple(_array(link, attr).shape) for name, (link, attr, _) in canonical_entries(model).items()}


def mismatches(expected: dict[str, tuple[int, ...]], arrays: dict[str, np.ndarray], *,
               strict: bool = True) -> list[str]:
    """Human-readable differences between the names/shapes a model expects and ``arrays``."""
    problems = [f"{name}: {tuple(np.shape(arrays[name]))} but the model has {tuple(expected[name])}"
                for name in expected if name in arrays and tuple(np.shape(arrays[name])) != tuple(expected[name])]
    if strict:
        problems += [f"missing {name}" for name in expected if name not in arrays]
        problems += [f"unexpected {name}" for name in arrays
                     if name not in expected and not name.endswith(IGNORED_SUFFIXES)]
    return problems


def check_fit(model: chainer.Link, arrays: dict[str, np.ndarray], *, strict: bool = True,
              what: str = "these weights", describe: str = "the model") -> None:
    """BenchError naming the first differences if ``arrays`` do not fit ``model``."""
    problems = mismatches(state_shapes(model), arrays, strict=strict)
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise BenchError(f"{what} are for a different architecture than {describe}: {'; '.join(problems[:5])}{more}. "
                         "Use the --model/--shortcut/--head/--classes they were made with")


def load_arrays(model: chainer.Link, arrays: dict[str, np.ndarray], *, strict: bool = True,
                what: str = "these weights", describe: str = "the model") -> None:
    """Copy canonical ``arrays`` into ``model`` in place (on its device). With ``strict`` every
    name must match both ways; shapes must always match. Nothing is changed on error."""
    check_fit(model, arrays, strict=strict, what=what, describe=describe)
    for name, (link, attr, _) in canonical_entries(model).items():
        if name in arrays:
            target = _array(link, attr)
            value = np.asarray(arrays[name], dtype=target.dtype)
            target[...] = chainer.backend.get_array_module(target).asarray(value)


def convert_torchvision_state_dict(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A torchvision ``state_dict`` (already turned into numpy by the torch side) as canonical
    arrays: drops ``num_batches_tracked``, strips the ``module.`` prefix DataParallel/DDP add,
    makes every array contiguous float32. BenchError if something is not a float tensor."""
    out: dict[str, np.ndarray] = {}
    for name, value in arrays.items():
        if name.endswith(IGNORED_SUFFIXES):
            continue
        name = name[len("module."):] if name.startswith("module.") else name
        value = np.asarray(value)
        if value.dtype.kind != "f":
            raise BenchError(f"{name} holds {value.dtype} values, not floating point: "
                             "this is not a model state_dict (pass the weights file itself)")
        out[name] = np.ascontiguousarray(value, dtype=np.float32)
    if not out:
        raise BenchError("the state_dict holds no weights: pass a torchvision model's weights file")
    return out


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Canonical arrays to an uncompressed .npz, exactly at ``path`` (no ``.npz`` appended)."""
    with open(path, "wb") as f:
        np.savez(f, **{name: np.asarray(value) for name, value in arrays.items()})


def load_npz(path: Path) -> dict[str, np.ndarray]:
    """Canonical arrays from an .npz written by :func:`save_npz`; BenchError if unreadable."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except FileNotFoundError:
        raise BenchError(f"weights file {path} does not exist: check the path") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise BenchError(f"cannot read weights file {path} ({exc}): it is not an .npz written by "
                         "`bench weights convert`; convert the weights again") from None


# ----------------------------------------------------------------------------- Validation
# (bench weights convert: a torch file's canonical arrays checked against the Chainer model
# they will be loaded into, before anything is written.)
def spec_for_state(arrays: dict[str, np.ndarray], model: str):
    """The ModelSpec a canonical state of ``model`` was saved from: classes, head and (for
    small_cnn) image size read off the head's shapes; CIFAR shortcut from ``downsample``."""
    from harness.backend import ModelSpec
    from harness.catalogue import model_info

    info = model_info(model)
    head = "mlp" if "fc.0.weight" in arrays else "linear"
    last = {"small_cnn": "fc3.weight"}.get(info.family, "fc.3.weight" if head == "mlp" else "fc.weight")
    if last not in arrays:
        raise BenchError(f"these weights have no {last}: they are not a {model} state_dict")
    image_size = info.image_size
    if info.family == "small_cnn" and "fc1.weight" in arrays:
        image_size = 8 * int(round((arrays["fc1.weight"].shape[1] / 64) ** 0.5))
    shortcut = "B" if any(".downsample." in name for name in arrays) else "A"
    return ModelSpec(model, int(arrays[last].shape[0]), image_size, shortcut=shortcut, head=head)


def check_state(arrays: dict[str, np.ndarray], model: str, *, what: str = "these weights") -> None:
    """BenchError naming the first mismatches unless ``arrays`` load into Chainer's ``model``
    (built with the classes/head the arrays imply) name for name and shape for shape."""
    from .models import build_model

    spec = spec_for_state(arrays, model)
    check_fit(build_model(spec), arrays, strict=True, what=what,
              describe=f"{model} ({spec.num_classes} classes, head {spec.head})")
