"""``hwnas search``: the most accurate network, with its recipe, that measures within a latency budget on a device."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from hwnas.cli.common import DataSource, JsonFlag, app, check_data_fits, console, esc, log, print_json, quiet_or_log
from hwnas.errors import UserError
from hwnas.paths import runs_dir
from hwnas.search.api import AUTO_MARGIN, DEFAULTS, SearchSettings, check_budget, make_search_config, parse_margin, search
from hwnas.search.measure import PREDICTED_ONLY

D = DEFAULTS  # the search's defaults, from the library (hwnas run's [search] takes the same)


SearchSpace = Annotated[
    str | None, typer.Option("--space", help="search-space preset or JSON file (default: 'default', or the --supernet's space)")
]
Trials = Annotated[
    int | None, typer.Option(min=1, help=f"candidates to evaluate (default: {D.trials}; {D.supernet_trials} with --supernet)")
]
Ray = Annotated[str | None, typer.Option("--ray", help="Ray cluster address (ray.init(address=...)); 'local' starts one")]
Table = Annotated[Path | None, typer.Option(help="latency table (default: the shipped or profiled one matching this machine)")]
Supernet = Annotated[
    Path | None,
    typer.Option(
        "--supernet",
        help="a supernet folder (hwnas supernet train) or 'default' (the shipped one of the default space): score candidates "
        "by the accuracy they inherit from it (about a second each, no training; the recipe plays no part) instead of "
        "training each for the proxy",
    ),
]
SupernetVal = Annotated[int, typer.Option(min=0, help="with --supernet: validation images a candidate is scored on (0: all)")]
SupernetBn = Annotated[
    int, typer.Option(min=1, max=512, help="with --supernet: training images its BatchNorm statistics are re-estimated from")
]


InOrder = Annotated[
    bool,
    typer.Option(
        "--in-order/--as-finished",
        help="tell the strategy each result in the order it was asked for, so a seed's search with several workers "
        "repeats exactly (a worker may wait for a slower one), or as soon as each is done (faster)",
    ),
]


# --margin: a fraction, or "auto" (hwnas.search.api.parse_margin)
Margin = Annotated[str, typer.Option(help="search under budget x (1 - margin), room for predictor error; auto: held-out error")]


DEVICE_HELP = (
    "device spec: a TOML path or a shipped name (hwnas devices list), or a latency table file (.json) of a device "
    "not here: predicted, not measured"
)


@app.command("search")
def search_command(
    device: Annotated[str, typer.Option("--device", help=DEVICE_HELP)],
    budget_ms: Annotated[float, typer.Option("--budget-ms", help="latency budget on the device, in milliseconds")],
    space: SearchSpace = None,
    strategy: Annotated[str, typer.Option(help="random, evolution, mnas, fbnetv3, tpe or nsga2")] = D.strategy,
    reward: Annotated[str, typer.Option(help="hard, soft, or alpha,beta (MnasNet's exponents)")] = D.reward,
    trials: Trials = None,
    proxy_epochs: Annotated[int, typer.Option(min=1, help="epochs a candidate trains for")] = D.epochs,
    proxy_images: Annotated[int, typer.Option(min=0, help="training images a candidate sees (0: all)")] = D.train_images,
    proxy_val_images: Annotated[
        int, typer.Option(min=0, help="validation images a candidate's accuracy is taken on (0: all)")
    ] = D.val_images,
    supernet: Supernet = None,
    supernet_val_images: SupernetVal = D.supernet_val_images,
    supernet_bn_images: SupernetBn = D.supernet_bn_images,
    data: DataSource = None,
    workers: Annotated[int | None, typer.Option(min=1, help="local worker processes (default: one per core)")] = None,
    in_order: InOrder = D.in_order,
    ray: Ray = None,
    out: Annotated[Path | None, typer.Option(help="search folder (default: runs/search-<time>)")] = None,
    seed: Annotated[int, typer.Option(help="seed of the strategy and of every training")] = 0,
    margin: Margin = str(D.margin),
    table: Table = None,
    storage: Annotated[str | None, typer.Option(help="Optuna storage URL (default: sqlite in the search folder)")] = None,
    top_k: Annotated[int, typer.Option(min=1, help="candidates exported and measured at the end")] = D.top_k,
    final_epochs: Annotated[int, typer.Option(min=1, help="epochs the best is retrained for")] = D.final_epochs,
    rounds: Annotated[int, typer.Option(min=6, help="interleaved timing rounds per file (>= 6 for a 95% interval)")] = D.rounds,
    measure: Annotated[bool, typer.Option(help="retrain, export and measure the top K at the end")] = True,
    as_json: JsonFlag = False,
) -> None:
    """Search a space for the most accurate network under a latency budget, then measure it on the device.

    Trials are stored in an Optuna study (search.db in the search folder): rerun the same command
    with the same --out after an interruption and it resumes without retraining anything.
    """
    from hwnas.search.executors import check_executor_options
    from hwnas.supernets import resolve_supernet

    supernet = resolve_supernet(supernet) if supernet is not None else None
    check_executor_options(workers, ray, supernet)
    trials = trials or (D.supernet_trials if supernet is not None else D.trials)
    settings = SearchSettings(
        strategy=strategy,
        trials=trials,
        train_images=proxy_images,
        val_images=proxy_val_images,
        epochs=proxy_epochs,
        reward=reward,
        margin=parse_margin(margin),
        top_k=top_k,
        final_epochs=final_epochs,
        rounds=rounds,
        supernet=supernet,
        supernet_val_images=supernet_val_images,
        supernet_bn_images=supernet_bn_images,
        in_order=in_order,
    )
    out = out or runs_dir() / time.strftime("search-%Y%m%d-%H%M%S")
    config = _config(device, budget_ms, space, settings, data, out, seed, table, storage, quiet=as_json)
    _search_and_show(config, settings, out, workers, ray, measure, as_json)


def _search_and_show(
    config: Any, settings: SearchSettings, out: Path, workers: int | None, ray: str | None, measure: bool, as_json: bool
) -> None:
    """Run the search under a progress bar, then print its result (JSON, or the lines a person reads)."""
    log = quiet_or_log(as_json)
    with _progress_bar(settings.trials, quiet=as_json) as update:
        outcome = search(
            config,
            settings,
            workers=workers,
            ray=ray,
            on_progress=update,
            measure=measure,
            log=log,
            on_start=_announce(config, log),
        )
    result = outcome.finished or _write_unmeasured(out, config, outcome.summary)
    if as_json:
        print_json(result)
        return
    _show(outcome.summary, outcome.finished, out)


def _announce(config: Any, log: Any) -> Any:
    """The line that says what the search is about to do, once its executor is made."""

    def started(executor: Any) -> None:
        log(
            f"searching {config.space.name!r} with {config.strategy} for {config.trials} candidates under "
            f"{config.reward.budget_ms:g} ms on {config.device.spec.name} (aiming at {config.search_budget_ms:.4g} ms: margin "
            f"{config.margin:.0%}); {executor.slots} worker(s) x {executor.threads} thread(s); trials in {config.storage_url}"
            + (f"; candidates scored by the weights they inherit from {config.supernet}" if config.supernet else "")
        )

    return started


def _write_unmeasured(out: Path, config: Any, summary: dict[str, Any]) -> dict[str, Any]:
    """``result.json`` of a search not measured at the end (``--no-measure``): the drift check and the loop's summary."""
    from hwnas.search.result import write_result

    result = {"table_drift": config.drift, "search": {k: v for k, v in summary.items() if k != "trials"}}
    write_result(out, result)
    return result


def _config(
    device: str,
    budget_ms: float,
    space: str | None,
    settings: SearchSettings,
    data: str | None,
    out: Path,
    seed: int,
    table: Path | None,
    storage: str | None,
    quiet: bool,
) -> Any:
    """The search's configuration from the options, checked before anything is trained; the drift check printed."""
    from hwnas.fileio import check_writable_folder
    from hwnas.search.reward import parse_reward
    from hwnas.search.strategies import STRATEGIES

    parse_reward(settings.reward, budget_ms)
    STRATEGIES.get(settings.strategy)
    from hwnas.search.device import load_device_latency  # torch and torchvision: after the checks that need neither

    given_space, data = _space_and_data(space, settings.supernet, data)
    search_space = _space_for_data(data, given_space, device, settings.supernet, quiet)
    check_writable_folder(out)
    latency = load_device_latency(
        device, search_space, table, space_arg=space or search_space.name,
        made_from=given_space if search_space is not given_space else None, log=lambda line: _say(line, quiet),
    )  # fmt: skip
    config = make_search_config(search_space, latency, budget_ms, settings, out, data=data, storage=storage, seed=seed)
    if settings.margin == AUTO_MARGIN:
        _say(latency.held_out_margin().describe(), quiet)
    check_budget(config)
    config.drift = _drift(latency, quiet=quiet)
    return config


def _space_and_data(space: str | None, supernet: Path | None, data: str | None) -> tuple[Any, str | None]:
    """The search space (--space, else the supernet's, else 'default') and the data (--data, else the supernet's).

    A supernet's scores are its validation split's: without --data it is scored on the images it was trained on.
    """
    from hwnas.presets import resolve_space

    if supernet is None:
        return resolve_space(space or "default"), data
    from hwnas.search.inherited import check_space, loaded_supernet, recorded_data

    loaded, info = loaded_supernet(supernet)  # loaded once: the search's executor takes this one
    search_space = resolve_space(space) if space else loaded.space
    check_space(loaded, search_space, supernet)  # before the table is read: a supernet of another space is one line at once
    return search_space, (data if data is not None else recorded_data(info))


def _drift(latency: Any, quiet: bool) -> dict[str, Any] | None:
    """Before searching: is the device as fast today as its table says? Printed (a warning beyond 10%), kept in result.json."""
    from hwnas.paths import model_cache

    check = latency.check_drift(model_cache(), context=f"search on {latency.spec.name}")
    if not quiet:
        if not latency.measurable:
            console.print(f"drift check: none ({esc(latency.spec.name)} is not here: its latencies are the table's predictions)")
        elif check is None:
            console.print("drift check: not possible (the table has no reference or whole networks)")
        else:
            warn = bool(check["warn"])
            console.print(("[yellow]" if warn else "") + esc(check["message"]) + ("[/]" if warn else ""))
    return check


def _space_for_data(data: str | None, search_space: Any, device: str, supernet: Path | None, quiet: bool) -> Any:
    """The space with its stem and classifier made for the data's channels and classes (``SearchSpace.for_data``), said
    in one line; its latency table is then completed from ``search_space``'s. A supernet's stem and classifier are
    trained for its own data: other data is refused in one line."""
    from hwnas.data import load_data

    splits = load_data(data)
    if supernet is not None:
        check_data_fits(
            splits,
            search_space,
            why="a supernet's stem and classifier were trained for those",
            then=f"train a supernet for them (hwnas supernet train --space space.json --data {data})",
        )
    adapted = search_space.for_data(splits.channels, splits.num_classes)
    if adapted is not search_space:
        _say(
            f"data {splits.name!r} has {splits.channels} channel(s) and {splits.num_classes} classes: searching "
            f"{adapted.name!r}, {search_space.name!r} with its stem and classifier made for them",
            quiet,
        )
    return adapted


def _say(line: str, quiet: bool) -> None:
    if not quiet:
        console.print(esc(line))


@contextlib.contextmanager
def _progress_bar(trials: int, quiet: bool) -> Iterator[Callable[[Any], None]]:
    """A progress bar of the trials (best so far, ETA) and one line per finished trial; yields its update function."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (
        TextColumn("trials"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("best {task.fields[best]}"),
        TimeElapsedColumn(),
        TextColumn("ETA {task.fields[eta]}"),
    )
    with Progress(*columns, console=console, disable=quiet) as bar:
        task = bar.add_task("search", total=trials, best="-", eta="-")

        def update(progress: Any) -> None:
            best = f"{progress.best_accuracy:.4f}" if progress.best_accuracy is not None else "-"
            eta = time.strftime("%H:%M:%S", time.gmtime(progress.eta_s)) if progress.eta_s is not None else "-"
            bar.update(task, completed=progress.done, best=best, eta=eta)
            last = progress.last
            if last is not None and not quiet:
                state = f"{last['accuracy']:.4f}" if last.get("accuracy") is not None else f"failed ({last.get('error')})"
                log(
                    f"trial {last['number']}: {state}, {last['predicted_latency_ms']:.3f} ms predicted, "
                    f"{last.get('wall_time_s') or 0:.1f} s: {last['arch']}"
                )

        yield update


def _show(summary: dict[str, Any], result: dict[str, Any] | None, out: Path) -> None:
    console.print(
        f"{summary['trained']} candidates trained ({summary['completed']} completed, {summary['failed']} failed; "
        f"{summary['replayed_from_storage']} from storage, {summary['duplicates_not_retrained']} repeats not retrained)"
    )
    if result is None:
        best = summary["best"]
        if best:
            console.print(f"best: {best['accuracy']:.4f} at {best['predicted_latency_ms']:.3f} ms predicted: {esc(best['arch'])}")
        return
    if "error" in result:
        raise UserError(result["error"])
    drift = result["drift"]
    if drift is not None:  # None: a device given as its table, nothing timed
        console.print(
            f"drift check: today / table = {drift['ratio']:.3f} over {len(drift['per_network'])} reference networks"
            + (" (beyond 5%: latencies judged after dividing by it)" if drift["applied"] else " (within 5%: judged as measured)")
        )
    for entry in result["top"]:
        judged, measured = entry.get("judged"), entry.get("measured")
        if not measured:
            why = "the device is not here" if drift is None else "export failed verification"
            predicted = f"predicted {entry['predicted_latency_ms']:.3f} ms"
            console.print(f"top{entry['rank']}: {predicted}, not measured ({why}): {esc(entry['arch'])}")
            continue
        console.print(
            f"top{entry['rank']}: proxy accuracy {entry['proxy_accuracy']:.4f}; "
            f"predicted {entry['predicted_latency_ms']:.3f} ms, "
            f"measured {measured['median_ms']:.3f} ms (95% CI {measured['ci_low_ms']:.3f}-{measured['ci_high_ms']:.3f}, "
            f"{measured['runs']} runs in {measured['rounds']} rounds): [bold]{judged['verdict']}[/] "
            f"the {judged['budget_ms']:g} ms budget; {esc(entry['arch'])}"
        )
    retrained = result["top"][0].get("retrained", {})
    if retrained:
        console.print(
            f"best retrained {len(retrained['curve'])} epochs: validation {retrained['val_accuracy']:.4f}, "
            f"test {retrained['test_accuracy']:.4f} ({esc(retrained['folder'])})"
        )
    offer = result["best"]
    if offer["verdict"] not in ("within", PREDICTED_ONLY):
        following = offer.get("next_feasible")
        console.print(
            f"[red]the best is {offer['verdict']} the budget[/]; "
            + (
                f"next feasible: top{following['rank']} {esc(following['arch'])}"
                if following
                else "no measured candidate is within"
            )
        )
    console.print(f"result: {esc(out / 'result.json')}; plot: {esc(result['pareto_plot'])}")
