"""What a cell's child process learns from its parent, and what it adds to run.json from it.

The parent (harness/experiments/runner.py) passes the cell's ``experiment`` record (JSON in
``BENCH_EXPERIMENT``) and the wall-clock time it spawned the child (``BENCH_SPAWNED_AT``).
The child records, in run.json: ``experiment`` (name, version, file, sha256, cell, suite,
repeat, attempt), ``key`` (computed here from the run's own settings by
:func:`harness.experiments.keys.comparison_key`, so a folder's key never depends on who
started it), ``device_requested`` and ``startup_s`` (spawn -> framework imported and
configured: process start and imports, kept out of every epoch figure). A run started by
hand has no parent: experiment ``adhoc`` version 0, and no startup_s.
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from typing import Any

from harness.experiments import keys

ENV_EXPERIMENT = "BENCH_EXPERIMENT"
ENV_SPAWNED_AT = "BENCH_SPAWNED_AT"


def child_env(record: Mapping[str, Any]) -> dict[str, str]:
    """The variables a child gets (set just before it is spawned)."""
    return {ENV_EXPERIMENT: json.dumps(dict(record), sort_keys=True), ENV_SPAWNED_AT: repr(time.time())}


def parent_record() -> dict[str, Any] | None:
    text = os.environ.get(ENV_EXPERIMENT)
    if not text:
        return None
    try:
        record = json.loads(text)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def startup_s() -> float | None:
    """Seconds since the parent spawned this process (None when no parent said)."""
    try:
        return round(time.time() - float(os.environ[ENV_SPAWNED_AT]), 3)
    except (KeyError, ValueError):
        return None


def repeat_index(default: int) -> int:
    record = parent_record()
    return int(record.get("repeat", default)) if record else default


def run_meta(settings: Mapping[str, Any], *, backend: str, world_size: int, device_requested: str,
             started: float | None) -> dict[str, Any]:
    """run.json's experiment/key/device_requested/startup_s for a training run.
    ``settings``: RunConfig.settings() (device as requested)."""
    record = parent_record() or {}
    name, version = (record["name"], int(record.get("version", 1))) if record.get("name") else (keys.ADHOC, 0)
    experiment = {"name": name, "version": version, "file": record.get("file"), "sha256": record.get("sha256"),
                  "cell": record.get("cell", {}), "suite": record.get("suite"), "kind": record.get("kind", "train"),
                  "repeat": record.get("repeat"), "attempt": record.get("attempt")}
    key = keys.comparison_key(name, version, keys.key_settings(dict(settings) | {"device": device_requested},
                                                              backend=backend, processes=world_size))
    return {"key": key, "experiment": experiment, "device_requested": device_requested, "startup_s": started}


def infer_meta() -> dict[str, Any]:
    """run.json's experiment/key/startup_s for a `bench infer` the suite started (its key is the
    cell's: an infer cell's settings are its own, harness/experiments/matrix.py)."""
    record = parent_record()
    if not record:
        return {}
    return {"key": record.get("key"), "experiment": {k: record.get(k) for k in
                                                     ("name", "version", "file", "sha256", "cell", "suite", "kind",
                                                      "repeat", "attempt")},
            "startup_s": startup_s()}
