"""The report's figures, one function each, returned as PNG bytes (None when not applicable).

matplotlib's object API on the Agg canvas (no pyplot, no display, no global figure state),
so figures can be drawn in a test, a headless server or a thread. One colour per backend in
every figure; machines are told apart by line style, other differences by marker. Labels
name only what differs between the runs shown ("torch · laptop", not the full settings).
"""
from __future__ import annotations

import functools
import io
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from harness.device import parse_device
from harness.errors import BenchError
from harness.report.observations import setting_value
from harness.schema import RunFolder

BACKEND_COLOURS = {"torch": "#EE4C2C", "chainer": "#1F5FAD", "onnxruntime": "#7F7F7F"}
_OTHER_COLOURS = ["#2CA02C", "#9467BD", "#8C564B", "#E377C2", "#BCBD22", "#17BECF"]
_LINESTYLES = ["-", "--", ":", "-."]
_MARKERS = ["o", "s", "^", "D", "v", "P", "X"]
_RC = {"font.size": 10, "axes.titlesize": 12, "axes.titleweight": "bold", "axes.grid": True,
       "grid.alpha": 0.3, "axes.spines.top": False, "axes.spines.right": False, "legend.fontsize": 9,
       "legend.framealpha": 0.85}
MAX_BINS = 300  # time series are averaged into at most this many points per run
MAX_PANELS = 6  # utilisation figures show at most this many configurations


@dataclass(frozen=True)
class Style:
    label: str
    colour: str
    linestyle: str
    marker: str


def backend_colour(backend: str) -> str:
    if backend in BACKEND_COLOURS:
        return BACKEND_COLOURS[backend]
    return _OTHER_COLOURS[sum(map(ord, backend)) % len(_OTHER_COLOURS)]


def _threads(value: Any) -> str:
    return f"{value} thread{'' if str(value) == '1' else 's'}"


def styles(records: list[dict[str, Any]]) -> list[Style]:
    """A label and line style per record (run or group), in order."""
    fields = [("backend", lambda r: r["backend"]), ("machine", lambda r: r["hostname"]),
              ("model", lambda r: r["model"]), ("dataset", lambda r: r["dataset"]),
              ("device", lambda r: r["device"]), ("batch", lambda r: f"batch {r['batch_size']}"),
              ("procs", lambda r: f"{r['world_size']} process" + ("es" if r["world_size"] != 1 else "")),
              ("epochs", lambda r: f"{r['epochs_planned']} ep")]
    varying = [(name, get) for name, get in fields
               if name == "backend" or len({get(r) for r in records}) > 1]
    labels = [" · ".join(str(get(r)) for _, get in varying) for r in records]
    # Only where two labels still collide: the settings that tell those records apart (threads,
    # precision, compile), then the experiment, then the seed (repeats; a group holds its seeds).
    for get in (lambda r: _threads(setting_value(r, "threads")), lambda r: setting_value(r, "precision"),
                lambda r: f"compile {setting_value(r, 'compile')}", lambda r: r.get("experiment") or "",
                lambda r: f"seed {r['seed'] if 'seed' in r else ','.join(map(str, r.get('seeds') or []))}"):
        clash = {lab: {str(get(r)) for lb, r in zip(labels, records) if lb == lab} for lab in labels}
        labels = [f"{lab} · {get(r)}" if labels.count(lab) > 1 and len(clash[lab]) > 1 else lab
                  for lab, r in zip(labels, records)]
    if len(set(labels)) < len(labels):  # true repeats with one seed each: number them
        labels = [f"{lab} · #{labels[:i].count(lab) + 1}" if labels.count(lab) > 1 else lab
                  for i, lab in enumerate(labels)]
    machines = list(dict.fromkeys(r["machine_id"] for r in records))
    variants = list(dict.fromkeys(_variant(r) for r in records))
    return [Style(lab, backend_colour(r["backend"]), _LINESTYLES[machines.index(r["machine_id"]) % 4],
                  _MARKERS[variants.index(_variant(r)) % len(_MARKERS)]) for lab, r in zip(labels, records)]


def _variant(r: dict[str, Any]) -> tuple:
    return (r["model"], r["dataset"], r["device"], r["batch_size"], r["world_size"])


# --- plumbing ---------------------------------------------------------------------------------

def _styled(draw: Callable[..., bytes | None]) -> Callable[..., bytes | None]:
    """Apply the house rcParams while a figure is drawn, without touching the caller's."""
    @functools.wraps(draw)
    def wrapper(*args: Any, **kwargs: Any) -> bytes | None:
        import matplotlib

        with matplotlib.rc_context(_RC):
            return draw(*args, **kwargs)
    return wrapper


def _figure(width: float = 9.0, height: float = 5.0, **subplots: Any):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, (fig.subplots(**subplots) if subplots else fig.add_subplot())


def _bar_width(sts: list[Style]) -> float:
    """A bar chart's width in inches: 5.5 for the bars plus its longest label (~0.075 in per
    character at 10 pt), so long labels never squeeze the bars away."""
    return max(9.0, 5.5 + 0.075 * max((len(st.label) for st in sts), default=0))


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", facecolor="white")
    return buf.getvalue()


def _figure_legend(fig: Any, ax: Any, n: int) -> None:
    """Below all panels, for figures with several panels of the same lines: as many columns
    (at most 3) as the longest label leaves room for (~12 characters per inch at 9 pt), and the
    figure made taller by the legend's rows, so that neither is cut off."""
    handles, labels = ax.get_legend_handles_labels()
    width, height = fig.get_size_inches()
    longest = max((len(lab) for lab in labels), default=1)
    ncols = max(1, min(n, 3, int(width * 12 // (longest + 6))))
    rows = -(-len(labels) // ncols)
    fig.set_size_inches(width, height + 0.19 * max(0, rows - 3))
    fig.legend(handles, labels, loc="outside lower center", ncols=ncols)


def _time_unit(seconds: float) -> tuple[float, str]:
    if seconds > 3 * 3600:
        return 3600.0, "h"
    if seconds > 600:
        return 60.0, "min"
    return 1.0, "s"


def _binned(t: np.ndarray, values: np.ndarray, span: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean of ``values`` in at most MAX_BINS equal time bins (keeps long runs readable)."""
    if len(t) <= MAX_BINS:
        return t, values
    width = span / MAX_BINS
    idx = np.minimum((t / width).astype(int), MAX_BINS - 1)
    counts = np.bincount(idx, minlength=MAX_BINS)
    keep = counts > 0
    centres = (np.arange(MAX_BINS) + 0.5) * width
    if values.ndim == 1:
        sums = np.bincount(idx, weights=np.nan_to_num(values), minlength=MAX_BINS)
        return centres[keep], sums[keep] / counts[keep]
    sums = np.stack([np.bincount(idx, weights=np.nan_to_num(v), minlength=MAX_BINS) for v in values.T], axis=1)
    return centres[keep], sums[keep] / counts[keep, None]


def _rank0(run: RunFolder) -> Any:
    """Rank 0's samples, without a first sample that reads exactly 0 % everywhere: folders
    from before the monitor kept its own cpu_times readings have one (psutil's first
    cpu_percent() call in the sampler thread), which is not an idle machine."""
    util = run.util
    if util is None or not len(util):
        return None
    if "rank" in util.columns and (util["rank"] == 0).any():
        util = util[util["rank"] == 0]
    cpu = [c for c in util.columns if c.startswith("cpu") and c.endswith("pct")]
    if len(util) > 1 and cpu and (util[cpu].iloc[0].fillna(0) == 0).all():
        util = util.iloc[1:]
    return util


# --- accuracy ---------------------------------------------------------------------------------

@_styled
def accuracy_vs_epoch(runs: list[RunFolder], records: list[dict[str, Any]]) -> bytes | None:
    return _accuracy(runs, records, "epoch")


@_styled
def accuracy_vs_time(runs: list[RunFolder], records: list[dict[str, Any]]) -> bytes | None:
    return _accuracy(runs, records, "elapsed_s")


def _accuracy(runs: list[RunFolder], records: list[dict[str, Any]], x: str) -> bytes | None:
    pairs = [(run, st) for run, st in zip(runs, styles(records)) if run.epochs["test_acc"].notna().any()]
    if not pairs:
        return None
    fig, ax = _figure()
    ends = [float(run.epochs["elapsed_s"].max()) for run, _ in pairs]
    scale, unit = _time_unit(max(ends)) if x == "elapsed_s" else (1.0, "")
    log = x == "elapsed_s" and max(ends) / max(min(ends), 1e-9) > 20
    for run, st in pairs:
        ep = run.epochs.dropna(subset=["test_acc"])
        ax.plot(ep[x] / scale, 100 * ep["test_acc"], color=st.colour, linestyle=st.linestyle, marker=st.marker,
                markersize=4, linewidth=1.6, label=st.label)
    if x == "epoch":
        ax.set(title="Test accuracy by epoch", xlabel="Epoch", ylabel="Test accuracy, top-1 (%)")
        ax.xaxis.get_major_locator().set_params(integer=True)
    else:
        ax.set(title="Test accuracy against wall-clock time",
               xlabel=f"Time since the run started ({unit}{', log scale' if log else ''})",
               ylabel="Test accuracy, top-1 (%)")
        if log:  # a GPU run's minutes beside a CPU run's hours
            ax.set_xscale("log")
        else:
            ax.set_xlim(left=0)
    _figure_legend(fig, ax, len(pairs))
    return _png(fig)


# --- speed ------------------------------------------------------------------------------------

@_styled
def throughput_bars(groups: list[dict[str, Any]]) -> bytes | None:
    """Median training images/s per group, whiskers min–max, log scale when they span >30x."""
    rows = [g for g in groups if g.get("train_images_per_s")]
    if not rows:
        return None
    sts = styles(rows)
    fig, ax = _figure(_bar_width(sts), max(3.4, 1.6 + 0.45 * len(rows)))
    y = np.arange(len(rows))[::-1]
    med = np.array([g["train_images_per_s"] for g in rows])
    lo = np.array([g["train_images_per_s_min"] or v for g, v in zip(rows, med)])
    hi = np.array([g["train_images_per_s_max"] or v for g, v in zip(rows, med)])
    ax.barh(y, med, color=[s.colour for s in sts], height=0.6)
    # Whiskers drawn by hand: barh(xerr=) warns on numpy >= 1.25 when there is a single bar.
    ax.hlines(y, lo, hi, color="#333333", linewidth=1.2)
    ax.vlines(np.concatenate([lo, hi]), np.concatenate([y, y]) - 0.12, np.concatenate([y, y]) + 0.12,
              color="#333333", linewidth=1.2)
    log = med.max() / med.min() > 30
    if log:
        ax.set_xscale("log")
    for yi, v, h in zip(y, med, hi):
        ax.annotate(f"{v:,.0f}" if v >= 100 else f"{v:.1f}", (h, yi), xytext=(5, 0), textcoords="offset points",
                    va="center", fontsize=9)
    ax.set_yticks(y, [s.label for s in sts])
    if log:
        ax.set_xlim(10 ** np.floor(np.log10(lo.min())), hi.max() * 3)
    else:
        ax.set_xlim(0, hi.max() * 1.15)
    ax.grid(axis="y", visible=False)
    ax.set(title="Training throughput", xlabel="Training images per second: median of the epochs after the "
           "first, whiskers min–max" + (" (log scale)" if log else ""))
    return _png(fig)


@_styled
def epoch_breakdown(groups: list[dict[str, Any]]) -> bytes | None:
    """Where a steady epoch's time goes, as % of it: waiting for data, training compute,
    evaluation, the rest (checkpoint, logging). Shows at a glance whether input is the limit."""
    rows = [g for g in groups if g.get("epoch_time_s") and g.get("train_time_s") is not None]
    if not rows:
        return None
    sts = styles(rows)
    fig, ax = _figure(_bar_width(sts), max(3.4, 1.9 + 0.45 * len(rows)))
    y = np.arange(len(rows))[::-1]
    parts = [("waiting for data", "#F2B701", lambda g: g["data_wait_s"] or 0.0),
             ("training compute", "#8E6CBF", lambda g: g["train_time_s"] - (g["data_wait_s"] or 0.0)),
             ("evaluation", "#55A868", lambda g: g["eval_time_s"] or 0.0),
             ("other", "#BBBBBB", lambda g: max(0.0, g["epoch_time_s"] - g["train_time_s"] - (g["eval_time_s"] or 0.0)))]
    left = np.zeros(len(rows))
    for name, colour, get in parts:
        share = np.array([100 * get(g) / g["epoch_time_s"] for g in rows])
        ax.barh(y, share, left=left, color=colour, height=0.6, label=name)
        for yi, x0, w in zip(y, left, share):
            if w >= 6:
                ax.text(x0 + w / 2, yi, f"{w:.0f} %", ha="center", va="center", fontsize=8,
                        color="black" if colour in ("#F2B701", "#BBBBBB", "#55A868") else "white")
        left += share
    ax.set_yticks(y, [s.label for s in sts])
    for tick, st in zip(ax.get_yticklabels(), sts):
        tick.set_color(st.colour)
    ax.set(title="Where an epoch's time goes (median of the epochs after the first)",
           xlabel="Share of the epoch time (%)", xlim=(0, 100))
    ax.grid(axis="y", visible=False)
    fig.legend(loc="outside lower center", ncols=4)
    return _png(fig)


@_styled
def epoch_times(runs: list[RunFolder], records: list[dict[str, Any]]) -> bytes | None:
    """Left: seconds per epoch. Right: the same relative to the run's steady median, which
    puts warm-up and drift of fast and slow backends on one scale."""
    pairs = [(run, st, rec) for run, st, rec in zip(runs, styles(records), records)
             if run.epochs["epoch_time_s"].notna().any()]
    if not pairs:
        return None
    fig, (left, right) = _figure(11.0, 4.8, ncols=2)
    spread = []
    for run, st, rec in pairs:
        ep = run.epochs.dropna(subset=["epoch_time_s"])
        kw = dict(color=st.colour, linestyle=st.linestyle, marker=st.marker, markersize=4, linewidth=1.6)
        left.plot(ep["epoch"], ep["epoch_time_s"], label=st.label, **kw)
        base = rec["epoch_time_s"] or float(ep["epoch_time_s"].median())
        right.plot(ep["epoch"], 100 * ep["epoch_time_s"] / base, **kw)
        spread += list(ep["epoch_time_s"])
    if spread and max(spread) / max(min(spread), 1e-9) > 20:
        left.set_yscale("log")
    first = min(int(run.epochs["epoch"].min()) for run, _, _ in pairs)
    for ax in (left, right):
        ax.axvspan(first - 0.4, first + 0.4, color="#999999", alpha=0.15, linewidth=0)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_xlabel("Epoch")
    left.annotate("warm-up", (first, 1), xycoords=("data", "axes fraction"), ha="center", va="top",
                  fontsize=9, color="#555555")
    right.axhline(100, color="#555555", linewidth=0.8, linestyle="--")
    left.set(title="Time per epoch", ylabel="Epoch time (s)" + (", log scale" if left.get_yscale() == "log" else ""))
    right.set(title="Relative to the median after warm-up", ylabel="Epoch time (% of median)")
    _figure_legend(fig, left, len(pairs))
    return _png(fig)


# --- utilisation ------------------------------------------------------------------------------

def _representatives(runs: list[RunFolder], records: list[dict[str, Any]]) -> list[tuple[Any, Style, dict[str, Any]]]:
    """(rank-0 util samples, style, record) of the first run of each configuration that has
    samples: repeats look alike, and a panel per repeat would crowd out the rest."""
    out: list[tuple[Any, Style, dict[str, Any]]] = []
    seen: set[tuple[Any, Any, Any]] = set()
    for run, st, rec in zip(runs, styles(records), records):
        util, key = _rank0(run), (rec["machine_id"], rec["backend"], rec["config"])
        if util is not None and util["cpu_pct"].notna().any() and key not in seen and len(out) < MAX_PANELS:
            seen.add(key)
            out.append((util, st, rec))
    return out


def _phase_spans(util: Any, phase: str) -> list[tuple[float, float]]:
    if "phase" not in util.columns:
        return []
    t = util["elapsed_s"].to_numpy(float)
    on = (util["phase"] == phase).to_numpy()
    edges = np.flatnonzero(np.diff(np.concatenate([[False], on, [False]]).astype(int)))
    return [(t[a], t[min(b, len(t) - 1)]) for a, b in zip(edges[::2], edges[1::2])]


@_styled
def cpu_util_overall(runs: list[RunFolder], records: list[dict[str, Any]]) -> bytes | None:
    """Whole-machine CPU % over time, one panel per configuration (each on its own time
    axis: a GPU run's seconds beside a CPU run's hours), evaluation shaded."""
    panels = _representatives(runs, records)
    if not panels:
        return None
    ncols = 1 if len(panels) == 1 else 2
    nrows = -(-len(panels) // ncols)
    fig, axes = _figure(11.0 if ncols == 2 else 9.0, 1.2 + 2.6 * nrows, nrows=nrows, ncols=ncols, squeeze=False)
    for ax, (util, st, rec) in zip(axes.flat, panels):
        span = float(util["elapsed_s"].max())
        scale, unit = _time_unit(span)
        for a, b in _phase_spans(util, "eval"):
            ax.axvspan(a / scale, b / scale, color="#999999", alpha=0.18, linewidth=0)
        t, v = _binned(util["elapsed_s"].to_numpy(float), util["cpu_pct"].to_numpy(float), span)
        ax.plot(t / scale, v, color=st.colour, linewidth=1.3)
        train = util[util["phase"] == "train"]["cpu_pct"] if "phase" in util.columns else util["cpu_pct"]
        mean = f", mean {train.mean():.0f} % while training" if train.notna().any() else ""
        ax.set_title(f"{st.label}{mean}", fontsize=10, loc="left", color=st.colour)
        ax.set(ylim=(0, 105), xlim=(0, span / scale), xlabel=f"Time since the run started ({unit})",
               ylabel="CPU, all cores (%)")
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    fig.suptitle("CPU utilisation of the whole machine (grey: evaluation)", fontweight="bold")
    return _png(fig)


@_styled
def cpu_util_per_core(runs: list[RunFolder], records: list[dict[str, Any]]) -> bytes | None:
    """A heat map per configuration (cores x time): readable at 4 cores and at 128."""
    panels = []
    for util, st, _ in _representatives(runs, records):
        cores = sorted((c for c in util.columns if c.startswith("cpu") and c.endswith("_pct") and c[3:-4].isdigit()),
                       key=lambda c: int(c[3:-4]))
        if cores:
            panels.append((util, cores, st))
    if not panels:
        return None
    fig, axes = _figure(9.0, 1.0 + 1.9 * len(panels), nrows=len(panels), squeeze=False)
    image = None
    for ax, (util, cores, st) in zip(axes[:, 0], panels):
        span = float(util["elapsed_s"].max())
        scale, unit = _time_unit(span)
        t, v = _binned(util["elapsed_s"].to_numpy(float), util[cores].to_numpy(float), span)
        half = float(np.median(np.diff(t))) / 2 if len(t) > 1 else 0.5
        image = ax.imshow(v.T, aspect="auto", origin="lower", cmap="magma", vmin=0, vmax=100, interpolation="nearest",
                          extent=((t[0] - half) / scale, (t[-1] + half) / scale, -0.5, len(cores) - 0.5))
        ax.set_xlim(0, (t[-1] + half) / scale)
        ax.set_title(st.label, fontsize=10, loc="left", color=st.colour)
        ax.set(ylabel="Core", xlabel=f"Time since the run started ({unit})")
        ax.grid(False)
        ax.yaxis.get_major_locator().set_params(integer=True)
    fig.suptitle("CPU utilisation per core", fontweight="bold")
    fig.colorbar(image, ax=axes[:, 0].tolist(), label="Utilisation (%)", shrink=0.9)
    return _png(fig)


@_styled
def gpu_util(runs: list[RunFolder], records: list[dict[str, Any]]) -> bytes | None:
    series = []
    for run, st, rec in zip(runs, styles(records), records):
        util = _rank0(run)
        dev = str(rec["device"])
        try:
            index = str(parse_device(dev).ordinal or 0)
        except BenchError:  # a folder from elsewhere with an odd device: no GPU figure for it
            continue
        col = f"gpu{index}_util_pct"
        if util is not None and col in util.columns and util[col].notna().any():
            series.append((util, index, st))
    if not series:
        return None
    fig, (top, bottom) = _figure(9.0, 6.5, nrows=2, sharex=True)
    scale, unit = _time_unit(max(float(u["elapsed_s"].max()) for u, _, _ in series))
    for util, index, st in series:
        span = float(util["elapsed_s"].max())
        gpu = util[[f"gpu{index}_util_pct", f"gpu{index}_mem_mb"]].to_numpy(float)
        t, v = _binned(util["elapsed_s"].to_numpy(float), gpu, span)
        kw = dict(color=st.colour, linestyle=st.linestyle, linewidth=1.3)
        top.plot(t / scale, v[:, 0], label=st.label, **kw)
        bottom.plot(t / scale, v[:, 1], **kw)
    top.set(title="GPU utilisation and memory (the run's device)", ylabel="GPU utilisation (%)", ylim=(0, 105))
    bottom.set(ylabel="GPU memory used (MiB)", xlabel=f"Time since the run started ({unit})")
    bottom.set_ylim(bottom=0)
    bottom.set_xlim(left=0)
    _figure_legend(fig, top, len(series))
    return _png(fig)


# --- scaling ----------------------------------------------------------------------------------

@_styled
def scaling(rows: list[dict[str, Any]]) -> bytes | None:
    """Throughput and efficiency against the number of processes (rows from scaling_rows)."""
    if not rows:
        return None
    fig, (left, right) = _figure(11.0, 4.8, ncols=2)
    names = list(dict.fromkeys(r["series"] for r in rows))
    for i, name in enumerate(names):
        pts = [r for r in rows if r["series"] == name]
        n = np.array([r["processes"] for r in pts])
        thr = np.array([r["train_images_per_s"] for r in pts])
        kw = dict(color=backend_colour(pts[0]["backend"]), marker=_MARKERS[i % len(_MARKERS)],
                  linestyle=_LINESTYLES[i % 4])
        left.plot(n, thr, label=name, **kw)
        left.plot(n, thr[0] * n / n[0], color="#888888", linestyle=":", linewidth=1)
        right.plot(n, 100 * np.array([r["efficiency"] for r in pts]), **kw)
    alln = sorted({r["processes"] for r in rows})
    for ax in (left, right):
        ax.set_xticks(alln)
        ax.set_xlabel("Processes (world size)")
    right.axhline(100, color="#888888", linestyle=":", linewidth=1)
    left.set(title="Training throughput (dotted: linear scaling)", ylabel="Training images per second")
    right.set(title="Scaling efficiency", ylabel="Throughput(N) / (N × throughput(1)) (%)", ylim=(0, 110))
    _figure_legend(fig, left, len(names))
    return _png(fig)


@dataclass(frozen=True)
class FigureFile:
    name: str  # file name, e.g. "throughput.png"
    title: str
    png: bytes


def make_figures(runs: list[RunFolder], records: list[dict[str, Any]], groups: list[dict[str, Any]],
                 scaling_data: list[dict[str, Any]]) -> list[FigureFile]:
    """Every figure that applies to these runs, in report order."""
    plan: list[tuple[str, str, Callable[[], bytes | None]]] = [
        ("accuracy_epoch.png", "Test accuracy by epoch", lambda: accuracy_vs_epoch(runs, records)),
        ("accuracy_time.png", "Test accuracy against wall-clock time", lambda: accuracy_vs_time(runs, records)),
        ("throughput.png", "Training throughput", lambda: throughput_bars(groups)),
        ("scaling.png", "Scaling with the number of processes", lambda: scaling(scaling_data)),
        ("epoch_time.png", "Time per epoch", lambda: epoch_times(runs, records)),
        ("epoch_breakdown.png", "Where an epoch's time goes", lambda: epoch_breakdown(groups)),
        ("cpu_util.png", "CPU utilisation over time", lambda: cpu_util_overall(runs, records)),
        ("cpu_cores.png", "CPU utilisation per core", lambda: cpu_util_per_core(runs, records)),
        ("gpu_util.png", "GPU utilisation and memory", lambda: gpu_util(runs, records)),
    ]
    out = []
    for name, title, draw in plan:
        png = draw()
        if png is not None:
            out.append(FigureFile(name, title, png))
    return out
