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
    SpaceOption,
    Threads,
    app,
    build_recipe,
    print_json,
    show_training,
)
from hwnas.errors import UserError
from hwnas.presets import get_space, resolve_space


@app.command("train")
def train_command(
    arch: Annotated[str, typer.Option("--arch", help="architecture string (hwnas space sample)")],
    recipe_file: RecipeFile = None,
    overrides: Overrides = None,
    epochs: Epochs = None,
    data: DataSource = None,
    seed: Seed = 0,
    threads: Threads = None,
    space: Annotated[str | None, typer.Option("--space", help=SpaceOption.__metadata__[0].help)] = None,
    out: Annotated[Path | None, typer.Option(help="folder for result.json and model.pt")] = None,
    test: Annotated[bool, typer.Option("--test", help="also report accuracy on the held-out test split")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Train one architecture on real images and print its validation accuracy."""
    parsed = Arch.parse(arch)
    search_space = resolve_space(space) if space else get_space(parsed.space)
    if search_space.name != parsed.space:
        raise UserError(f"architecture is of space {parsed.space!r}, --space {space} is {search_space.name!r}")
    search_space.validate(parsed)
    recipe = build_recipe(recipe_file, overrides, epochs)
    from hwnas.data import load_data
    from hwnas.trainer import train

    splits = load_data(data)
    if (splits.channels, splits.num_classes) != (search_space.in_channels, search_space.num_classes):
        raise UserError(
            f"data {splits.name!r} has {splits.channels} channel(s) and {splits.num_classes} classes, space "
            f"{search_space.name!r} {search_space.in_channels} and {search_space.num_classes}: write a space with yours "
            f"(hwnas space show --preset {search_space.name} --json > space.json; set in_channels and num_classes) "
            "and pass --space space.json"
        )
    result = train(search_space, parsed, recipe, splits, seed=seed, threads=threads, progress=not as_json, evaluate_test=test)
    if out is not None:
        result.save(out)
    if as_json:
        print_json(result.to_json())
    else:
        show_training(result.to_json())
