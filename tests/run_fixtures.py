"""Plausible run folders for the compare/report tests, written through the product's own
schema: settings from :class:`harness.config.RunConfig`, run.json from
:func:`harness.schema.build_meta` (the builder ``bench run`` uses), rows through the schema's
CSV appender. So the tests read the file the product writes, not a look-alike.

``write_synthetic_run(folder, backend="chainer", images_per_s=30)`` gives a run folder that
``bench compare`` reads exactly as it reads one from ``bench run``; only the figures are made
up. They follow the shapes real runs have (a slow first epoch, a saturating accuracy curve,
utilisation samples every ``sample_s`` seconds) and are seeded, so a test can recompute every
figure from the CSVs. :func:`write_round1_run` writes a folder as round 1 (schema 1) did.
"""
from __future__ import annotations

import json
import math
import random
import shlex
from pathlib import Path
from typing import Any

from harness.device import parse_device

from harness import schema as R
from harness.config import RunConfig
from harness.schema import (
    ADDED_IN_VERSION,
    COMPLETED,
    EPOCH_COLUMNS,
    EPOCH_OK,
    EPOCHS_CSV,
    RUN_JSON,
    UTIL_CSV,
    CsvAppender,
    util_columns,
    write_json,
)

# What the backends' configure() and harness/measure/allocator.py report, per framework.
THREAD_SETTINGS: dict[str, dict[str, Any]] = {
    "torch": {"device": "cpu", "torch_num_threads": 4, "torch_num_interop_threads": 4, "cudnn_benchmark": False},
    "chainer": {"device": "cpu", "blas": "openblas", "blas_threads": 4, "blas_threads_set_by": "default",
                "OMP_NUM_THREADS": "", "OPENBLAS_NUM_THREADS": ""},
}
MALLOC = {"allocator": "glibc 2.35", "tuned": True, "mmap_threshold_bytes": 256 << 20,
          "trim_threshold_bytes": 512 << 20}

MACHINES: dict[str, dict[str, Any]] = {
    "laptop": {
        "machine_id": "5f1c0a9e2b7d4c11", "hostname": "laptop", "os": "Linux-6.5.0-x86_64 (Ubuntu 22.04)",
        "cpu_model": "11th Gen Intel(R) Core(TM) i7-1165G7 @ 2.80GHz", "cpu_physical_cores": 4,
        "cpu_logical_cores": 8, "memory_total_gb": 15.5, "gpus": [], "python": "3.11.9",
        "numpy": "1.26.4", "blas": "openblas 0.3.23",
        "libraries": {"torch": "2.14.1", "torchvision": "0.29.1", "chainer": "7.8.1", "cupy": None},
    },
    "gpu-box": {
        "machine_id": "a10a10a10a10a10a", "hostname": "gpu-box", "os": "Linux-5.15.0-aws-x86_64 (Ubuntu 22.04)",
        "cpu_model": "AMD EPYC 7R32", "cpu_physical_cores": 4, "cpu_logical_cores": 8,
        "memory_total_gb": 31.0,
        "gpus": [{"index": 0, "name": "NVIDIA A10G", "driver": "535.104.05", "memory_total_mb": 23028}],
        "python": "3.11.9", "numpy": "1.26.4", "blas": "mkl 2023.1",
        "libraries": {"torch": "2.14.1", "torchvision": "0.29.1", "chainer": "7.8.1", "cupy": "13.3.0"},
    },
}


def write_synthetic_run(
    folder: Path,
    *,
    backend: str = "torch",
    model: str = "resnet20",
    dataset: str = "cifar10",
    device: str = "cpu",
    machine: str | dict[str, Any] = "laptop",
    epochs: int = 5,
    batch_size: int = 128,
    world_size: int = 1,
    nodes: int = 1,
    communicator: str | None = None,
    seed: int = 0,
    repeat_index: int = 0,
    images_per_s: float = 300.0,
    final_acc: float = 0.70,
    train_size: int = 5000,
    test_size: int = 1000,
    cpu_pct: float = 95.0,
    data_wait_frac: float = 0.005,
    status: str = COMPLETED,
    sample_s: float = 1.0,
    target_acc: float | None = None,
    started_at: str = "2025-03-01T10:00:00+00:00",
    precision: str = "fp32",
) -> Path:
    """Write one run folder (run.json, epochs.csv, util.csv) and return its path.

    ``status`` other than completed ends the run at its last epoch with that row status.
    ``world_size`` > 1 adds run.json's "distributed" section: ``nodes`` x world_size/nodes
    processes joined by ``communicator`` (gloo for torch, naive (MPI) for chainer by default).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(f"{backend}/{model}/{seed}/{repeat_index}/{folder.name}")
    mach = dict(MACHINES[machine]) if isinstance(machine, str) else dict(machine)
    n_cores = int(mach.get("cpu_logical_cores") or 1)
    on_gpu = parse_device(device).is_cuda
    n_gpus = len(mach.get("gpus") or []) if on_gpu else 0
    config = RunConfig(backends=[backend], model=model, dataset=dataset, device=device, epochs=epochs,
                       batch_size=batch_size, seed=seed, train_size=train_size, test_size=test_size,
                       target_acc=target_acc, distributed=world_size > 1, precision=precision).validate()
    settings = config.settings()  # what harness/train/runner.py start_run records
    settings.update(backend=backend, seed=seed)
    settings.pop("backends", None)
    command = ["bench", "run", "--backend", backend, "--model", model, "--dataset", dataset,
               "--device", device, "--epochs", str(epochs), "--batch-size", str(batch_size),
               "--seed", str(seed)]
    rows, samples = _epochs_and_samples(
        rng, folder.name, settings, world_size, images_per_s, final_acc, cpu_pct, data_wait_frac,
        n_cores, n_gpus, sample_s, status)
    time_to_target = None
    if target_acc is not None:
        time_to_target = next((r["elapsed_s"] for r in rows if r["test_acc"] >= target_acc), None)
    framework = dict(THREAD_SETTINGS[backend], device=device, malloc=MALLOC)
    meta = R.build_meta(
        run_id=folder.name, command=shlex.join(command), settings=settings, machine=mach,
        threads=R.threads_section(None, framework), bench_version="0.1.0", started_at=started_at,
        backend={"name": backend, "versions": {backend: mach["libraries"].get(backend) or "?"}},
        dataset={"name": dataset, "train_size": train_size, "test_size": test_size, "sha256": "0" * 64,
                 "num_classes": 10, "class_names": [str(i) for i in range(10)]},
        model={"name": model, "params": 272474, "trainable_params": 272474, "image_size": config.input_size,
               "train_flops_per_image": 41e6, "shortcut": config.shortcut, "no_skip": [], "head": config.head,
               "freeze": config.freeze, "bn_statistics": "trained",
               "init": f"harness canonical init (harness/init_weights.py), seed {seed}", "weights": config.weights,
               "weights_source": {}},
        seed=seed, group=config.identity_key(), repeat_index=repeat_index, world_size=world_size,
        target_acc=target_acc, time_to_target_s=time_to_target, epochs_completed=sum(r["status"] == EPOCH_OK for r in rows),
        resumes=[],
        **({"distributed": _distributed_section(world_size, batch_size, backend, nodes, communicator)}
           if world_size > 1 else {}),
    )
    meta.update(status=status, ended_at=started_at)  # what runner.finish sets
    write_json(folder / RUN_JSON, meta)
    epochs_csv = CsvAppender(folder / EPOCHS_CSV, list(EPOCH_COLUMNS), durable=False)
    for row in rows:
        epochs_csv.append(row)
    epochs_csv.close()
    util_csv = CsvAppender(folder / UTIL_CSV, util_columns(n_cores, n_gpus), durable=False)
    for sample in samples:
        util_csv.append(sample)
    util_csv.close()
    return folder


def _epochs_and_samples(rng, run_id, s, world_size, ips, final_acc, cpu_pct, wait_frac,
                        n_cores, n_gpus, sample_s, status):
    rows: list[dict[str, Any]] = []
    samples: list[dict[str, Any]] = []
    elapsed = 2.0  # setup before the first epoch
    eval_ips = ips * 3.2
    for epoch in range(1, s["epochs"] + 1):
        warm = 1.6 if epoch == 1 else 1.0
        train_ips = ips / warm * rng.uniform(0.96, 1.04)
        train_t = s["train_size"] / train_ips
        eval_t = s["test_size"] / (eval_ips * rng.uniform(0.95, 1.05))
        acc = final_acc * (1 - math.exp(-1.3 * epoch)) + rng.uniform(-0.01, 0.01)
        last = epoch == s["epochs"] and status != COMPLETED
        row = {
            "run_id": run_id, "backend": s["backend"], "model": s["model"], "dataset": s["dataset"],
            "device": s["device"], "batch_size": s["batch_size"], "world_size": world_size,
            "epoch": epoch, "train_loss": 2.3 * (1 - acc) + 0.1, "train_acc": acc * 1.02,
            "test_loss": 2.3 * (1 - acc) + 0.2, "test_acc": acc, "test_top5_acc": min(1.0, acc + 0.25),
            "lr": s["lr"] * 0.5 * (1 + math.cos(math.pi * (epoch - 1) / s["epochs"])),
            "train_time_s": train_t, "eval_time_s": eval_t, "epoch_time_s": train_t + eval_t + 0.05,
            "data_wait_s": train_t * wait_frac * rng.uniform(0.8, 1.2),
            "train_images_per_s": train_ips, "eval_images_per_s": s["test_size"] / eval_t,
            "train_gflops_per_s": 3 * 41e6 * train_ips / 1e9,
            "cpu_util_mean_pct": None, "cpu_util_max_pct": None,
            "process_cpu_pct": cpu_pct / 100 * n_cores * 100 * 0.97,
            "rss_peak_mb": 900.0 + 40 * min(epoch, 2) + epoch % 2, "gpu_util_mean_pct": None, "gpu_util_max_pct": None,
            "gpu_mem_peak_mb": None, "status": (status if last else EPOCH_OK),
        }
        start = elapsed
        elapsed += row["epoch_time_s"]
        row["elapsed_s"] = elapsed
        epoch_samples = _samples(rng, start, row, cpu_pct, n_cores, n_gpus, sample_s)
        cpu = [x["cpu_pct"] for x in epoch_samples] or [cpu_pct]
        row["cpu_util_mean_pct"], row["cpu_util_max_pct"] = sum(cpu) / len(cpu), max(cpu)
        if n_gpus:
            gpu = [x["gpu0_util_pct"] for x in epoch_samples] or [0.0]
            row["gpu_util_mean_pct"], row["gpu_util_max_pct"] = sum(gpu) / len(gpu), max(gpu)
            row["gpu_mem_peak_mb"] = max([x["gpu0_mem_mb"] for x in epoch_samples] or [0.0])
        samples += epoch_samples
        rows.append(row)
    return rows, samples


def _samples(rng, start, row, cpu_pct, n_cores, n_gpus, sample_s):
    out = []
    t = start + sample_s
    train_end = start + row["train_time_s"]
    while t <= row["elapsed_s"]:
        phase = "train" if t <= train_end else "eval"
        level = cpu_pct if phase == "train" else cpu_pct * 0.6
        cores = [max(0.0, min(100.0, level + rng.gauss(0, 6) - (25 if i == 0 else 0))) for i in range(n_cores)]
        sample = {"timestamp": 1.74e9 + t, "elapsed_s": t, "rank": 0, "epoch": row["epoch"],
                  "phase": phase, "cpu_pct": sum(cores) / n_cores,
                  "process_cpu_pct": sum(cores) * 0.97, "rss_mb": 850.0 + 40 * min(row["epoch"], 2)}
        sample.update({f"cpu{i}_pct": c for i, c in enumerate(cores)})
        for g in range(n_gpus):
            busy = 88 if phase == "train" else 55
            sample[f"gpu{g}_util_pct"] = max(0.0, min(100.0, busy + rng.gauss(0, 4)))
            sample[f"gpu{g}_mem_mb"] = 2900.0 + 30 * row["epoch"]
            sample[f"gpu{g}_power_w"] = 140 + rng.gauss(0, 5)
        out.append(sample)
        t += sample_s
    return out


def _distributed_section(world_size: int, batch_size: int, backend: str = "torch", nodes: int = 1,
                         communicator: str | None = None) -> R.DistributedSection:
    """The keys harness.distributed.Dist.run_meta writes: ``nodes`` hosts with world_size /
    nodes ranks each, joined by ``communicator`` (default gloo for torch, naive (MPI) for chainer)."""
    from harness.distributed import topology

    per_node = world_size // nodes
    hosts = ["laptop"] + [f"laptop-{n}" for n in range(1, nodes)]
    name = communicator or ("gloo" if backend == "torch" else "naive")
    return {"launcher": "torchrun" if backend == "torch" else "mpi", "communicator": name,
            "transport": topology.transport(name), "world_size": world_size, "nodes": nodes,
            "processes_per_node": per_node, "global_batch_size": batch_size,
            "per_rank_batch_size": batch_size // world_size, "hosts": hosts,
            "ranks": [{"rank": r, "hostname": hosts[r // per_node], "local_rank": r % per_node,
                       "node_rank": r // per_node} for r in range(world_size)],
            "per_epoch": []}


def write_round1_run(folder: Path, **kw: Any) -> Path:
    """A run folder as round 1 wrote it: schema version 1, epochs.csv without the columns added
    since (:data:`harness.schema.ADDED_IN_VERSION`). Round 1 wrote run.json by hand with the
    same sections as :func:`write_synthetic_run`'s, which the round-1 runner's code shows."""
    folder = write_synthetic_run(folder, **kw)
    meta = json.loads((folder / RUN_JSON).read_text())
    write_json(folder / RUN_JSON, meta | {"schema_version": 1})
    rows = R.read_epochs_rows(folder / EPOCHS_CSV)
    v1 = [c for c in EPOCH_COLUMNS if ADDED_IN_VERSION.get(c, 1) <= 1]
    (folder / EPOCHS_CSV).unlink()
    writer = CsvAppender(folder / EPOCHS_CSV, v1, durable=False)
    for row in rows:
        writer.append({k: v for k, v in row.items() if k in v1})
    writer.close()
    return folder
