"""``hwnas report RUN_DIR``: render a run folder's report again from its records (nothing is run)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hwnas.cli.common import app, console, esc
from hwnas.errors import UserError


@app.command("report")
def report_command(run_dir: Annotated[Path, typer.Argument(help="a run folder of hwnas run")]) -> None:
    """Re-render report.md, report.html and summary.json of a run folder."""
    from hwnas.pipeline.report import render_report

    if not (run_dir / "config.toml").is_file():
        raise UserError(f"{run_dir} is not a run folder of hwnas run (no config.toml)")
    markdown, html = render_report(run_dir)
    console.print(f"report: {esc(html)} and {esc(markdown)}")
