"""What `bench run` writes on stderr (harness/train/progress.py): a bar on a terminal only,
one line per epoch everywhere."""
from __future__ import annotations

import os
import pty
import subprocess

from tests.conftest import BENCH, TINY

LOUD = [a for a in TINY if a != "--quiet"]


def test_stderr_to_a_file_gets_one_line_per_epoch_and_no_bar(tmp_path):
    """Issue 13 item 11: `./run.sh > log 2>&1` got the bar's carriage-return updates."""
    log = tmp_path / "stderr.log"
    with open(log, "w") as err:
        proc = subprocess.run([BENCH, "run", "--backend", "torch", *LOUD, "--epochs", "3",
                               "--results-dir", str(tmp_path / "results")], stdout=subprocess.DEVNULL, stderr=err,
                              timeout=300)
    text = log.read_text()
    assert proc.returncode == 0, text
    assert "\r" not in text and "img/s]" not in text  # no tqdm bar
    lines = text.splitlines()
    assert [line.split(":")[0] for line in lines if " epoch " in line] == [f"torch epoch {e}/3" for e in (1, 2, 3)]
    assert len(lines) == 4, lines  # the run's header line, then one line per epoch


def test_a_terminal_still_gets_the_bar(tmp_path):
    parent, child = pty.openpty()
    try:
        proc = subprocess.Popen([BENCH, "run", "--backend", "torch", *LOUD, "--epochs", "1",
                                 "--results-dir", str(tmp_path / "results")], stdout=subprocess.DEVNULL, stderr=child)
        os.close(child)
        out = b""
        while True:  # read until the child closes the terminal (EIO on Linux)
            try:
                chunk = os.read(parent, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        assert proc.wait(timeout=300) == 0, out
    finally:
        os.close(parent)
    assert b"\r" in out and b"img/s" in out and b"torch epoch 1/1" in out
