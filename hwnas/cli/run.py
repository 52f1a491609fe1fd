"""``hwnas run``: the whole pipeline, from a device spec to verified deployable files and a report, in one run folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from hwnas.cli.common import DataSource, JsonFlag, app, check_data_fits, console, esc, print_json, quiet_or_log

RunSupernet = Annotated[
    str | None,
    typer.Option(
        "--supernet",
        help="a supernet folder (hwnas supernet train) or 'default' (the shipped one): candidates scored by the weights "
        "they inherit (about a second each; 200 trials unless [search] trials says otherwise) and the winner fine-tuned "
        "from them",
    ),
]


@app.command("run")
def run_command(
    device: Annotated[
        list[str] | None,
        typer.Option(
            "--device", metavar="SPEC", help="device spec (repeatable; the first is searched for). Default: host-tflite"
        ),
    ] = None,
    budget_ms: Annotated[
        float | None, typer.Option("--budget-ms", help="latency budget on the first device (default: its table's median network)")
    ] = None,
    data: DataSource = None,
    space: Annotated[str | None, typer.Option("--space", help="search-space preset or JSON file (default: default)")] = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="run.toml with the run's settings (options override it)")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="run folder (default: runs/run-<space>-<device>[-quick])")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="a small run for a first look (a few minutes)")] = False,
    fresh: Annotated[bool, typer.Option("--fresh", help="start the run folder over instead of resuming it")] = False,
    ray: Annotated[
        str | None, typer.Option("--ray", help="train search candidates on a Ray cluster (ADDRESS, or 'local')")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="random seed (default 0)")] = None,
    supernet: RunSupernet = None,
    family: Annotated[
        str | None,
        typer.Option("--family", metavar="T1,T2,...", help="end with a family grown from the winner for these budgets (ms)"),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Profile (or reuse) the device's table, fit the latency predictor, search, retrain, prune, export, verify, measure.

    Re-running the same command resumes from the last finished stage; --fresh starts over.
    Everything is kept in the run folder, with report.html, report.md and summary.json.
    """
    from hwnas.pipeline.config import resolve_config
    from hwnas.pipeline.run import default_out, run_pipeline

    overrides: dict[str, Any] = {
        "devices": list(device) if device else None,
        "budget_ms": budget_ms,
        "data": data,
        "space": space,
        "ray": ray,
        "seed": seed,
        "search": {"supernet": supernet} if supernet else None,
        "family_ms": _family(family),
    }
    settings = resolve_config(quick, config, overrides)
    folder = out or default_out(settings)
    _check_inputs(settings, folder)
    log = quiet_or_log(as_json)
    if not as_json:
        console.print(f"run folder: {esc(folder)}" + (" (quick)" if settings.quick else ""))
    summary = run_pipeline(settings, folder, fresh=fresh, log=log, progress=not as_json)
    if as_json:
        print_json(summary)
    else:
        show_summary(summary)
    if not summary["final"]["verified"]:
        raise typer.Exit(1)


def _check_inputs(settings: Any, folder: Path) -> None:
    """What the run reads and where it writes, checked before anything is printed, written or measured.

    Later stages would find the same mistakes, but only after the run folder was started and, for
    the data, after the device was profiled or drift-checked: minutes in.
    """
    from hwnas.devices import DeviceSpec
    from hwnas.fileio import check_writable_folder
    from hwnas.presets import resolve_space

    for device in settings.devices:
        DeviceSpec.from_toml(device)
    space = resolve_space(settings.space)
    check_writable_folder(folder)
    if settings.search.supernet:  # a supernet of another space would otherwise be found after the device's profile
        from hwnas.search.inherited import check_space, loaded_supernet

        supernet_folder = settings.search.supernet_folder()
        check_space(loaded_supernet(supernet_folder)[0], space, supernet_folder)
    if settings.search.supernet and settings.data not in ("embedded", "fashion-mnist"):  # the shipped sources fit
        from hwnas.data import load_data

        why = "a supernet's stem and classifier were trained for those"
        then = f"train a supernet for them (hwnas supernet train --space space.json --data {settings.data})"
        check_data_fits(load_data(settings.data), space, why=why, then=then)


def show_summary(summary: dict[str, Any]) -> None:
    """What a person reads at the end: the model, predicted beside measured (both today's time), the budget, the files."""
    final, model = summary["final"], summary["model"]
    console.print(f"[bold]{esc(model['arch'])}[/]")
    console.print(
        f"test accuracy {model['test_accuracy']:.4f} (validation {model['val_accuracy']:.4f}) after {model['epochs']} epoch(s); "
        f"{model['params'] / 1e6:.3f} M params, {model['flops'] / 1e6:.2f} MFLOPs"
    )
    pruned = final.get("pruned")
    if pruned:
        console.print(
            f"pruned ({esc(pruned['method'])}, kept as the final model): test accuracy {pruned['test_accuracy']:.4f}; "
            f"{pruned['params'] / 1e6:.3f} M params, {pruned['flops'] / 1e6:.2f} MFLOPs"
        )
    for name, predicted in final["predicted"].items():
        console.print(prediction_line(name, predicted, final["measured_ms"].get(name)))
    _show_budget_and_files(summary)


def prediction_line(device: str, predicted: dict[str, Any], measured: float | None) -> str:
    """``device: predicted X ms (...), measured Y ms (predicted / measured Z)``, both in today's time.

    The calibrated predictor answers in the table's time; times the drift ratio (today / table) it is today's, the time
    a measurement is in. Comparing the table-time figure with today's measurement would show the drift as predictor
    error (a machine at 0.52x its table's speed read as a predictor 80% off).
    """
    today = predicted.get("today_ms", predicted.get("calibrated_ms"))
    if today is None:
        return f"{esc(device)}: {esc(predicted['predictor'])}"
    if predicted.get("drift_adjusted_ms") is not None:
        source = f", from {esc(predicted['drift_from'])}" if predicted.get("drift_from") else ""
        frame = f"{predicted['calibrated_ms']:.3f} ms in table time x drift {predicted['drift_ratio']:.2f}{source}"
        text = f"{esc(device)}: predicted {today:.3f} ms today ({esc(predicted['predictor'])}; {frame})"
    else:
        text = f"{esc(device)}: predicted {today:.3f} ms in table time ({esc(predicted['predictor'])}; no drift check)"
    if measured is not None:
        text += f", measured {measured:.3f} ms (predicted / measured {today / measured:.2f})"
    return text


def _show_budget_and_files(summary: dict[str, Any]) -> None:
    final, primary = summary["final"], summary["device"]["name"]
    verdict = "within" if final["within_budget"] else "[red]OVER[/]"
    console.print(
        f"budget {summary['budget_ms']:.3f} ms on {esc(primary)}, today's time ({esc(summary['budget_source'])}): {verdict} "
        f"(measured {final['measured_ms'].get(primary, float('nan')):.3f} ms)"
    )
    for item in summary["exports"]:
        state = "verified" if item["verified"] else "[red]FAILED verification[/]"
        console.print(f"{esc(item['format'])}: {esc(item['file'])} {state} (max |diff| {item['max_abs_diff']:.1e})")
    for stage in ("search", "prune", "references"):
        if summary[stage]["status"] == "skipped":
            console.print(f"[yellow]{esc(summary[stage]['reason'])}[/]")
    total = sum(stage["seconds"] for stage in summary["stages"])
    folder = Path(summary["run_folder"])
    console.print(f"{total / 60:.1f} min of stages over {summary['sessions']} session(s); report: {esc(folder / 'report.html')}")


def _family(text: str | None) -> list[float] | None:
    from hwnas.search.specialize import parse_budgets

    return None if text is None else parse_budgets(text)
