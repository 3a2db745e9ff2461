"""The comparison key: which results from different machines measured the same thing.

``key = sha256(json.dumps({"experiment", "version", "schema", "settings"}, sort_keys))[:12]``
(EXPERIMENTS.md). ``settings`` are the identity settings of harness/config.py (what changes
the measurement) with the values *requested* (``device = "auto"``, ``threads`` as asked, not
as resolved on this machine), plus the backend and the number of processes, which change the
measurement but are not RunConfig identity (repeats of both backends share one
``group``). Never the machine, the seed, the repeat or where files went: the same cell run on
a laptop and on an A10G has one key, so reports line their folders up by it.

Threads are part of the key as requested: ``threads = 2`` is a layout being measured (the
quick suite compares 1 and 2), while the default (None: the framework's own) stays None on
every machine, so a cell that leaves threads alone compares across machines.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from harness import schema as R
from harness.config import identity_settings

ADHOC = "adhoc"  # experiment name of a run not started from an experiment file (version 0)


def key_settings(settings: Mapping[str, Any], *, backend: str | None, processes: int = 1,
                 extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What the key hashes from a run's settings (RunConfig.settings() or run.json's, with
    the requested device): identity settings + backend + processes (+ an infer cell's own)."""
    out = identity_settings(settings)
    out.update(backend=backend, processes=int(processes))
    if extra:
        out.update(extra)
    return out


def comparison_key(experiment: str, version: int, settings: Mapping[str, Any]) -> str:
    """The key of ``settings`` (from :func:`key_settings`) in ``experiment`` at ``version``."""
    payload = {"experiment": experiment, "version": int(version), "schema": R.SCHEMA_VERSION, "settings": dict(settings)}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:12]


def key_of_run(meta: Mapping[str, Any]) -> str:
    """The key of a training run.json, recomputed from what it records (run.json keeps the
    resolved device in settings and the requested one in ``experiment.cell``/``device_requested``).
    A folder written before experiments existed gets an ``adhoc`` version-0 key."""
    settings = dict(meta.get("settings") or {})
    if meta.get("device_requested"):
        settings["device"] = meta["device_requested"]
    exp: Mapping[str, Any] = meta.get("experiment") or {}
    name, version = (exp["name"], exp["version"]) if exp.get("name") else (ADHOC, 0)  # context.py writes both
    backend: str | None = settings.get("backend") or (meta.get("backend") or {}).get("name")
    return comparison_key(name, version, key_settings(settings, backend=backend,
                                                      processes=int(meta.get("world_size") or 1)))
