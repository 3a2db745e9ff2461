"""Nodes and processes per node of a distributed run, for run.json and the reports.

Each rank reports its host, local rank and node rank (:func:`node_rank`); rank 0 turns the
list into ``nodes x processes per node`` (:func:`layout`). The node rank comes from the
launcher where it says one (torchrun's ``GROUP_RANK``, SLURM's ``SLURM_NODEID`` in an srun
step), so two torchrun "nodes" on one machine count as two nodes, as they were launched;
MPI gives no node index, so there the hosts are numbered in the order of their lowest rank
(:func:`fill_node_ranks`), which is how mpiexec's default by-slot mapping fills them.
"""
from __future__ import annotations

from collections import Counter
from typing import Any, Mapping, Sequence, TypedDict


def node_rank(environ: Mapping[str, str]) -> int | None:
    """This process's node index as its launcher set it, or None (MPI, plain runs)."""
    for var in ("GROUP_RANK", "SLURM_NODEID"):
        if var == "SLURM_NODEID" and "SLURM_STEP_ID" not in environ:
            continue  # a batch script's SLURM_NODEID is not a step's
        value = environ.get(var, "")
        if value.isdigit():
            return int(value)
    return None


def fill_node_ranks(ranks: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """``ranks`` (rank order) with every missing ``node_rank`` set from its host: hosts
    numbered by first appearance."""
    order: dict[str, int] = {}
    out = []
    for r in ranks:
        order.setdefault(r["hostname"], len(order))
        out.append(r if r.get("node_rank") is not None else {**r, "node_rank": order[r["hostname"]]})
    return out


class Layout(TypedDict):
    nodes: int
    processes_per_node: int | list[int]  # a list, by node rank, when nodes differ


def layout(ranks: Sequence[Mapping[str, Any]]) -> Layout:
    """``{"nodes": N, "processes_per_node": K}`` (K a list, by node rank, when nodes differ)."""
    per_node = Counter(r["node_rank"] for r in ranks)
    counts = [per_node[n] for n in sorted(per_node)]
    return {"nodes": len(counts), "processes_per_node": counts[0] if len(set(counts)) == 1 else counts}


# What carries the gradients, by communicator name (run.json "distributed.communicator"):
# torch's process-group backends, and ChainerMN's communicators (naive: allreduce over MPI;
# pure_nccl: NCCL for the gradients, MPI only to set it up).
TRANSPORT = {"gloo": "gloo", "nccl": "NCCL", "naive": "MPI", "flat": "MPI", "pure_nccl": "NCCL"}


def transport(communicator: str | None) -> str | None:
    """``gloo`` / ``NCCL`` / ``MPI`` for a communicator name; None for a one-process run."""
    if not communicator or communicator == "local":
        return None
    return TRANSPORT.get(communicator, communicator)


def describe_layout(nodes: int, per_node: int | Sequence[int]) -> str:
    """``2 x 4`` (nodes x processes per node) or ``2 x (4+2)`` when uneven."""
    if isinstance(per_node, int):
        return f"{nodes} x {per_node}"
    return f"{nodes} x ({'+'.join(str(k) for k in per_node)})"
