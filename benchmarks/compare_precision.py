"""bench's ResNet-20 training images/s per (--precision, --compile) cell, measured interleaved.

Each cell is a real ``bench run`` in a fresh process (ResNet-20, batch 128, synthetic data,
SGD, channels_last as bench always runs it); the cells run in rotated order (A B C D, B C D A,
...) ``--repeats`` times so drift in the machine's load falls on every cell alike. A run's
figure is its steady-state training images/s as ``bench compare`` computes it: epochs after
the first and never one in which the compiler ran (compile time is reported on its own,
with whether inductor's cache was cold or warm). The load average (``os.getloadavg``) is
recorded before every run; a run that started above ``--max-load`` is flagged.

The bar (issue 16): on a CPU with AMX-BF16, bf16-mixed + compile at least 2.2x fp32 eager.
It applies only where the CPU flags say AMX-BF16 (read from /proc/cpuinfo, never assumed);
on another CPU the figures are reported with what compile alone gives (fp32 + compile over
fp32 eager), and the output says why the bar is not judged.

    python benchmarks/compare_precision.py --repeats 3
    python benchmarks/compare_precision.py --cells fp32/none,bf16-mixed/default --train-size 512
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make `harness` importable
    sys.path.insert(0, str(ROOT))

BAR = 2.2  # bf16-mixed + compile over fp32 eager, on an AMX-BF16 CPU
BASE, TARGET, COMPILE_ONLY = ("fp32", "none"), ("bf16-mixed", "default"), ("fp32", "default")
DEFAULT_CELLS = "fp32/none,bf16-mixed/none,fp32/default,bf16-mixed/default"


def cpu_flags() -> set[str]:
    """The CPU's feature flags (Linux /proc/cpuinfo); empty where they cannot be read."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    line = next((ln for ln in text.splitlines() if ln.startswith(("flags", "Features"))), "")
    return set(line.partition(":")[2].split())


def bf16_hardware(flags: set[str]) -> str:
    if "amx_bf16" in flags:
        return "amx_bf16"
    if "avx512_bf16" in flags:
        return "avx512_bf16"
    return "none"


def run_cell(precision: str, compile_mode: str, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    from harness.report.compare import load_runs, summarise_run

    results = Path(tempfile.mkdtemp(prefix=f"{precision}-{compile_mode}-", dir=out))
    load = os.getloadavg()[0]
    cmd = [sys.executable, "-m", "harness.cli", "run", "--model", "resnet20", "--dataset", "synthetic",
           "--train-size", str(args.train_size), "--test-size", str(args.test_size), "--epochs", str(args.epochs),
           "--batch-size", "128", "--optimizer", "sgd", "--precision", precision, "--compile", compile_mode,
           "--results-dir", str(results), "--quiet"]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=False, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    if proc.returncode != 0:
        return {"precision": precision, "compile": compile_mode, "error": (proc.stderr.strip().splitlines() or ["?"])[-1],
                "load": load}
    rec = summarise_run(load_runs([str(results)])[0])
    return {"precision": precision, "compile": compile_mode, "images_per_s": rec["train_images_per_s"],
            "compile_s": rec["compile_s"], "cache": (rec["compile_cache"] or "").split(" ")[0],
            "best_test_acc": rec["best_test_acc"], "load": load, "noisy": load > args.max_load}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--cells", default=DEFAULT_CELLS, help=f"precision/compile pairs (default: {DEFAULT_CELLS})")
    p.add_argument("--train-size", type=int, default=1536)
    p.add_argument("--test-size", type=int, default=256)
    p.add_argument("--epochs", type=int, default=2, help="epoch 1 is warm-up (and holds the compile)")
    p.add_argument("--threads", type=int)
    p.add_argument("--max-load", type=float, default=float(os.cpu_count() or 1) * 0.5,
                   help="flag runs started above this 1-minute load average (default: half the cores)")
    p.add_argument("--json", type=Path, help="also write every run's record here")
    args = p.parse_args(argv)
    cells = [tuple(c.split("/")) for c in args.cells.split(",")]
    flags = cpu_flags()
    hw = bf16_hardware(flags)
    out = Path(tempfile.mkdtemp(prefix="bench-precision-"))
    runs: list[dict[str, Any]] = []
    for r in range(args.repeats):
        order = cells[r % len(cells):] + cells[:r % len(cells)]
        for precision, compile_mode in order:
            rec = run_cell(precision, compile_mode, args, out)
            rec["repeat"] = r
            runs.append(rec)
            print(json.dumps(rec), flush=True)
    medians: dict[tuple[str, str], float] = {}
    print(f"\nCPU bfloat16 hardware: {hw} (from the CPU flags); load average now {os.getloadavg()[0]:.2f}, "
          f"{os.cpu_count()} logical CPUs")
    print(f"{'precision':12s} {'compile':10s} {'img/s median (min-max)':>26s} {'x fp32 eager':>12s} "
          f"{'compile s':>10s}  cache  flagged")
    for cell in cells:
        mine = [x for x in runs if (x["precision"], x["compile"]) == cell and "images_per_s" in x
                and x["images_per_s"]]
        if not mine:
            errors = {x.get("error") for x in runs if (x["precision"], x["compile"]) == cell}
            print(f"{cell[0]:12s} {cell[1]:10s} failed: {'; '.join(map(str, errors))}")
            continue
        ips = [x["images_per_s"] for x in mine]
        medians[cell] = statistics.median(ips)
        comp = [x["compile_s"] for x in mine if x["compile_s"]]
        print(f"{cell[0]:12s} {cell[1]:10s} {medians[cell]:12.0f} ({min(ips):.0f}-{max(ips):.0f}) "
              f"{'':>6s}{'':>12s} {statistics.median(comp) if comp else 0:10.1f}  "
              f"{','.join(sorted({x['cache'] for x in mine if x['cache']})) or '-':5s}  "
              f"{sum(x['noisy'] for x in mine)}/{len(mine)}")
    if BASE in medians:
        for cell, value in medians.items():
            print(f"  {cell[0]}/{cell[1]}: {value / medians[BASE]:.2f}x fp32 eager")
    ratio = medians.get(TARGET, 0) / medians[BASE] if BASE in medians and TARGET in medians else None
    compile_alone = medians.get(COMPILE_ONLY, 0) / medians[BASE] if BASE in medians and COMPILE_ONLY in medians else None
    if compile_alone:
        print(f"compile alone (fp32 + compile over fp32 eager): {compile_alone:.2f}x")
    if ratio is None:
        print("bar not judged: fp32/none and bf16-mixed/default were not both measured")
    elif hw == "amx_bf16":
        print(f"bar: bf16-mixed + compile {ratio:.2f}x fp32 eager, needs >= {BAR}x: {'PASS' if ratio >= BAR else 'FAIL'}")
    else:
        print(f"bar not judged: this CPU has no AMX-BF16 (bfloat16 hardware: {hw}), so bfloat16 matmuls cannot "
              f"run at AMX's rate; bf16-mixed + compile gives {ratio:.2f}x fp32 eager here")
    if args.json:
        args.json.write_text(json.dumps(runs, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
