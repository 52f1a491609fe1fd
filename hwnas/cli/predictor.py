"""``hwnas predictor fit|eval``: fit a latency predictor on measured networks, judge it on held-out ones."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from hwnas.cli.common import JsonFlag, console, esc, group, print_json
from hwnas.errors import UserError

predictor_app = group("predictor", "Fit and evaluate latency predictors.")

TableOption = Annotated[Path, typer.Option("--table", help="the device's latency table (table.json of hwnas profile)")]
NetworksOption = Annotated[
    list[Path] | None,
    typer.Option(
        "--networks", help="more measured networks: a CSV (arch,latency_ms) or a networks JSON of the same device; repeatable"
    ),
]
RepeatsOption = Annotated[
    Path | None,
    typer.Option("--repeats", help="the same networks measured again (networks JSON or CSV): the between-run noise floor"),
]
PlotOption = Annotated[Path | None, typer.Option("--plot", help="write a predicted-vs-measured scatter PNG here")]
AllowMismatch = Annotated[bool, typer.Option("--allow-mismatch", help="use networks files of another device anyway")]


@predictor_app.command("fit")
def predictor_fit(
    table: TableOption,
    out: Annotated[Path, typer.Option("--out", help="predictor file to write (its sidecar goes beside it as .json)")],
    kind: Annotated[str, typer.Option(help="calibrated (table sum x learned correction), lut or flops")] = "calibrated",
    correction: Annotated[str, typer.Option(help="calibrated only: ridge, gbr or ridge+gbr")] = "ridge",
    networks: NetworksOption = None,
    repeats: RepeatsOption = None,
    holdout: Annotated[float, typer.Option(help="share of measured networks held out for evaluation (0: fit on all)")] = 0.25,
    seed: Annotated[int, typer.Option(help="seed of the train / held-out split")] = 0,
    plot: PlotOption = None,
    allow_mismatch: AllowMismatch = False,
    drift: Annotated[
        bool, typer.Option(help="first re-time the table's reference networks on its device, when it is here (a few seconds)")
    ] = True,
    as_json: JsonFlag = False,
) -> None:
    """Fit a latency predictor on a table's measured networks; score it and the baselines on held-out ones.

    When the table's device is this machine, its reference networks (or a few of its whole networks) are
    timed first: the ratio today / table is printed, with a warning beyond 10% (the predictor learns the
    table's speed, so it is off by as much), and kept in the predictor's sidecar.
    """
    from hwnas.latency_tables.table import LatencyTable
    from hwnas.predictors.io import save_predictor
    from hwnas.predictors.workflow import fit_and_evaluate, load_networks, read_networks_file

    lut = LatencyTable.load(table)
    hyper: dict[str, Any] = {"correction": correction} if kind == "calibrated" else {}
    _check_fit_options(lut, out, kind, hyper, holdout)  # every mistake is found before the drift check's seconds
    measured = load_networks(lut, networks or [], allow_mismatch)
    again = read_networks_file(repeats, lut, allow_mismatch) if repeats else []
    drift_check = table_drift(lut, table) if drift else {"ratio": None, "message": "drift check: not asked for (--no-drift)"}
    if not as_json:
        warn = bool(drift_check.get("warn"))
        console.print(("[yellow]" if warn else "") + esc(drift_check["message"]) + ("[/]" if warn else ""))
    predictor, report = fit_and_evaluate(lut, measured, kind, holdout, seed, plot, again, **hyper)
    report["drift"] = drift_check
    model, sidecar = save_predictor(
        predictor, out, metrics=report.get("held_out", {}).get(kind, {}), extra={"evaluation": report, "table": str(table)}
    )
    report |= {"predictor": str(model), "sidecar": str(sidecar)}
    if as_json:
        print_json(report)
        return
    console.print(
        f"fitted [bold]{esc(kind)}[/] on {report['train_networks']} measured networks of {esc(lut.space)} on "
        f"{esc(lut.device.get('name', '?'))} -> {esc(model)}"
    )
    if "held_out" in report:
        _print_metrics(report["held_out"], f"{report['held_out_networks']} held-out networks")
        _print_noise(report["noise_floor"])


def _check_fit_options(lut: Any, out: Path, kind: str, hyper: dict[str, Any], holdout: float) -> None:
    """Refuse an unknown kind or correction, a held-out share outside [0, 1) and an --out that cannot be written."""
    from hwnas.fileio import check_writable_folder
    from hwnas.predictors.latency import CORRECTIONS, make_predictor

    make_predictor(kind, lut, **hyper)
    if hyper.get("correction", CORRECTIONS[0]) not in CORRECTIONS:
        raise UserError(f"unknown --correction {hyper['correction']!r}; expected one of {', '.join(CORRECTIONS)}")
    if not 0 <= holdout < 1:
        raise UserError(f"--holdout must be in [0, 1), got {holdout}")
    if out.is_dir():
        raise UserError(f"--out {out} is a folder; give the predictor file to write, e.g. {out / 'predictor.skops'}")
    check_writable_folder(out.parent if str(out.parent) else Path("."), "--out's folder")


def table_drift(lut: Any, path: Path) -> dict[str, Any]:
    """The drift check of ``lut``'s device, when that device is this machine (as JSON, with its one-line ``message``).

    A device that is not here, or a table measured on another machine, cannot be checked: said so, ratio ``None``.
    """
    from hwnas.devices import DeviceSpec, make_backend
    from hwnas.latency_tables.compat import fingerprint_differences
    from hwnas.latency_tables.drift import DRIFT_NETWORKS, drift_first, table_space
    from hwnas.paths import model_cache

    name = lut.device.get("name", "?")
    try:
        backend = make_backend(DeviceSpec.from_json(lut.device))
    except UserError as error:
        return {"ratio": None, "message": f"drift check: not possible ({error})"}
    reason = backend.unavailable_reason()
    if reason is not None:
        return {"ratio": None, "message": f"drift check: not possible, {name} cannot be measured here ({reason})"}
    differing = fingerprint_differences("fingerprint", lut.fingerprint, backend.fingerprint())
    if differing:
        return {
            "ratio": None,
            "message": f"drift check: not possible, the table was measured on another machine ({differing[0]})",
        }
    space = table_space(lut)  # None for a space not registered here: only reference networks can be re-timed
    check = drift_first(path, backend, model_cache(), f"predictor fit on {name}", space=space, networks=DRIFT_NETWORKS)
    if check is None:
        return {"ratio": None, "message": "drift check: not possible (the table has no reference or whole networks)"}
    return check.to_json() | {"message": check.message(rescale_hint=False)}


@predictor_app.command("eval")
def predictor_eval(
    predictor_file: Annotated[Path, typer.Argument(help="predictor file written by hwnas predictor fit")],
    table: TableOption,
    networks: NetworksOption = None,
    repeats: RepeatsOption = None,
    include_training: Annotated[bool, typer.Option(help="also score the networks the predictor was fitted on")] = False,
    plot: PlotOption = None,
    allow_mismatch: AllowMismatch = False,
    as_json: JsonFlag = False,
) -> None:
    """Score a saved predictor and the LUT sum on measured networks it was not fitted on."""
    from hwnas.latency_tables.table import LatencyTable
    from hwnas.predictors.io import load_predictor
    from hwnas.predictors.latency import space_of
    from hwnas.predictors.workflow import evaluate_predictor, load_networks, read_networks_file

    lut = LatencyTable.load(table)
    predictor = load_predictor(predictor_file, fingerprint=lut.fingerprint, space_hash=space_of(lut).hash)
    measured = load_networks(lut, networks or [], allow_mismatch)
    again = read_networks_file(repeats, lut, allow_mismatch) if repeats else []
    report = evaluate_predictor(predictor, lut, measured, include_training, again, plot)
    if as_json:
        print_json(report)
        return
    _print_metrics(
        report["metrics"], f"{report['networks']} networks ({report['excluded_training_networks']} training ones left out)"
    )
    _print_noise(report["noise_floor"])


def _print_metrics(metrics: dict[str, dict[str, float]], caption: str) -> None:
    rows = Table("predictor", "within ±5%", "within ±10%", "RMSE ms", "MAPE %", "max |err| %", "Kendall tau", caption=caption)
    for name, m in metrics.items():
        rows.add_row(
            name,
            f"{m['within_5pct']:.1%}",
            f"{m['within_10pct']:.1%}",
            f"{m['rmse_ms']:.4f}",
            f"{m['mape_pct']:.2f}",
            f"{m['max_abs_pct']:.1f}",
            f"{m['kendall_tau']:.3f}",
        )
    console.print(rows)


def _print_noise(floor: dict[str, Any]) -> None:
    within = floor.get("within_run", {})
    if within.get("n"):
        console.print(
            f"noise floor, within a run: median p10-p90 width {within['median_p10_p90_width_pct']:.1f}% of the median, "
            f"median CV {within['median_cv_pct']:.1f}%"
        )
    between = floor.get("between_runs")
    if between and between.get("n", 0) > 1:
        console.print(
            f"noise floor, between runs ({between['n']} networks measured twice): {between['within_5pct']:.1%} within ±5%, "
            f"{between['within_10pct']:.1%} within ±10%, MAPE {between['mape_pct']:.2f}%, tau {between['kendall_tau']:.3f}"
        )
