"""The report's appendix hook for per-layer tables (`bench summary`, issue 15 item 5): one
table per model configuration the runs trained, torch and Chainer side by side.

Each table is computed by a `bench summary --json` child process, so the report process
never imports a framework; a model whose table cannot be computed here (a framework not
installed) is named with the reason instead. :func:`layer_appendix` returns the report's
blocks; harness/report/markdown.py decides where they go.
"""
from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from harness.schema import RunFolder

TIMEOUT_S = 600


def _configurations(runs: list[RunFolder]) -> list[tuple[str, int | None, int | None, str, str]]:
    """(model, image size, classes, shortcut, head) of every training run, in first-seen order."""
    seen: list[tuple[str, int | None, int | None, str, str]] = []
    for run in runs:
        settings, model = run.meta.get("settings") or {}, run.meta.get("model") or {}
        if run.meta.get("kind") == "infer" or not settings.get("model"):
            continue
        key = (str(settings["model"]), settings.get("image_size") or model.get("image_size"), model.get("num_classes"),
               str(settings.get("shortcut") or "A"), str(settings.get("head") or "linear"))
        if key not in seen:
            seen.append(key)
    return seen


def summary_json(model: str, image_size: int | None, classes: int | None, shortcut: str, head: str) -> dict[str, Any]:
    """`bench summary --json` of one configuration, run in a child process."""
    cmd = [sys.executable, "-m", "harness.cli", "summary", "--model", model, "--shortcut", shortcut, "--head", head,
           "--json"]
    cmd += ["--image-size", str(image_size)] if image_size else []
    cmd += ["--classes", str(classes)] if classes else []
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S)
    if proc.returncode != 0:
        raise RuntimeError((proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1])
    return json.loads(proc.stdout)


def layer_appendix(runs: list[RunFolder]) -> list[tuple]:
    """Report blocks: a heading, then per model configuration its title and table."""
    from harness.summary import table_cells, title

    configs = _configurations(runs)
    if not configs:
        return []
    blocks: list[tuple] = [("h", 2, "Appendix: layers"),
                           ("p", "Every layer holding parameters, with its output shape and parameter count as "
                                 "each framework built it (`bench summary`); != marks a row where they differ.")]
    for config in configs:
        try:
            summary = summary_json(*config)
        except (RuntimeError, subprocess.TimeoutExpired, ValueError) as exc:
            blocks += [("h", 3, config[0]), ("p", f"No table: {exc}")]
            continue
        header, cells = table_cells(summary)
        blocks += [("h", 3, title(summary)), ("table", header, cells, [False] + [True] * (len(header) - 1))]
    return blocks
