"""``hwnas train`` and ``hwnas run``: train a candidate on real images and keep the result."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from hwnas.arch import Arch
from hwnas.cli import JsonFlag, Preset, _print_json, app, console
from hwnas.data import load_data
from hwnas.presets import get_space
from hwnas.recipe import Recipe
from hwnas.trainer import TrainResult, train

RecipeFile = Annotated[Path | None, typer.Option("--recipe", help="recipe file (JSON or TOML)")]
Overrides = Annotated[list[str] | None, typer.Option("--set", help="recipe override key=value (repeatable)")]
Epochs = Annotated[int | None, typer.Option(help="shorthand for --set epochs=N")]
DataSource = Annotated[str | None, typer.Option("--data", help="'embedded' (default), 'fashion-mnist', or a folder")]
Threads = Annotated[int | None, typer.Option(min=1, help="torch threads (default: all cores)")]
Seed = Annotated[int, typer.Option(help="random seed")]


def build_recipe(recipe_file: Path | None, overrides: list[str] | None, epochs: int | None) -> Recipe:
    recipe = Recipe.from_file(recipe_file) if recipe_file else Recipe()
    assignments = list(overrides or []) + ([f"epochs={epochs}"] if epochs is not None else [])
    return recipe.with_overrides(assignments)


def report(result: TrainResult, as_json: bool) -> None:
    if as_json:
        _print_json(result.to_json())
        return
    console.print(f"[bold]{result.arch}[/]")
    console.print(
        f"validation accuracy {result.val_accuracy:.4f} on {result.dataset} at {result.resolution}px after "
        f"{len(result.curve)} epoch(s); {result.params / 1e6:.3f} M params, {result.flops / 1e6:.2f} MFLOPs; "
        f"{result.wall_time_s:.1f} s on {result.threads} thread(s)"
        + (f"; test accuracy {result.test_accuracy:.4f}" if result.test_accuracy is not None else "")
    )


@app.command("train")
def train_command(
    arch: Annotated[str, typer.Option("--arch", help="architecture string (hwnas space sample)")],
    recipe_file: RecipeFile = None,
    overrides: Overrides = None,
    epochs: Epochs = None,
    data: DataSource = None,
    seed: Seed = 0,
    threads: Threads = None,
    out: Annotated[Path | None, typer.Option(help="folder for result.json and model.pt")] = None,
    test: Annotated[bool, typer.Option("--test", help="also report accuracy on the held-out test split")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Train one architecture on real images and print its validation accuracy."""
    parsed = Arch.parse(arch)
    space = get_space(parsed.space)
    space.validate(parsed)
    recipe = build_recipe(recipe_file, overrides, epochs)
    result = train(space, parsed, recipe, load_data(data), seed=seed, threads=threads, progress=not as_json, evaluate_test=test)
    if out is not None:
        result.save(out)
    report(result, as_json)


@app.command("run")
def run_command(
    preset: Preset = "default",
    seed: Seed = 0,
    epochs: Epochs = None,
    data: DataSource = None,
    threads: Threads = None,
    out: Annotated[Path | None, typer.Option(help="run folder (default: runs/<time stamp>)")] = None,
    as_json: JsonFlag = False,
) -> None:
    """The main job on embedded defaults: sample, predict latency, train, export, verify, re-measure.

    Search and pruning join this command as they land; everything is kept in one run folder.
    """
    from hwnas.pipeline import run_pipeline

    out = out or Path("runs") / time.strftime("run-%Y%m%d-%H%M%S")
    recipe = build_recipe(None, None, epochs)
    outcome = run_pipeline(
        preset, seed, recipe, data, threads, out, progress=not as_json, log=(lambda message: None) if as_json else console.log
    )
    if as_json:
        summary = {"result": outcome.result.to_json(), "predicted_latency": outcome.predicted_ms}
        _print_json(summary | {"exports": outcome.card["exports"]})
        return
    report(outcome.result, as_json=False)
    for item in outcome.card["exports"]:
        check = item["verification"]
        measured = ", ".join(f"{m['device']} {m['median_ms']:.3f} ms" for m in item["latency"] if "median_ms" in m)
        console.print(f"{item['format']}: max |diff| {check['max_abs_diff']:.1e}, verified {check['passed']}; {measured}")
    console.print(f"run folder: {out} (model card: {out / 'export' / 'model_card.md'})")
