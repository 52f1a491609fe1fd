"""``hwnas scale BASE``: a family of networks for a ladder of latency budgets, by compound scaling on the device."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from hwnas.cli.common import (
    AllowMismatch,
    DataSource,
    Epochs,
    JsonFlag,
    Overrides,
    RecipeFile,
    Seed,
    app,
    check_data_fits,
    console,
    esc,
    print_json,
    quiet_or_log,
)
from hwnas.errors import UserError

Budgets = Annotated[str, typer.Option("--budgets-ms", help="latency budgets measured on the device, in ms, comma-separated")]


@app.command("scale")
def scale_command(
    base: Annotated[str, typer.Argument(help="the network to grow: a run folder (hwnas train --out) or an architecture string")],
    device: Annotated[str, typer.Option("--device", help="device spec: a TOML path or a shipped name")],
    budgets_ms: Budgets,
    data: DataSource = None,
    space: Annotated[str | None, typer.Option("--space", help="the base's search space: a preset or a JSON file")] = None,
    recipe_file: RecipeFile = None,
    overrides: Overrides = None,
    epochs: Epochs = None,
    grid: Annotated[int, typer.Option(min=1, help="compound steps trained to choose the depth/width/resolution ratios")] = 4,
    compare: Annotated[
        bool, typer.Option("--compare/--no-compare", help="also train width-, depth- and resolution-only networks per budget")
    ] = True,
    train_images: Annotated[int | None, typer.Option(min=1, help="train on the first N training images (quick checks)")] = None,
    rounds: Annotated[int, typer.Option(min=1, help="interleaved timing rounds of the final measurement")] = 10,
    out: Annotated[Path | None, typer.Option(help="folder (default: runs/scale-<time>); rerun to resume")] = None,
    allow_mismatch: AllowMismatch = False,
    seed: Seed = 0,
    as_json: JsonFlag = False,
) -> None:
    """Grow BASE into one network per budget: ratios found by a small grid search under "one step doubles the latency
    measured on this device", every member trained with BASE's recipe, exported, verified and measured; with
    --compare, width-, depth- and resolution-only scaling at the same budgets for comparison. Rerun to resume."""
    from hwnas.devices import DeviceSpec
    from hwnas.search.specialize import parse_budgets

    budgets = parse_budgets(budgets_ms)
    spec = DeviceSpec.from_toml(device)
    arch, space, recipe = _base(base, space, recipe_file, overrides, epochs)
    out = out or _default_out()
    report = _run(spec, arch, space, recipe, data, budgets, grid, compare, train_images, rounds, out, allow_mismatch, seed,
                  as_json)  # fmt: skip
    if as_json:
        print_json(report.to_json() | {"out": str(out)})
    else:
        _show(report, out)


def _base(
    base: str, space_text: str | None, recipe_file: Path | None, overrides: list[str] | None, epochs: int | None
) -> tuple[Any, Any, Any]:
    """BASE's architecture, space (the one its name gives, or --space) and recipe: a run folder's own recipe unless
    --recipe is given; --set and --epochs on top."""
    from hwnas.cli.train import _arch_and_space
    from hwnas.fileio import read_json
    from hwnas.formats import FORMATS
    from hwnas.recipe import Recipe

    folder = Path(base)
    recipe = Recipe.from_file(recipe_file) if recipe_file else Recipe()
    if folder.is_dir():
        result_file = folder / "result.json"
        if not result_file.exists():
            raise UserError(f"{folder} is not a run folder (no result.json): give a run folder or an architecture string")
        result = FORMATS["run-result"].strip(read_json(result_file, "run result"), result_file)
        text = result.get("arch")
        if recipe_file is None and isinstance(result.get("recipe"), dict):
            recipe = Recipe.from_json(result["recipe"]).without_teacher()
    else:
        text = base
    if not isinstance(text, str):
        raise UserError(f"{base}: names no architecture")
    arch, space = _arch_and_space(text, space_text)
    assignments = list(overrides or []) + ([f"epochs={epochs}"] if epochs is not None else [])
    return arch, space, recipe.with_overrides(assignments)


def _default_out() -> Path:
    from hwnas.paths import runs_dir

    return runs_dir() / f"scale-{time.strftime('%Y%m%d-%H%M%S')}"


def _run(spec: Any, arch: Any, space: Any, recipe: Any, data: str | None, budgets: list[float], grid: int, compare: bool,
         train_images: int | None, rounds: int, out: Path, allow_mismatch: bool, seed: int, as_json: bool) -> Any:  # fmt: skip
    from hwnas.data import load_data
    from hwnas.devices import make_backend
    from hwnas.family.job import ScaleRequest, scale_family
    from hwnas.fileio import check_writable_folder
    from hwnas.latency_tables.drift import device_table
    from hwnas.latency_tables.table import LatencyTable

    check_writable_folder(out)
    backend = make_backend(spec)
    backend.require_available()
    table = LatencyTable.load(device_table(spec))
    table.check(backend.fingerprint(), override=allow_mismatch)
    splits = load_data(data)
    check_data_fits(splits, space, why="the family grows the base's network", then="train a base in it and scale that")
    if train_images is not None:
        splits = splits.head(train_images, len(splits.val))
    request = ScaleRequest(space, arch, recipe, splits, backend, table, tuple(budgets), grid, compare, rounds, seed,
                           progress=not as_json)  # fmt: skip
    return scale_family(request, out, quiet_or_log(as_json))


def _show(report: Any, out: Path) -> None:
    from hwnas.family.plot import rows

    console.print(f"family of {esc(report.settings['base'])} on {esc(report.settings['device'])}, ratios {report.ratios}:")
    for row in rows(report, [p for p in report.grid if p.role == "base"] + report.members):
        budget = f"{row.budget_ms:g} ms" if row.budget_ms else "base"
        measured = f"measured {row.measured_ms:.3f} ms" if row.measured_ms else "not measured"
        accuracy = f"test {row.accuracy:.4f}" if row.accuracy is not None else "not trained"
        console.print(f"  {budget:>9} {row.role:<10} {row.scaling:<13} {measured}, {accuracy}: {esc(row.arch)}")
    console.print(f"plot: {esc(report.plot)}; everything in {esc(out)} (family.json); rerun the same command to resume")
