"""``hwnas run``: the whole pipeline as resumable stages in one run folder, then the report.

The run folder::

    config.toml          the settings (defaults <- run.toml <- options) and what the run resolved (budget)
    sessions.json        each time the command ran on this folder
    stages/*.json        one record per finished stage, its typed result (stages/export/, stages/search-front/: per item)
    tables/              the latency table of each device (a copy, or the profile this run made: store.sqlite)
    predictor/           the calibrated latency predictor of each device (skops + sidecar)
    search/              the search's trials (Optuna storage, search.db)
    model/               the retrained winner (result.json, model.pt)
    prune/               AMC and its baselines, each a run folder (pruned.json, model.pt)
    export/              the deployable files, model_card.md / .json
    references/          torchvision reference networks, trained like the winner and exported (timed beside it)
    report.md, report.html, report/*.png, summary.json
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path
from typing import Any

from hwnas.errors import UserError
from hwnas.identity import check_identity
from hwnas.pipeline.config import RunConfig, read_config, write_config
from hwnas.pipeline.context import Log, RunContext
from hwnas.pipeline.records import Records
from hwnas.pipeline.stages import STAGE_NAMES, STAGES
from hwnas.pipeline.stages.table import TableResult
from hwnas.pipeline.summary import write_summary
from hwnas.runfolder import LOCK_FILE, exclusive
from hwnas.space import SearchSpace

CONFIG_FILE = "config.toml"
MARKER_FILES = (CONFIG_FILE, "sessions.json")
__all__ = ["STAGE_NAMES", "default_out", "prepare_folder", "run_pipeline", "write_summary"]


def default_out(config: RunConfig) -> Path:
    """``runs/run-<space>-<first device>[-supernet][-quick]``: the same command finds the same folder, so it resumes
    (and a run with a supernet does not meet the folder of one without, which it would be refused to resume)."""
    from hwnas.paths import runs_dir

    device = Path(config.devices[0]).stem
    space = Path(config.space).stem
    return runs_dir() / f"run-{space}-{device}{'-supernet' if config.search.supernet else ''}{'-quick' if config.quick else ''}"


def prepare_folder(folder: Path, config: RunConfig, fresh: bool) -> None:
    """Refuse to mix two runs in one folder; ``fresh`` empties a run folder (and only a run folder) first."""
    path = folder / CONFIG_FILE
    contents = [item for item in folder.iterdir() if item.name != LOCK_FILE] if folder.is_dir() else []
    if contents and not path.exists():
        if fresh:
            raise UserError(f"--fresh would empty {folder}, which is not a run folder (no {CONFIG_FILE}); choose another --out")
        raise UserError(f"{folder} exists and is not a run folder (no {CONFIG_FILE}); choose another --out")
    if fresh:
        for item in contents:
            if item.is_dir() and not item.is_symlink():
                shutil.rmtree(item)
            else:
                item.unlink()
    if path.exists() and not fresh:
        check_identity(
            read_config(path).identity(),
            config.identity(),
            f"run folder {folder} was started with other settings",
            "re-run with --fresh to start it over, or give another --out",
        )
    else:
        write_config(path, config)


def space_for_data(space: SearchSpace, data: str) -> SearchSpace:
    """``space`` with its stem and classifier made for the data's channels and classes (the shipped sources fit)."""
    if data in ("embedded", "fashion-mnist"):
        return space
    from hwnas.data import load_data

    splits = load_data(data)
    return space.for_data(splits.channels, splits.num_classes)


def run_pipeline(
    config: RunConfig, folder: Path, *, fresh: bool = False, log: Log = print, progress: bool = True
) -> dict[str, Any]:
    """Every stage not finished before, then the report; returns the summary (also ``summary.json``).

    The folder is held for this process throughout (a second ``hwnas run`` on it is refused, naming this PID).
    """
    from hwnas.pipeline.report import render_report
    from hwnas.presets import resolve_space

    asked = resolve_space(config.space)
    space = space_for_data(asked, config.data)
    with exclusive(folder, "run folder"):
        prepare_folder(folder, config, fresh)
        records = Records.open(folder, sys.argv[1:])
        context = RunContext(config, folder, records, space, log, progress, made_from=None if space is asked else asked)
        if space is not asked:
            log(f"the data's images are not {asked.name!r}'s: searching {space.name!r}, its stem and classifier made for them")
        for stage in STAGES:
            context.values[stage.name] = records.stage(stage, lambda stage=stage: stage.run(context), log)
            if stage.name == "table":
                write_config(folder / CONFIG_FILE, config, {"budget_ms": context.result(TableResult).budget_ms})
        started = time.perf_counter()
        summary = write_summary(folder, records, context.values)
        render_report(folder, summary, report_seconds=time.perf_counter() - started)
    return summary
