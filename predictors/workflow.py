"""Fit and judge latency predictors from tables and measurement files: what the CLI and benchmarks share.

Measured networks come from the table itself and from extra files: a table-format JSON of
networks (``benchmarks/predictor_measure.py`` writes those; its fingerprint must match the
table's) or a CSV of ``arch,latency_ms`` rows (no fingerprint: the user vouches for it).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hwnas.errors import UserError
from hwnas.latency_tables.table import LatencyTable
from hwnas.predictors.data import MeasuredNetwork, merge, networks_from_table, read_latency_csv, split
from hwnas.predictors.evaluate import between_run_noise, latency_metrics, scatter_plot, within_run_noise
from hwnas.predictors.latency import FlopsRegression, LatencyPredictor, LutSum, make_predictor, space_of
from hwnas.predictors.registry import hyperparameters_of


def read_networks_file(path: Path, table: LatencyTable, allow_mismatch: bool = False) -> list[MeasuredNetwork]:
    """Networks from a CSV, or from a table-format JSON of the same device and space as ``table``."""
    space = space_of(table)
    if Path(path).suffix.lower() == ".csv":
        return read_latency_csv(path, space)
    other = LatencyTable.load(path)
    try:
        other.check(table.fingerprint, table.space_hash, override=allow_mismatch)
    except UserError as error:
        raise UserError(f"{path}: {error}") from None
    return networks_from_table(other.networks, space, source=str(path))


def load_networks(table: LatencyTable, extra: Sequence[Path] = (), allow_mismatch: bool = False) -> list[MeasuredNetwork]:
    """The table's measured networks plus those of every extra file (each architecture once)."""
    groups = [networks_from_table(table.networks, space_of(table), source="table")]
    groups += [read_networks_file(path, table, allow_mismatch) for path in extra]
    return merge(*groups)


def _metrics(predictor: LatencyPredictor, networks: Sequence[MeasuredNetwork]) -> dict[str, Any]:
    return latency_metrics(predictor.predict([n.arch for n in networks]), [n.ms for n in networks])


def fit_and_evaluate(
    table: LatencyTable,
    networks: Sequence[MeasuredNetwork],
    kind: str = "calibrated",
    holdout: float = 0.25,
    seed: int = 0,
    plot: Path | None = None,
    repeats: Sequence[MeasuredNetwork] = (),
    **hyperparameters: Any,
) -> tuple[LatencyPredictor, dict[str, Any]]:
    """Fit ``kind`` on a seeded split, and score it and both baselines on the held-out networks."""
    train, held_out = split(networks, holdout, seed)
    if len(train) < 3:
        raise UserError(f"only {len(train)} training networks; measure more (hwnas profile --networks N)")
    archs, ms = [n.arch for n in train], [n.ms for n in train]
    predictor = make_predictor(kind, table, **hyperparameters).fit(archs, ms)
    report: dict[str, Any] = {
        "kind": kind,
        "train_networks": len(train),
        "held_out_networks": len(held_out),
        "split_seed": seed,
        "holdout": holdout,
        "hyperparameters": hyperparameters_of(predictor),
    }
    if held_out:
        rivals: dict[str, LatencyPredictor] = {kind: predictor}
        if kind != "lut":
            rivals["lut"] = LutSum(table).fit(archs, ms)
        if kind != "flops":
            rivals["flops"] = FlopsRegression(table).fit(archs, ms)
        report["held_out"] = {name: _metrics(rival, held_out) for name, rival in rivals.items()}
        report["noise_floor"] = noise_floor(held_out, repeats)
        if plot is not None:
            series = {
                name: (rival.predict([n.arch for n in held_out]), [n.ms for n in held_out]) for name, rival in rivals.items()
            }
            report["plot"] = str(
                scatter_plot(
                    series,
                    plot,
                    f"{table.space} on {table.device.get('name', '?')}: {len(held_out)} held-out networks, {len(train)} training",
                )
            )
    return predictor, report


def noise_floor(networks: Sequence[MeasuredNetwork], repeats: Sequence[MeasuredNetwork] = ()) -> dict[str, Any]:
    """Within-run spread of ``networks`` and, when re-measurements are given, their between-run agreement."""
    floor: dict[str, Any] = {"within_run": within_run_noise(networks)}
    if repeats:
        floor["between_runs"] = between_run_noise(repeats, networks)
    return floor


def evaluate_predictor(
    predictor: LatencyPredictor,
    table: LatencyTable,
    networks: Sequence[MeasuredNetwork],
    include_training: bool = False,
    repeats: Sequence[MeasuredNetwork] = (),
    plot: Path | None = None,
) -> dict[str, Any]:
    """Score a saved predictor (and the LUT sum) on measured networks it was not trained on."""
    trained = set(getattr(predictor, "training_ids_", []))
    chosen = [n for n in networks if include_training or n.arch.id not in trained]
    if not chosen:
        raise UserError("no measured networks left to evaluate on (all were used for training); add --networks FILE")
    rivals: dict[str, LatencyPredictor] = {predictor.kind: predictor}
    if predictor.kind != "lut":
        rivals["lut"] = LutSum(table)
    report: dict[str, Any] = {
        "networks": len(chosen),
        "excluded_training_networks": len(networks) - len(chosen),
        "metrics": {name: _metrics(rival, chosen) for name, rival in rivals.items()},
        "noise_floor": noise_floor(chosen, repeats),
    }
    if plot is not None:
        series = {name: (rival.predict([n.arch for n in chosen]), [n.ms for n in chosen]) for name, rival in rivals.items()}
        report["plot"] = str(
            scatter_plot(series, plot, f"{table.space} on {table.device.get('name', '?')}: {len(chosen)} networks")
        )
    return report
