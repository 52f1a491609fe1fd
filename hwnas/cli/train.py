"""``hwnas train``: train one candidate on real images and keep the result."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from hwnas.arch import Arch
from hwnas.cli.common import (
    Accelerator,
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
    check_data_fits,
    console,
    esc,
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
    out: Annotated[
        Path | None,
        typer.Option(help="folder for result.json, model.pt and the per-epoch checkpoint; rerun to resume"),
    ] = None,
    fresh: Annotated[
        bool, typer.Option("--fresh", help="start training over instead of resuming the checkpoint in --out")
    ] = False,
    test: Annotated[bool, typer.Option("--test", help="also report accuracy on the held-out test split")] = False,
    accelerator: Accelerator = "auto",
    as_json: JsonFlag = False,
) -> None:
    """Train one architecture on real images and print its validation accuracy.

    With --out every finished epoch is kept there; re-running the same command resumes from the last one, --fresh starts over.
    """
    if fresh and out is None:
        raise UserError("--fresh starts over the checkpoint kept in --out; give --out")
    parsed, search_space = _arch_and_space(arch, space)
    recipe = build_recipe(recipe_file, overrides, epochs)
    if out is not None:
        _prepare_out(out)
    from hwnas.accelerator import resolve_device
    from hwnas.trainer import remove_checkpoint, train

    resolve_device(accelerator)  # --accelerator cuda without a GPU: one line before the data loads
    splits = _data_for(data, search_space)
    if fresh and out is not None:
        remove_checkpoint(out)
    log = (lambda message: typer.echo(message, err=True)) if as_json else (lambda message: console.print(esc(message)))
    result = train(
        search_space,
        parsed,
        recipe,
        splits,
        seed=seed,
        threads=threads,
        progress=not as_json,
        evaluate_test=test,
        checkpoint=out,
        log=log,
        accelerator=accelerator,
    )
    if out is not None:
        result.save(out)
    if as_json:
        print_json(result.to_json())
    else:
        show_training(result.to_json())


def _arch_and_space(arch: str, space: str | None) -> tuple[Arch, Any]:
    """The architecture and its space (``--space`` must be the one the architecture string names)."""
    parsed = Arch.parse(arch)
    search_space = resolve_space(space) if space else get_space(parsed.space)
    if search_space.name != parsed.space:
        raise UserError(f"architecture is of space {parsed.space!r}, --space {space} is {search_space.name!r}")
    search_space.validate(parsed)
    return parsed, search_space


def _data_for(data: str | None, search_space: Any) -> Any:
    """The images, refused in one line when their channels or classes are not the space's."""
    from hwnas.data import load_data

    splits = load_data(data)
    check_data_fits(splits, search_space, why="the network is built for the space", then="and pass --space space.json")
    return splits


def _prepare_out(out: Path) -> None:
    """Make the output folder before training (a mistake is found now, not after the last epoch)."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; name a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"cannot make --out {out}: {error.strerror}") from None
    if not os.access(out, os.W_OK):
        raise UserError(f"cannot write to --out {out}: permission denied")
