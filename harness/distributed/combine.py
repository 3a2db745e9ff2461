"""One epochs.csv row from every rank's figures: what a rank sends (:func:`epoch_part`), how
the parts combine (:data:`ROW_REDUCTIONS`, recorded in run.json), and the proof that all
ranks end with the same model (:func:`state_digest`)."""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

from harness.backend import EvalStats, TrainStats
from harness.cache import arrays_sha256

# How epochs.csv figures of a distributed run combine the ranks' own (recorded in run.json).
ROW_REDUCTIONS = {
    "train_loss, train_acc, test_loss, test_acc, test_top5_acc": "sums and counts added over ranks, then divided",
    "train_time_s, eval_time_s, compile_s": "the slowest rank's (every step waits for it)",
    "train_images_per_s, eval_images_per_s, train_gflops_per_s": "images of all ranks / the slowest rank's time",
    "data_wait_s": "mean over ranks",
    "cpu_util_mean_pct, gpu_util_mean_pct": "mean over ranks",
    "cpu_util_max_pct, gpu_util_max_pct, gpu_mem_peak_mb": "max over ranks (gpu_mem_peak_mb: the fullest GPU)",
    "process_cpu_pct, rss_peak_mb": "sum over ranks (the whole job's CPU use and memory)",
    "energy_j, train_energy_j": "rank 0's (the meters of rank 0's machine; other ranks do not read energy)",
    "epoch_time_s, elapsed_s": "rank 0's clock",
}


def _stats_part(stats: TrainStats) -> dict[str, Any]:
    return {"loss_sum": stats.loss_sum, "correct": stats.correct, "count": stats.count, "steps": stats.steps,
            "data_wait_s": stats.data_wait_s, "compute_s": stats.compute_s, "compile_s": stats.compile_s,
            "top5_correct": getattr(stats, "top5_correct", 0)}


def epoch_part(train: TrainStats, train_time: float, test: EvalStats, eval_time: float,
               util: Mapping[str, Any]) -> dict[str, Any]:
    """What one rank contributes to an epoch's row (small: sent to every rank)."""
    return {"train": _stats_part(train), "train_time_s": train_time, "test": _stats_part(test),
            "eval_time_s": eval_time, "util": dict(util)}


def combine_epoch(parts: Sequence[Mapping[str, Any]]) -> tuple[TrainStats, float, EvalStats, float, dict[str, Any]]:
    """Every rank's :func:`epoch_part`, in rank order -> (train, train time, test, eval time,
    util) of the whole job (:data:`ROW_REDUCTIONS`). Pure and in rank order, so every rank
    computes bit-identical figures and takes the same decisions (diverged, target reached)."""
    def add(key: str, cls: type) -> Any:
        s = cls()
        for p in parts:
            q = p[key]
            s.loss_sum += q["loss_sum"]
            s.correct += q["correct"]
            s.count += q["count"]
            s.steps += q["steps"]
            s.data_wait_s += q["data_wait_s"] / len(parts)
            s.compute_s = max(s.compute_s, q["compute_s"])
            if q.get("compile_s") is not None:  # the slowest rank's compile
                s.compile_s = max(s.compile_s or 0.0, q["compile_s"])
            if isinstance(s, EvalStats):
                s.top5_correct += q["top5_correct"]
        return s

    utils = [p["util"] for p in parts]

    def values(key: str) -> list[float]:
        return [u[key] for u in utils if u.get(key) is not None]

    def reduce(key: str, how: Any) -> float | None:
        xs = values(key)
        return how(xs) if xs else None

    util = {
        "cpu_util_mean_pct": reduce("cpu_util_mean_pct", lambda xs: sum(xs) / len(xs)),
        "cpu_util_max_pct": reduce("cpu_util_max_pct", max),
        "process_cpu_pct": reduce("process_cpu_pct", sum),
        "rss_peak_mb": reduce("rss_peak_mb", sum),
        "gpu_util_mean_pct": reduce("gpu_util_mean_pct", lambda xs: sum(xs) / len(xs)),
        "gpu_util_max_pct": reduce("gpu_util_max_pct", max),
        "gpu_mem_peak_mb": reduce("gpu_mem_peak_mb", max),
        # energy is read by rank 0 alone (the meters measure a whole machine, not a rank)
        "energy_j": reduce("energy_j", sum),
        "train_energy_j": reduce("train_energy_j", sum),
    }
    if len(parts) == 1:  # an ordinary run's row is exactly what its monitor measured
        util = dict(utils[0])
    train_time = max(p["train_time_s"] for p in parts)
    eval_time = max(p["eval_time_s"] for p in parts)
    return add("train", TrainStats), train_time, add("test", EvalStats), eval_time, util


def per_rank_record(epoch: int, parts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """run.json ``distributed.per_epoch`` entry: each rank's own counts and times."""
    return {"epoch": epoch,
            "train_images": [p["train"]["count"] for p in parts],
            "test_images": [p["test"]["count"] for p in parts],
            "train_time_s": [round(p["train_time_s"], 4) for p in parts],
            "eval_time_s": [round(p["eval_time_s"], 4) for p in parts],
            "train_loss": [_finite(p["train"]["loss_sum"] / p["train"]["count"]) if p["train"]["count"] else None
                           for p in parts]}


def _finite(value: float) -> float | None:
    """A rank's loss for run.json: None once it is NaN or infinite (a diverged epoch), since
    JSON has no NaN and run.json is written with ``allow_nan=False``."""
    return value if math.isfinite(value) else None


def state_digest(arrays: Mapping[str, Any]) -> str:
    """SHA-256 over the model state (dtypes, shapes, bytes), in name order: equal
    digests on every rank prove the ranks hold bit-identical models."""
    return arrays_sha256(*(arrays[name] for name in sorted(arrays)))  # every rank has the same names

