"""What an edge board is: model, L4T and JetPack release, power mode.

A write-up of a Jetson names these first, because the same module runs at very different
speeds under different power modes and JetPack releases. Sources:

- board model: ``/proc/device-tree/model`` (NUL-terminated), e.g.
  ``NVIDIA Jetson Orin Nano Developer Kit``; any device-tree board (Raspberry Pi too) has one.
- L4T release: ``/etc/nv_tegra_release``, first line
  ``# R36 (release), REVISION: 4.0, GCID: 37537400, BOARD: generic, EABI: aarch64, DATE: ...``
  -> ``36.4.0`` (parsed as jetson_stats ``get_nvidia_l4t`` does).
- JetPack: not recorded on the board; mapped from L4T with the table below, taken from
  jetson_stats ``jtop/core/jetson_variables.py`` (``NVIDIA_JETPACK``), which follows NVIDIA's
  JetPack archive (developer.nvidia.com/embedded/jetpack-archive). Releases not in it record
  ``None``: better no JetPack than a wrong one.
- power mode: ``nvpmodel -q`` prints ``NV Power Mode: 15W`` and the mode number on the next line
  (output in jetson_stats ``tests/nvpmodel`` and NVIDIA's docs); run only on the real root.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from harness.measure.hostfs import Unreadable, host_root, read_text, under

L4T_TO_JETPACK = {
    "36.4.4": "6.2.1", "36.4.3": "6.2", "36.4.2": "6.1 (rev1)", "36.4.0": "6.1", "36.3.0": "6.0",
    "36.2.0": "6.0 DP",
    "35.6.1": "5.1.5", "35.6.0": "5.1.4", "35.5.0": "5.1.3", "35.4.1": "5.1.2", "35.3.1": "5.1.1",
    "35.2.1": "5.1", "35.1.0": "5.0.2",
    "32.7.6": "4.6.6", "32.7.5": "4.6.5", "32.7.4": "4.6.4", "32.7.3": "4.6.3", "32.7.2": "4.6.2",
    "32.7.1": "4.6.1", "32.6.1": "4.6",
}
_RELEASE = re.compile(r"#\s*R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)")
_POWER_MODE = re.compile(r"NV Power Mode:\s*(\S+)\s*\n\s*(\d+)")


def parse_nv_tegra_release(text: str) -> str | None:
    """``# R36 (release), REVISION: 4.0, ...`` -> ``"36.4.0"``; ``REVISION: 7.1`` -> ``32.7.1``."""
    m = _RELEASE.search(text)
    if not m:
        return None
    revision = m.group(2).split(".")
    while len(revision) < 2:
        revision.append("0")
    return ".".join([m.group(1), *revision[:2]])


def parse_nvpmodel_query(text: str) -> dict[str, Any] | None:
    """``nvpmodel -q`` output -> ``{"name": "15W", "id": 0}``."""
    m = _POWER_MODE.search(text)
    return {"name": m.group(1), "id": int(m.group(2))} if m else None


def power_mode(root: Path) -> tuple[dict[str, Any] | None, str | None]:
    """The active nvpmodel mode, or (None, why not)."""
    if root != Path("/"):
        return None, "nvpmodel not queried (readers pointed at a test tree)"
    exe = shutil.which("nvpmodel")
    if exe is None:
        return None, "nvpmodel not found"
    try:
        out = subprocess.run([exe, "-q"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, f"nvpmodel -q failed: {e}"
    mode = parse_nvpmodel_query(out.stdout)
    return (mode, None) if mode else (None, f"nvpmodel -q printed no mode (exit {out.returncode})")


def board_model(root: Path) -> str | None:
    try:
        return read_text(under(root, "/proc/device-tree/model")) or None
    except Unreadable:
        return None


def tegra_info(root: str | Path | None = None) -> dict[str, Any] | None:
    """The board description for run.json's ``machine.board``; None on a machine that is
    neither a device-tree board nor an L4T system (every PC and cloud VM)."""
    base = host_root(root)
    model = board_model(base)
    try:
        release_text = read_text(under(base, "/etc/nv_tegra_release"))
    except Unreadable:
        release_text = None
    if model is None and release_text is None:
        return None
    l4t = parse_nv_tegra_release(release_text) if release_text else None
    info: dict[str, Any] = {"model": model, "l4t": l4t, "jetpack": L4T_TO_JETPACK.get(l4t or "")}
    if l4t is not None:
        info["power_mode"], why = power_mode(base)
        if why:
            info["power_mode_why"] = why
    return info
