"""The self-contained HTML report of augment and train-eval run dirs (``datafactory report``).

``report(run_dirs, output=None)`` writes one file that opens from disk with no network: inline CSS and
SVG, no script (its Content-Security-Policy allows none), every piece of model text escaped. Augment
runs write ``RUN_DIR/report.html`` at the end of every run, train-eval runs too.
"""

from __future__ import annotations

from datafactory.report.build import REPORT_FILE, render, report, write_run_report

__all__ = ["REPORT_FILE", "render", "report", "write_run_report"]
