"""One child process per (cell, repeat); the parent collects statuses and goes on.

Every cell runs as ``sys.executable -m harness.cli run ...`` (``launch --nproc N`` for a
``processes`` axis; ``infer``/``export`` for an inference cell) started with fork+exec, so the
child inherits nothing of the parent but the environment: a figure (Chainer's peak RSS was
1,239 MB after torch in one process, 502 MB alone) never depends on what ran before it. The
parent never imports a framework. A child that crashes, diverges, is stopped or times out is
recorded with its status and reason in ``suite.json`` in the output folder (a crashed child
may leave no run folder), and the next cell starts.
"""
from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness import schema as R
from harness.config import SETTINGS, value_type
from harness.experiments import context
from harness.experiments import estimate as E
from harness.experiments.files import INFER, REPO_ROOT
from harness.experiments.matrix import Cell
from harness.experiments.repeats import Policy, rsd, should_stop, steady_images_per_s
from harness.errors import EXIT_UNSUPPORTED
from harness.experiments.support import UNSUPPORTED, Support

SUITE_JSON = "suite.json"
LOGS = "logs"
# Statuses of an attempt besides run.json's completed / diverged / interrupted / failed (and
# support.py's "unsupported": this machine cannot run the cell; no child was started):
CRASHED, TIMEOUT, ERROR, SKIPPED = "crashed", "timeout", "error", "skipped"
NOT_FAILURES = (R.COMPLETED, SKIPPED, UNSUPPORTED)
KILL_GRACE_S = 20.0  # after SIGTERM on a timeout, before SIGKILL


@dataclass
class Attempt:
    """One (cell, repeat) as the parent saw it."""
    key: str
    experiment: str
    cell: dict[str, Any]
    backend: str
    repeat: int
    status: str
    reason: str | None = None
    exit_code: int | None = None
    run_dir: str | None = None
    wall_s: float | None = None
    startup_s: float | None = None
    steady_images_per_s: float | None = None
    resumed: bool = False


# --- the child's command line -----------------------------------------------------------------

def setting_args(values: dict[str, Any]) -> list[str]:
    """`bench run` flags that give ``values`` (field name -> typed value), from the declaration."""
    out: list[str] = []
    for name, value in values.items():
        s = SETTINGS[name]
        kind = value_type(name)
        if value is None:
            continue
        if kind is bool:
            if bool(value) != (s.negated is True):  # store_true flag set, or --no-x for False
                out.append(s.flag)
        elif kind is list:
            for item in value:
                out += [s.flag, str(item)]
        elif kind is tuple:
            if value:
                out += [s.flag, ",".join(map(str, value))]
        else:
            out += [s.flag, str(value)]
    return out


def bench_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "harness.cli", *args]


def train_argv(cell: Cell, *, results_dir: Path, seed: int, quiet: bool = True) -> list[str]:
    values = {k: v for k, v in cell.values.items() if k not in ("results_dir", "repeat", "seed", "quiet")}
    values.update(results_dir=results_dir, seed=seed, quiet=quiet or None)
    flags = setting_args(values)
    if cell.processes > 1:
        flags = _without_backend(flags)
        return bench_argv("launch", "--nproc", str(cell.processes), "--backend", cell.backend, *flags)
    return bench_argv("run", *flags)


def _without_backend(flags: list[str]) -> list[str]:
    out, skip = [], False
    for f in flags:
        if skip:
            skip = False
            continue
        if f == "--backend":
            skip = True
            continue
        out.append(f)
    return out


# --- running one child ------------------------------------------------------------------------

def child_environment(record: dict[str, Any]) -> dict[str, str]:
    """The parent's environment, this harness first on the path, and the cell's record."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]])
    env.update(context.child_env(record))
    return env


@dataclass
class ChildResult:
    exit_code: int | None
    timed_out: bool
    wall_s: float
    last_line: str | None


def spawn(argv: Sequence[str], record: dict[str, Any], *, timeout_s: float | None, log: Path | None) -> ChildResult:
    """Run one child to its end (or its timeout: SIGTERM, so it records ``interrupted``, then
    SIGKILL). ``log``: where its output goes (None: this terminal)."""
    started = time.perf_counter()
    out = log.open("ab") if log else None
    try:
        proc = subprocess.Popen(list(argv), env=child_environment(record), stdout=out, stderr=out,
                                start_new_session=True)  # its own group: a timeout stops launcher + ranks
        timed_out = False
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            _signal_group(proc, signal.SIGTERM)
            try:
                proc.wait(timeout=KILL_GRACE_S)
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                proc.wait()
        except BaseException:  # Ctrl-C / SIGTERM of the parent: stop the child too, then re-raise
            _signal_group(proc, signal.SIGTERM)
            try:
                proc.wait(timeout=KILL_GRACE_S)
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
            raise
    finally:
        if out:
            out.close()
    return ChildResult(proc.returncode, timed_out, time.perf_counter() - started, _last_line(log) if log else None)


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _last_line(log: Path) -> str | None:
    try:
        lines = [ln.strip() for ln in log.read_text(errors="replace").replace("\r", "\n").splitlines() if ln.strip()]
    except OSError:
        return None
    errors = [ln for ln in lines if ln.startswith("bench: error") or "Error" in ln.split(":")[0]]
    found = errors or lines
    return found[-1] if found else None


def find_run(results_dir: Path, attempt_id: str) -> Path | None:
    """The run folder a child made, by the attempt id it recorded (several children share a dir)."""
    for run_json in sorted(Path(results_dir).glob(f"*/{R.RUN_JSON}")):
        try:
            meta = json.loads(run_json.read_text())
        except (OSError, ValueError):
            continue
        if (meta.get("experiment") or {}).get("attempt") == attempt_id:
            return run_json.parent
    return None


def _status(result: ChildResult, run_dir: Path | None, timeout_s: float | None) -> tuple[str, str | None]:
    meta: dict[str, Any] = {}
    if run_dir is not None:
        try:
            meta = json.loads((run_dir / R.RUN_JSON).read_text())
        except (OSError, ValueError):
            meta = {}
    recorded, error = meta.get("status"), meta.get("error")
    code = result.exit_code
    if result.timed_out:
        return TIMEOUT, f"still running after {timeout_s:.0f} s (timeout_s): stopped"
    if code == 0:
        return (recorded or R.COMPLETED), None
    if code == 3:
        return R.DIVERGED, error or result.last_line or "loss became NaN/inf"
    if code == 130:
        return R.INTERRUPTED, "stopped (SIGTERM/Ctrl-C): resume with `bench suite run` again"
    if code == 2:
        return ERROR, result.last_line or "bad input (exit 2)"
    if code == EXIT_UNSUPPORTED:  # harness.errors.Unsupported in the child: its one line says why
        line = result.last_line or "this machine cannot run the cell (the cell's own line above says why)"
        return UNSUPPORTED, line.removeprefix("bench: error: ")
    if code is not None and code < 0:
        name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
        return CRASHED, f"killed by {name}" + (f" (last output: {result.last_line})" if result.last_line else "")
    return CRASHED, f"exit {code}" + (f": {error or result.last_line}" if (error or result.last_line) else "")


def run_attempt(cell: Cell, repeat: int, seed: int, out: Path, *, log: Path | None, quiet: bool = True,
                resume: Path | None = None) -> Attempt:
    """One training (cell, repeat) in a child, or the ``--resume`` of its interrupted folder."""
    attempt_id = secrets.token_hex(6)
    record = cell.record() | {"repeat": repeat, "attempt": attempt_id}
    if resume is not None:
        argv = bench_argv("run", "--resume", str(resume), *(["--quiet"] if quiet else []))
        if cell.processes > 1:
            argv = bench_argv("launch", "--nproc", str(cell.processes), "--backend", cell.backend,
                              "--resume", str(resume), *(["--quiet"] if quiet else []))
    else:
        argv = train_argv(cell, results_dir=out, seed=seed, quiet=quiet)
    result = spawn(argv, record, timeout_s=cell.experiment.timeout_s, log=log)
    run_dir = resume if resume is not None else find_run(out, attempt_id)
    status, reason = _status(result, run_dir, cell.experiment.timeout_s)
    meta = _meta(run_dir)
    return Attempt(cell.key, cell.experiment.name, cell.record()["cell"], cell.backend, repeat, status, reason,
                   result.exit_code, str(run_dir) if run_dir else None, round(result.wall_s, 2),
                   meta.get("startup_s"), steady_images_per_s(run_dir) if run_dir and status == R.COMPLETED else None,
                   resumed=resume is not None)


def _meta(run_dir: Path | None) -> dict[str, Any]:
    if run_dir is None:
        return {}
    try:
        return json.loads((run_dir / R.RUN_JSON).read_text())
    except (OSError, ValueError):
        return {}


# --- an inference cell ------------------------------------------------------------------------

def run_infer_attempt(cell: Cell, out: Path, source_run: Path | None, *, log: Path | None) -> Attempt:
    """`bench export` (for onnxruntime, once per source run) then `bench infer` in children."""
    attempt_id = secrets.token_hex(6)
    record = cell.record() | {"repeat": 0, "attempt": attempt_id}
    base = {"key": cell.key, "experiment": cell.experiment.name, "cell": record["cell"], "backend": cell.backend,
            "repeat": 0}
    if source_run is None:
        return Attempt(**base, status=SKIPPED, reason=f"no completed {cell.infer['source_backend']} run of "
                       f"{cell.infer['from']!r} ({cell.values['model']}) in {out}: it failed or is not in this suite")
    total = 0.0
    if cell.backend == "onnxruntime" and not (source_run / "model.onnx").is_file():
        r = spawn(bench_argv("export", str(source_run)), record, timeout_s=cell.experiment.timeout_s, log=log)
        total += r.wall_s
        if r.exit_code != 0:
            status, reason = _status(r, None, cell.experiment.timeout_s)
            return Attempt(**base, status=status, reason=f"bench export: {reason}", exit_code=r.exit_code,
                           wall_s=round(total, 2))
    argv = bench_argv("infer", str(source_run), "--backend", cell.backend, "--device",
                      cell.device_requested, "--results-dir", str(out),
                      "--batch-sizes", ",".join(map(str, cell.infer["batch_sizes"])),
                      "--iters", str(cell.infer["iters"]), "--warmup", str(cell.infer["warmup"]),
                      *(["--threads", str(cell.values["threads"])] if cell.values.get("threads") else []))
    r = spawn(argv, record, timeout_s=cell.experiment.timeout_s, log=log)
    run_dir = find_run(out, attempt_id)
    status, reason = _status(r, run_dir, cell.experiment.timeout_s)
    return Attempt(**base, status=status, reason=reason, exit_code=r.exit_code,
                   run_dir=str(run_dir) if run_dir else None, wall_s=round(total + r.wall_s, 2),
                   startup_s=_meta(run_dir).get("startup_s"))


def source_run_for(cell: Cell, out: Path) -> Path | None:
    """The newest completed training run in ``out`` of the infer cell's ``from`` experiment,
    trained by its source backend on its model."""
    best: tuple[str, Path] | None = None
    for run_json in Path(out).glob(f"*/{R.RUN_JSON}"):
        meta = _meta(run_json.parent)
        s = meta.get("settings") or {}
        if ((meta.get("experiment") or {}).get("name") == cell.infer["from"] and meta.get("status") == R.COMPLETED
                and s.get("backend") == cell.infer["source_backend"] and s.get("model") == cell.values["model"]
                and int(meta.get("world_size") or 1) == 1):
            stamp = str(meta.get("ended_at") or "")
            if best is None or stamp > best[0]:
                best = (stamp, run_json.parent)
    return best[1] if best else None


# --- a list of cells: the suite loop ----------------------------------------------------------

@dataclass
class CellOutcome:
    cell: Cell
    attempts: list[Attempt] = field(default_factory=list)
    stop_reason: str = ""

    @property
    def status(self) -> str:
        done = [a for a in self.attempts if a.status != SKIPPED or a.reason == "done earlier"]
        if not done:
            return self.attempts[-1].status if self.attempts else SKIPPED
        bad = [a for a in done if a.status not in (R.COMPLETED,)]
        return bad[-1].status if bad else R.COMPLETED


def existing_runs(out: Path) -> dict[str, list[dict[str, Any]]]:
    """key -> run.json of every run in ``out`` (for resuming a suite)."""
    found: dict[str, list[dict[str, Any]]] = {}
    for run_json in Path(out).glob(f"*/{R.RUN_JSON}"):
        meta = _meta(run_json.parent)
        if meta.get("key"):
            meta["_dir"] = str(run_json.parent)
            found.setdefault(meta["key"], []).append(meta)
    return found


class SuiteRunner:
    """Runs cells in order, each (cell, repeat) in a child; skips what ``out`` already holds;
    prints one line per finished cell with the ETA; keeps ``out/suite.json`` current."""

    def __init__(self, cells: list[Cell], out: Path, policy: Policy | None, *, name: str,
                 quiet_children: bool = True, logs: bool = True, skip_done: bool = True,
                 echo: Callable[[str], None] = print, summary_file: bool = True,
                 summary_extra: dict[str, Any] | None = None, support: Support | None = None):
        """``policy``: None takes each cell's own (its ``repeat`` setting, or its file's
        ``repeat = "auto"``). ``skip_done``: a suite resumes; `bench run` always runs anew.
        ``support``: which cells this machine can run (harness/experiments/support.py)."""
        self.support = support or Support()
        self.cells, self.out, self.policy, self.name = cells, Path(out), policy, name
        self.quiet_children, self.logs, self.echo, self.skip_done = quiet_children, logs, echo, skip_done
        self.summary_file = summary_file
        self.outcomes: list[CellOutcome] = []
        self.extra = summary_extra or {}
        rates = E.rates_for(self.out)
        self.estimates = [E.estimate(c, rates) for c in cells]
        self.started = time.time()

    def run(self) -> list[CellOutcome]:
        self.out.mkdir(parents=True, exist_ok=True)
        spent_est, spent = 0.0, 0.0
        for i, cell in enumerate(self.cells):
            t0 = time.perf_counter()
            outcome = self._run_cell(cell)
            self.outcomes.append(outcome)
            took = time.perf_counter() - t0
            ran = any(a.status not in (SKIPPED, UNSUPPORTED) for a in outcome.attempts)
            if ran:
                spent_est += self.estimates[i].seconds * max(1, len(outcome.attempts))
                spent += took
            self._write_summary()
            remaining = sum(e.seconds for e in self.estimates[i + 1:]) * (spent / spent_est if spent_est else 1.0)
            self.echo(self._line(i, outcome, took, remaining))
        self._write_summary(finished=True)
        return self.outcomes

    def _log(self, cell: Cell, repeat: int) -> Path | None:
        if not self.logs:
            return None
        folder = self.out / LOGS
        folder.mkdir(exist_ok=True)
        return folder / f"{cell.experiment.name}-{cell.key}-r{repeat}.log"

    def _run_cell(self, cell: Cell) -> CellOutcome:
        outcome = CellOutcome(cell)
        why = self.support.reason(cell)
        if why is not None:  # not a failure: the suite was written for other machines too
            outcome.attempts.append(Attempt(cell.key, cell.experiment.name, cell.record()["cell"], cell.backend,
                                            0, UNSUPPORTED, why))
            return outcome
        if cell.kind == INFER:
            done = [m for m in existing_runs(self.out).get(cell.key, []) if m.get("status") == R.COMPLETED]
            if done:
                outcome.attempts.append(Attempt(cell.key, cell.experiment.name, cell.record()["cell"], cell.backend,
                                                0, SKIPPED, "done earlier", 0, done[0]["_dir"]))
            else:
                outcome.attempts.append(run_infer_attempt(cell, self.out, source_run_for(cell, self.out),
                                                          log=self._log(cell, 0)))
            return outcome
        previous = existing_runs(self.out).get(cell.key, []) if self.skip_done else []
        policy = policy_for(cell, self.policy)
        seed = cell.config.seed if cell.config else 0
        values: list[float] = []
        repeat = 0
        while True:
            stop, why = should_stop(values, policy)
            if stop or repeat >= policy.cap:
                outcome.stop_reason = why
                break
            mine = [m for m in previous if (m.get("experiment") or {}).get("repeat") == repeat]
            earlier = next((m for m in mine if m.get("status") == R.COMPLETED), None)
            if earlier is not None:
                ips = steady_images_per_s(Path(earlier["_dir"]))
                a = Attempt(cell.key, cell.experiment.name, cell.record()["cell"], cell.backend, repeat, SKIPPED,
                            "done earlier", 0, earlier["_dir"], None, earlier.get("startup_s"), ips)
            else:
                stopped = next((m for m in mine if m.get("status") in (R.INTERRUPTED, R.RUNNING)), None)
                resume = Path(stopped["_dir"]) if stopped is not None else None
                a = run_attempt(cell, repeat, seed + repeat, self.out, log=self._log(cell, repeat),
                                quiet=self.quiet_children, resume=resume)
            outcome.attempts.append(a)
            if a.status not in (R.COMPLETED, SKIPPED):
                outcome.stop_reason = f"repeat {repeat}: {a.status}"
                break
            if a.steady_images_per_s is not None:
                values.append(a.steady_images_per_s)
            repeat += 1
        if policy.auto:
            _record_repeats(outcome, values, policy)
        return outcome

    def _line(self, i: int, outcome: CellOutcome, took: float, remaining: float) -> str:
        n = len(self.cells)
        attempts = outcome.attempts
        what = outcome.status
        if attempts and all(a.status == SKIPPED for a in attempts):
            what = "skipped (done earlier)" if attempts[0].reason == "done earlier" else f"skipped: {attempts[0].reason}"
        eta = f"; ETA {E.show(remaining)}" if i + 1 < n else ""
        if attempts and attempts[0].status == UNSUPPORTED:
            return f"[{i + 1}/{n}] {outcome.cell.label()} [{outcome.cell.key}]: unsupported here: {attempts[0].reason}{eta}"
        figures = [a.steady_images_per_s for a in attempts if a.steady_images_per_s]
        detail = ""
        if figures:
            spread = rsd(figures)
            detail = f", {sum(figures) / len(figures):.1f} img/s" + (f" (RSD {spread:.1%} over {len(figures)})"
                                                                     if spread is not None else "")
        if policy_for(outcome.cell, self.policy).auto and outcome.stop_reason:
            detail += f"; repeats: {outcome.stop_reason}"
        bad = next((a for a in attempts if a.reason and a.status not in (R.COMPLETED, SKIPPED)), None)
        if bad:
            detail += f": {bad.reason}"
        return f"[{i + 1}/{n}] {outcome.cell.label()} [{outcome.cell.key}]: {what} in {E.show(took)}{detail}{eta}"

    def summary(self, finished: bool = False) -> dict[str, Any]:
        cells = []
        for o in self.outcomes:
            figures = [a.steady_images_per_s for a in o.attempts if a.steady_images_per_s]
            cells.append({"key": o.cell.key, "experiment": o.cell.experiment.name, "kind": o.cell.kind,
                          "backend": o.cell.backend, "cell": o.cell.record()["cell"], "status": o.status,
                          "repeats": len([a for a in o.attempts if a.status in (R.COMPLETED, SKIPPED)]),
                          "repeat_stop": o.stop_reason or None,
                          "steady_images_per_s_rsd": rsd(figures),
                          "attempts": [asdict(a) for a in o.attempts]})
        return {"suite": self.name, "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started)),
                "finished": finished, "wall_s": round(time.time() - self.started, 1),
                "repeat": asdict(self.policy) if self.policy else "per cell", **self.extra, "cells": cells}

    def _write_summary(self, finished: bool = False) -> None:
        if self.summary_file:
            R.write_json(self.out / SUITE_JSON, self.summary(finished))


def _record_repeats(outcome: CellOutcome, values: list[float], policy: Policy) -> None:
    """--repeat auto: every repeat's run.json says how many repeats the cell took and why
    they stopped (written after the children exited: the parent is then the only writer)."""
    record = {"rule": "auto", "taken": len(values), "rsd": rsd(values), "target_rsd": policy.rsd,
              "max": policy.max_n, "stopped": outcome.stop_reason or None}
    for a in outcome.attempts:
        meta = _meta(Path(a.run_dir)) if a.run_dir else {}
        if meta and a.run_dir:
            meta["repeats"] = record
            R.write_json(Path(a.run_dir) / R.RUN_JSON, meta)


def policy_for(cell: Cell, given: Policy | None) -> Policy:
    """The repeat rule of one cell: the command line's, else its file's ``repeat = "auto"``,
    else its ``repeat`` setting (a count)."""
    if given is not None and (given.auto or given.count != 1):
        return given
    base = given or Policy()
    if cell.experiment.repeat_auto:
        return Policy(True, 1, base.rsd, base.max_n, base.min_n)
    return Policy(False, cell.config.repeat if cell.config else 1, base.rsd, base.max_n, base.min_n)


def worst_exit(outcomes: list[CellOutcome]) -> int:
    """bench's exit code for a list of cells: 0 all completed (or unsupported here), 2 every
    failure bad input (or no cell can run here), 130 any interrupted, 1 any crash or timeout,
    else 3 (diverged)."""
    if outcomes and all(o.status == UNSUPPORTED for o in outcomes):
        return 2  # nothing asked for can run on this machine: the reasons name the fix
    statuses = {o.status for o in outcomes} - set(NOT_FAILURES)
    if not statuses:
        return 0
    if statuses == {ERROR}:
        return 2  # every failure was bad input (the child said which, in one line)
    if R.INTERRUPTED in statuses:
        return 130
    if statuses - {R.DIVERGED}:
        return 1
    return 3
