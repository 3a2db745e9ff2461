"""Background sampling of CPU, memory, GPU use and energy while a backend trains.

The sampler is a daemon thread that wakes every ``interval_s`` (default 0.5 s), reads
psutil, the GPUs (NVML when there is an NVIDIA driver; on a Jetson, which has no NVML, the
Tegra devfreq files or tegrastats of ``harness/measure/tegra.py``) and the energy meters of
``harness/measure/energy.py``, appends one row to util.csv and folds the sample into the
current epoch's aggregates. Energy is read on rank 0 only (ranks of one job share a machine's
meters; counting them per rank would count the machine once per rank). Each sample costs
well under a millisecond of one core, i.e. < 0.1 % of a 2-core machine at 2 samples/s; the thread sleeps in
``Event.wait`` the rest of the time, so it does not compete with the training threads.
util.csv rows are flushed per sample (an OS write, no fsync) and fsync'd at epoch ends.
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import psutil

from harness.measure.energy import IDLE_BASELINE_S, EnergyMeter, joules_between
from harness.measure.gpu_select import GpuIdentity, nvml_index
from harness.measure.tegra import TegraGpu
from harness.schema import CsvAppender, util_columns

MIN_INTERVAL_S = 0.05
# One GPU's sample: utilisation %, memory used MiB, power W, graphics clock MHz (None = unread).
GpuReading = tuple["float | None", "float | None", "float | None", "float | None"]


def busy_pct(before: Any, after: Any) -> float:
    """System CPU utilisation (0-100) of one CPU between two ``psutil.cpu_times`` readings,
    by psutil's own formula (busy = total - idle - iowait; guest time is already in user).

    The monitor keeps its own previous reading instead of calling ``psutil.cpu_percent``:
    psutil (>= 5.9.6) keeps that function's previous reading per calling thread, and samples
    are taken by both the sampler thread and the training thread (at phase changes), so each
    would measure a different interval from the one the monitor weights it by."""
    def totals(t: Any) -> tuple[float, float]:
        total = sum(t) - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0)
        return total, total - t.idle - getattr(t, "iowait", 0.0)

    total0, busy0 = totals(before)
    total1, busy1 = totals(after)
    if total1 <= total0:
        return 0.0
    return min(100.0, max(0.0, 100.0 * (busy1 - busy0) / (total1 - total0)))


@dataclass
class _Aggregate:
    # (value, seconds the sample covers)
    cpu: list[tuple[float, float]] = field(default_factory=list)
    process_cpu: list[tuple[float, float]] = field(default_factory=list)
    rss_peak_mb: float = 0.0
    gpu_util: list[tuple[float, float]] = field(default_factory=list)
    gpu_mem_peak_mb: float | None = None
    energy: dict[str, float] = field(default_factory=dict)  # energy_j, train_energy_j

    def summary(self) -> dict[str, float | None]:
        def mean(xs: list[tuple[float, float]]) -> float | None:
            total = sum(w for _, w in xs)
            return sum(v * w for v, w in xs) / total if total else None

        def peak(xs: list[tuple[float, float]]) -> float | None:
            return max(v for v, _ in xs) if xs else None

        return {
            "cpu_util_mean_pct": mean(self.cpu),
            "cpu_util_max_pct": peak(self.cpu),
            "process_cpu_pct": mean(self.process_cpu),
            "rss_peak_mb": self.rss_peak_mb or None,
            "gpu_util_mean_pct": mean(self.gpu_util),
            "gpu_util_max_pct": peak(self.gpu_util),
            "gpu_mem_peak_mb": self.gpu_mem_peak_mb,
            "energy_j": self.energy.get("energy_j"),
            "train_energy_j": self.energy.get("train_energy_j"),
        }


class _Nvml:
    """NVML handles for the machine's GPUs; absent driver means no GPU columns.

    Each figure is read by its own call: one that fails (power is unsupported on some boards,
    a call can fail transiently) leaves that figure empty and the others read, and its first
    error is kept in :attr:`errors` for run.json."""

    def __init__(self) -> None:
        self.handles: list[Any] = []
        self.errors: dict[str, str] = {}
        self.pynvml: Any = None  # the module, once NVML started
        try:
            import pynvml

            pynvml.nvmlInit()
            self.pynvml = pynvml
            self.handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
        except Exception:
            self.handles = []

    def __len__(self) -> int:
        return len(self.handles)

    def _read(self, what: str, call: Callable[[], float]) -> float | None:
        try:
            return float(call())
        except Exception as exc:  # pynvml.NVMLError and whatever a driver raises
            self.errors.setdefault(f"nvml {what}", f"{type(exc).__name__}: {exc}")
            return None

    def sample(self) -> list[GpuReading]:
        nv = self.pynvml
        out: list[GpuReading] = []
        # each lambda runs inside _read before the loop moves on, so binding h late is safe (B023)
        for h in self.handles:
            util = self._read("utilisation", lambda: nv.nvmlDeviceGetUtilizationRates(h).gpu)  # noqa: B023
            mem = self._read("memory", lambda: nv.nvmlDeviceGetMemoryInfo(h).used / 2**20)  # noqa: B023
            power = self._read("power", lambda: nv.nvmlDeviceGetPowerUsage(h) / 1000.0)  # noqa: B023
            freq = self._read("clock", lambda: nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_GRAPHICS))  # noqa: B023
            out.append((util, mem, power, freq))
        return out

    def identities(self) -> list[GpuIdentity]:
        """UUID and PCI bus id of each device, in NVML's order (to find the run's GPU)."""
        out = []
        for h in self.handles:
            try:
                uuid, bus = self.pynvml.nvmlDeviceGetUUID(h), self.pynvml.nvmlDeviceGetPciInfo(h).busId
                out.append(GpuIdentity(_text(uuid), _text(bus)))
            except Exception as exc:
                self.errors.setdefault("nvml identity", f"{type(exc).__name__}: {exc}")
                out.append(GpuIdentity("", ""))
        return out

    def close(self) -> None:
        if self.handles:
            try:
                self.pynvml.nvmlShutdown()
            except Exception:
                pass


class _Tegra:
    """A Jetson's integrated GPU as GPU 0 (same columns as NVML's; memory is shared RAM, power
    is left empty because no rail feeds the GPU alone)."""

    def __init__(self, gpu: TegraGpu) -> None:
        self.gpu = gpu

    def __len__(self) -> int:
        return 1

    def sample(self) -> list[GpuReading]:
        s = self.gpu.sample()
        return [(s.util_pct, s.mem_used_mb, None, s.freq_mhz)]

    def close(self) -> None:
        self.gpu.close()


def open_gpus() -> "_Nvml | _Tegra":
    """NVML's GPUs where there is a driver, else a Tegra integrated GPU, else none."""
    nvml = _Nvml()
    if nvml.handles:
        return nvml
    tegra = TegraGpu.open()
    return _Tegra(tegra) if tegra is not None else nvml


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Monitor:
    """Context manager: ``with Monitor(path, gpu_index=0) as m: m.set_phase(1, "train")``.

    ``gpu_index`` is the run's CUDA device ordinal and ``gpu_pci_bus_id`` its PCI bus id (as
    the backend reports it): together they pick the NVML device whose figures go into the
    epoch aggregates (harness/measure/gpu_select.py); util.csv keeps every GPU.
    ``take_epoch()`` returns and resets the aggregates. A sample that fails does not stop
    sampling: its first error per source is kept in :attr:`errors` (run.json records them).
    ``energy=True`` (rank 0) opens the energy meters and measures the idle baseline on entry;
    ``energy_info()`` is what run.json records about them.
    """

    def __init__(self, path: Path | None, *, interval_s: float = 0.5, gpu_index: int | None = None,
                 rank: int = 0, start_time: float | None = None, elapsed_offset_s: float = 0.0,
                 energy: bool | None = None, idle_baseline_s: float = IDLE_BASELINE_S,
                 gpu_pci_bus_id: str | None = None) -> None:
        self.path = path
        self.interval_s = interval_s
        self.rank = rank
        self.start = start_time if start_time is not None else time.perf_counter()
        self.elapsed_offset_s = elapsed_offset_s
        self.epoch = 0
        self.phase = "setup"
        self._agg = _Aggregate()
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._process = psutil.Process()
        self._gpus = open_gpus()
        self.gpu_index = gpu_index  # a Jetson's integrated GPU is GPU 0 = cuda:0
        if isinstance(self._gpus, _Nvml) and self._gpus.handles:
            self.gpu_index = nvml_index(gpu_index, self._gpus.identities(), pci_bus_id=gpu_pci_bus_id,
                                        visible=os.environ.get("CUDA_VISIBLE_DEVICES"))
        self._errors: dict[str, str] = {}
        self._meter = EnergyMeter.open() if (rank == 0 if energy is None else energy) else None
        self._idle_baseline_s = idle_baseline_s
        self._marks: dict[str, dict[str, float]] = {}  # energy snapshot at each phase start
        self._energy_last: dict[str, float] | None = None
        self._energy_last_t = 0.0
        self._n_cores = psutil.cpu_count(logical=True) or 1
        self._writer: CsvAppender | None = None
        self.samples = 0
        self._last_sample = 0.0
        self._cost_s = 0.0  # time spent taking samples since take_cost() (harness_s)

    def __enter__(self) -> "Monitor":
        if self.path is not None:
            cols = util_columns(self._n_cores, len(self._gpus), energy=self._energy_on)
            self._writer = CsvAppender(self.path, cols, durable=False)
        if self._energy_on:
            self._meter.measure_idle(self._idle_baseline_s)  # type: ignore[union-attr]
            self._energy_last_t, self._energy_last = time.perf_counter(), self._meter.poll()  # type: ignore[union-attr]
        # The readings each sample is measured from (see busy_pct).
        self._last_cpu = psutil.cpu_times(percpu=True)
        self._last_proc = self._process_cpu_s()
        self._last_sample = time.perf_counter()
        self._thread = threading.Thread(target=self._run, name="bench-monitor", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._writer is not None:
            self._writer.close()
        self._gpus.close()
        if self._meter is not None:
            self._meter.close()

    @property
    def _energy_on(self) -> bool:
        return self._meter is not None and self._meter.available

    def energy_info(self) -> dict[str, Any] | None:
        """run.json's ``energy``: sources, domains and method, idle baseline, or why none
        (None on ranks that do not read energy)."""
        return self._meter.describe() if self._meter is not None else None

    def set_phase(self, epoch: int, phase: str) -> None:
        """Switch phase; first close the running interval with a sample credited to the
        phase that just ended, so even a phase shorter than the interval is measured."""
        self._sample()
        with self._lock:
            self.epoch, self.phase = epoch, phase
            if self._energy_on:
                self._marks[phase] = self._meter.poll()  # type: ignore[union-attr]

    def take_epoch(self) -> dict[str, float | None]:
        """Aggregates since the last call; takes one sample first so short epochs have one."""
        self._sample()
        with self._lock:
            if self._energy_on:
                self._agg.energy = self._epoch_energy(self._meter.poll())  # type: ignore[union-attr]
            agg, self._agg = self._agg, _Aggregate()
        if self._writer is not None:
            self._writer.sync()
        return agg.summary()

    def _epoch_energy(self, now: dict[str, float]) -> dict[str, float]:
        """Machine-total joules of the epoch (train start to now) and of its training pass."""
        train, evaluation = self._marks.get("train"), self._marks.get("eval")
        self._marks = {}
        out = {}
        if train is not None:
            out["energy_j"] = joules_between(train, now)["total"]
            if evaluation is not None:
                out["train_energy_j"] = joules_between(train, evaluation)["total"]
        return out

    @property
    def errors(self) -> dict[str, str]:
        """The first error of each source that failed while sampling (empty when none did)."""
        return self._errors | getattr(self._gpus, "errors", {})

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def _sample(self) -> None:
        with self._lock:
            now = time.perf_counter()
            # psutil reports utilisation since the previous call; over a few ms that is
            # mostly tick-granularity noise, so such an interval is left to the next sample.
            dt = now - self._last_sample
            if dt < MIN_INTERVAL_S:
                return
            self._last_sample = now
            try:
                self._sample_locked(dt)
            except Exception as exc:  # a failing source must neither stop the sampler nor the run
                self._errors.setdefault("sampler", f"{type(exc).__name__}: {exc}")
            self._cost_s += time.perf_counter() - now

    def _process_cpu_s(self) -> float:
        times = self._process.cpu_times()
        return times.user + times.system

    def take_cost(self) -> float:
        """Seconds spent sampling (either thread) since the last call: the sampler's own cost."""
        with self._lock:
            cost, self._cost_s = self._cost_s, 0.0
        return cost

    def _sample_locked(self, dt: float) -> None:
        """One sample covering the last ``dt`` seconds; epoch means are weighted by ``dt``."""
        cpu_now = psutil.cpu_times(percpu=True)
        per_core = [busy_pct(a, b) for a, b in zip(self._last_cpu, cpu_now)]
        self._last_cpu = cpu_now
        overall = sum(per_core) / len(per_core) if per_core else 0.0
        try:
            proc_now = self._process_cpu_s()
            rss_mb = self._process.memory_info().rss / 2**20
        except psutil.Error:
            return
        proc_cpu = 100.0 * max(0.0, proc_now - self._last_proc) / dt  # 100 = one core busy
        self._last_proc = proc_now
        gpu = self._gpus.sample()
        row: dict[str, Any] = {
            "timestamp": round(time.time(), 3),
            "elapsed_s": round(self.elapsed_offset_s + time.perf_counter() - self.start, 3),
            "rank": self.rank, "epoch": self.epoch, "phase": self.phase,
            "cpu_pct": round(overall, 1), "process_cpu_pct": round(proc_cpu, 1), "rss_mb": round(rss_mb, 1),
        }
        row.update({f"cpu{i}_pct": v for i, v in enumerate(per_core)})
        for i, (util, mem, power, freq) in enumerate(gpu):
            row.update({f"gpu{i}_util_pct": util, f"gpu{i}_mem_mb": mem, f"gpu{i}_power_w": power,
                        f"gpu{i}_freq_mhz": freq})
        if self._energy_on and self._energy_last is not None:
            # over the meter's own interval (the psutil reads above take time of their own)
            t_energy, energy = time.perf_counter(), self._meter.poll()  # type: ignore[union-attr]
            if t_energy > self._energy_last_t:
                row["power_w"] = round((energy["total"] - self._energy_last["total"]) / (t_energy - self._energy_last_t), 2)
            self._energy_last, self._energy_last_t = energy, t_energy
        self.samples += 1
        if self.phase == "train":
            self._agg.cpu.append((overall, dt))
            self._agg.process_cpu.append((proc_cpu, dt))
        self._agg.rss_peak_mb = max(self._agg.rss_peak_mb, rss_mb)
        if self.gpu_index is not None and self.gpu_index < len(gpu):
            util, mem, _, _ = gpu[self.gpu_index]
            if util is not None and self.phase == "train":  # as the CPU figures: training only
                self._agg.gpu_util.append((util, dt))
            if mem is not None:
                self._agg.gpu_mem_peak_mb = max(self._agg.gpu_mem_peak_mb or 0.0, mem)
        if self._writer is not None:
            self._writer.append(row)
