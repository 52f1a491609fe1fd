"""Pruning as a library: what ``hwnas prune`` and the pipeline's prune stage both call, so it is written once.

:func:`make_prune_config` builds the job's settings (the fine-tuning recipe in one place), :func:`find_table` the
device's latency table a latency budget is predicted with, and :func:`prune` runs AMC and its baselines. A budget
below what pruning can reach raises :class:`~hwnas.errors.BudgetUnreachable`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from hwnas.errors import BudgetUnreachable, UserError

FINETUNE_LR = 0.02  # SGD, cosine, no warm-up: the same short recipe for every pruned model
HOST_DEVICES = ("host-ort", "host-tflite")  # where pruned models are timed when no device is named

__all__ = ["FINETUNE_LR", "HOST_DEVICES", "BudgetUnreachable", "find_table", "make_prune_config", "prune"]


def make_prune_config(
    budget: Any,
    *,
    episodes: int,
    finetune_epochs: int,
    finetune_lr: float = FINETUNE_LR,
    distill: float = 0.0,
    distill_temperature: float = 4.0,
    baselines: bool = True,
    devices: tuple[str, ...] = HOST_DEVICES,
    formats: tuple[str, ...] | None = None,
    heldout: int = 1000,
    seed: int = 0,
    **amc: Any,
) -> Any:
    """The pruning job's settings; ``amc`` passes AMC's own (``reward``, ``norm``, ``round_to``, ``reconstruct``).

    ``distill`` > 0: every pruned model (AMC's and the baselines') is fine-tuned taught by the unpruned one."""
    from hwnas.pruning.job import PruneConfig
    from hwnas.recipe import Recipe

    finetune = Recipe(
        epochs=finetune_epochs, lr=finetune_lr, warmup_epochs=0.0, distill=distill, distill_temperature=distill_temperature
    )
    extra = {"formats": formats} if formats is not None else {}
    return PruneConfig(
        budget,
        episodes=episodes,
        finetune=finetune,
        baselines=baselines,
        devices=devices,
        heldout=heldout,
        seed=seed,
        **extra,
        **amc,
    )


def find_table(spec: Any, path: Path | None = None, *, required: bool) -> Any:
    """The device's latency table: ``path``, else a profile here or a shipped one of this CPU; ``None`` when none is found
    and none is ``required`` (a FLOPs budget still shows predicted latencies when a table is there)."""
    from hwnas.latency_tables.drift import device_table
    from hwnas.latency_tables.table import LatencyTable

    if path is not None:
        return LatencyTable.load(path)
    try:
        return LatencyTable.load(device_table(spec))
    except UserError:
        if required:
            raise
        return None


def prune(
    base: Any,
    data: Any,
    config: Any,
    out: Path,
    *,
    table: Any = None,
    data_source: str | None = None,
    log: Callable[[str], None] = lambda message: None,
    on_episode: Callable[[Any], None] | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """AMC (and the baselines) on ``base`` under ``config.budget``, in the run folder ``out`` (resumable)."""
    from hwnas.pruning.job import run_prune

    return run_prune(
        base, data, config, out, data_source=data_source, table=table, log=log, on_episode=on_episode, progress=progress
    )
