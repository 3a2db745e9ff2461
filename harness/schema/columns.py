"""What a run folder holds: file names, CSV columns with their units, the schema version
and the status values. The one place a new column goes.

A run folder is the interface between machines: a student's laptop and a TA's A10G each
write one, swap them, and ``bench compare``/``bench report`` read both. Adding a column:
add it to :data:`EPOCH_COLUMNS` (or :data:`INFER_COLUMNS`) with its description and unit,
bump :data:`SCHEMA_VERSION`, and record it in :data:`ADDED_IN_VERSION` so folders written
before it still read (the column reads as empty there).

Layout of ``results/<run_id>/``:
  run.json          metadata (harness/schema/meta.py): settings, seed, machine, versions,
                    dataset identity, status
  epochs.csv        one row per epoch (EPOCH_COLUMNS), appended and fsync'd per epoch
  util.csv          utilisation samples (UTIL_BASE_COLUMNS + per-core/per-GPU columns)
  checkpoint.*      latest model + optimiser state (framework-native), replaced atomically
  checkpoint.json   which epoch the checkpoint holds, and that epoch's row
An inference run (`bench infer`) has run.json with ``"kind": "infer"`` and infer.csv.

Units are in the column names (_s seconds, _pct percent, _mb MiB, _per_s per second).
A figure that does not apply (no GPU) is left empty, never written as 0.
"""
from __future__ import annotations

SCHEMA_VERSION = 5
READABLE_SCHEMA_VERSIONS = (1, 2, 3, 4, 5)
# Columns added after version 1: folders of older versions lack them and read as empty.
# 4: validation splits (issue 15): valid_* every epoch, test_* then only on the last row.
# 5: --precision and --compile (issue 16): precision, compile, compile_s.
ADDED_IN_VERSION: dict[str, int] = {"harness_s": 2, "energy_j": 3, "train_energy_j": 3, "images_per_j": 3,
                                    "valid_loss": 4, "valid_acc": 4, "valid_top5_acc": 4,
                                    "precision": 5, "compile": 5, "compile_s": 5}

RUN_JSON = "run.json"
EPOCHS_CSV = "epochs.csv"
UTIL_CSV = "util.csv"
CHECKPOINT_JSON = "checkpoint.json"
# Beside the run folders of a published reference set (results/reference/, written by
# harness/report/reference.py): comparisons read those runs as their own machine.
REFERENCE_JSON = "reference.json"

# Run status values (run.json "status" and the epochs.csv "status" of the last row).
RUNNING, COMPLETED, INTERRUPTED, DIVERGED, FAILED = "running", "completed", "interrupted", "diverged", "failed"
RUN_STATUSES = (RUNNING, COMPLETED, INTERRUPTED, DIVERGED, FAILED)
# Row status of an ordinary finished epoch.
EPOCH_OK = "ok"

# name -> description (with unit). Order is the CSV column order.
EPOCH_COLUMNS: dict[str, str] = {
    "run_id": "the run folder's name",
    "backend": "framework backend (torch, chainer)",
    "model": "model name (resnet20, resnet50, ...)",
    "dataset": "dataset name (cifar10, synthetic, imagefolder:...)",
    "device": "device string (cpu, cuda:0)",
    "batch_size": "global training batch size (images)",
    "world_size": "number of data-parallel processes (1 when not distributed)",
    "precision": "--precision: fp32, tf32, bf16-mixed, fp16-mixed or bf16 (harness/precision.py)",
    "compile": "--compile: none (eager) or the torch.compile mode",
    "epoch": "1-based epoch number",
    "train_loss": "mean training cross-entropy over the epoch (nats)",
    "train_acc": "training top-1 accuracy over the epoch, augmented images (fraction 0-1)",
    "valid_loss": "mean validation cross-entropy (nats; empty without a validation split)",
    "valid_acc": "validation top-1 accuracy (fraction 0-1; empty without a validation split)",
    "valid_top5_acc": "validation top-5 accuracy (fraction 0-1; empty without a validation split)",
    "test_loss": "mean test cross-entropy (nats); with a validation split only on the last row (test is "
                 "evaluated once, after the last epoch)",
    "test_acc": "test top-1 accuracy (fraction 0-1); with a validation split only on the last row",
    "test_top5_acc": "test top-5 accuracy (fraction 0-1); with a validation split only on the last row",
    "lr": "learning rate used in this epoch",
    "epoch_time_s": "wall time of the epoch: training + evaluation + bookkeeping (s)",
    "train_time_s": "wall time of the training pass (s)",
    "eval_time_s": "wall time of the per-epoch evaluation pass (validation split, else test) (s)",
    "data_wait_s": "time the training loop was blocked waiting for the next batch (s)",
    "compile_s": "wall time of the training and evaluation steps in which the graph compiler compiled (s; part of "
                 "train_time_s/eval_time_s and elapsed_s; an epoch with compile_s > 0 is kept out of steady-state "
                 "figures; empty when not compiling)",
    "harness_s": "time the harness spent on its own work in the epoch: utilisation samples, progress-bar "
                 "updates and the checkpoint (s; the row's own CSV and run.json writes follow it)",
    "train_images_per_s": "training images / train_time_s",
    "eval_images_per_s": "evaluated images / eval_time_s",
    "train_gflops_per_s": "achieved training GFLOP/s (3 x forward FLOPs per image x images/s)",
    "cpu_util_mean_pct": "system-wide CPU utilisation during training, time-weighted mean (0-100)",
    "cpu_util_max_pct": "system-wide CPU utilisation during training, max over samples (0-100)",
    "process_cpu_pct": "this process's CPU use during training, mean (100 = one core busy; summed over the "
                       "ranks of a distributed run)",
    "rss_peak_mb": "peak resident memory of this process during the epoch (MiB; summed over the ranks of a "
                   "distributed run)",
    "gpu_util_mean_pct": "GPU utilisation of the run's device, mean (0-100; empty without GPU)",
    "gpu_util_max_pct": "GPU utilisation, max (0-100; empty without GPU)",
    "gpu_mem_peak_mb": "GPU memory used on the run's device, peak (MiB; empty without GPU; on an integrated "
                       "GPU such as a Jetson's, the system RAM in use, which the GPU shares with the CPU)",
    "energy_j": "energy the machine's meters measured from the start of training to the end of evaluation "
                "(J; run.json 'energy' names the meters and domains; empty where none is readable)",
    "train_energy_j": "energy measured during the training pass (J; empty where no meter is readable)",
    "images_per_j": "training images / train_energy_j (empty where no meter is readable)",
    "elapsed_s": "wall time since the run started, at the end of this epoch (s); excludes time "
    "between an interruption and its --resume",
    "status": "ok, or interrupted/diverged on the row where the run stopped",
}

# Fixed util.csv columns; per-core "cpu{i}_pct", per-GPU UTIL_GPU_COLUMNS and, where an energy
# meter is readable, UTIL_ENERGY_COLUMNS follow them.
UTIL_BASE_COLUMNS: dict[str, str] = {
    "timestamp": "Unix time of the sample (s)",
    "elapsed_s": "time since the run started (s)",
    "rank": "data-parallel rank that took the sample (0 when not distributed)",
    "epoch": "epoch being run (1-based)",
    "phase": "train, eval or setup",
    "cpu_pct": "system-wide CPU utilisation since the previous sample (0-100)",
    "process_cpu_pct": "this process's CPU use since the previous sample (100 = one core)",
    "rss_mb": "resident memory of this process (MiB)",
}


UTIL_GPU_COLUMNS: dict[str, str] = {
    "gpu{i}_util_pct": "GPU i utilisation (0-100; NVML, or a Jetson's devfreq load / tegrastats GR3D_FREQ)",
    "gpu{i}_mem_mb": "GPU i memory used (MiB; on a Jetson the system RAM in use, shared with the CPU)",
    "gpu{i}_power_w": "GPU i power (W, NVML; empty on a Jetson, whose rails are not the GPU's alone)",
    "gpu{i}_freq_mhz": "GPU i graphics clock (MHz; NVML, or a Jetson's devfreq cur_freq)",
}
UTIL_ENERGY_COLUMNS: dict[str, str] = {
    "power_w": "machine power since the previous sample, from the energy meters' total (W)",
}


def util_columns(n_cores: int, n_gpus: int, *, energy: bool = False) -> list[str]:
    """util.csv's columns on a machine with ``n_cores`` logical cores and ``n_gpus`` GPUs sampled
    (``energy``: a meter is readable, so the power column follows)."""
    cols = list(UTIL_BASE_COLUMNS)
    cols += [f"cpu{i}_pct" for i in range(n_cores)]
    for i in range(n_gpus):
        cols += [c.format(i=i) for c in UTIL_GPU_COLUMNS]
    return cols + (list(UTIL_ENERGY_COLUMNS) if energy else [])


# --- inference runs (`bench infer`) ----------------------------------------------------------
#
# An inference run is a folder of its own, beside training runs: run.json with
# ``"kind": "infer"`` (training runs have no "kind", or "train") and infer.csv, one row per
# batch size.

KIND_INFER = "infer"
INFER_CSV = "infer.csv"

# name -> description (with unit). Order is the CSV column order.
INFER_COLUMNS: dict[str, str] = {
    "run_id": "the inference run folder's name",
    "backend": "backend that ran the model (torch, chainer, onnxruntime)",
    "model": "model name (resnet20, resnet50, ...)",
    "dataset": "dataset name of the source training run (cifar10, synthetic, imagefolder:...)",
    "device": "device string (cpu, cuda:0)",
    "batch_size": "images per predict() call (images)",
    "images": "images timed at this batch size: batch_size x timed calls, warm-up excluded (images)",
    "latency_p50_ms": "median wall time of one predict() call: uint8 NHWC in, logits on the host out (ms)",
    "latency_p90_ms": "90th percentile of the call time (ms)",
    "latency_p99_ms": "99th percentile of the call time (ms; from --iters samples, so the maximum below 100)",
    "latency_mean_ms": "mean call time (ms)",
    "images_per_s": "images / total timed wall time at this batch size (images/s)",
    "top1_acc": "top-1 accuracy on the source run's test set (fraction 0-1; the same on every row)",
    "top5_acc": "top-5 accuracy on the source run's test set (fraction 0-1; the same on every row)",
}
