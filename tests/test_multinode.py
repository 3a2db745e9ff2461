"""Several "nodes" on one machine, over the loopback address only: two torchrun launchers
that rendezvous as node 0 and node 1, and mpiexec over a hostfile that lists localhost twice.

What must equal what: two nodes with one process each run exactly the computation of one
node with two processes (same world size, same rank order, same shards of every global
batch, the same two-rank gloo allreduce), so their epochs.csv figures must agree; only where
the processes ran differs, and run.json must say so (node ranks 0 and 1, 2 x 1).
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness import schema as R
from tests.conftest import BENCH, TINY, bench, mpi_missing, run_dirs

# Every socket on 127.0.0.1: gloo, the rendezvous, Open MPI's out-of-band and TCP transports.
LOOPBACK = {"GLOO_SOCKET_IFNAME": "lo", "OMPI_MCA_btl_tcp_if_include": "lo", "OMPI_MCA_oob_tcp_if_include": "lo"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _meta(results: Path) -> tuple[Path, dict]:
    runs = run_dirs(results)
    assert len(runs) == 1, runs  # one folder for the job, made by global rank 0
    return runs[0], json.loads((runs[0] / R.RUN_JSON).read_text())


def test_two_torchrun_nodes_equal_one_node_with_two_processes(tmp_path):
    two_nodes, one_node = tmp_path / "two-nodes", tmp_path / "one-node"
    flags = [*TINY, "--epochs", "1"]
    port = _free_port()
    env = {**os.environ, **LOOPBACK}
    env.pop("SETUPTOOLS_USE_DISTUTILS", None)
    nodes = [subprocess.Popen([BENCH, "launch", "--backend", "torch", "--nnodes", "2", "--nproc", "1",
                               "--node-rank", str(k), "--master-addr", "127.0.0.1", "--master-port", str(port),
                               *flags, "--results-dir", str(two_nodes)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for k in (0, 1)]
    try:
        outs = [p.communicate(timeout=300) for p in nodes]
    finally:
        for p in nodes:
            p.kill()
    for p, (out, err) in zip(nodes, outs):
        assert p.returncode == 0, f"{out}\n{err}"
    assert "--node-rank=1 --master-addr=127.0.0.1" in outs[1][1]  # each node printed its own line
    bench("launch", "--backend", "torch", "--nproc", "2", *flags, "--results-dir", str(one_node), check=True,
          timeout=300, env=LOOPBACK)

    run, meta = _meta(two_nodes)
    d = meta["distributed"]
    assert meta["status"] == "completed" and d["world_size"] == 2 and d["launcher"] == "torchrun"
    assert (d["nodes"], d["processes_per_node"], d["transport"]) == (2, 1, "gloo")
    assert [(r["rank"], r["node_rank"], r["local_rank"]) for r in d["ranks"]] == [(0, 0, 0), (1, 1, 0)]
    assert all(r["hostname"] for r in d["ranks"]) and d["ranks_identical"] is True
    one_run, one_meta = _meta(one_node)
    assert (one_meta["distributed"]["nodes"], one_meta["distributed"]["processes_per_node"]) == (1, 2)
    a, b = pd.read_csv(one_run / R.EPOCHS_CSV), pd.read_csv(run / R.EPOCHS_CSV)
    for col in ("train_loss", "train_acc", "test_loss", "test_acc", "test_top5_acc", "lr"):
        np.testing.assert_allclose(b[col], a[col], rtol=1e-5, atol=1e-7, err_msg=col)
    assert d["final_state_sha256"][0] == one_meta["distributed"]["final_state_sha256"][0]


def test_mpiexec_over_a_hostfile(tmp_path):
    if (why := mpi_missing()) is not None:
        pytest.skip(why)
    hostfile = tmp_path / "hosts"
    hostfile.write_text("localhost\nlocalhost\n")  # one line per slot: 2 slots on this machine
    results = tmp_path / "results"
    proc = bench("launch", "--backend", "chainer", "--hostfile", str(hostfile), *TINY, "--train-size", "64",
                 "--test-size", "32", "--epochs", "1", "--results-dir", str(results), env=LOOPBACK, timeout=300,
                 check=True)
    assert f"--hostfile {hostfile} -n 2 " in proc.stderr  # the slots gave the process count
    _, meta = _meta(results)
    d = meta["distributed"]
    assert meta["status"] == "completed" and (d["launcher"], d["communicator"], d["transport"]) == ("mpi", "naive", "MPI")
    assert (d["nodes"], d["processes_per_node"]) == (1, 2)  # MPI names no node: the one host is one node
    assert [(r["rank"], r["node_rank"], r["local_rank"]) for r in d["ranks"]] == [(0, 0, 0), (1, 0, 1)]
    assert d["ranks_identical"] is True


def test_launch_prints_every_nodes_line_and_refuses_what_cannot_work(tmp_path):
    out = bench("launch", "--backend", "torch", "--nnodes", "2", "--nproc", "2", "--master-addr", "127.0.0.1",
                "--dry-run", *TINY, check=True).stdout.splitlines()
    assert out[0] == "# on node 0 (127.0.0.1)" and out[2] == "# on node 1"
    assert "--node-rank=0" in out[1] and "--node-rank=1" in out[3] and "--nproc-per-node=2" in out[3]
    elastic = bench("launch", "--backend", "torch", "--nnodes", "2", "--nproc", "1", "--rdzv-endpoint",
                    "127.0.0.1:29400", "--dry-run", *TINY, check=True).stdout.splitlines()
    assert elastic[0] == "# on each of the 2 nodes" and "--rdzv-backend=c10d" in elastic[1]
    for args, message in [  # (without --dry-run the first would run node 0's line if it had a node rank)
        (["--backend", "torch", "--nnodes", "2", "--nproc", "1", "--master-addr", "127.0.0.1"],
         "give this machine's --node-rank"),
        (["--backend", "torch", "--nnodes", "2", "--nproc", "1", "--dry-run"], "needs rank 0's address"),
        (["--backend", "chainer", "--nnodes", "2", "--nproc", "1", "--master-addr", "x", "--dry-run"], "--hostfile (one"),
        (["--backend", "torch", "--nnodes", "2", "--nproc", "3", "--master-addr", "x", "--batch-size", "32",
          "--dry-run"], "6 processes"),
        (["--backend", "chainer", "--hostfile", str(tmp_path / "none"), "--dry-run"], "cannot read --hostfile"),
    ]:
        proc = bench("launch", *args, *TINY[:2])
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert any(m in proc.stderr for m in message.split("|")), (message, proc.stderr)
