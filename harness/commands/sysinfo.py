"""`bench sysinfo`: this machine as run.json records it (the work: harness/measure/sysinfo.py)."""
from __future__ import annotations

import argparse
import json
from typing import Any

NAME = "sysinfo"


def add_parser(sub: Any) -> None:
    p = sub.add_parser(NAME, help="describe this machine as run.json records it")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--peak", action="store_true", help="also measure float32 matmul peak GFLOP/s (~5 s); later runs on "
                   "this machine record it so reports can say what share of the machine a framework used")


def run(args: argparse.Namespace) -> int:
    from harness.measure.sysinfo import format_machine, machine_info, measure_matmul_peak, save_peak

    info = machine_info()
    if args.peak:
        info["peak_matmul"] = save_peak(info["machine_id"], measure_matmul_peak())
    print(json.dumps(info, indent=2) if args.json else format_machine(info))
    return 0
