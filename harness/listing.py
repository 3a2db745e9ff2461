"""`bench list`: what bench can run, and what of it is usable on this machine (and why not).

Parameter counts come from building each model in each installed backend, not from a
table, so a backend whose model drifted from the other's shows it here.
"""
from __future__ import annotations

from typing import Any

from harness.backend import InputSpec, ModelSpec, OptimSpec, REGISTRY, backend_availability, create_backend
from harness.catalogue import MODELS

DATASETS = {
    "synthetic": "CIFAR-shaped 32x32 learnable shapes, generated from a seed (no download)",
    "cifar10": "CIFAR-10 python archive or cifar-10-batches-py/ under --data-dir (downloaded if absent)",
    "imagefolder:PATH": "PATH/train, PATH/valid, PATH/test with one folder per class (e.g. dog breeds)",
}


def _param_counts(backend_name: str) -> dict[str, int | str]:
    out: dict[str, int | str] = {}
    try:
        backend = create_backend(backend_name)
        backend.configure(device="cpu", threads=None, seed=0)
    except Exception as exc:
        return {name: f"error: {exc}" for name in MODELS}
    for name, info in MODELS.items():
        classes = 1000 if info.family == "resnet_imagenet" else 10
        try:
            backend.build(ModelSpec(name=name, num_classes=classes, image_size=info.image_size),
                          OptimSpec(name="sgd", lr=0.1), InputSpec(mean=info.mean, std=info.std))
            out[name] = backend.param_count()[0]
        except Exception as exc:  # reported per model, `bench list` itself must not fail
            out[name] = f"error: {type(exc).__name__}: {exc}"
    return out


def describe(*, param_counts: bool = True) -> dict[str, Any]:
    backends: dict[str, Any] = {}
    for name in REGISTRY:
        ok, detail = backend_availability(name)
        entry: dict[str, Any] = {"installed": ok, "version" if ok else "reason": detail}
        if ok:
            backend = create_backend(name)
            entry["devices"] = [{"name": d.name, "usable": d.usable, "detail": d.detail} for d in backend.devices()]
            entry["capabilities"] = {"training": backend.supports_training, "onnx": backend.supports_onnx,
                                     "distributed": backend.supports_distributed}
            if param_counts and backend.supports_training:  # onnxruntime builds no models
                entry["params"] = _param_counts(name)
        backends[name] = entry
    models = {name: {"family": info.family, "image_size": info.image_size, "description": info.description,
                     "params": {b: e.get("params", {}).get(name) for b, e in backends.items() if e.get("params")}}
              for name, info in MODELS.items()}
    return {"models": models, "backends": backends, "datasets": DATASETS}


def format_listing(info: dict[str, Any]) -> str:
    lines = ["Backends:"]
    width = max(len(n) for n in info["backends"])
    for name, b in info["backends"].items():
        if not b["installed"]:
            lines.append(f"  {name:{width}s}  not usable: {b['reason']}")
            continue
        only = "" if b["capabilities"]["training"] else "  (inference only: bench infer)"
        lines.append(f"  {name:{width}s}  {b['version']}{only}")
        for d in b["devices"]:
            state = "usable" if d["usable"] else "not usable"
            lines.append(f"      {d['name']:8s} {state}: {d['detail']}")
    names = [n for n, b in info["backends"].items() if b.get("params")]
    lines += ["", "Models (parameters with 10 classes for CIFAR models, 1000 for ImageNet ones):"]
    header = f"  {'model':10s} {'input':>5s}  " + "  ".join(f"{n:>12s}" for n in names) + "  description"
    lines.append(header)
    for name, m in info["models"].items():
        counts = "  ".join(
            f"{m['params'].get(n):>12,}" if isinstance(m["params"].get(n), int) else f"{'?':>12s}" for n in names)
        lines.append(f"  {name:10s} {m['image_size']:>5d}  {counts}  {m['description']}")
    lines += ["", "Datasets:"] + [f"  {k:17s} {v}" for k, v in info["datasets"].items()]
    return "\n".join(lines)
