"""scripts/ensure-venv.sh: what it would install on each platform (--print-plan, with a fake
`uname` on PATH standing in for an aarch64 board), and the one-line refusal when the platform
torch it is told to use is not there."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "ensure-venv.sh"


def plan(tmp_path: Path, arch: str, **env: str) -> dict[str, str]:
    fake = tmp_path / "bin"
    fake.mkdir(exist_ok=True)
    (fake / "uname").write_text(f"#!/bin/sh\necho {arch}\n")
    (fake / "uname").chmod(0o755)
    full = {k: v for k, v in os.environ.items() if not k.startswith("BENCH_TORCH")}
    full.update(env, PATH=f"{fake}:{os.environ['PATH']}")
    proc = subprocess.run(["bash", str(SCRIPT), "--print-plan"], capture_output=True, text=True, env=full, timeout=30)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    out = dict(line.split(": ", 1) for line in lines if not line.startswith("pip "))
    out["pip"] = "\n".join(line for line in lines if line.startswith("pip "))
    return out


def test_x86_64_installs_the_pinned_wheels(tmp_path: Path) -> None:
    p = plan(tmp_path, "x86_64")
    assert p["arch"] == "x86_64" and p["torch"] == "pinned:torch==2.14.1 torchvision==0.29.1"
    assert "pip install torch==2.14.1 torchvision==0.29.1" in p["pip"]
    assert "-e .[torch,chainer,test,onnx]" in p["pip"] and "note" not in p


def test_aarch64_pinned_warns_that_it_cannot_use_a_jetson_gpu(tmp_path: Path) -> None:
    p = plan(tmp_path, "aarch64")
    assert p["arch"] == "aarch64" and "BENCH_TORCH=system" in p["note"]


def test_aarch64_system_torch_uses_system_site_packages_and_installs_no_torch(tmp_path: Path) -> None:
    tree = tmp_path / "jetson"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc/nv_tegra_release").write_text("# R36 (release), REVISION: 4.0, GCID: 37537400, BOARD: generic\n")
    p = plan(tmp_path, "aarch64", BENCH_TORCH="system", BENCH_SYSFS_ROOT=str(tree))
    assert (p["tegra"], p["torch"]) == ("1", "system")
    assert p["venv"].endswith("(--system-site-packages)")
    assert "torch" not in p["pip"].replace("-e .[chainer,test,onnx]", "")
    assert "-e .[chainer,test,onnx]" in p["pip"]


@pytest.mark.parametrize("env, step", [
    ({"BENCH_TORCH_WHEEL": "/wheels/torch-2.5.0a0-cp310-cp310-linux_aarch64.whl"},
     "pip install /wheels/torch-2.5.0a0-cp310-cp310-linux_aarch64.whl"),
    ({"BENCH_TORCH_INDEX": "https://example.org/jp6/cu126"},
     "pip install --index-url https://example.org/jp6/cu126 torch torchvision"),
])
def test_wheel_or_index_replaces_the_pinned_torch(tmp_path: Path, env: dict[str, str], step: str) -> None:
    p = plan(tmp_path, "aarch64", **env)
    assert step in p["pip"] and "torch==2.14.1" not in p["pip"]
    assert p["torch"].startswith(("wheel:", "index:"))


def test_unknown_choice_is_one_line_exit_2(tmp_path: Path) -> None:
    proc = subprocess.run(["bash", str(SCRIPT), "--print-plan"], capture_output=True, text=True, timeout=30,
                          env={**os.environ, "BENCH_TORCH": "jetpack"})
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "BENCH_TORCH=jetpack" in proc.stderr


def test_system_torch_that_is_not_there_is_refused_in_one_line(tmp_path: Path) -> None:
    """A real venv over a python without torch (this image's /usr/bin/python3)."""
    python = "/usr/bin/python3"
    if not Path(python).exists() or subprocess.run([python, "-c", "import torch"], capture_output=True).returncode == 0:
        pytest.skip(f"needs a {python} without torch")
    if subprocess.run([python, "-c", "import ensurepip"], capture_output=True).returncode != 0:
        pytest.skip(f"{python} cannot create venvs (no ensurepip)")
    env = {**os.environ, "BENCH_TORCH": "system", "BENCH_VENV": str(tmp_path / "venv"), "PYTHON": python}
    proc = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and "has no torch" in proc.stderr
    assert "include-system-site-packages = true" in (tmp_path / "venv/pyvenv.cfg").read_text()
