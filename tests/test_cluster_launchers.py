"""Multi-node command builders, SLURM's variables and the nodes x processes layout: pure
functions, checked line by line (the real jobs are in test_multinode.py and test_slurm.py)."""
from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from harness.distributed import launchers as L
from harness.distributed import slurm as S
from harness.distributed import topology as T
from harness.distributed.env import MPI, TORCHRUN
from harness.errors import BenchError

PROGRAM = ["/venv/bin/bench", "run", "--backend", "torch", "--distributed", "--epochs", "1"]


def test_static_rendezvous_prints_one_line_per_node():
    nodes = L.Nodes(nnodes=2, nproc_per_node=4, master_addr="node01", master_port=29400).validate()
    lines = L.torchrun_node_lines("torchrun", nodes, PROGRAM)
    assert [where for where, _ in lines] == ["on node 0 (node01)", "on node 1"]
    assert lines[1][1] == ["torchrun", "--nnodes=2", "--nproc-per-node=4", "--node-rank=1", "--master-addr=node01",
                           "--master-port=29400", *PROGRAM]
    one = L.torchrun_node_lines("torchrun", L.Nodes(2, 4, node_rank=1, master_addr="node01").validate(), PROGRAM)
    assert len(one) == 1 and "--node-rank=1" in one[0][1]


def test_elastic_rendezvous_is_the_same_line_everywhere():
    nodes = L.Nodes(nnodes=3, nproc_per_node=1, rdzv_endpoint="node01:29500", rdzv_id="job7").validate()
    [(where, argv)] = L.torchrun_node_lines("torchrun", nodes, PROGRAM)
    assert where == "on each of the 3 nodes"
    assert argv[:6] == ["torchrun", "--nnodes=3", "--nproc-per-node=1", "--rdzv-backend=c10d",
                        "--rdzv-endpoint=node01:29500", "--rdzv-id=job7"]


@pytest.mark.parametrize("nodes, message", [
    (L.Nodes(2, 1), "needs rank 0's address"),
    (L.Nodes(2, 1, node_rank=2, master_addr="a"), r"--node-rank 2 must lie in 0..1"),
    (L.Nodes(2, 1, node_rank=0, rdzv_endpoint="a:1"), "assigns node ranks itself"),
    (L.Nodes(2, 1, rdzv_endpoint="a"), "must be HOST:PORT"),
    (L.Nodes(2, 1, master_addr="a", master_port=70000), "not a TCP port"),
    (L.Nodes(0, 1), "at least 1"),
])
def test_bad_multinode_flags_are_refused(nodes, message):
    with pytest.raises(BenchError, match=message):
        nodes.validate()


def test_hostfile_is_read_and_mpiexec_uses_it(tmp_path: Path):
    hostfile = tmp_path / "hosts"
    hostfile.write_text("# two nodes\nnode01 slots=4\nnode02:2\n\nnode03 slots=1 max_slots=2\n")
    assert L.read_hostfile(hostfile) == [("node01", 4), ("node02", 2), ("node03", 1)]
    argv = L.mpiexec_argv("mpiexec", 7, ["bench", "run"], open_mpi=True, is_root=False, oversubscribe=False,
                          exports=["OMP_NUM_THREADS"], hostfile=hostfile)
    assert argv == ["mpiexec", "--bind-to", "none", "-x", "OMP_NUM_THREADS", "--hostfile", str(hostfile), "-n", "7",
                    "bench", "run"]
    bad = tmp_path / "bad"
    bad.write_text("node01 slots=x\n")
    with pytest.raises(BenchError, match="line 1.*not `HOST slots=N`"):
        L.read_hostfile(bad)
    twice = tmp_path / "twice"
    twice.write_text("localhost\nlocalhost\n")  # once per slot: 2 slots
    assert sum(n for _, n in L.read_hostfile(twice)) == 2
    twice.write_text("localhost slots=1\nlocalhost slots=1\n")  # Open MPI: "multiple definitions of the slot count"
    with pytest.raises(BenchError, match="lists localhost again on line 2"):
        L.read_hostfile(twice)
    with pytest.raises(BenchError, match="cannot read --hostfile"):
        L.read_hostfile(tmp_path / "missing")


def test_sbatch_script_runs_the_right_launcher():
    job = L.SlurmJob(nodes=2, ntasks_per_node=4, time="01:00:00", partition="gpu", cpus_per_task=8).validate()
    torch = L.sbatch_script(job, TORCHRUN, "torchrun", PROGRAM, torchrun="/venv/bin/torchrun")
    assert "#SBATCH --nodes=2\n#SBATCH --ntasks-per-node=4\n#SBATCH --cpus-per-task=8\n" in torch
    assert "#SBATCH --time=01:00:00\n#SBATCH --partition=gpu\n" in torch
    assert "export OMP_NUM_THREADS=${OMP_NUM_THREADS:-8}" in torch
    assert f"MASTER_PORT=${{MASTER_PORT:-$(({S.PORT_BASE} + SLURM_JOB_ID % {S.PORT_SPAN}))}}" in torch
    last = torch.splitlines()[-1]
    assert last.startswith('srun --kill-on-bad-exit=1 --nodes="$SLURM_JOB_NUM_NODES" --ntasks="$SLURM_JOB_NUM_NODES" '
                           "--ntasks-per-node=1 --cpus-per-task=32 /venv/bin/torchrun ")
    assert '--rdzv-backend=c10d --rdzv-endpoint="$MASTER_ADDR:$MASTER_PORT"' in last and last.endswith(shlex.join(PROGRAM))
    assert L.sbatch_script(job, TORCHRUN, "srun", PROGRAM).splitlines()[-1] == \
        "srun --kill-on-bad-exit=1 --cpus-per-task=8 " + shlex.join(PROGRAM)
    assert "srun --kill-on-bad-exit=1 --mpi=pmix " in L.sbatch_script(job, MPI, "pmix", PROGRAM)
    mpi = L.sbatch_script(job, MPI, "mpiexec", PROGRAM, mpiexec_flags=["mpiexec", "--bind-to", "none"])
    assert mpi.splitlines()[-1] == "mpiexec --bind-to none " + shlex.join(PROGRAM)  # no -n: the allocation's tasks
    with pytest.raises(BenchError, match="cannot start a torchrun backend's ranks"):
        L.sbatch_script(job, TORCHRUN, "pmix", PROGRAM)
    with pytest.raises(BenchError, match="not a SLURM time"):
        L.SlurmJob(1, 1, time="1h").validate()


def test_slurm_host_lists_and_tasks_per_node():
    assert S.expand_hostlist("gpu[01-03,07],login") == ["gpu01", "gpu02", "gpu03", "gpu07", "login"]
    assert S.expand_hostlist("r[1-2]n[1-2]") == ["r1n1", "r1n2", "r2n1", "r2n2"]
    assert S.expand_hostlist("vm") == ["vm"]
    assert S.expand_tasks_per_node("2(x3),1") == [2, 2, 2, 1]
    with pytest.raises(BenchError, match="tasks per node"):
        S.expand_tasks_per_node("two")


STEP = {"SLURM_STEP_ID": "0", "SLURM_PROCID": "5", "SLURM_NTASKS": "6", "SLURM_LOCALID": "1", "SLURM_NODEID": "2",
        "SLURM_STEP_NODELIST": "gpu[01-03]", "SLURM_STEP_TASKS_PER_NODE": "2(x3)", "SLURM_JOB_ID": "4242"}


def test_slurm_step_gives_ranks_and_the_rendezvous():
    step = S.detect_step(STEP)
    assert (step.rank, step.world_size, step.local_rank, step.local_world_size, step.node_rank, step.nodes) == \
        (5, 6, 1, 2, 2, 3)
    env = step.torch_env(STEP)
    assert env["MASTER_ADDR"] == "gpu01" and env["MASTER_PORT"] == str(15000 + 4242 % 20000)
    assert (env["RANK"], env["WORLD_SIZE"], env["LOCAL_RANK"], env["GROUP_RANK"]) == ("5", "6", "1", "2")
    given = {**STEP, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29999"}
    assert step.torch_env(given)["MASTER_ADDR"] == "127.0.0.1" and step.torch_env(given)["MASTER_PORT"] == "29999"
    # the batch script itself (no step): one process, not rank 0 of 6
    assert S.detect_step({k: v for k, v in STEP.items() if k != "SLURM_STEP_ID"}) is None
    with pytest.raises(BenchError, match="rank must lie"):
        S.detect_step({**STEP, "SLURM_PROCID": "6"})


def test_layout_counts_nodes_and_processes_per_node():
    assert T.node_rank({"GROUP_RANK": "1"}) == 1
    assert T.node_rank({"SLURM_NODEID": "3"}) is None and T.node_rank({"SLURM_NODEID": "3", "SLURM_STEP_ID": "0"}) == 3
    mpi = T.fill_node_ranks([{"hostname": "a"}, {"hostname": "a"}, {"hostname": "b", "node_rank": None}])
    assert [r["node_rank"] for r in mpi] == [0, 0, 1]
    assert T.layout(mpi) == {"nodes": 2, "processes_per_node": [2, 1]}
    two_nodes_one_host = [{"hostname": "vm", "node_rank": 0}, {"hostname": "vm", "node_rank": 1}]
    assert T.layout(T.fill_node_ranks(two_nodes_one_host)) == {"nodes": 2, "processes_per_node": 1}
    assert T.describe_layout(2, 4) == "2 x 4" and T.describe_layout(2, [4, 2]) == "2 x (4+2)"
