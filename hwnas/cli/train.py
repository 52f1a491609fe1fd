"""``hwnas train``: train one candidate on real images and keep the result."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hwnas.arch import Arch
from hwnas.cli.common import (
    DataSource,
    Epochs,
    JsonFlag,
    Overrides,
    RecipeFile,
    Seed,
    Threads,
    app,
    build_recipe,
    print_json,
    show_training,
)
from hwnas.presets import get_space


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
    from hwnas.data import load_data
    from hwnas.trainer import train

    result = train(space, parsed, recipe, load_data(data), seed=seed, threads=threads, progress=not as_json, evaluate_test=test)
    if out is not None:
        result.save(out)
    if as_json:
        print_json(result.to_json())
    else:
        show_training(result.to_json())
