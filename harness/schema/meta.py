"""run.json, typed: its sections, the one builder every writer uses, and its validation.

run.json used to be assembled by hand in three places (a training run, an inference run, the
distributed section), so the keys drifted (a test fixture wrote ``flops_per_image`` where the
runner writes ``train_flops_per_image``). Now :func:`build_meta` makes the header every
run.json shares (schema version, id, status, times, command, machine, threads) and takes the
kind's sections as typed dicts; :func:`validate_meta` is what the readers check, for folders
from this bench and from round 1 (schema 1) alike. Sections are TypedDicts rather than
dataclasses because run.json is read back as plain JSON and passed around as a dict.
"""
from __future__ import annotations

import os
from datetime import datetime, timezone
from typing import Any, Mapping, TypedDict

from harness.schema.columns import KIND_INFER, RUN_STATUSES, RUNNING, SCHEMA_VERSION

# The thread variables recorded in every run.json (and by `bench sysinfo`): they decide CPU figures.
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")


class ThreadsSection(TypedDict):
    requested: int | None  # --threads, None when unset
    env: dict[str, str | None]  # THREAD_ENV_VARS as found
    framework: dict[str, Any]  # what the backend's configure() reports


class BackendSection(TypedDict, total=False):
    name: str
    versions: dict[str, str]
    session: Any  # inference on ONNX Runtime: its session options


class ModelSection(TypedDict, total=False):
    name: str
    params: int
    trainable_params: int
    image_size: int
    num_classes: int
    train_flops_per_image: float  # forward FLOPs of one image; training counts 3x
    shortcut: str
    no_skip: list[str]
    head: str
    freeze: str
    bn_statistics: str
    init: str
    weights: str | None
    weights_source: Any


class DistributedSection(TypedDict, total=False):
    launcher: str  # torchrun | mpi | slurm (srun started every rank)
    communicator: str
    transport: str | None  # gloo | NCCL | MPI (harness/distributed/topology.py)
    world_size: int
    nodes: int  # machines (node ranks) the ranks ran on
    processes_per_node: int | list[int]  # a list, by node rank, when nodes differ
    global_batch_size: int
    per_rank_batch_size: int
    hosts: list[str]
    ranks: list[dict[str, Any]]  # rank, local_rank, node_rank, hostname, pid, device, threads
    data: str
    evaluation: str
    batchnorm: str
    row: dict[str, str]
    per_epoch: list[dict[str, Any]]
    final_state_sha256: list[str]
    ranks_identical: bool


class PreprocessSection(TypedDict):
    """How images became inputs (harness/data/preprocess.py), in torchvision's terms."""
    train: str  # "RandomRotation(30) + RandomResizedCrop(224) + RandomHorizontalFlip()"
    eval: str  # "Resize(256) + CenterCrop(224)"
    mean: list[float]  # the normalisation every backend applied: (u8 / 255 - mean) / std
    std: list[float]


class EvaluationSection(TypedDict, total=False):
    """Which split was evaluated when (harness/data/dataset.py ``evaluation_plan``)."""
    per_epoch: dict[str, Any]  # {"split": "valid" | "test", "images": n}
    final: dict[str, Any] | None  # {"split": "test", "images", "epoch", "loss", "acc", "top5_acc", "eval_time_s"}
    note: str  # without a validation split: every epoch was evaluated on test


class BestSection(TypedDict):
    """The checkpoint kept as ``best`` (harness/train/keep.py): the epoch whose ``metric`` was
    the lowest (a loss) or highest (an accuracy) so far."""
    metric: str  # an epochs.csv column: valid_loss, test_acc, ...
    epoch: int
    value: float
    file: str  # checkpoint-best.pt / .npz, in the run folder


class RunMeta(TypedDict, total=False):
    """A training run's run.json (``kind`` absent) or an inference run's (``kind`` "infer")."""

    schema_version: int
    kind: str
    run_id: str
    bench_version: str
    status: str
    started_at: str
    ended_at: str | None
    command: str
    settings: dict[str, Any]
    machine: dict[str, Any]
    threads: ThreadsSection
    backend: BackendSection
    model: ModelSection
    dataset: dict[str, Any]
    error: str | None
    # training runs
    seed: int
    group: str
    repeat_index: int
    world_size: int
    execution: dict[str, Any]  # how the arithmetic ran: --precision's dtypes/scaler, --compile's mode and cache
    target_acc: float | None
    time_to_target_s: float | None
    target_reached_epoch: int
    epochs_completed: int
    resumes: list[dict[str, Any]]
    best: BestSection | None  # --best-metric's checkpoint, None until an epoch has the metric
    snapshots: list[dict[str, Any]]  # --snapshot-every K: [{"epoch": 5, "file": "checkpoint-e5.pt"}, ...]
    distributed: DistributedSection
    # the energy meters read (harness/measure/energy.py EnergyMeter.describe): sources, domains with
    # their method (counter/sampled), idle baseline, or ``available: false`` and why
    energy: dict[str, Any] | None
    sampling_errors: dict[str, str]  # source -> its first error while sampling (harness/measure/monitor.py)
    # started from an experiment or by a suite's runner (harness/experiments/, EXPERIMENTS.md);
    # a run started by hand has experiment "adhoc" version 0 and no startup_s
    key: str  # the comparison key: same experiment + settings -> same key on any machine
    experiment: dict[str, Any]  # name, version, kind, file, sha256, cell, suite, repeat, attempt
    device_requested: str  # as asked (auto); settings.device is the device used
    startup_s: float | None  # parent's spawn -> framework imported (process start + imports)
    repeats: dict[str, Any]  # --repeat auto: repeats taken, final RSD, why they stopped
    preprocess: PreprocessSection
    evaluation: EvaluationSection
    deterministic: bool  # --deterministic (the backend's own settings are in threads.framework)
    # inference runs
    source: dict[str, Any]
    timing: dict[str, Any]
    accuracy: dict[str, Any] | None
    prediction: dict[str, Any] | None


def now_iso() -> str:
    """The time stamps in run.json: UTC, seconds, ISO 8601."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def threads_section(requested: int | None, framework: Mapping[str, Any]) -> ThreadsSection:
    return {"requested": requested, "env": {k: os.environ.get(k) for k in THREAD_ENV_VARS},
            "framework": dict(framework)}


def build_meta(*, run_id: str, command: str, settings: Mapping[str, Any], machine: Mapping[str, Any],
               threads: ThreadsSection, backend: BackendSection, model: ModelSection,
               dataset: Mapping[str, Any], kind: str | None = None, bench_version: str | None = None,
               started_at: str | None = None, **sections: Any) -> RunMeta:
    """The run.json of a new run, status "running": the shared header plus ``sections``
    (a training run's seed, group, ...; an inference run's source, timing, ...).
    Unknown section names are refused, so a key cannot drift from :class:`RunMeta`."""
    if bench_version is None:
        from harness import __version__ as bench_version
    unknown = set(sections) - set(RunMeta.__annotations__)
    if unknown:
        raise TypeError(f"run.json has no section {sorted(unknown)}: add it to harness/schema/meta.py RunMeta")
    meta: RunMeta = {"schema_version": SCHEMA_VERSION}
    if kind is not None:
        meta["kind"] = kind
    meta.update({
        "run_id": run_id, "bench_version": str(bench_version), "status": RUNNING,
        "started_at": started_at or now_iso(), "ended_at": None, "command": command,
        "settings": dict(settings), "model": model, "dataset": dict(dataset), "machine": dict(machine),
        "threads": threads, "backend": backend,
    })
    meta.update(sections)  # type: ignore[typeddict-item]
    meta.setdefault("error", None)
    return meta


# JSON type of each top-level key a reader relies on: checked when present (round-1 folders
# and minimal hand-made ones may lack sections; the reports show what is there).
_JSON_NAMES = {dict: "an object", list: "a list", int: "an integer", str: "a string"}
_TYPES: dict[str, type] = {
    "schema_version": int, "kind": str, "run_id": str, "status": str, "command": str,
    "settings": dict, "machine": dict, "threads": dict, "backend": dict, "model": dict, "dataset": dict,
    "distributed": dict, "energy": dict, "source": dict, "resumes": list, "best": dict, "snapshots": list,
    "epochs_completed": int, "repeat_index": int,
    "world_size": int, "key": str, "experiment": dict, "preprocess": dict, "evaluation": dict,
}


def validate_meta(meta: Any) -> str | None:
    """Why ``meta`` is not a run.json this bench can read, or None. The version is checked
    by the reader, which words that error with the fix."""
    if not isinstance(meta, dict):
        return "it does not hold a JSON object"
    for key, kind in _TYPES.items():
        value = meta.get(key)
        if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
            return f"{key!r} is not {_JSON_NAMES[kind]}"
    if meta.get("status") is not None and meta["status"] not in RUN_STATUSES:
        return f"status {meta['status']!r} is not one of {', '.join(RUN_STATUSES)}"
    if meta.get("kind") not in (None, "train", KIND_INFER):
        return f"kind {meta['kind']!r} is not train or {KIND_INFER}"
    return None
