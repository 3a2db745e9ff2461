"""Training images/s of ``bench run`` against the baseline recipes, and bench's own overhead.

For each framework, on the same synthetic CIFAR-shaped data, the same ResNet-20 and batch
128, three things are run in fresh processes, interleaved (A B C, B C A, C A B, ...) ``--repeats``
times:

- the **recipe** (benchmarks/recipes/): PyTorch -- torchvision transforms on PIL images in a
  2-worker DataLoader, SGD (akamaster/pytorch_resnet_cifar10); Chainer -- the user's seed:
  Trainer + SerialIterator + StandardUpdater + Adam on float32 arrays, no augmentation;
- **bench run**: the real ``bench`` CLI (progress bar on, sampler, CSV, checkpoints), read
  back from its epochs.csv: images / ``train_time_s``; same optimiser as the recipe;
- **bare**: the same backend, built the same way, calling ``train_epoch`` over batches made
  in advance: no prefetch thread, sampler, progress bar, CSV or checkpoint.

Epoch 1 of every process is a warm-up and is not counted. Reported: images/s (median and
min-max over repeats), bench / recipe per repeat, the harness overhead -- bench's own work
per epoch as bench itself measures it (``harness_s``: utilisation samples, progress bar,
checkpoint), cross-checked by bench's whole loop (``elapsed_s`` difference minus
``eval_time_s``) against bare ``train_epoch``, which also carries run-to-run noise -- and the share of
training time bench spent waiting for data. Run on a quiet machine: ``uptime`` load < 1.

    python benchmarks/compare_recipes.py --repeats 3
    python benchmarks/compare_recipes.py --frameworks torch --repeats 5
    # try a proposed setting on bench's side only (recipes run unchanged):
    python benchmarks/compare_recipes.py --bench-env MALLOC_MMAP_THRESHOLD_=1073741824
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make `benchmarks` and `harness` importable
    sys.path.insert(0, str(ROOT))

BATCH = 128
MODEL = "resnet20"
TARGETS = {"torch": (1.3, 1.5), "chainer": (1.2, None)}  # bench / recipe: target, stretch
OVERHEAD_LIMIT = 0.02  # bench's full loop vs bare train_epoch
DATA_WAIT_LIMIT = 0.02  # data_wait_s / train_time_s
NOISY_SHARE = 0.05  # other processes using more of the CPU than this during a run: flagged
# The recipe's optimiser, expressed as bench flags, so both sides do the same maths.
OPTIM_FLAGS = {
    "torch": ["--optimizer", "sgd", "--lr", "0.1", "--momentum", "0.9", "--weight-decay", "1e-4"],
    "chainer": ["--optimizer", "adam", "--lr", "0.001", "--weight-decay", "0"],
}
RECIPE_NAMES = {
    "torch": "PyTorch recipe (torchvision on PIL, DataLoader 2 workers, SGD)",
    "chainer": "Chainer recipe (Trainer, SerialIterator, Adam, no augmentation)",
}


# ---------------------------------------------------------------------------- Workers
def _config(framework: str, train_size: int, test_size: int, epochs: int, model: str = MODEL):
    from harness.config import RunConfig

    optim = dict(zip(OPTIM_FLAGS[framework][::2], OPTIM_FLAGS[framework][1::2]))
    return RunConfig(backends=[framework], device="cpu", model=model, dataset="synthetic", train_size=train_size,
                     test_size=test_size, epochs=epochs, batch_size=BATCH, quiet=True, seed=0,
                     optimizer=optim["--optimizer"], lr=float(optim["--lr"]),
                     momentum=float(optim.get("--momentum", 0.9)),
                     weight_decay=float(optim["--weight-decay"])).validate()


def worker_recipe(framework: str, config) -> dict[str, Any]:
    from harness.train.prepare import load_data

    data = load_data(config)
    images, labels = data.train_images, data.train_labels
    if framework == "torch":
        import torch

        from benchmarks.recipes import torch_cifar

        results = torch_cifar.run(images, labels, epochs=config.epochs, num_classes=len(data.class_names))
        epochs = [{"images": r.images, "seconds": r.seconds} for r in results]
        threads = {"torch_num_threads": torch.get_num_threads(), "dataloader_workers": torch_cifar.SETTINGS["workers"]}
    else:
        from backends.chainer_impl import blas
        from benchmarks.recipes import chainer_cifar

        results = chainer_cifar.run(images, labels, epochs=config.epochs, num_classes=len(data.class_names),
                                    stream=sys.stdout)
        epochs = [{"images": r["images"], "seconds": r["seconds"]} for r in results]
        threads = {"blas_threads": blas.blas_threads()}
    return {"epochs": epochs, "threads": threads}


def worker_bare(framework: str, config) -> dict[str, Any]:
    """The backend as bench builds it, ``train_epoch`` over pre-made batches, nothing else."""
    from harness.config import lr_at
    from harness.data import BatchStream
    from harness.train.prepare import load_data, prepare_backend

    data = load_data(config)
    prepared = prepare_backend(config, framework, config.seed, len(data.class_names))
    backend = prepared.backend
    epochs = []
    for epoch in range(1, config.epochs + 1):
        backend.set_lr(lr_at(config, epoch))
        stream = BatchStream(data.train_images, data.train_labels, batch_size=config.batch_size, seed=config.seed,
                             epoch=epoch, shuffle=True, augment=config.augmentation,
                             out_size=prepared.spec.image_size, drop_last=True)
        batches = list(stream)
        start = time.perf_counter()
        stats = backend.train_epoch(batches)
        epochs.append({"images": stats.count, "seconds": time.perf_counter() - start})
    return {"epochs": epochs, "threads": prepared.thread_settings}


def run_worker(kind: str, framework: str, train_size: int, epochs: int,
               extra_env: dict[str, str] | None = None) -> dict[str, Any]:
    out = Path(tempfile.mkstemp(prefix=f"{kind}-{framework}-", suffix=".json")[1])
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", kind, "--frameworks", framework,
           "--train-size", str(train_size), "--epochs", str(epochs), "--worker-out", str(out)]
    _call(cmd, extra_env)
    result = json.loads(out.read_text())
    out.unlink()
    return result


def run_bench(framework: str, train_size: int, test_size: int, epochs: int,
              extra_env: dict[str, str] | None = None) -> dict[str, Any]:
    """The real CLI, progress bar included (drawn to a log file), then its epochs.csv."""
    exe = Path(sys.executable).parent / "bench"
    base = [str(exe)] if exe.is_file() else [sys.executable, "-m", "harness.cli"]
    with tempfile.TemporaryDirectory(prefix="bench-compare-") as tmp:
        cmd = base + ["run", "--backend", framework, "--model", MODEL, "--dataset", "synthetic", "--device", "cpu",
                      "--train-size", str(train_size), "--test-size", str(test_size), "--epochs", str(epochs),
                      "--batch-size", str(BATCH), "--seed", "0", "--results-dir", tmp, *OPTIM_FLAGS[framework]]
        _call(cmd, extra_env)
        run_dir = next(p for p in Path(tmp).iterdir() if (p / "epochs.csv").is_file())
        with open(run_dir / "epochs.csv", newline="") as f:
            rows = [r for r in csv.DictReader(f) if r.get("status") == "ok"]
        meta = json.loads((run_dir / "run.json").read_text())
    epochs_out, previous_elapsed = [], 0.0
    for r in rows:
        elapsed = float(r["elapsed_s"])
        train_time = float(r["train_time_s"])
        images = round(float(r["train_images_per_s"]) * train_time)
        epochs_out.append({"images": images, "seconds": train_time, "data_wait_s": float(r["data_wait_s"]),
                           "loop_seconds": elapsed - previous_elapsed - float(r["eval_time_s"]),
                           "epoch_seconds": float(r["epoch_time_s"]), "harness_s": float(r["harness_s"])})
        previous_elapsed = elapsed
    return {"epochs": epochs_out, "threads": meta.get("threads", {}).get("framework", {})}


def _call(cmd: list[str], extra_env: dict[str, str] | None = None) -> None:
    env = dict(os.environ) | (extra_env or {})
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log)
        if proc.returncode != 0:
            log.seek(0)
            tail = log.read()[-3000:]
            raise SystemExit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{tail}")


# ---------------------------------------------------------------------------- Noise
def _machine_busy_s() -> float | None:
    """CPU seconds the whole machine has been busy, all cores (Linux /proc/stat)."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(x) for x in f.readline().split()[1:9]]
    except OSError:
        return None
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # minus idle and iowait


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def wait_until_idle(max_busy: float, max_wait_s: float) -> float | None:
    """Sample the machine for 1 s at a time until at most ``max_busy`` of its CPU is in use
    (by others: nothing of ours runs now) or ``max_wait_s`` has passed; the last sample."""
    deadline = time.monotonic() + max_wait_s
    while True:
        before = _machine_busy_s()
        if before is None:
            return None
        time.sleep(1.0)
        busy = (_machine_busy_s() - before) / (os.cpu_count() or 1)
        if busy <= max_busy or time.monotonic() >= deadline:
            return busy


def measured(fn, *args: Any) -> dict[str, Any]:
    """Run ``fn(*args)`` and add ``foreign_cpu``: the share of the machine's CPU that other
    processes used meanwhile (0.05 = 5 %); timings taken under load are not comparable."""
    busy0, own0, start = _machine_busy_s(), _children_cpu_s(), time.monotonic()
    result = fn(*args)
    wall = time.monotonic() - start
    if busy0 is not None:
        foreign = (_machine_busy_s() - busy0) - (_children_cpu_s() - own0)
        result["foreign_cpu"] = max(0.0, foreign) / (wall * (os.cpu_count() or 1))
    return result


def measure_quietly(args: argparse.Namespace, kind: str, framework: str, size: int, label: str) -> dict[str, Any]:
    """One measurement, repeated (up to ``--retries`` times) while other processes took more
    than NOISY_SHARE of the CPU during it; the least disturbed attempt is kept."""
    env = {} if kind == "recipe" else args.bench_env
    best: dict[str, Any] | None = None
    for attempt in range(1 + args.retries):
        if args.max_wait > 0:
            wait_until_idle(args.idle_below, args.max_wait)
        if kind == "bench":
            result = measured(run_bench, framework, size, args.test_size, args.epochs, env)
        else:
            result = measured(run_worker, kind, framework, size, args.epochs, env)
        foreign = result.get("foreign_cpu")
        others = "" if foreign is None else f", others used {foreign:.0%} of the CPU"
        print(f"  [{framework} {label}] {kind}: {warm_rate(result):.1f} img/s{others}", file=sys.stderr, flush=True)
        if best is None or (foreign or 0.0) < best.get("foreign_cpu", 0.0):
            best = result
        if foreign is None or foreign <= NOISY_SHARE:
            break
    assert best is not None
    return best


# ---------------------------------------------------------------------------- Summary
def warm_rate(result: dict[str, Any], key: str = "seconds") -> float:
    """Images/s over the epochs after the first (the warm-up)."""
    warm = result["epochs"][1:]
    return sum(e["images"] for e in warm) / sum(e[key] for e in warm)


def spread(values: list[float], fmt: str = "{:.1f}") -> str:
    return f"{fmt.format(statistics.median(values))} (min-max {fmt.format(min(values))}-{fmt.format(max(values))})"


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def summarise(framework: str, runs: dict[str, list[dict[str, Any]]], train_size: int, epochs: int) -> list[str]:
    recipe = [warm_rate(r) for r in runs["recipe"]]
    bench = [warm_rate(r) for r in runs["bench"]]
    bare = [warm_rate(r) for r in runs["bare"]]
    loop = [warm_rate(r, "loop_seconds") for r in runs["bench"]]
    ratios = [b / r for b, r in zip(bench, recipe)]
    overheads = [b / lp - 1 for b, lp in zip(bare, loop)]
    in_train = [b / t - 1 for b, t in zip(bare, bench)]  # prefetch thread, sampler, progress bar
    outside = [t / lp - 1 for t, lp in zip(bench, loop)]  # checkpoint, CSV, run.json, between epochs
    waits = [sum(e["data_wait_s"] for e in r["epochs"][1:]) / sum(e["seconds"] for e in r["epochs"][1:])
             for r in runs["bench"]]
    # bench's own work measured directly in every epoch (epochs.csv harness_s): the verdict.
    own = [sum(e["harness_s"] for e in r["epochs"][1:]) / sum(e["epoch_seconds"] for e in r["epochs"][1:])
           for r in runs["bench"]]
    target, stretch = TARGETS[framework]
    ratio = statistics.median(ratios)
    stretch_note = f"; stretch >= {stretch}x: {verdict(ratio >= stretch)}" if stretch else ""
    width = 66
    lines = [
        f"{framework}: {train_size} train images x {epochs} epochs per process (epoch 1 = warm-up, not counted), "
        f"{len(recipe)} interleaved repeats",
        f"  {RECIPE_NAMES[framework]:<{width}} {spread(recipe)} img/s",
        f"  {'bench run (' + ' '.join(OPTIM_FLAGS[framework][:2]) + ', crop_flip augmentation)':<{width}} {spread(bench)} img/s",
        f"  {'bare train_epoch over pre-made batches (same backend)':<{width}} {spread(bare)} img/s",
        f"  bench / recipe: {spread(ratios, '{:.2f}')}x   [target >= {target}x: {verdict(ratio >= target)}{stretch_note}]",
        f"  harness's own work per epoch (epochs.csv harness_s: sampler, progress bar, checkpoint): "
        f"{spread([o * 100 for o in own], '{:.2f}')} %   [<= {OVERHEAD_LIMIT:.0%}: {verdict(max(own) <= OVERHEAD_LIMIT)}]",
        f"  cross-check, bench's whole loop minus eval vs bare (includes run-to-run noise): "
        f"{spread([o * 100 for o in overheads], '{:+.1f}')} %",
        f"    best vs best {(max(bare) / max(loop) - 1) * 100:+.1f} %;"
        f" in train_time_s (prefetch, sampler, progress bar) {spread([o * 100 for o in in_train], '{:+.1f}')} %;"
        f" outside it (checkpoint, CSV, run.json) {spread([o * 100 for o in outside], '{:+.1f}')} %",
        f"  data wait / train time: {spread([w * 100 for w in waits], '{:.2f}')} %"
        f"   [<= {DATA_WAIT_LIMIT:.0%}: {verdict(max(waits) <= DATA_WAIT_LIMIT)}]",
        f"  threads: recipe {runs['recipe'][0]['threads']}; bench {_short(runs['bench'][0]['threads'])}",
    ]
    foreign = [r.get("foreign_cpu") for kind in runs.values() for r in kind if r.get("foreign_cpu") is not None]
    if foreign:
        noisy = max(foreign) > NOISY_SHARE
        lines.append(f"  other processes' CPU share during these runs: max {max(foreign):.0%}"
                     + (" -- NOISY, re-run on a quiet machine" if noisy else " (quiet)"))
    if framework == "chainer":
        lines.append("  note: bench does more work per image than this recipe (random crop + flip and mean/std "
                     "normalisation; the recipe trains on un-augmented [0, 1] arrays)")
    return lines


def _short(threads: dict[str, Any]) -> dict[str, Any]:
    keep = ("torch_num_threads", "torch_num_interop_threads", "blas_threads")
    return {k: v for k, v in threads.items() if k in keep}


# ---------------------------------------------------------------------------- Main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=3, help="interleaved repeats of each measurement (default 3)")
    p.add_argument("--frameworks", default="torch,chainer", help="comma-separated (default torch,chainer)")
    p.add_argument("--train-size", type=int, default=2048, help="torch: training images per epoch (default 2048)")
    p.add_argument("--chainer-train-size", type=int, default=1024,
                   help="chainer: training images per epoch (default 1024; Chainer trains at ~30-50 img/s here)")
    p.add_argument("--test-size", type=int, default=128, help="bench run's test images (not timed as training)")
    p.add_argument("--epochs", type=int, default=2, help="epochs per process, the first a warm-up (default 2)")
    p.add_argument("--idle-below", type=float, default=0.10,
                   help="before each run, wait until other processes use at most this share of the CPU (default 0.10)")
    p.add_argument("--max-wait", type=float, default=180.0,
                   help="seconds to wait for that before running anyway (default 180; 0: never wait)")
    p.add_argument("--retries", type=int, default=3,
                   help="re-run a measurement this many times at most while others disturbed it (default 3)")
    p.add_argument("--bench-env", action="append", default=[], metavar="KEY=VALUE",
                   help="extra environment for the bench and bare processes only, to try a proposed setting")
    p.add_argument("--worker", choices=("recipe", "bare"), help=argparse.SUPPRESS)
    p.add_argument("--worker-out", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.frameworks = [f for f in args.frameworks.split(",") if f]
    if any("=" not in item for item in args.bench_env):
        p.error("--bench-env takes KEY=VALUE")
    args.bench_env = dict(item.split("=", 1) for item in args.bench_env)
    if args.epochs < 2:
        p.error("--epochs must be at least 2: the first is a warm-up")
    for name in args.frameworks:
        if name not in TARGETS:
            p.error(f"unknown framework {name!r}: choose from {', '.join(TARGETS)}")
    for size in (args.train_size, args.chainer_train_size):
        if size % BATCH:
            p.error(f"train sizes must be multiples of the batch size {BATCH}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        framework = args.frameworks[0]
        config = _config(framework, args.train_size, args.test_size, args.epochs)
        result = (worker_recipe if args.worker == "recipe" else worker_bare)(framework, config)
        args.worker_out.write_text(json.dumps(result))
        return 0
    from harness.measure.sysinfo import format_machine, machine_info

    print(format_machine(machine_info()))
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    if args.bench_env:
        print(f"extra environment for bench and bare only: {args.bench_env}", flush=True)
    print(flush=True)
    started = time.perf_counter()
    for framework in args.frameworks:
        size = args.train_size if framework == "torch" else args.chainer_train_size
        runs: dict[str, list[dict[str, Any]]] = {"recipe": [], "bench": [], "bare": []}
        for repeat in range(args.repeats):
            # Rotated (ABC, BCA, CAB, ...) so each kind runs in each position equally often:
            # a process right after another heavy one may run in a different state of memory.
            order = ["recipe", "bench", "bare"]
            for kind in order[repeat % 3:] + order[:repeat % 3]:
                runs[kind].append(measure_quietly(args, kind, framework, size, f"{repeat + 1}/{args.repeats}"))
        print("\n".join(summarise(framework, runs, size, args.epochs)) + "\n", flush=True)
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
          f"took {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
