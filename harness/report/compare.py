"""Run folders in, one comparison table out: load and validate, summarise, group, ratio.

Three layers of flat records (timm's ``benchmark.py`` style), each a dict of plain values:

* :func:`summarise_run` — one run: medians over the epochs after the first (warm-up), best
  and final accuracy, time to a target accuracy, utilisation and memory. Cheap, and what
  the runner prints at the end of ``bench run`` too.
* :func:`group_runs` — repeats of one configuration on one machine and backend folded into
  one row: with one run the spread is over its epochs, with several it is across the runs'
  medians.
* :func:`add_baseline` — speed-up and accuracy difference against the baseline row
  (``backend=torch`` or ``machine=laptop``) of the same configuration.

Keys starting with ``_`` are internal (the configuration dict) and never printed.
Accuracies stay fractions (0-1) in records, as in the schema; tables show percent.
"""
from __future__ import annotations

import math
import re
import statistics
from collections import Counter
from typing import Any, Iterable

from harness.config import identity_settings
from harness.cache import json_sha256
from harness.distributed import topology
from harness.errors import BenchError
from harness.measure.peak import peak_for
from harness.precision import peak_dtype
from harness.report.table import FORMATS, format_table  # noqa: F401  (re-exported)
from harness.schema import COMPLETED, EPOCH_OK, InferFolder, RunFolder, find_runs, read_infer, read_run, split_by_kind

# Columns of epochs.csv / util.csv holding text; every other column must be numeric.
_TEXT_EPOCH_COLUMNS = {"run_id", "backend", "model", "dataset", "device", "precision", "compile", "status"}
_TEXT_UTIL_COLUMNS = {"phase"}
# What identifies a row of the table, in display order.
IDENTITY = ("machine", "backend", "model", "dataset", "device", "batch_size", "world_size")
BASELINE_KEYS = IDENTITY
# Per-run speed figures summarised as median with min-max.
SPEED = ("epoch_time_s", "train_images_per_s", "eval_images_per_s")


# --- loading --------------------------------------------------------------------------------

def load_runs(patterns: Iterable[str], *, with_util: bool = True) -> list[RunFolder]:
    """Expand folders/globs/results trees, read and validate every training run (BenchError
    if one is damaged); `bench infer` folders among them are passed over (:func:`load_all`)."""
    return load_all(patterns, with_util=with_util)[0]


def load_all(patterns: Iterable[str], *, with_util: bool = True) -> tuple[list[RunFolder], list[InferFolder]]:
    """(training runs, inference runs) under ``patterns``, each read and validated."""
    patterns = list(patterns)
    if not patterns:
        raise BenchError("no run folders given: pass one or more results/<run_id> folders or a glob")
    train, infer = split_by_kind(find_runs(patterns))
    return ([validate_run(read_run(path, with_util=with_util)) for path in train],
            [read_infer(path) for path in infer])


def validate_run(run: RunFolder) -> RunFolder:
    """Check what :func:`harness.schema.read_run` leaves open (run.json is validated there) and make the numeric columns
    numeric, so a damaged cell is one clear error rather than a wrong median."""
    import pandas as pd

    frames = [("epochs.csv", run.epochs, _TEXT_EPOCH_COLUMNS)]
    if run.util is not None:
        frames.append(("util.csv", run.util, _TEXT_UTIL_COLUMNS))
    for name, frame, text_columns in frames:
        for column in frame.columns:
            if column in text_columns:
                continue
            values = pd.to_numeric(frame[column], errors="coerce")
            bad = values.isna() & frame[column].notna()
            if bad.any():
                row = int(bad.to_numpy().nonzero()[0][0]) + 2  # 1-based, after the header
                raise BenchError(
                    f"{run.path}/{name} line {row}: {column} = {frame[column][bad].iloc[0]!r} is "
                    f"not a number: the file is damaged (fix or remove that line)")
            frame[column] = values
    if "status" in run.epochs.columns:
        run.epochs["status"] = run.epochs["status"].fillna(EPOCH_OK).astype(str)
    return run


# --- one run --------------------------------------------------------------------------------

def normalise_target(target_acc: float | None) -> float | None:
    """Accept 0.6 or 60 for 60 %; return a fraction."""
    if target_acc is None:
        return None
    value = float(target_acc)
    if not 0 < value <= 100 or math.isnan(value):
        raise BenchError(f"--target-acc {target_acc}: give a test accuracy as a fraction (0.6) or percent (60)")
    return value / 100 if value > 1 else value


def summarise_run(run: RunFolder, target_acc: float | None = None) -> dict[str, Any]:
    """One flat record per run; see the module docstring. Missing figures are None."""
    meta, ep = run.meta, run.epochs
    settings = meta.get("settings") or {}
    machine = meta.get("machine") or {}
    target = normalise_target(target_acc)

    def setting(key: str, default: Any = None) -> Any:
        value = settings.get(key)
        if value in (None, "") and key in ep.columns and len(ep) and not _missing(ep[key].iloc[-1]):
            value = ep[key].iloc[-1]
        return _plain(value if value not in (None, "") else default)

    ep = ep.assign(status=ep["status"].fillna(EPOCH_OK).astype(str))  # also for folders not validated
    ok = ep[ep["status"] == EPOCH_OK]
    first_epoch = ep["epoch"].min() if len(ep) else None
    steady = ok[ok["epoch"] > first_epoch] if len(ok) > 1 else ok
    # An epoch in which the graph compiler ran (--compile: compile_s > 0, also a recompile
    # after epoch 1) is not steady either: its compile time would inflate the speed figures.
    compiled = steady["compile_s"].fillna(0) > 0 if "compile_s" in steady else None
    if compiled is not None and compiled.any() and not compiled.all():
        steady = steady[~compiled]
    rec: dict[str, Any] = {
        "run_id": run.run_id, "path": str(run.path), "status": meta.get("status") or "unknown",
        "machine": machine_label(machine), "machine_id": str(machine.get("machine_id") or machine.get("hostname") or "?"),
        "hostname": machine.get("hostname") or "?", "cpu_logical_cores": machine.get("cpu_logical_cores"),
        "backend": setting("backend") or (meta.get("backend") or {}).get("name") or "?",
        "model": setting("model", "?"), "dataset": setting("dataset", "?"), "device": setting("device", "?"),
        "batch_size": setting("batch_size"), "world_size": _plain(meta.get("world_size")) or setting("world_size", 1),
        "epochs": int(len(ok)), "epochs_planned": setting("epochs"), "seed": _plain(meta.get("seed", settings.get("seed"))),
        "repeat_index": meta.get("repeat_index"), "started_at": meta.get("started_at"),
        "experiment": _experiment_name(meta),
        "timed_epochs": _epoch_span(steady["epoch"]) if len(steady) else "",
        "warmup_excluded": bool(len(ok) > 1),
        "stopped_at": _stop_note(ep),
        # --precision / --compile (run.json settings; folders from before them ran fp32 eagerly)
        "precision": setting("precision", "fp32"), "compile": setting("compile", "none"),
        "compile_s": _sum(ep["compile_s"]) if "compile_s" in ep and ep["compile_s"].notna().any() else None,
        "compile_cache": ((meta.get("execution") or {}).get("compile") or {}).get("cache"),
        "steady_compiled": bool(compiled is not None and compiled.all() and len(steady)),
    }
    _layout(rec, meta.get("distributed") or {})
    for col in SPEED:
        rec[col], rec[f"{col}_min"], rec[f"{col}_max"] = _median_range(steady.get(col))
    for col in ("train_time_s", "eval_time_s", "data_wait_s"):
        rec[col] = _median_range(steady.get(col))[0]
    rec["warmup_epoch_time_s"] = _first(ok.loc[ok["epoch"] == first_epoch, "epoch_time_s"]) if len(ok) else None
    rec["train_gflops_per_s"] = _median_range(steady.get("train_gflops_per_s"))[0]
    # share of this machine's matmul peak for the run's device, backend and data type
    # (`bench sysinfo --peak`): the --precision's compute format (tf32 is float32 storage)
    peak = peak_for(machine.get("peak_matmul"), device=str(rec["device"]), backend=str(rec["backend"]),
                    dtype=peak_dtype(str(rec["precision"])))
    rec["peak_gflops"] = _num(peak["gflops"]) if peak else None
    rec["peak_pct"] = (100 * rec["train_gflops_per_s"] / rec["peak_gflops"]
                       if rec["peak_gflops"] and rec["train_gflops_per_s"] is not None else None)
    # energy where the machine's meters were readable (harness/measure/energy.py)
    rec["energy_j"] = _median_range(steady.get("energy_j"))[0]
    rec["images_per_j"] = _median_range(steady.get("images_per_j"))[0]
    train_time = _sum(steady.get("train_time_s"))
    rec["data_wait_pct"] = 100 * _sum(steady.get("data_wait_s")) / train_time if train_time else None
    epoch_time, harness = _sum(steady.get("epoch_time_s")), _values(steady.get("harness_s"))
    rec["harness_pct"] = 100 * sum(harness) / epoch_time if harness and epoch_time else None
    _accuracy(rec, ok, target)
    for col in ("cpu_util_mean_pct", "process_cpu_pct", "gpu_util_mean_pct"):
        rec[col] = _num(steady[col].mean()) if len(steady) and col in steady else None
    for col in ("cpu_util_max_pct", "rss_peak_mb", "gpu_mem_peak_mb"):
        rec[col] = _num(ep[col].max()) if len(ep) else None
    rec["elapsed_s"] = _num(ep["elapsed_s"].max()) if len(ep) else None
    # Peak memory of the last epoch against the second's (the first allocates): a leak shows here.
    rss = _values(ok["rss_peak_mb"]) if "rss_peak_mb" in ok else []
    rec["rss_growth_pct"] = 100 * (rss[-1] - rss[1]) / rss[1] if len(rss) >= 3 and rss[1] > 0 else None
    rec["command"] = meta.get("command") or ""
    rec["_train_losses"] = _values(ok["train_loss"]) if "train_loss" in ok else []
    # What a fair comparison holds equal across backends (observations._fairness).
    model_meta, data_meta = meta.get("model") or {}, meta.get("dataset") or {}
    source = model_meta.get("weights_source") or {}
    rec["start_state"] = " + ".join(str(x) for x in (model_meta.get("init"), source.get("sha256")) if x) or None
    rec["data_identity"] = (f"{data_meta.get('name')} {data_meta.get('sha256')} "
                            f"{data_meta.get('train_size')}/{data_meta.get('test_size')}") if data_meta else None
    rec["_config"] = _config(settings, rec)
    rec["config"] = _hash(rec["_config"])
    return rec


def _layout(rec: dict[str, Any], dist: dict[str, Any]) -> None:
    """nodes x processes per node and the transport of a distributed run (run.json's
    "distributed" section; runs written before it recorded nodes count their hosts)."""
    world = int(rec["world_size"] or 1)
    nodes, per_node = dist.get("nodes"), dist.get("processes_per_node")
    if nodes is None and dist.get("ranks"):
        found = topology.layout(topology.fill_node_ranks(dist["ranks"]))
        nodes, per_node = found["nodes"], found["processes_per_node"]
    rec["nodes"] = int(nodes or 1)
    rec["processes_per_node"] = per_node if per_node is not None else world // rec["nodes"]
    rec["layout"] = topology.describe_layout(rec["nodes"], rec["processes_per_node"]) if world > 1 else ""
    rec["transport"] = topology.transport(dist.get("communicator"))


def _accuracy(rec: dict[str, Any], ok: Any, target: float | None) -> None:
    """Best epoch and time-to-target from the per-epoch evaluation: the validation split when
    the run has one (its test set is evaluated once, after the last epoch: choosing the best
    epoch on test would be model selection on the test set), else test. ``best_test_acc`` is
    then the one test figure measured."""
    has_valid = len(ok) > 0 and "valid_acc" in ok and ok["valid_acc"].notna().any()
    column = "valid_acc" if has_valid else "test_acc"
    acc = ok[column].dropna() if len(ok) else ok.get(column, [])
    test = ok["test_acc"].dropna() if len(ok) else ok.get("test_acc", [])
    rec["selected_on"] = "validation" if has_valid else "test"
    rec["best_valid_acc"] = float(acc.max()) if has_valid else None
    rec["best_test_acc"] = rec["best_epoch"] = rec["final_test_acc"] = None
    if len(acc):
        best = acc.idxmax()
        rec["best_epoch"] = int(ok.loc[best, "epoch"])
    if len(test):
        rec["best_test_acc"] = float(test.iloc[-1]) if has_valid else float(test.max())
        rec["final_test_acc"] = float(test.iloc[-1])
    rec["target_acc"], rec["time_to_target_s"], rec["target_epoch"] = target, None, None
    if target is not None and len(acc):
        hits = ok[ok[column] >= target - 1e-12]
        if len(hits):
            rec["time_to_target_s"] = _num(hits["elapsed_s"].iloc[0])
            rec["target_epoch"] = int(hits["epoch"].iloc[0])


def _stop_note(ep: Any) -> str:
    """'diverged at epoch 3' when the last row is not an ordinary epoch."""
    if not len(ep) or ep["status"].iloc[-1] == EPOCH_OK:
        return ""
    return f"{ep['status'].iloc[-1]} at epoch {int(ep['epoch'].iloc[-1])}"


def _experiment_name(meta: dict[str, Any]) -> str | None:
    """'quick/resnet20-train' for a suite's cell, 'resnet20-he2016' for an experiment file's,
    None for a plain `bench run` (run.json ``experiment``: harness/experiments/matrix.py)."""
    e = meta.get("experiment")
    if not isinstance(e, dict) or not e.get("name") or e.get("name") == "adhoc":
        return None
    return f"{e['suite']}/{e['name']}" if e.get("suite") else str(e["name"])


def _config(settings: dict[str, Any], rec: dict[str, Any]) -> dict[str, Any]:
    # What separates configurations is declared with the settings (harness/config.py: identity).
    config = {k: _plain(v) for k, v in identity_settings(settings).items()}
    for key in ("model", "dataset", "device", "batch_size", "world_size"):
        config[key] = rec[key]
    if rec["nodes"] > 1:  # 2 processes on 2 machines are not repeats of 2 on one (one-node keys unchanged)
        config["nodes"] = rec["nodes"]
    return config


def _hash(data: dict[str, Any]) -> str:
    return json_sha256(data)[:10]


# --- machine labels ---------------------------------------------------------------------------

def short_cpu(name: str | None) -> str:
    """'11th Gen Intel(R) Core(TM) i7-1165G7 @ 2.80GHz' -> 'i7-1165G7'."""
    s = re.sub(r"\((R|TM|C)\)", "", str(name or ""), flags=re.I)
    s = re.sub(r"@.*$|\b\d+(st|nd|rd|th) Gen\b|\b(CPU|Processor)\b|\d+-Core|with Radeon.*$", "", s, flags=re.I)
    s = re.sub(r"\b(Intel|AMD|Core)\b", "", s)
    return " ".join(s.split()) or "?"


def short_gpu(name: str | None) -> str:
    """'NVIDIA GeForce RTX 3080' -> 'RTX 3080'."""
    return " ".join(re.sub(r"\b(NVIDIA|GeForce|Tesla)\b", "", str(name or "")).split()) or "?"


def machine_label(machine: dict[str, Any]) -> str:
    """'laptop (i7-1165G7, 8 threads)' or 'gpu-box (EPYC 7R32, A10G)'."""
    parts = [short_cpu(machine.get("cpu_model"))]
    gpus = machine.get("gpus") or []
    if gpus:
        names = Counter(short_gpu(g.get("name")) for g in gpus if isinstance(g, dict))
        parts += [f"{n}x {name}" if n > 1 else name for name, n in names.items()]
    elif machine.get("cpu_logical_cores"):
        parts.append(f"{machine['cpu_logical_cores']} threads")
    return f"{machine.get('hostname') or '?'} ({', '.join(parts)})"


def _unique_machine_labels(records: list[dict[str, Any]]) -> None:
    """Two machines with one label (cloned VMs) get their machine_id appended."""
    ids: dict[str, set[str]] = {}
    for r in records:
        ids.setdefault(r["machine"], set()).add(r["machine_id"])
    for r in records:
        if len(ids[r["machine"]]) > 1:
            r["machine"] = f"{r['machine']} #{r['machine_id'][:6]}"


# --- groups -----------------------------------------------------------------------------------

def group_runs(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Fold repeats (same machine, backend and configuration) into one row each."""
    _unique_machine_labels(records)
    buckets: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in records:
        buckets.setdefault((r["machine_id"], r["backend"], r["config"]), []).append(r)
    groups = [_aggregate(rs) for rs in buckets.values()]
    groups.sort(key=lambda g: tuple(str(g[k]) for k in ("model", "dataset", "batch_size", "world_size",
                                                          "machine", "device", "backend")))
    return groups


def _aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    first, n = runs[0], len(runs)
    g = {k: first[k] for k in IDENTITY}
    g.update(runs=n, epochs=_med([r["epochs"] for r in runs], integer=True), epochs_planned=first["epochs_planned"],
             status=_status_summary(runs), timed_epochs=_same([r["timed_epochs"] for r in runs]))
    for col in SPEED + ("best_test_acc", "final_test_acc"):
        if n == 1 and col in SPEED:
            g[col], g[f"{col}_min"], g[f"{col}_max"] = first[col], first[f"{col}_min"], first[f"{col}_max"]
        else:
            g[col], g[f"{col}_min"], g[f"{col}_max"] = _median_range([r[col] for r in runs])
    g["experiment"] = first["experiment"]
    g["best_epoch"] = first["best_epoch"] if n == 1 else None
    g["target_acc"] = first["target_acc"]
    reached = [r["time_to_target_s"] for r in runs if r["time_to_target_s"] is not None]
    g["time_to_target_s"], g["target_reached"] = _med(reached), len(reached)
    for col in ("cpu_util_mean_pct", "process_cpu_pct", "gpu_util_mean_pct", "train_gflops_per_s", "peak_pct"):
        g[col] = _mean([r[col] for r in runs])
    g["peak_gflops"] = first["peak_gflops"]
    for col in ("data_wait_pct", "harness_pct", "train_time_s", "eval_time_s", "data_wait_s", "warmup_epoch_time_s",
                "energy_j", "images_per_j"):
        g[col] = _med([r[col] for r in runs])
    for col in ("rss_peak_mb", "gpu_mem_peak_mb", "cpu_util_max_pct", "rss_growth_pct"):
        g[col] = _max([r[col] for r in runs])
    g.update(precision=first["precision"], compile=first["compile"], compile_cache=first["compile_cache"],
             compile_s=_med([r["compile_s"] for r in runs]),
             steady_compiled=any(r["steady_compiled"] for r in runs))
    for col in ("energy_j", "images_per_j"):  # where the runs measured energy (schema columns of the same names)
        g.setdefault(col, _med([r.get(col) for r in runs]))
    g["_train_losses"] = first["_train_losses"] if n == 1 else []
    g["start_state"] = _same([r["start_state"] for r in runs])
    g["data_identity"] = _same([r["data_identity"] for r in runs])
    g["seeds"] = sorted({r["seed"] for r in runs if r["seed"] is not None})
    g.update(machine_id=first["machine_id"], hostname=first["hostname"], cpu_logical_cores=first["cpu_logical_cores"],
             config=first["config"], nodes=first["nodes"], processes_per_node=first["processes_per_node"],
             layout=first["layout"], transport=first["transport"],
             run_ids=[r["run_id"] for r in runs], _config=first["_config"], _runs=runs)
    return g


def _status_summary(runs: list[dict[str, Any]]) -> str:
    counts = Counter(r["status"] for r in runs)
    if set(counts) == {COMPLETED}:
        return COMPLETED
    if len(runs) == 1:
        return runs[0]["stopped_at"] or runs[0]["status"]
    return ", ".join(f"{n} {s}" for s, n in counts.most_common())


def compare_runs(runs: list[RunFolder], *, target_acc: float | None = None,
                 baseline: str | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(per-run records, grouped rows with baseline ratios when ``baseline`` is given)."""
    records = [summarise_run(run, target_acc) for run in runs]
    groups = group_runs(records)
    if baseline:
        add_baseline(groups, baseline)
    return records, groups


# --- baseline ---------------------------------------------------------------------------------

def parse_baseline(spec: str) -> tuple[str, str]:
    key, sep, value = (spec or "").partition("=")
    key = key.strip().replace("-", "_")
    if not sep or not value.strip() or key not in BASELINE_KEYS:
        raise BenchError(f"--baseline {spec!r}: write KEY=VALUE with KEY one of {', '.join(BASELINE_KEYS)} "
                         f"(e.g. --baseline backend=torch)")
    return key, value.strip()


def _is_baseline(g: dict[str, Any], key: str, value: str) -> bool:
    if key == "machine":
        return value in (g["machine"], g["hostname"]) or g["machine_id"].startswith(value)
    return str(g[key]) == value


def _comparison_key(g: dict[str, Any], key: str) -> str:
    """What must match for two rows to be compared: everything but the baseline key, the
    device when comparing machines (a laptop's CPU against a server's GPU is the point) and
    the number of epochs (the slow backend is often run for fewer; speed is still comparable,
    accuracy is then not compared)."""
    config = dict(g["_config"])
    for k in {key, "device", "epochs"} if key == "machine" else {key, "epochs"}:
        config.pop(k, None)
    if key != "machine":
        config["machine_id"] = g["machine_id"]
    if key != "backend":
        config["backend"] = g["backend"]
    return _hash(config)


def add_baseline(groups: list[dict[str, Any]], spec: str) -> list[dict[str, Any]]:
    """Add ``baseline``, ``speedup`` (train images/s over the baseline's) and
    ``acc_diff_pp`` (best test accuracy minus the baseline's, percentage points; only
    between runs of the same number of epochs)."""
    key, value = parse_baseline(spec)
    bases = [g for g in groups if _is_baseline(g, key, value)]
    if not bases:
        present = sorted({str(g[key]) for g in groups} | ({g["hostname"] for g in groups} if key == "machine" else set()))
        raise BenchError(f"--baseline {key}={value}: no run has {key} {value!r}; the runs have {', '.join(present)}")
    for g in groups:
        ck = _comparison_key(g, key)
        candidates = [b for b in bases if _comparison_key(b, key) == ck]
        candidates.sort(key=lambda b: b["device"] != g["device"])
        base = candidates[0] if candidates else None
        g["baseline"] = f"{key}={value}" if base else None
        g["speedup"] = _ratio(g["train_images_per_s"], base["train_images_per_s"]) if base else None
        g["acc_diff_pp"] = (100 * (g["best_test_acc"] - base["best_test_acc"])
                            if base is not None and base["epochs_planned"] == g["epochs_planned"]
                            and None not in (g["best_test_acc"], base["best_test_acc"]) else None)
    return groups


# --- scaling ----------------------------------------------------------------------------------

def scaling_rows(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Throughput against world size, for configurations run with several world sizes.

    Strong scaling keeps the global batch; weak scaling keeps the batch per process. The
    efficiency is throughput(N) / (N / N0 x throughput(N0)), N0 the smallest world size run
    (1 normally, which gives throughput(N) / (N x throughput(1))). Runs over several nodes
    join the series of their configuration (the rows say nodes x processes per node and the
    transport), so one process on one machine is the reference for them too.
    """
    series: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for g in groups:
        ws, batch = g["world_size"] or 1, g["batch_size"] or 0
        for kind, drop, extra in (("strong", ("world_size", "nodes"), {}),
                                  ("weak", ("world_size", "nodes", "batch_size"), {"per_process_batch": batch / ws})):
            config = {k: v for k, v in g["_config"].items() if k not in drop} | extra
            config.update(machine_id=g["machine_id"], backend=g["backend"])
            series.setdefault((kind, _hash(config)), []).append(g)
    rows = []
    for (kind, _), gs in sorted(series.items()):
        if len({(g["world_size"], g["nodes"]) for g in gs}) < 2 or any(g["train_images_per_s"] is None for g in gs):
            continue
        gs = sorted(gs, key=lambda g: (g["world_size"], g["nodes"]))
        ref = gs[0]
        for g in gs:
            speedup = g["train_images_per_s"] / ref["train_images_per_s"]
            rows.append({k: g[k] for k in IDENTITY} | {
                "scaling": kind, "processes": g["world_size"], "train_images_per_s": g["train_images_per_s"],
                "speedup": speedup, "efficiency": speedup * ref["world_size"] / g["world_size"],
                "nodes": g["nodes"], "processes_per_node": g["processes_per_node"],
                "layout": g["layout"] or topology.describe_layout(g["nodes"], g["processes_per_node"]),
                "transport": g["transport"],
                "series": f"{g['backend']} {g['model']} on {g['hostname']}, "
                          + (f"global batch {ref['batch_size']}" if kind == "strong"
                             else f"batch {ref['batch_size'] // ref['world_size']} per process")})
    return rows


# --- small numeric helpers --------------------------------------------------------------------

def _missing(x: Any) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def _plain(x: Any) -> Any:
    """numpy scalar -> Python scalar, NaN -> None."""
    if hasattr(x, "item"):
        x = x.item()
    return None if _missing(x) else x


def _num(x: Any) -> float | None:
    x = _plain(x)
    return None if x is None else float(x)


def _values(xs: Any) -> list[float]:
    return [] if xs is None else [float(x) for x in xs if not _missing(_plain(x))]


def _median_range(xs: Any) -> tuple[float | None, float | None, float | None]:
    v = _values(xs)
    return (statistics.median(v), min(v), max(v)) if v else (None, None, None)


def _med(xs: Any, integer: bool = False) -> Any:
    v = _values(xs)
    if not v:
        return None
    m = statistics.median(v)
    return int(round(m)) if integer else m


def _mean(xs: Any) -> float | None:
    v = _values(xs)
    return sum(v) / len(v) if v else None


def _max(xs: Any) -> float | None:
    v = _values(xs)
    return max(v) if v else None


def _sum(xs: Any) -> float:
    return sum(_values(xs))


def _first(xs: Any) -> float | None:
    v = _values(xs)
    return v[0] if v else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _same(values: list[Any]) -> Any:
    return values[0] if len(set(values)) == 1 else "varies"


def _epoch_span(epochs: Any) -> str:
    e = sorted(int(x) for x in epochs)
    return f"{e[0]}" if e[0] == e[-1] else f"{e[0]}-{e[-1]}"
