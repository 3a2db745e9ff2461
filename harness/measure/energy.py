"""Energy: joules per domain from the machine's own meters, or nothing and the reason why.

Three kinds of meter exist on the machines bench runs on, and each is read as directly as the
hardware allows:

- **RAPL** (Intel, and AMD since Zen through the same powercap class):
  ``/sys/class/powercap/intel-rapl:N[:M]/energy_uj`` is a *counter* in microjoules that wraps
  at ``max_energy_range_uj``; a wrap is recognised as a value lower than the last one and
  the range added (it takes minutes even at full load, and the monitor polls every 0.5 s).
  Since Linux 5.10 (CVE-2020-8694, "Platypus") the file is readable by root only: that is
  recorded as "unavailable: needs read access to <path>", never worked around with a guess.
- **NVML** (discrete NVIDIA GPUs): ``nvmlDeviceGetTotalEnergyConsumption`` is a millijoule
  *counter* (Volta and later); where the driver does not support it, the power reading
  ``nvmlDeviceGetPowerUsage`` (mW) is *sampled* and integrated.
- **INA3221** (Jetson boards): the rail monitors under ``/sys/bus/i2c/drivers/ina3221*``
  give voltage and current per rail (no energy counter), *sampled* and integrated with the
  trapezoid rule. Layouts as jetson_stats (``jtop/core/power.py``) and zeus
  (``zeus/device/soc/jetson.py``) read them: hwmon ``inN_label`` / ``inN_input`` (mV) /
  ``currN_input`` (mA) on JetPack 5+, and iio ``rail_name_N`` / ``in_voltageN_input`` /
  ``in_currentN_input`` / ``in_powerN_input`` (mW) on JetPack 4.

Own readers, not a library: codecarbon and zeus read the same files but pull pandas,
scikit-learn, pydantic and httpx (codecarbon) or a polling subprocess per meter (zeus), and
codecarbon *estimates* power from a CPU's TDP when no meter is readable, which bench must never
present as a measurement. The readers here are ~300 lines over files whose formats are
kernel ABI, and they run inside the monitor thread that already polls every 0.5 s.

Totals: each source marks which of its domains add up to the machine's figure without
double counting: RAPL counts ``psys`` alone where it exists (the whole platform), else the
packages plus their ``dram`` sub-zones (DRAM is outside the package domain); INA3221 counts
the module's input rail (``VDD_IN`` / ``POM_5V_IN``) alone where it exists, else every rail.
"""
from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

from harness.measure.hostfs import Unreadable, host_root, read_number, read_text, under

COUNTER, SAMPLED = "counter", "sampled"
# Seconds of doing nothing measured before a run: long enough for several samples of a
# sampled meter (and a RAPL counter's 1 ms updates), short next to any epoch.
IDLE_BASELINE_S = 1.0
# Rails that are the module's whole input (jetson_stats power.total_power, NVIDIA forum 73608).
INPUT_RAILS = ("VDD_IN", "POM_5V_IN")


@dataclass
class Domain:
    name: str            # "package-0", "package-0/dram", "gpu0", "VDD_IN"
    method: str          # COUNTER or SAMPLED
    in_total: bool       # counted in the machine total


class Source(Protocol):
    kind: str
    domains: list[Domain]

    def poll(self) -> dict[str, float]:
        """Joules per domain since the source was opened (cumulative); call often."""
        ...

    def close(self) -> None: ...


class _Integrator:
    """Trapezoid integral of power readings (W) into joules, one per domain."""

    def __init__(self, read_watts: Callable[[], dict[str, float | None]]) -> None:
        self._read = read_watts
        self._t = time.monotonic()
        self._last = read_watts()
        self.joules = {name: 0.0 for name in self._last}

    def poll(self) -> dict[str, float]:
        now = time.monotonic()
        watts = self._read()
        dt = now - self._t
        for name, w in watts.items():
            prev = self._last.get(name)
            if w is not None and prev is not None and dt > 0:
                self.joules[name] = self.joules.get(name, 0.0) + 0.5 * (w + prev) * dt
        self._t, self._last = now, watts
        return dict(self.joules)


# --- RAPL ----------------------------------------------------------------------------------

_RAPL_ZONE = re.compile(r"^intel-rapl:(\d+)(?::(\d+))?$")


@dataclass
class _RaplZone:
    domain: Domain
    energy: Path
    range_uj: float
    last_uj: float
    total_uj: float = 0.0


class RaplSource:
    """``/sys/class/powercap/intel-rapl:*``: package, core, uncore, dram, psys counters."""

    kind = "rapl"

    def __init__(self, zones: list[_RaplZone]) -> None:
        self._zones = zones
        self.domains = [z.domain for z in zones]

    @classmethod
    def open(cls, root: Path) -> tuple["RaplSource | None", str | None]:
        base = under(root, "/sys/class/powercap")
        entries = sorted(p for p in base.glob("intel-rapl:*") if _RAPL_ZONE.match(p.name)) if base.is_dir() else []
        if not entries:
            return None, "RAPL: no /sys/class/powercap/intel-rapl:* on this machine (no RAPL exposed, e.g. a VM)"
        names = {p.name: read_text(p / "name") or p.name for p in entries}
        has_psys = any(n == "psys" for n in names.values())
        zones = []
        try:
            for p in entries:
                package, sub = _RAPL_ZONE.match(p.name).groups()  # type: ignore[union-attr]
                name = names[p.name] if sub is None else f"{names.get(f'intel-rapl:{package}', package)}/{names[p.name]}"
                in_total = (names[p.name] == "psys") if has_psys else (sub is None or names[p.name] == "dram")
                energy = p / "energy_uj"
                first = read_number(energy)
                if first is None:
                    continue
                range_uj = read_number(p / "max_energy_range_uj") or 2.0**32
                zones.append(_RaplZone(Domain(name, COUNTER, in_total), energy, range_uj, first))
        except Unreadable as e:
            return None, f"RAPL: unavailable: {e}"
        if not zones:
            return None, "RAPL: zones listed but no energy_uj could be read"
        return cls(zones), None

    def poll(self) -> dict[str, float]:
        out = {}
        for z in self._zones:
            try:
                now = read_number(z.energy)
            except Unreadable:
                now = None
            if now is not None:
                z.total_uj += rapl_delta(z.last_uj, now, z.range_uj)
                z.last_uj = now
            out[z.domain.name] = z.total_uj / 1e6
        return out

    def close(self) -> None:
        pass


def rapl_delta(before_uj: float, after_uj: float, range_uj: float) -> float:
    """Microjoules between two readings of a counter that wraps to 0 after ``range_uj``
    (the kernel's powercap ABI: energy_uj counts up to max_energy_range_uj, then restarts)."""
    if after_uj >= before_uj:
        return after_uj - before_uj
    return range_uj - before_uj + after_uj


# --- INA3221 (Jetson) ----------------------------------------------------------------------

@dataclass
class _Rail:
    name: str
    volt: Path | None = None   # mV
    curr: Path | None = None   # mA
    power: Path | None = None  # mW

    def watts(self) -> float | None:
        if self.power is not None:
            mw = read_number(self.power)
            return None if mw is None else mw / 1e3
        mv = read_number(self.volt) if self.volt else None
        ma = read_number(self.curr) if self.curr else None
        return None if mv is None or ma is None else mv * ma / 1e6


def find_ina3221_rails(root: Path) -> list[_Rail]:
    """Every labelled rail of every INA3221 on the board (``NC`` channels and the hwmon
    driver's channel 7, "sum of shunt voltages", skipped as jetson_stats does)."""
    rails: dict[str, _Rail] = {}
    for driver in ("ina3221", "ina3221x"):
        base = under(root, f"/sys/bus/i2c/drivers/{driver}")
        if not base.is_dir():
            continue
        for device in sorted(base.iterdir()):
            dirs = [device, *sorted(device.glob("hwmon/hwmon*")), *sorted(device.glob("iio:device*"))]
            for d in dirs:
                for label in sorted(d.glob("in*_label")):  # hwmon (JetPack 5+)
                    n = label.name[2:].split("_")[0]
                    name = read_text(label) or ""
                    if not name or name.upper().startswith("NC") or n == "7" or "sum of shunt" in name.lower():
                        continue
                    rails.setdefault(name, _Rail(name, volt=d / f"in{n}_input", curr=d / f"curr{n}_input"))
                for label in sorted(d.glob("rail_name_*")):  # iio (JetPack 4)
                    n = label.name.rsplit("_", 1)[1]
                    name = read_text(label) or ""
                    if not name:
                        continue
                    power = d / f"in_power{n}_input"
                    rails.setdefault(name, _Rail(name, volt=d / f"in_voltage{n}_input", curr=d / f"in_current{n}_input",
                                                 power=power if power.exists() else None))
    return list(rails.values())


class Ina3221Source:
    """Jetson rail monitors: power sampled at each poll and integrated."""

    kind = "ina3221"

    def __init__(self, rails: list[_Rail]) -> None:
        self._rails = rails
        has_input = any(r.name in INPUT_RAILS for r in rails)
        self.domains = [Domain(r.name, SAMPLED, (r.name in INPUT_RAILS) if has_input else True) for r in rails]
        self._integrator = _Integrator(self.watts)

    @classmethod
    def open(cls, root: Path) -> tuple["Ina3221Source | None", str | None]:
        try:
            rails = find_ina3221_rails(root)
            if not rails:
                return None, None  # not a Jetson: nothing to say
            for r in rails:
                if r.watts() is None:
                    return None, f"INA3221: rail {r.name} gave no reading ({r.power or r.volt})"
        except Unreadable as e:
            return None, f"INA3221: unavailable: {e}"
        return cls(rails), None

    def watts(self) -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        for r in self._rails:
            try:
                out[r.name] = r.watts()
            except Unreadable:
                out[r.name] = None
        return out

    def poll(self) -> dict[str, float]:
        return self._integrator.poll()

    def close(self) -> None:
        pass


# --- NVML ----------------------------------------------------------------------------------

class NvmlSource:
    """NVIDIA GPUs: the driver's energy counter (mJ), or its power reading integrated."""

    kind = "nvml"

    def __init__(self, pynvml: Any, handles: list[Any]) -> None:
        self._nvml = pynvml
        self._counters: dict[str, tuple[Any, float]] = {}
        sampled: dict[str, Any] = {}
        self.domains = []
        for i, h in enumerate(handles):
            name = f"gpu{i}"
            try:
                self._counters[name] = (h, float(pynvml.nvmlDeviceGetTotalEnergyConsumption(h)))
                self.domains.append(Domain(name, COUNTER, True))
                continue
            except Exception:
                pass
            try:
                pynvml.nvmlDeviceGetPowerUsage(h)
                sampled[name] = h
                self.domains.append(Domain(name, SAMPLED, True))
            except Exception:
                continue
        self._sampled = sampled
        self._last: dict[str, float] = {}
        self._integrator = _Integrator(self._watts) if sampled else None

    @classmethod
    def open(cls, indices: list[int] | None = None) -> tuple["NvmlSource | None", str | None]:
        try:
            import pynvml

            pynvml.nvmlInit()
        except Exception:
            return None, None  # no NVIDIA driver: nothing to say
        try:
            count = pynvml.nvmlDeviceGetCount()
            handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in (indices if indices is not None else range(count))]
        except Exception as e:
            return None, f"NVML: {e}"
        source = cls(pynvml, handles)
        if not source.domains:
            return None, "NVML: the GPUs report neither an energy counter nor power"
        return source, None

    def _watts(self) -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        for name, h in self._sampled.items():
            try:
                out[name] = self._nvml.nvmlDeviceGetPowerUsage(h) / 1e3
            except Exception:
                out[name] = None
        return out

    def poll(self) -> dict[str, float]:
        out = {}
        for name, (h, start_mj) in self._counters.items():
            try:
                out[name] = (float(self._nvml.nvmlDeviceGetTotalEnergyConsumption(h)) - start_mj) / 1e3
            except Exception:
                out[name] = self._last.get(name, 0.0)
        if self._integrator is not None:
            out.update(self._integrator.poll())
        self._last = out
        return out

    def close(self) -> None:
        try:
            self._nvml.nvmlShutdown()
        except Exception:
            pass


# --- the meter -----------------------------------------------------------------------------

@dataclass
class EnergyMeter:
    """Every readable source of this machine behind one interface.

    ``poll()`` returns cumulative joules per domain plus ``"total"``; the monitor calls it on
    every sample (sampled sources integrate between polls, counters catch wraps) and takes
    differences of the snapshots at phase boundaries. ``unavailable`` holds one sentence per
    source that exists but could not be read, which run.json keeps."""

    sources: list[Source] = field(default_factory=list)
    unavailable: list[str] = field(default_factory=list)
    idle_w: dict[str, float] | None = None
    idle_s: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def open(cls, root: str | Path | None = None, *, gpu_indices: list[int] | None = None,
             nvml: bool = True) -> "EnergyMeter":
        base = host_root(root)
        meter = cls()
        openers: list[Callable[[], tuple[Any, str | None]]] = [lambda: RaplSource.open(base),
                                                               lambda: Ina3221Source.open(base)]
        if nvml:
            openers.append(lambda: NvmlSource.open(gpu_indices))
        for opener in openers:
            source, why = opener()
            if source is not None:
                meter.sources.append(source)
            elif why:
                meter.unavailable.append(why)
        return meter

    @property
    def available(self) -> bool:
        return bool(self.sources)

    @property
    def domains(self) -> list[Domain]:
        return [d for s in self.sources for d in s.domains]

    def poll(self) -> dict[str, float]:
        with self._lock:
            out: dict[str, float] = {}
            for s in self.sources:
                out.update(s.poll())
            out["total"] = sum(out.get(d.name, 0.0) for d in self.domains if d.in_total)
            return out

    def measure_idle(self, seconds: float, step_s: float = 0.1) -> dict[str, float] | None:
        """Mean watts per domain over ``seconds`` of doing nothing, before the run: the share of
        every later figure that the machine draws anyway. Skipped when nothing is readable."""
        if not self.available or seconds <= 0:
            return None
        t0, start = time.monotonic(), self.poll()
        while time.monotonic() - t0 < seconds:
            time.sleep(step_s)
            end = self.poll()
        dt = time.monotonic() - t0
        self.idle_w = {k: round((end[k] - start.get(k, 0.0)) / dt, 3) for k in end}
        self.idle_s = round(dt, 2)
        return self.idle_w

    def describe(self) -> dict[str, Any]:
        """What run.json records: the sources, each domain's method, the idle baseline, and why
        anything is missing. ``available: false`` means every energy column stays empty."""
        out: dict[str, Any] = {"available": self.available, "sources": [s.kind for s in self.sources],
                               "domains": {d.name: {"method": d.method, "in_total": d.in_total} for d in self.domains},
                               "unavailable": list(self.unavailable)}
        if not self.available:
            out["why"] = "; ".join(self.unavailable) or "no energy meter found (no RAPL, NVML or INA3221)"
        if self.idle_w is not None:
            out["idle_baseline_w"], out["idle_baseline_s"] = self.idle_w, self.idle_s
        return out

    def close(self) -> None:
        for s in self.sources:
            s.close()


def joules_between(before: dict[str, float] | None, after: dict[str, float] | None) -> dict[str, float]:
    """Per-domain joules between two ``poll()`` snapshots (empty if either is missing)."""
    if not before or not after:
        return {}
    return {k: after[k] - before.get(k, 0.0) for k in after}
