"""The report's Environment and How-to-reproduce sections, from what run.json recorded.

One table per machine (same ``machine_id``), as a hand-written write-up would give it: the
hardware (on a Jetson the board, L4T / JetPack release, power mode, and that its GPU shares
system RAM), the distribution and OS, Python and library versions, where torch came from, the
energy meters read, and the thread settings that decide CPU speed; the appendix lists every
package of each machine's environment. Where the runs on one machine recorded different values (a library upgraded between
runs) every value is shown, separated by " / ".
"""
from __future__ import annotations

import shlex
from typing import Any, Callable

from harness.report.compare import machine_label
from harness.schema import InferFolder, RunFolder

# Training and inference folders: the environment tables read only their .meta, .path and .run_id.
Folder = RunFolder | InferFolder


def _values(runs: list[Folder], get: Callable[[dict[str, Any]], Any]) -> str:
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
    # an integrated GPU (Jetson) records "memory": the note that it shares system RAM
    return "; ".join(f"{g.get('index', i)}: {g.get('name', '?')}, {g.get('memory_total_mb', '?')} MiB"
                     f"{' (' + g['memory'] + ')' if g.get('memory') else ''}, driver {g.get('driver', '?')}"
                     for i, g in enumerate(gpus))


def _distribution(meta: dict[str, Any]) -> str | None:
    d = meta["machine"].get("distribution") or {}
    return d.get("pretty") or " ".join(x for x in (d.get("name"), d.get("version")) if x) or None


def _board(meta: dict[str, Any], key: str) -> Any:
    board = meta["machine"].get("board") or {}
    if key == "power_mode" and board.get("l4t"):
        mode = board.get("power_mode")
        return f"{mode['name']} (nvpmodel mode {mode['id']})" if mode else f"not read: {board.get('power_mode_why')}"
    if key == "jetpack" and board.get("l4t"):
        return board.get("jetpack") or f"not known for L4T {board['l4t']} (harness/measure/board.py table)"
    return board.get(key)


def _torch_origin(meta: dict[str, Any]) -> str | None:
    o = meta["machine"].get("torch_origin") or {}
    if not o.get("version"):
        return None
    where = "outside the venv (the platform's own build)" if o.get("inside_venv") is False else "in the venv"
    return f"{o.get('installer') or 'not recorded by scripts/ensure-venv.sh'}; torch {o['version']} {where}"


def _energy(meta: dict[str, Any]) -> str | None:
    e = meta.get("energy")
    if not e:
        return None
    if not e.get("available"):
        return f"none measured: {e.get('why')}"
    domains = ", ".join(f"{name} ({d['method']}{', in total' if d.get('in_total') else ''})"
                        for name, d in (e.get("domains") or {}).items())
    idle = (e.get("idle_baseline_w") or {}).get("total")
    idle_text = f"; idle baseline {idle:.1f} W over {e.get('idle_baseline_s')} s before the run" if idle is not None else ""
    return f"{', '.join(e.get('sources') or [])}: {domains}{idle_text}"


def _gpu_clock(run: RunFolder | InferFolder) -> str | None:
    """Mean and range of the sampled GPU clock during training (util.csv), where sampled
    (`bench infer` folders have no util.csv)."""
    util = getattr(run, "util", None)
    if util is None or "gpu0_freq_mhz" not in util.columns:
        return None
    train = util[util["phase"] == "train"]["gpu0_freq_mhz"].dropna()
    if train.empty:
        return None
    return f"{train.mean():.0f} MHz mean ({train.min():.0f}-{train.max():.0f}) while training"


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


def environment_tables(runs: list[Folder]) -> list[tuple[str, list[list[str]]]]:
    """[(heading, [[field, value], ...]) per machine], machines in first-seen order."""
    machines: dict[str, list[Folder]] = {}
    for run in runs:
        m = run.meta.get("machine") or {}
        machines.setdefault(str(m.get("machine_id") or m.get("hostname") or "?"), []).append(run)
    tables = []
    for mruns in machines.values():
        rows = [[name, value] for name, get in _MACHINE_FIELDS if (value := _values(mruns, get))]
        clocks = " / ".join(dict.fromkeys(c for r in mruns if (c := _gpu_clock(r))))
        if clocks:
            rows.append(["GPU clock (sampled)", clocks])
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
    ("Board", lambda m: _board(m, "model")),
    ("L4T release", lambda m: _board(m, "l4t")),
    ("JetPack", lambda m: _board(m, "jetpack")),
    ("Power mode", lambda m: _board(m, "power_mode")),
    ("Distribution", _distribution),
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
    ("torch installed from", _torch_origin),
    ("Energy meters", _energy),
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


def package_lists(runs: list[Folder]) -> list[tuple[str, str]]:
    """[(machine, "name==version" lines)] for the report's appendix: the Python environment
    each machine's runs recorded (the union where runs on one machine differ)."""
    by_machine: dict[str, list[str]] = {}
    for run in runs:
        listed = (run.meta.get("machine") or {}).get("packages") or []
        if listed:
            seen = by_machine.setdefault(machine_label(run.meta.get("machine") or {}), [])
            seen += [p for p in listed if p not in seen]
    return [(label, "\n".join(sorted(lines, key=str.lower)) + "\n") for label, lines in by_machine.items()]


def _backend(meta: dict[str, Any]) -> str:
    return str((meta.get("settings") or {}).get("backend") or (meta.get("backend") or {}).get("name") or "?")


def _without_results_dir(command: str) -> str:
    """A recorded command without its ``--results-dir``: that folder was where the runs were
    first written (often a temporary one since moved or gone); the reader's runs go wherever
    they choose, and the report's own command names the folders it read."""
    try:
        words = shlex.split(command)
    except ValueError:
        return command
    kept: list[str] = []
    skip = False
    for word in words:
        if skip:
            skip = False
        elif word == "--results-dir":
            skip = True
        elif not word.startswith("--results-dir="):
            kept.append(word)
    return shlex.join(kept) if len(kept) != len(words) else command


def reproduce_commands(runs: list[Folder], report_command: str | None = None) -> str:
    """The recorded ``bench run`` command lines, grouped by machine, oldest first."""
    lines: list[str] = []
    by_machine: dict[str, list[Folder]] = {}
    for run in runs:
        by_machine.setdefault(machine_label(run.meta.get("machine") or {}), []).append(run)
    for label, mruns in by_machine.items():
        lines.append(f"# on {label}")
        ordered = sorted(mruns, key=lambda r: str(r.meta.get("started_at") or ""))
        suites = list(dict.fromkeys(str(e["suite"]) for r in ordered
                                    if isinstance(e := r.meta.get("experiment"), dict) and e.get("suite")))
        for suite in suites:  # a suite's cells: one command reruns them all, each in its own process
            lines.append(f"bench suite run {suite} --out results/{suite}-$(hostname)   # every {suite} cell below")
        if suites:
            lines.append("# or one run at a time:")
        commands = list(dict.fromkeys(_without_results_dir(str(r.meta["command"])) if r.meta.get("command")
                                      else f"# {r.run_id}: no command recorded" for r in ordered))
        lines += commands
        lines.append("")
    if report_command:
        lines += ["# then, with every run folder on one machine", report_command]
    return "\n".join(lines).rstrip() + "\n"
