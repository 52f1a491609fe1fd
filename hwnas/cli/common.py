"""What every verb module shares: the typer app, the console, common options and printing helpers.

Everything a user typed (architecture strings, paths, names) goes through :func:`esc` before it
reaches rich: ``[k3e3,k5e6]`` is rich markup syntax, and unescaped block lists vanish from the
printed architecture, so a user who copied the line would get another network.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from hwnas.recipe import Recipe

app = typer.Typer(
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    help="Hardware-aware NAS: profile a device, search under a latency budget, prune and export.",
)
console = Console(soft_wrap=True, log_path=False)  # never break a line a user may copy (an architecture string, a path)

Preset = Annotated[str, typer.Option("--preset", "-p", help="search space preset (hwnas space list)")]
JsonFlag = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]
SpaceOption = Annotated[str, typer.Option("--space", help="search-space preset or JSON file")]
SpecArg = Annotated[str, typer.Argument(help="device spec: a TOML path or a shipped name (hwnas devices list)")]
AllowMismatch = Annotated[bool, typer.Option("--allow-mismatch", help="use a store/table of another device or space anyway")]


def esc(value: object) -> str:
    """``value`` as text that rich prints literally (no markup is read from it)."""
    return escape(str(value))


def log(message: str) -> None:
    """One progress line, ``[HH:MM:SS] message``, whole: never wrapped, no ``file.py:NN`` suffix, markup not read.

    ``console.log`` lays a line out as a table: it breaks the message at the console's width (80 columns when the
    output is a file or a CI log, so an architecture string came out in two halves) and ends it with the calling
    file and line. A soft-wrapped print leaves the breaking to the terminal: a line copied from it, or from
    ``hwnas run > log``, is the line that was written.
    """
    console.print(f"[dim]{time.strftime('[%H:%M:%S]')}[/] {esc(message)}", soft_wrap=True, highlight=False)


def quiet_or_log(quiet: bool) -> Callable[[str], None]:
    """:func:`log`, or nothing at all for ``--json`` (stdout then holds the JSON alone)."""
    return (lambda message: None) if quiet else log


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2))


def group(name: str, help_text: str) -> typer.Typer:
    """A sub-command group (``hwnas lut ...``) registered on the app."""
    sub = typer.Typer(no_args_is_help=True, help=help_text)
    app.add_typer(sub, name=name)
    return sub


def key_values(values: dict[str, Any], digits: int = 4) -> str:
    """``a: 0.4974, b: text`` with floats rounded: what a person reads instead of a dict repr."""
    return ", ".join(f"{key}: {format_value(value, digits)}" for key, value in values.items())


def format_value(value: Any, digits: int = 4) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    if isinstance(value, dict):
        return "{" + key_values(value, digits) + "}"
    return str(value)


# ---- options shared by the verbs that train (train, run) ----------------------------------------
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


def show_training(result: dict[str, Any]) -> None:
    """A trained result (``TrainResult.to_json()``) as two lines; the architecture copies back exactly."""
    console.print(f"[bold]{esc(result['arch'])}[/]")
    test = result.get("test_accuracy")
    console.print(
        f"validation accuracy {result['val_accuracy']:.4f} on {esc(result['dataset'])} at {result['resolution']}px after "
        f"{len(result['curve'])} epoch(s); {result['params'] / 1e6:.3f} M params, {result['flops'] / 1e6:.2f} MFLOPs; "
        f"{result['wall_time_s']:.1f} s on {result['threads']} thread(s)"
        + (f"; test accuracy {test:.4f}" if test is not None else "")
    )


def drift_checks(specs: list[Any], quiet: bool = False) -> list[tuple[Any, Any]]:
    """Before a session measures on devices: re-time each device's reference networks (a shipped table's own whole
    networks) and say how it drifted.

    A device without a table of a preset space or reference networks, or that is not here, is skipped. Returns
    (spec, :class:`~hwnas.latency_tables.drift.DriftCheck`) pairs.
    """
    from hwnas.devices import make_backend
    from hwnas.latency_tables.drift import drift_before_measuring
    from hwnas.paths import model_cache

    checks = []
    for spec in specs:
        backend = make_backend(spec)
        if backend.unavailable_reason() is not None:
            continue
        check = drift_before_measuring(spec, backend, model_cache(), context=f"before measuring on {spec.name}")
        if check is not None:
            checks.append((spec, check))
            if not quiet:
                console.print(("[yellow]" if check.warn else "") + esc(check.message()) + ("[/]" if check.warn else ""))
    return checks


# ---- where training runs (train, supernet train) ---------------------------------------------------
ACCELERATOR_CHOICES = ("auto", "cpu", "cuda")  # hwnas.accelerator.ACCELERATORS, named here without importing torch


def check_data_fits(splits: Any, space: Any, *, why: str, then: str) -> None:
    """Refuse in one line data whose channels or classes are not ``space``'s (``hwnas train``, ``search``, ``run``),
    before any work: ``trainer.Prepared`` refuses colour images for a grayscale space only once training begins.
    ``why`` says what the mismatch breaks for this verb, ``then`` what to do with the space written for the data."""
    from hwnas.errors import UserError
    from hwnas.presets import SPACES

    if (splits.channels, splits.num_classes) == (space.in_channels, space.num_classes):
        return
    written = (
        f"hwnas space show --preset {space.name} --json > space.json; set in_channels and num_classes"
        if space.name in SPACES
        else "a copy of the space file with in_channels and num_classes set"
    )
    raise UserError(
        f"data {splits.name!r} has {splits.channels} channel(s) and {splits.num_classes} classes, space {space.name!r} "
        f"is for {space.in_channels} and {space.num_classes}: {why}. Write the space with yours ({written}), {then}"
    )


def _check_accelerator(value: str) -> str:
    if value not in ACCELERATOR_CHOICES:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(ACCELERATOR_CHOICES)}")
    return value


Accelerator = Annotated[
    str,
    typer.Option(
        "--accelerator",
        callback=_check_accelerator,
        metavar="auto|cpu|cuda",
        help="where to train: a CUDA GPU (mixed precision where safe), the CPU (all cores, or --threads), or auto: "
        "the GPU when there is one",
    ),
]
