"""The report's Environment and How-to-reproduce sections, from what run.json recorded.

One table per machine (same ``machine_id``), as a hand-written write-up would give it: the
hardware, the OS, Python and library versions, and the thread settings that decide CPU
speed. Where the runs on one machine recorded different values (a library upgraded between
runs) every value is shown, separated by " / ".
"""
from __future__ import annotations

from typing import Any, Callable

from harness.report.compare import machine_label
from harness.schema import RunFolder


def _values(runs: list[RunFolder], get: Callable[[dict[str, Any]], Any]) -> str:
    seen = []
    for run in runs:
        try:
            value = get(run.meta)
        except (KeyError, TypeError, AttributeError, IndexError):
            value = None
        text = "" if value in (None, "", [], {}) else str(value)
        if text and text not in seen:
            seen.append(text)
    return " / ".join(seen)


def _gpus(meta: dict[str, Any]) -> str:
    gpus = meta["machine"].get("gpus") or []
    if not gpus:
        return "none"
    return "; ".join(f"{g.get('index', i)}: {g.get('name', '?')}, {g.get('memory_total_mb', '?')} MiB, "
                     f"driver {g.get('driver', '?')}" for i, g in enumerate(gpus))


def _thread_env(meta: dict[str, Any]) -> str:
    env = (meta.get("threads") or {}).get("env") or {}
    return ", ".join(f"{k}={'unset' if v in (None, '') else v}" for k, v in env.items())


def _pairs(mapping: Any) -> str:
    if not isinstance(mapping, dict):
        return "" if mapping is None else str(mapping)
    return ", ".join(f"{k} {v}" for k, v in mapping.items() if v not in (None, "") and not isinstance(v, dict))


def _malloc(meta: dict[str, Any]) -> str:
    m = meta["threads"]["framework"]["malloc"]
    if not m.get("tuned"):
        return f"{m.get('allocator')}, defaults ({m.get('why', 'not tuned')})"
    return (f"{m.get('allocator')}, mmap threshold {m['mmap_threshold_bytes'] >> 20} MiB, "
            f"trim threshold {m['trim_threshold_bytes'] >> 20} MiB (harness/measure/allocator.py)")


def environment_tables(runs: list[RunFolder]) -> list[tuple[str, list[list[str]]]]:
    """[(heading, [[field, value], ...]) per machine], machines in first-seen order."""
    machines: dict[str, list[RunFolder]] = {}
    for run in runs:
        m = run.meta.get("machine") or {}
        machines.setdefault(str(m.get("machine_id") or m.get("hostname") or "?"), []).append(run)
    tables = []
    for mruns in machines.values():
        rows = [[name, value] for name, get in _MACHINE_FIELDS if (value := _values(mruns, get))]
        for b in dict.fromkeys(_backend(r.meta) for r in mruns):
            of_b = [r for r in mruns if _backend(r.meta) == b]
            rows += [[f"{b}: {name}", value] for name, get in _BACKEND_FIELDS if (value := _values(of_b, get))]
        rows += [[name, value] for name, get in _THREAD_FIELDS if (value := _values(mruns, get))]
        rows.append(["Runs", f"{len(mruns)}: " + ", ".join(r.run_id for r in mruns[:8]) + (" ..." if len(mruns) > 8 else "")])
        tables.append((machine_label(mruns[0].meta.get("machine") or {}), rows))
    return tables


_MACHINE_FIELDS: list[tuple[str, Callable[[dict[str, Any]], Any]]] = [
    ("Hostname", lambda m: m["machine"]["hostname"]),
    ("Machine id", lambda m: m["machine"]["machine_id"]),
    ("OS", lambda m: m["machine"]["os"]),
    ("CPU", lambda m: m["machine"]["cpu_model"]),
    ("Cores (physical / logical)", lambda m: f"{m['machine'].get('cpu_physical_cores', '?')} / "
                                             f"{m['machine'].get('cpu_logical_cores', '?')}"),
    ("Memory", lambda m: f"{m['machine']['memory_total_gb']} GiB"),
    ("GPUs", _gpus),
    ("Python", lambda m: m["machine"]["python"]),
    ("NumPy", lambda m: m["machine"]["numpy"]),
    ("BLAS", lambda m: m["machine"]["blas"]),
    ("Libraries", lambda m: _pairs(m["machine"].get("libraries"))),
]
_BACKEND_FIELDS: list[tuple[str, Callable[[dict[str, Any]], Any]]] = [
    ("versions", lambda m: _pairs(m["backend"]["versions"])),
    ("framework threads", lambda m: _pairs(m["threads"]["framework"])),
    ("memory allocator", _malloc),
]
_THREAD_FIELDS: list[tuple[str, Callable[[dict[str, Any]], Any]]] = [
    ("Threads requested (--threads)", lambda m: "not set (framework default)" if m["threads"].get("requested") is None
     else m["threads"]["requested"]),
    ("Thread environment", _thread_env),
    ("bench version", lambda m: m["bench_version"]),
]


def _backend(meta: dict[str, Any]) -> str:
    return str((meta.get("settings") or {}).get("backend") or (meta.get("backend") or {}).get("name") or "?")


def reproduce_commands(runs: list[RunFolder], report_command: str | None = None) -> str:
    """The recorded ``bench run`` command lines, grouped by machine, oldest first."""
    lines: list[str] = []
    by_machine: dict[str, list[RunFolder]] = {}
    for run in runs:
        by_machine.setdefault(machine_label(run.meta.get("machine") or {}), []).append(run)
    for label, mruns in by_machine.items():
        lines.append(f"# on {label}")
        ordered = sorted(mruns, key=lambda r: str(r.meta.get("started_at") or ""))
        commands = list(dict.fromkeys(str(r.meta.get("command") or f"# {r.run_id}: no command recorded")
                                      for r in ordered))
        lines += commands
        lines.append("")
    if report_command:
        lines += ["# then, with every run folder on one machine", report_command]
    return "\n".join(lines).rstrip() + "\n"
