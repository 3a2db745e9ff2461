"""``bench compare`` and ``bench report``: read run folders from any machine, tabulate, plot.

:mod:`.compare` loads, validates, summarises and groups runs; :mod:`.table` renders the
table; :mod:`.figures` draws the PNGs (matplotlib, Agg); :mod:`.observations` turns the
numbers into sentences; :mod:`.markdown` writes report.md or a self-contained report.html;
the commands themselves are harness/commands/compare.py and report.py. Like all of ``harness/``, nothing
here imports a framework.
"""
from harness.report.compare import (
    add_baseline,
    compare_runs,
    group_runs,
    load_runs,
    machine_label,
    scaling_rows,
    summarise_run,
)
from harness.report.table import format_table

__all__ = ["add_baseline", "compare_runs", "format_table", "group_runs", "load_runs", "machine_label",
           "scaling_rows", "summarise_run"]
