"""``hwnas specialize``: one network per device and latency budget from one trained supernet, without training again."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from hwnas.cli.common import JsonFlag, Seed, app, console, esc, print_json, quiet_or_log
from hwnas.cli.search import InOrder, Supernet, SupernetBn, SupernetVal
from hwnas.search.api import DEFAULTS as D

Devices = Annotated[
    list[str],
    typer.Option(
        "--device",
        metavar="SPEC",
        help="device spec: a TOML path or a shipped name, or a latency table file (.json) of a device not here, whose "
        "networks are predicted, exported and verified but not measured (repeatable)",
    ),
]
Budgets = Annotated[str, typer.Option("--budget-ms", help="latency budgets on every device, in ms, comma-separated: 0.3,0.45")]
FinetuneEpochs = Annotated[
    int, typer.Option(min=0, help="epochs each chosen network is fine-tuned from its inherited weights (0: used as inherited)")
]


@app.command("specialize")
def specialize_command(
    device: Devices,
    budget_ms: Budgets,
    supernet: Supernet = Path("default"),
    strategy: Annotated[str, typer.Option(help="random, evolution, mnas, fbnetv3, tpe or nsga2")] = D.strategy,
    trials: Annotated[int, typer.Option(min=1, help="candidates each search scores by inherited weights")] = D.supernet_trials,
    finetune_epochs: FinetuneEpochs = 1,
    top_k: Annotated[
        int, typer.Option(min=1, help="candidates of each search exported and measured (the best over its budget gives way)")
    ] = D.top_k,
    supernet_val_images: SupernetVal = D.supernet_val_images,
    supernet_bn_images: SupernetBn = D.supernet_bn_images,
    out: Annotated[Path | None, typer.Option(help="folder (default: runs/specialize-<time>); rerun to resume")] = None,
    seed: Seed = 0,
    in_order: InOrder = D.in_order,
    as_json: JsonFlag = False,
) -> None:
    """From one supernet, the most accurate network within each budget on each device: searched on inherited weights,
    fine-tuned, exported, verified and measured; one Pareto plot per device. Re-running the same command resumes."""
    from hwnas.devices import DeviceSpec
    from hwnas.devices.spec import is_table_device
    from hwnas.search.api import SearchSettings
    from hwnas.search.specialize import parse_budgets
    from hwnas.supernets import resolve_supernet

    budgets = parse_budgets(budget_ms)
    for spec in device:  # a mistyped device is one line before the supernet loads (a table device: when it is read)
        if not is_table_device(spec):
            DeviceSpec.from_toml(spec)
    folder = resolve_supernet(supernet)
    space = _space_of(folder)
    settings = SearchSettings(
        strategy=strategy,
        trials=trials,
        supernet=folder,
        supernet_val_images=supernet_val_images,
        supernet_bn_images=supernet_bn_images,
        top_k=top_k,
        in_order=in_order,
    )
    out = out or _default_out()
    report = _run(folder, list(dict.fromkeys(device)), budgets, settings, out, space, finetune_epochs, seed, as_json)
    if as_json:
        print_json(report.to_json() | {"out": str(out)})
    else:
        _show(report, out)


def _space_of(folder: Path) -> Any:
    """The supernet's space (a supernet of a space made for other data names it in its description)."""
    from hwnas.search.inherited import loaded_supernet

    return loaded_supernet(folder)[0].space


def _default_out() -> Path:
    import time

    from hwnas.paths import runs_dir

    return runs_dir() / f"specialize-{time.strftime('%Y%m%d-%H%M%S')}"


def _run(folder: Path, devices: list[str], budgets: list[float], settings: Any, out: Path, space: Any, epochs: int, seed: int,
         as_json: bool) -> Any:  # fmt: skip
    from hwnas.fileio import check_writable_folder
    from hwnas.search.specialize import specialize

    check_writable_folder(out)
    log = quiet_or_log(as_json)
    return specialize(folder, devices, budgets, settings, out, space=space, finetune_epochs=epochs, seed=seed, log=log)


def _show(report: Any, out: Path) -> None:
    """One whole line per network (an architecture string is never cut: it is what a user copies)."""
    console.print(f"specialized from {esc(report.settings['supernet'])}:")
    for n in report.networks:
        if n.arch is None:
            console.print(f"  {esc(n.device)} at {n.budget_ms:g} ms: {esc(n.error or 'no network')}")
            continue
        scores = [f"inherited {n.inherited_accuracy:.3f}" if n.inherited_accuracy is not None else None]
        scores.append(f"test {n.test_accuracy:.3f}" if n.test_accuracy is not None else None)
        scores.append(
            f"measured {n.measured_ms:.4f} ms, {n.verdict}"
            if n.measured_ms is not None
            else f"predicted {n.predicted_ms:.4f} ms, not measured" if n.predicted_ms is not None else "not measured"
        )
        console.print(f"  {esc(n.device)} at {n.budget_ms:g} ms: {esc(n.arch)} ({', '.join(x for x in scores if x)})")
    for device, plot in report.plots.items():
        console.print(f"Pareto plot of {esc(device)}: {esc(plot)}")
    console.print(f"everything in {esc(out)} (specialize.json); rerun the same command to resume")
