"""`bench list`: models, backends, datasets, and what is usable here (the work: harness/listing.py)."""
from __future__ import annotations

import argparse
import json
from typing import Any

NAME = "list"


def add_parser(sub: Any) -> None:
    p = sub.add_parser(NAME, help="models, backends, datasets, and what is usable on this machine")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--no-params", action="store_true", help="skip building models to count parameters (faster)")


def run(args: argparse.Namespace) -> int:
    from harness.listing import describe, format_listing

    info = describe(param_counts=not args.no_params)
    print(json.dumps(info, indent=2) if args.json else format_listing(info))
    return 0
