"""GPU load, clock and memory on NVIDIA Tegra (Jetson) boards, where NVML does not exist.

A Jetson's GPU is integrated: it has no memory of its own (it allocates from the same system
RAM as the CPU) and the driver publishes no NVML. What it publishes instead:

- **devfreq** (jetson_stats ``jtop/core/gpu.py``, ``find_igpu`` / ``igpu_read_status``): a
  directory ``/sys/class/devfreq/<id>`` (``17000000.gpu`` on Orin with JetPack 6,
  ``17000000.ga10b`` with JetPack 5, ``57000000.gpu`` on Nano / TX1) whose ``device/of_node/name``
  names a GPU (``gpu``, ``ga10b``, ``gv11b``, ``gp10b``); ``cur_freq`` in Hz; and the
  device's ``load`` in per-mille (``device/load``, i.e. ``/sys/devices/platform/.../load``).
- **tegrastats** (the L4T tool; line formats in jetson_stats ``jtop/core/tegra_parse.py`` and
  its tests): ``GR3D_FREQ 12%`` (JetPack 4/5), ``GR3D_FREQ 10%@1300`` (JetPack 6),
  ``GR3D_FREQ 12%@[1300,1300]`` (JetPack 7), ``RAM 2257/30536MB (lfb ...)``, and rails as
  ``VDD_IN 4421mW/4421mW`` (JetPack 5+) or ``VDD_IN 1038/1134`` (JetPack 4). bench reads it
  only where the sysfs files are unreadable.

"GPU memory" on these boards is the system RAM in use (``MemTotal - MemAvailable``), the figure
tegrastats prints as RAM; reports say that it is shared with the CPU.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from harness.measure.hostfs import Unreadable, host_root, read_number, read_text, under

GPU_NODE_NAMES = ("gpu", "ga10b", "gv11b", "gp10b", "gb10b")
SHARED_MEMORY_NOTE = "integrated GPU: no memory of its own; GPU memory is system RAM in use, shared with the CPU"


@dataclass
class GpuSample:
    util_pct: float | None
    freq_mhz: float | None
    mem_used_mb: float | None  # system RAM in use (shared)


def find_gpu_devfreq(root: Path) -> Path | None:
    """The devfreq directory of the integrated GPU, or None on a machine without one."""
    base = under(root, "/sys/class/devfreq")
    if not base.is_dir():
        return None
    for item in sorted(base.iterdir()):
        try:
            name = (read_text(item / "device" / "of_node" / "name") or "").lower()
        except Unreadable:
            name = ""
        if name in GPU_NODE_NAMES or "gpu" in name or item.name.endswith((".gpu", ".ga10b", ".gv11b", ".gp10b")):
            return item
    return None


def shared_memory_used_mb(root: Path) -> float | None:
    """System RAM in use (MiB) from /proc/meminfo: what the integrated GPU allocates from."""
    text = read_text(under(root, "/proc/meminfo"))
    if not text:
        return None
    kib = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            kib[key.strip()] = int(parts[0])
    if "MemTotal" not in kib or "MemAvailable" not in kib:
        return None
    return round((kib["MemTotal"] - kib["MemAvailable"]) / 1024, 1)


class TegraGpu:
    """Samples one integrated GPU: sysfs when readable, else the latest tegrastats line."""

    def __init__(self, root: Path, devfreq: Path | None, tegrastats: "TegrastatsReader | None" = None) -> None:
        self.root = root
        self.devfreq = devfreq
        self.tegrastats = tegrastats
        self.source = "tegrastats" if tegrastats is not None else "sysfs"

    @classmethod
    def open(cls, root: str | Path | None = None) -> "TegraGpu | None":
        """None on a machine without a Tegra GPU. Falls back to tegrastats when the devfreq
        ``load`` file exists but this user may not read it."""
        base = host_root(root)
        devfreq = find_gpu_devfreq(base)
        if devfreq is None:
            return None
        try:
            read_number(devfreq / "device" / "load")
            return cls(base, devfreq)
        except Unreadable:
            reader = TegrastatsReader.start()
            return cls(base, devfreq, reader) if reader is not None else cls(base, devfreq)

    def describe(self) -> dict[str, str | None]:
        return {"source": self.source, "devfreq": str(self.devfreq) if self.devfreq else None,
                "memory": SHARED_MEMORY_NOTE}

    def sample(self) -> GpuSample:
        if self.tegrastats is not None:
            latest = self.tegrastats.latest
            if latest is None:
                return GpuSample(None, None, shared_memory_used_mb(self.root))
            return GpuSample(latest.gpu_util_pct, latest.gpu_freq_mhz, latest.ram_used_mb)
        util = freq = None
        if self.devfreq is not None:
            try:
                load = read_number(self.devfreq / "device" / "load")
                util = None if load is None else load / 10.0  # per-mille -> %
                hz = read_number(self.devfreq / "cur_freq")
                freq = None if hz is None else hz / 1e6
            except Unreadable:
                pass
        return GpuSample(util, freq, shared_memory_used_mb(self.root))

    def close(self) -> None:
        if self.tegrastats is not None:
            self.tegrastats.stop()


# --- tegrastats ----------------------------------------------------------------------------

_GR3D = re.compile(r"\bGR3D_FREQ (?:(\d+)%)?(?:@\[?(\d+))?")
_RAM = re.compile(r"\bRAM (\d+)/(\d+)MB")
# "VDD_IN 4421mW/4421mW", "VDD_GPU_SOC 5139mW/5139mW/5139mW" (JetPack 5+), "VDD_IN 1038/1134" (JetPack 4)
_RAIL = re.compile(r"\b([A-Z][A-Z0-9_]*) (\d+)(?:mW)?/(\d+)(?:mW)?(?:/\d+(?:mW)?)?\b")


@dataclass
class TegrastatsLine:
    gpu_util_pct: float | None
    gpu_freq_mhz: float | None
    ram_used_mb: float | None
    ram_total_mb: float | None
    rails_mw: dict[str, float]   # instantaneous power per rail


def parse_tegrastats(line: str) -> TegrastatsLine:
    """One tegrastats output line -> the figures bench uses (missing fields are None)."""
    util = freq = used = total = None
    if m := _GR3D.search(line):
        util = float(m.group(1)) if m.group(1) is not None else None
        freq = float(m.group(2)) if m.group(2) is not None else None
    if m := _RAM.search(line):
        used, total = float(m.group(1)), float(m.group(2))
    rails = {}
    for name, now, _avg in _RAIL.findall(line):
        if name not in ("RAM", "SWAP", "IRAM", "LFB"):
            rails[name] = float(now)
    return TegrastatsLine(util, freq, used, total, rails)


class TegrastatsReader:
    """Runs ``tegrastats --interval MS`` and keeps the latest parsed line (a daemon thread)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self._proc = proc
        self.latest: TegrastatsLine | None = None
        self._thread = threading.Thread(target=self._read, args=(proc.stdout,), name="bench-tegrastats", daemon=True)
        self._thread.start()

    @classmethod
    def start(cls, interval_ms: int = 500) -> "TegrastatsReader | None":
        exe = shutil.which("tegrastats")
        if exe is None:
            return None
        try:
            proc = subprocess.Popen([exe, "--interval", str(interval_ms)], stdout=subprocess.PIPE,
                                    stderr=subprocess.DEVNULL, text=True)
        except OSError:
            return None
        return cls(proc)

    def _read(self, stream: IO[str] | None) -> None:
        for line in stream or ():
            self.latest = parse_tegrastats(line)

    def stop(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self._proc.kill()
