"""The software a run ran on: Linux distribution, the Python environment's packages, and where
torch came from.

Write-ups name the distribution and release ("Ubuntu 22.04"), not the kernel string, and list
packages so that a reader can rebuild the environment; both come from files every system has
(``/etc/os-release``, the installed packages' metadata), read without importing any of them.
"""
from __future__ import annotations

import importlib.metadata
import shlex
import sys
from pathlib import Path
from typing import Any

from harness.measure.hostfs import Unreadable, host_root, read_text, under

# Written by scripts/ensure-venv.sh into the venv: how it installed torch (pinned, system, wheel, index).
TORCH_MARKER = ".bench-torch"


def parse_os_release(text: str) -> dict[str, str]:
    """os-release(5): KEY=value lines, values optionally shell-quoted."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if not sep or key.startswith("#"):
            continue
        try:
            parts = shlex.split(value)
        except ValueError:
            parts = [value]
        out[key] = parts[0] if parts else ""
    return out


def distribution(root: str | Path | None = None) -> dict[str, str | None]:
    """``{"name": "Ubuntu", "version": "22.04.4 LTS (Jammy Jellyfish)", "pretty": ..., "id": ...}``;
    all None where the system has no os-release (not Linux, or a bare container)."""
    base = host_root(root)
    fields: dict[str, str] = {}
    for path in ("/etc/os-release", "/usr/lib/os-release"):
        try:
            text = read_text(under(base, path))
        except Unreadable:
            text = None
        if text:
            fields = parse_os_release(text)
            break
    return {"name": fields.get("NAME"), "version": fields.get("VERSION") or fields.get("VERSION_ID"),
            "id": fields.get("ID"), "version_id": fields.get("VERSION_ID"), "pretty": fields.get("PRETTY_NAME")}


def packages() -> list[str]:
    """``name==version`` of every distribution importable by this interpreter, sorted by name
    (what ``pip freeze`` lists, without running pip)."""
    seen: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]  # None for a distribution without metadata (a broken install)
        if name and name.lower() not in seen:
            seen[name.lower()] = f"{name}=={dist.version}"
    return [seen[k] for k in sorted(seen)]


def torch_origin() -> dict[str, Any]:
    """Where the torch this environment imports was installed from: the installer's record
    (``pinned``, ``system``, ``wheel:PATH``, ``index:URL``) and the directory it lives in
    (outside the venv = the platform's own build, e.g. NVIDIA's JetPack wheel)."""
    marker = Path(sys.prefix) / TORCH_MARKER
    try:
        installer = marker.read_text().strip() or None
    except OSError:
        installer = None
    try:
        dist = importlib.metadata.distribution("torch")
        location: str | None = str(dist.locate_file(""))
        version: str | None = dist.version
    except importlib.metadata.PackageNotFoundError:
        location = version = None
    in_venv = None if location is None else Path(location).resolve().is_relative_to(Path(sys.prefix).resolve())
    return {"installer": installer, "version": version, "location": location, "inside_venv": in_venv}
