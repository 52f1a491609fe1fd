"""``hwnas space list|show|count|sample``: inspect search-space presets."""

from __future__ import annotations

import random
from typing import Annotated

import typer
from rich.table import Table

from hwnas.cli.common import JsonFlag, Preset, console, esc, group, print_json
from hwnas.presets import get_space, list_spaces

space_app = group("space", "Inspect search spaces.")


@space_app.command("list")
def space_list() -> None:
    """List the registered search-space presets."""
    for name in list_spaces():
        space = get_space(name)
        typer.echo(f"{name:14s} {space.description}")


@space_app.command("show")
def space_show(preset: Preset = "default", as_json: JsonFlag = False) -> None:
    """Show a space's stem, stages, head, resolutions and per-block choices."""
    space = get_space(preset)
    if as_json:
        from hwnas.formats import FORMATS

        print_json(FORMATS["search-space"].stamp(space.to_json() | {"hash": space.hash}))
        return
    console.print(f"[bold]{esc(space.name)}[/]: {esc(space.description)}  (hash {space.hash})")
    console.print(
        esc(
            f"input {space.in_channels} ch, resolutions {space.resolutions}, {space.num_classes} classes; stem "
            f"{space.stem_kernel}x{space.stem_kernel} conv s{space.stem_stride} -> {space.stem_channels} ch {space.stem_act}"
        )
    )
    table = Table("stage", "stride", "widths", "depths", "kernels", "expansions", "SE", "activation")
    for index, stage in enumerate(space.stages, start=1):
        table.add_row(
            str(index),
            str(stage.stride),
            *(
                ", ".join(map(str, values))
                for values in (stage.widths, stage.depths, stage.kernels, stage.expansions, stage.se, stage.acts)
            ),
        )
    console.print(table)
    console.print(f"head: final 1x1 {space.final_expand or '-'}, feature mix {space.feature_mix or '-'}, {space.head_act}")


@space_app.command("count")
def space_count(preset: Preset = "default", as_json: JsonFlag = False) -> None:
    """Count a space's architectures and the distinct layers (OpKeys) a device profile measures."""
    space = get_space(preset)
    counts = {"space": space.name, "architectures": space.count(), "op_keys": len(space.enumerate_op_keys())}
    if as_json:
        print_json(counts)
    else:
        typer.echo(f"{space.name}: {counts['architectures']:.3e} architectures, {counts['op_keys']} distinct layers")


@space_app.command("sample")
def space_sample(
    preset: Preset = "default",
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    count: Annotated[int, typer.Option("-n", min=1, max=1_000_000, help="how many architectures")] = 1,
) -> None:
    """Print seeded random architecture strings, one a line."""
    space = get_space(preset)
    rng = random.Random(seed)
    for _ in range(count):
        typer.echo(space.sample(rng).format())
