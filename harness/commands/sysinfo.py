"""`bench sysinfo`: this machine as run.json records it (the work: harness/measure/sysinfo.py;
the matmul peaks: harness/measure/peak.py)."""
from __future__ import annotations

import argparse
import json
from typing import Any

from harness.errors import BenchError

NAME = "sysinfo"


def add_parser(sub: Any) -> None:
    p = sub.add_parser(NAME, help="describe this machine as run.json records it")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--peak", action="store_true", help="also measure the matmul peak GFLOP/s of each installed framework "
                   "in float32, bfloat16 and float16 (~30 s); later runs on this machine record them so reports can "
                   "say what share of the right peak a run used")
    p.add_argument("--device", default="cpu", help="device the --peak figures are measured on (cpu, cuda:N; default cpu)")
    p.add_argument("--peak-seconds", type=float, default=2.0, metavar="SECONDS",
                   help="seconds of repeated products per framework and data type (default 2; the best one counts)")


def run(args: argparse.Namespace) -> int:
    from harness.measure import peak
    from harness.measure.sysinfo import format_machine, machine_info

    info = machine_info()
    if args.peak:
        backends = peak.installed_backends()
        if not backends:
            raise BenchError("--peak needs torch or chainer installed: run scripts/ensure-venv.sh")
        for backend in backends:
            measured = peak.measure(backend, args.device, seconds=args.peak_seconds)
            info["peak_matmul"] = peak.save(info["machine_id"], args.device, backend, measured)
    print(json.dumps(info, indent=2) if args.json else format_machine(info))
    return 0
