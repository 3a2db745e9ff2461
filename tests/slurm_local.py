"""A real one-node SLURM cluster for the tests, started and stopped by the test session.

``slurm`` (session-scoped) runs ``scripts/slurm-local.sh start`` in a fresh temp dir
(munged, slurmctld and slurmd on 127.0.0.1, every file in that dir, nothing in /etc), and
``stop`` when the session ends, whatever happened. Where the machine cannot run it the
script exits 3 with the reason, and every test that uses the fixture skips with exactly that
reason (not root; slurm-wlm or munge missing). Where it should have worked and did not, the
tests fail with the daemons' logs: a cluster that silently never starts would make every
SLURM test pass by skipping.

Use it with ``from tests.slurm_local import slurm  # noqa: F401`` in a test module.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "slurm-local.sh"
CANNOT = 3  # the script's "this machine cannot run it" status


@dataclass(frozen=True)
class LocalSlurm:
    directory: Path
    conf: Path

    def env(self, **extra: str) -> dict[str, str]:
        """The environment for srun/sbatch/sinfo (and everything they start) on this cluster."""
        env = dict(os.environ)
        env.pop("SETUPTOOLS_USE_DISTUTILS", None)
        for name in [k for k in env if k.startswith(("SLURM_", "SBATCH_", "SRUN_", "SALLOC_"))]:
            del env[name]  # a job's variables from an outer allocation would mislead this one
        env["SLURM_CONF"] = str(self.conf)
        env.update(extra)
        return env

    def run(self, *argv: str, timeout: float = 120, **extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, env=self.env(**extra))

    def logs(self) -> str:
        parts = []
        for name in ("slurmctld.log", "slurmd.log"):
            path = self.directory / name
            if path.is_file():
                parts.append(f"--- {name}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-20:]))
        return "\n".join(parts)


@pytest.fixture(scope="session")
def slurm() -> Iterator[LocalSlurm]:
    if shutil.which("bash") is None:
        pytest.skip("bash not found: scripts/slurm-local.sh needs it")
    # Not pytest's tmp_path: its parents are 0700 root directories, which the munge user
    # that munged runs as could not pass through to reach its socket.
    directory = Path(tempfile.mkdtemp(prefix="bench-slurm-"))
    try:
        start = subprocess.run(["bash", str(SCRIPT), "start", str(directory)], capture_output=True, text=True,
                               timeout=180)
        if start.returncode == CANNOT:
            pytest.skip(f"no local SLURM: {start.stderr.strip().removeprefix('slurm-local: ')}")
        if start.returncode != 0:
            pytest.fail(f"scripts/slurm-local.sh start failed ({start.returncode}):\n{start.stderr}")
        yield LocalSlurm(directory, directory / "slurm.conf")
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop", str(directory)], capture_output=True, timeout=60)
        shutil.rmtree(directory, ignore_errors=True)
