"""Which NVML device is the run's CUDA device.

CUDA numbers the devices a process can see (after ``CUDA_VISIBLE_DEVICES``, in
``CUDA_DEVICE_ORDER``, fastest first by default); NVML numbers every GPU of the machine by PCI
bus id and ignores both variables. So ``cuda:0`` under ``CUDA_VISIBLE_DEVICES=2`` is NVML's
device 2, and taking NVML index = CUDA ordinal reads another GPU's utilisation and memory.

The device is matched by an identity both sides report: its PCI bus id, which the backend
reads from the framework (``torch.cuda.get_device_properties``, ``cupy.cuda.Device``) and
records in run.json's thread settings as ``pci_bus_id``. Without it, ``CUDA_VISIBLE_DEVICES``
is read as CUDA does: a ``GPU-<uuid>`` entry (or a unique prefix) by UUID, an integer as the
NVML index (exact with ``CUDA_DEVICE_ORDER=PCI_BUS_ID``, NVML's own order).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class GpuIdentity:
    """What NVML says about one of its devices (index = position in NVML's list)."""

    uuid: str  # "GPU-8f6f..."
    pci_bus_id: str  # "00000000:3B:00.0"


def pci_key(bus_id: str) -> tuple[int, int, int, int] | None:
    """(domain, bus, device, function) of a PCI bus id in any of the spellings in use:
    NVML's "00000000:3B:00.0", CUDA's "0000:3b:00.0", or without a domain "3b:00.0"."""
    try:
        head, _, function = bus_id.strip().rpartition(".")
        parts = head.split(":")
        if len(parts) == 2:
            parts = ["0", *parts]
        domain, bus, device = (int(p, 16) for p in parts)
        return domain, bus, device, int(function or "0", 16)
    except ValueError:
        return None


def _uuid(text: str) -> str:
    text = text.strip().lower()
    return text[4:] if text.startswith("gpu-") else text


def nvml_index(cuda_ordinal: int | None, gpus: Sequence[GpuIdentity], *, pci_bus_id: str | None = None,
               visible: str | None = None) -> int | None:
    """NVML's index of the CUDA device ``cuda_ordinal`` (None: no GPU, or not found).

    ``pci_bus_id``: the device's, as the framework reported it (preferred); ``visible``: the
    value of ``CUDA_VISIBLE_DEVICES`` (None when unset)."""
    if cuda_ordinal is None:
        return None
    if pci_bus_id and (key := pci_key(pci_bus_id)) is not None:
        matches = [i for i, g in enumerate(gpus) if pci_key(g.pci_bus_id) == key]
        if matches:
            return matches[0]
    if visible is None:
        return cuda_ordinal if cuda_ordinal < len(gpus) or not gpus else None
    entries = [e.strip() for e in visible.split(",")]
    if cuda_ordinal >= len(entries) or not entries[cuda_ordinal]:
        return None
    entry = entries[cuda_ordinal]
    if entry.isdigit():
        index = int(entry)
        return index if index < len(gpus) or not gpus else None
    if entry.lower().startswith("gpu-"):
        wanted = _uuid(entry)
        matches = [i for i, g in enumerate(gpus) if _uuid(g.uuid).startswith(wanted)]
        return matches[0] if len(matches) == 1 else None
    return None  # a MIG instance (MIG-...): NVML's device-level figures are not the instance's
