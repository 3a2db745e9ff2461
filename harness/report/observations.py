"""Plain sentences computed from the numbers, each tied to the figure that shows it.

Every sentence states a measured figure and where it comes from ("median of epochs 2-5"),
so a reader can check it against the table; thresholds that turn a number into a verdict
("saturated", "a bottleneck") are constants here, named and explained once.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from harness.report.table import num

# Mean system CPU utilisation while training at or above which the CPU counts as saturated:
# samplers read 90-97 % on a fully busy machine (OS, sampler, Python's own thread).
CPU_SATURATED_PCT = 90.0
CPU_BUSY_PCT = 75.0
# System load beyond this process's own share (percentage points) that means other programs
# competed for the CPU during the measurement.
OTHER_LOAD_PCT = 25.0
# Share of the training pass spent blocked on the next batch above which input is the limit,
# and below which it is negligible.
DATA_BOTTLENECK_PCT = 10.0
DATA_NEGLIGIBLE_PCT = 3.0
# Share of the epoch the harness's own work (harness_s) may take and still count as negligible.
HARNESS_NEGLIGIBLE_PCT = 2.0
# Growth of peak RSS from the second epoch to the last that counts as memory growing.
MEMORY_GROWTH_PCT = 5.0
# Largest per-epoch difference of the training losses of equal-start runs still called "alike".
LOSS_ALIKE_PCT = 5.0
# Change of epoch time from the first to the last steady epoch that counts as drift.
DRIFT_PCT = 10.0


@dataclass(frozen=True)
class Observation:
    text: str
    figure: str | None  # file name of the figure that shows it, e.g. "throughput.png"
    headline: bool = False  # belongs in the report's summary, not only beside its figure


def _namer(groups: list[dict[str, Any]]):
    """Names for rows that say only what differs: 'torch', 'torch on laptop (cpu)',
    'torch (resnet20, batch 64) on laptop'."""
    many_machines = len({g["machine_id"] for g in groups}) > 1
    fields = [(k, fmt) for k, fmt in (("model", "{}"), ("dataset", "{}"), ("batch_size", "batch {}"),
                                      ("world_size", "{} processes"), ("threads", "{} threads"),
                                      ("epochs_planned", "{} epochs"))
              if len({setting_value(g, k) for g in groups}) > 1]
    show_device = len({g["device"] for g in groups}) > 1

    def name(g: dict[str, Any]) -> str:
        out = g["backend"]
        if fields:
            out += " (" + ", ".join(_plural(fmt.format(setting_value(g, k))) for k, fmt in fields) + ")"
        if many_machines:
            out += f" on {g['hostname']}"
        if show_device:
            out += f" ({g['device']})" if many_machines else f" on {g['device']}"
        return out
    return name


def setting_value(g: dict[str, Any], key: str) -> Any:
    """A group's value of ``key``; ``threads`` is the --threads setting ("default" when unset)."""
    if key == "threads":
        return (g.get("_config") or {}).get("threads") or "default"
    if key in ("precision", "compile"):  # folders from before precision existed: fp32, eager
        return (g.get("_config") or {}).get(key) or {"precision": "fp32", "compile": "none"}[key]
    return g[key]


def _plural(text: str) -> str:
    """'1 processes' -> '1 process', '1 threads' -> '1 thread'."""
    return text[:-2] if text.startswith("1 process") else text[:-1] if text.startswith("1 thread") else text


def _epochs_note(gs: list[dict[str, Any]]) -> str:
    spans = {g.get("timed_epochs") for g in gs}
    if len(spans) == 1 and (span := spans.pop()) and span != "varies":
        return f"median of epochs {span}" if "-" in span else f"epoch {span}"
    return "medians of the epochs after the first"


def _config_key(g: dict[str, Any], *, device: bool = True) -> tuple:
    """What two rows must share to be compared with each other: every setting that identifies a
    configuration (harness/config.py ``identity``: precision, compile, image size, freeze...),
    the backend aside. ``device=False``: the same configuration on another machine's device."""
    config = {k: v for k, v in (g.get("_config") or {}).items() if device or k != "device"}
    return (g["model"], g["dataset"], g["batch_size"], g["world_size"], setting_value(g, "threads"),
            json.dumps(config, sort_keys=True, default=str))


# Two machines whose speeds differ by less than this factor ran "about as fast".
SAME_SPEED = 1.05
# Settings named in a sentence when they vary among the rows of a report: (key, format).
VARYING = (("world_size", "{} processes"), ("threads", "{} threads"), ("precision", "{}"),
           ("compile", "compile {}"))


def _what(g: dict[str, Any], groups: list[dict[str, Any]], *, device: bool = True) -> str:
    """'resnet20 (synthetic, batch 128, cpu, bf16-mixed)': the model and what tells this row's
    configuration from the report's others."""
    extra = "".join(f", {_plural(fmt.format(setting_value(g, k)))}" for k, fmt in VARYING
                    if len({str(setting_value(o, k)) for o in groups}) > 1)
    if g.get("experiment") and len({o.get("experiment") for o in groups}) > 1:
        extra += f"; {g['experiment']}"
    return f"{g['model']} ({g['dataset']}, batch {g['batch_size']}{', ' + g['device'] if device else ''}{extra})"


def observe(groups: list[dict[str, Any]], scaling: list[dict[str, Any]] | None = None) -> list[Observation]:
    """All observations for grouped rows (from :func:`~harness.report.compare.group_runs`)."""
    if not groups:
        return []
    name = _namer(groups)
    who = {id(g): name(g) for g in groups}
    out: list[Observation] = []
    out += _speed(groups)
    out += _fairness(groups)
    out += _machines(groups)
    out += _scaling(scaling or [])
    out += _utilisation(groups, who)
    out += _machine_share(groups, who)
    out += _data_loading(groups, who)
    out += _harness_cost(groups, who)
    out += _warmup_and_drift(groups, who)
    out += _memory(groups, who)
    out += _accuracy(groups, who)
    out += _stops(groups, who)
    return list(dict.fromkeys(out))  # the same sentence for several configurations: once


def _speed(groups: list[dict[str, Any]]) -> list[Observation]:
    """Backends against each other, per machine and configuration."""
    out = []
    buckets: dict[tuple, list[dict[str, Any]]] = {}
    for g in groups:
        if g.get("train_images_per_s"):
            buckets.setdefault((g["machine"], g["device"]) + _config_key(g), []).append(g)
    for (machine, *_), gs in buckets.items():
        gs = sorted(gs, key=lambda g: -g["train_images_per_s"])
        what = _what(gs[0], groups)
        fast = gs[0]
        if len(gs) == 1:
            lo, hi = fast.get("train_images_per_s_min"), fast.get("train_images_per_s_max")
            spread = f", range {num(lo)}–{num(hi)}" if lo is not None and hi is not None and lo != hi else ""
            out.append(Observation(f"On {machine}, {fast['backend']} trained {what} at {num(fast['train_images_per_s'])} "
                                   f"images/s ({_epochs_note(gs)}{spread}).", "throughput.png", True))
            continue
        others = ", ".join(f"{fast['train_images_per_s'] / g['train_images_per_s']:.1f}x {g['backend']}'s "
                           f"{num(g['train_images_per_s'])} images/s" for g in gs[1:])
        out.append(Observation(f"On {machine}, {fast['backend']} trained {what} at {num(fast['train_images_per_s'])} "
                               f"images/s, {others} ({_epochs_note(gs)}).", "throughput.png", True))
    return out


def _fairness(groups: list[dict[str, Any]]) -> list[Observation]:
    """Whether backends compared on one machine started equal: same settings, same initial
    weights, same data, same seeds (so the same batches in the same order). Said either way."""
    out = []
    buckets: dict[tuple, list[dict[str, Any]]] = {}
    for g in groups:
        buckets.setdefault((g["machine_id"], g["device"]) + _config_key(g), []).append(g)
    for gs in buckets.values():
        if len({g["backend"] for g in gs}) < 2:
            continue
        names = " and ".join(sorted({g["backend"] for g in gs}))
        differs = [what for what, key in (("settings", "config"), ("initial weights", "start_state"),
                                          ("data", "data_identity"), ("seeds", "seeds"))
                   if len({str(g.get(key)) for g in gs}) > 1 or any(g.get(key) in (None, "varies") for g in gs)]
        if differs:
            out.append(Observation(f"{names} did not start equal: their {', '.join(differs)} differ (see run.json), "
                                   f"so part of the difference is not the frameworks'.", None, True))
            continue
        g = gs[0]
        out.append(Observation(
            f"{names} started equal: the same settings, the same initial weights ({g['start_state']}), the same data "
            f"({g['data_identity'].split(' ')[0]}) and seed{'s' if len(g['seeds']) > 1 else ''} "
            f"{', '.join(map(str, g['seeds']))}, so the same batches in the same order; what differs is the framework. "
            f"`bench parity --model {g['model']}` checks that both compute the same step.", None, True))
        out += _losses_alike(gs, names)
    return out


def _losses_alike(gs: list[dict[str, Any]], names: str) -> list[Observation]:
    """Equal starts, single runs: how close the training losses stayed, epoch by epoch. Float32
    rounding differs between frameworks and grows over the steps; the loss curves show whether
    the two still learned alike, which a test-accuracy gap alone cannot."""
    curves = [g["_train_losses"] for g in gs]
    if len(curves) < 2 or not all(curves) or len({len(c) for c in curves}) > 1:
        return []
    gap = max(abs(a - b) / max(abs(b), 1e-12) for c in curves[1:] for a, b in zip(curves[0], c))
    accs = [a for g in gs if (a := g.get("final_test_acc")) is not None]
    acc_note = ""
    if len(accs) == len(gs) and max(accs) - min(accs) > 0.02:
        acc_note = (f" Final test accuracy still differs by {100 * (max(accs) - min(accs)):.1f} points: early in "
                    f"training, evaluation is sensitive to small differences (BatchNorm running statistics, a small test "
                    f"set); `--repeat N` measures that spread.")
    verdict = "trained alike" if gap <= LOSS_ALIKE_PCT / 100 else "trained differently"
    return [Observation(f"The training losses of {names} stayed within {100 * gap:.1f} % of each other in every "
                        f"epoch: they {verdict}.{acc_note}", "accuracy_epoch.png", True)]


def _machines(groups: list[dict[str, Any]]) -> list[Observation]:
    """The same backend and configuration on different machines (any device)."""
    out = []
    buckets: dict[tuple, list[dict[str, Any]]] = {}
    for g in groups:
        if g.get("train_images_per_s"):
            buckets.setdefault((g["backend"],) + _config_key(g, device=False), []).append(g)
    for (backend, *_), gs in buckets.items():
        if len({g["machine_id"] for g in gs}) < 2:
            continue
        gs = sorted(gs, key=lambda g: -g["train_images_per_s"])
        fast, slow = gs[0], gs[-1]
        ratio = fast["train_images_per_s"] / slow["train_images_per_s"]
        on_fast, on_slow = f"{fast['hostname']} ({fast['device']})", f"{slow['hostname']} ({slow['device']})"
        how = (f"{ratio:.1f}x faster on {on_fast} than on {on_slow}" if ratio >= SAME_SPEED
               else f"about as fast (within {100 * (SAME_SPEED - 1):.0f} %) on {on_fast} as on {on_slow}")
        out.append(Observation(
            f"{backend} trained {_what(fast, groups, device=False)} {how}: "
            f"{num(fast['train_images_per_s'])} against {num(slow['train_images_per_s'])} images/s.", "throughput.png",
            True))
    return out


def _scaling(rows: list[dict[str, Any]]) -> list[Observation]:
    out = []
    for name in dict.fromkeys(r["series"] for r in rows):
        pts = [r for r in rows if r["series"] == name]
        ref, top = pts[0], pts[-1]
        where = (f" (nodes x processes per node: {top['layout']}; {top['transport']})"
                 if top.get("transport") and top.get("layout") else "")
        out.append(Observation(
            f"{name}: {top['processes']} processes{where} trained at {num(top['train_images_per_s'])} images/s, "
            f"{top['speedup']:.1f}x the throughput of {ref['processes']} process{'es' if ref['processes'] > 1 else ''} "
            f"({100 * top['efficiency']:.0f} % scaling efficiency).", "scaling.png", True))
    return out


def _utilisation(groups: list[dict[str, Any]], who: dict[int, str]) -> list[Observation]:
    out = []
    for g in groups:
        cpu, proc = g.get("cpu_util_mean_pct"), g.get("process_cpu_pct")
        if str(g["device"]).startswith("cuda") and g.get("gpu_util_mean_pct") is not None:
            gpu = g["gpu_util_mean_pct"]
            verdict = "kept the GPU busy" if gpu >= 80 else "left the GPU idle part of the time"
            out.append(Observation(f"{who[id(g)]} {verdict}: mean GPU utilisation {gpu:.0f} % during training, "
                                   f"peak GPU memory {num(g.get('gpu_mem_peak_mb'))} MiB.", "gpu_util.png"))
        if cpu is None:
            continue
        of = f" of {g['cpu_logical_cores']}" if g.get("cpu_logical_cores") else ""
        ranks = int(g.get("world_size") or 1)
        who_ran = "the process" if ranks == 1 else f"the {ranks} processes together"
        cores = f"; {who_ran} kept {proc / 100:.1f}{of} logical cores busy on average" if proc is not None else ""
        verdict = ("The CPU was saturated" if cpu >= CPU_SATURATED_PCT else
                   "The CPU was busy but not saturated" if cpu >= CPU_BUSY_PCT else "The CPU was not saturated")
        # A busy machine whose load is mostly not this process means other programs competed
        # for the cores: the speed figures are then a lower bound, and the reader must know.
        others = ""
        if proc is not None and g.get("cpu_logical_cores") and cpu >= CPU_BUSY_PCT:
            own_pct = proc / g["cpu_logical_cores"]
            if cpu - own_pct >= OTHER_LOAD_PCT:
                others = (f" Other programs used about {cpu - own_pct:.0f} % of the machine meanwhile, "
                          f"so these speeds understate what {g['backend']} can do here.")
        out.append(Observation(f"{verdict} for {who[id(g)]}: mean system utilisation {cpu:.0f} % during "
                               f"training{cores}.{others}", "cpu_util.png", g["device"] == "cpu"))
    return out


def _machine_share(groups: list[dict[str, Any]], who: dict[int, str]) -> list[Observation]:
    """Achieved training GFLOP/s against the machine's fp32 matmul peak (CPU runs that have one)."""
    out = []
    for g in groups:
        if g.get("peak_pct") is None:
            continue
        out.append(Observation(
            f"{who[id(g)]} trained at {num(g['train_gflops_per_s'])} GFLOP/s, {g['peak_pct']:.0f} % of this machine's "
            f"float32 matmul peak ({num(g['peak_gflops'])} GFLOP/s, `bench sysinfo --peak`).", "throughput.png"))
    return out


def _harness_cost(groups: list[dict[str, Any]], who: dict[int, str]) -> list[Observation]:
    """The harness's own work (harness_s: sampler, progress bar, checkpoint) against the epoch."""
    shares = [(g["harness_pct"], g) for g in groups if g.get("harness_pct") is not None]
    if not shares:
        return []
    worst, g = max(shares, key=lambda x: x[0])
    where = f" (at most, for {who[id(g)]})" if len(shares) > 1 else ""
    verdict = ("negligible" if worst < HARNESS_NEGLIGIBLE_PCT else
               f"not negligible with epochs of {num(g.get('epoch_time_s'))} s, where the per-epoch checkpoint is a "
               f"fixed cost that longer epochs dilute")
    return [Observation(f"bench's own work (utilisation samples, progress bar, checkpoint) took {worst:.2f} % of "
                        f"the epoch time{where}: {verdict}.", "epoch_breakdown.png")]


def _data_loading(groups: list[dict[str, Any]], who: dict[int, str]) -> list[Observation]:
    shares = [(g["data_wait_pct"], g) for g in groups if g.get("data_wait_pct") is not None]
    if not shares:
        return []
    if all(p < DATA_NEGLIGIBLE_PCT for p, _ in shares):
        worst, g = max(shares, key=lambda x: x[0])
        where = f" (at most, for {who[id(g)]})" if len(shares) > 1 else ""
        return [Observation(f"Data loading was not a bottleneck: the training loop waited for data "
                            f"{worst:.1f} % of the time{where}.", "epoch_breakdown.png")]
    out = []
    fine = [g for p, g in shares if p < DATA_NEGLIGIBLE_PCT]
    if fine:
        worst = max(g["data_wait_pct"] for g in fine)
        names = [who[id(g)] for g in fine]
        listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
        out.append(Observation(f"Data loading was not a bottleneck for {listed}: the training loop waited for "
                               f"data {'at most ' if len(fine) > 1 else ''}{worst:.1f} % of the time.",
                               "epoch_breakdown.png"))
    for p, g in shares:
        if p < DATA_NEGLIGIBLE_PCT:
            continue
        if p >= DATA_BOTTLENECK_PCT:
            out.append(Observation(f"Data loading was a bottleneck for {who[id(g)]}: the training loop waited for "
                                   f"data {p:.0f} % of the time.", "epoch_breakdown.png", True))
        else:
            out.append(Observation(f"Data loading cost {who[id(g)]} {p:.1f} % of the training time in waiting for "
                                   f"batches.", "epoch_breakdown.png"))
    return out


def _warmup_and_drift(groups: list[dict[str, Any]], who: dict[int, str]) -> list[Observation]:
    out = []
    ratios = [(g["warmup_epoch_time_s"] / g["epoch_time_s"], g) for g in groups
              if g.get("warmup_epoch_time_s") and g.get("epoch_time_s") and g.get("timed_epochs") not in ("", "1")]
    if ratios:
        lo, hi = min(r for r, _ in ratios), max(r for r, _ in ratios)
        span = f"{lo:.1f}x" if f"{lo:.1f}" == f"{hi:.1f}" else f"{lo:.1f}x to {hi:.1f}x"
        out.append(Observation(f"The first epoch took {span} as long as the median of the later ones (warm-up: "
                               f"memory allocation, kernel selection, caches); the speed figures leave it out.",
                               "epoch_time.png"))
    for g in groups:
        lo, hi = g.get("epoch_time_s_min"), g.get("epoch_time_s_max")
        if g["runs"] == 1 and lo and hi and 100 * (hi - lo) / lo > DRIFT_PCT:
            out.append(Observation(f"Epoch times of {who[id(g)]} varied by {100 * (hi - lo) / lo:.0f} % after warm-up "
                                   f"({num(lo)}–{num(hi)} s): check for other load or thermal throttling.",
                                   "epoch_time.png"))
    return out


def _memory(groups: list[dict[str, Any]], who: dict[int, str]) -> list[Observation]:
    """Peak RSS from the second epoch to the last: steady, or growing (a leak, a filling cache)."""
    growth = [(g["rss_growth_pct"], g) for g in groups if g.get("rss_growth_pct") is not None]
    if not growth:
        return []
    grew = [(p, g) for p, g in growth if p > MEMORY_GROWTH_PCT]
    out = [Observation(f"Peak memory of {who[id(g)]} grew by {p:.0f} % from the second epoch to the last "
                       f"(to {num(g.get('rss_peak_mb'))} MiB): something accumulates per epoch.", None, True)
           for p, g in grew]
    if len(grew) < len(growth):
        steady = max(p for p, g in growth if p <= MEMORY_GROWTH_PCT)
        out.append(Observation(f"Peak memory did not grow after the first epoch{' for the other runs' if grew else ''} "
                               f"(at most {steady:+.1f} % from the second epoch to the last).", None))
    return out


def _accuracy(groups: list[dict[str, Any]], who: dict[int, str]) -> list[Observation]:
    out = []
    buckets: dict[tuple, list[dict[str, Any]]] = {}
    for g in groups:
        if g.get("best_test_acc") is not None:
            buckets.setdefault((g["model"], g["dataset"]), []).append(g)
    for (model, dataset), gs in buckets.items():
        gs = sorted(gs, key=lambda g: -g["best_test_acc"])
        parts = []
        for g in gs:
            name = who[id(g)]
            at = f" (epoch {g['best_epoch']} of {g['epochs']})" if g.get("best_epoch") else f" (median of {g['runs']} runs)"
            parts.append(f"{name} {100 * g['best_test_acc']:.1f} %{at}")
        out.append(Observation(f"Best test accuracy, {model} on {dataset}: {', '.join(parts)}.", "accuracy_epoch.png",
                               True))
        target = next((g["target_acc"] for g in gs if g.get("target_acc") is not None), None)
        if target is not None:
            bits = []
            for g in sorted(gs, key=lambda g: g["time_to_target_s"] if g["time_to_target_s"] is not None else float("inf")):
                name = who[id(g)]
                bits.append(f"{name} after {num(g['time_to_target_s'])} s" if g["time_to_target_s"] is not None
                            else f"{name} did not reach it in {g['epochs']} epochs")
            out.append(Observation(f"Time to {100 * target:g} % test accuracy ({model}): {'; '.join(bits)}.",
                                   "accuracy_time.png", True))
    return out


def _stops(groups: list[dict[str, Any]], who: dict[int, str]) -> list[Observation]:
    out = []
    for g in groups:
        for r in g.get("_runs", []):
            if r.get("stopped_at") or r["status"] not in ("completed",):
                what = r.get("stopped_at") or r["status"]
                out.append(Observation(f"Run {r['run_id']} of {who[id(g)]} did not complete ({what}); its figures cover "
                                       f"{r['epochs']} complete epoch{'s' if r['epochs'] != 1 else ''}.", None, True))
    return out
