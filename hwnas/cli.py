"""The ``hwnas`` command line: one entry point, a verb per pipeline step.

User mistakes raise :class:`hwnas.errors.UserError`; :func:`main` prints them as one line on
stderr and exits with code 2. Tables are for people, ``--json`` is for machines.
"""

from __future__ import annotations

import json
import random
import sys
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from hwnas.arch import Arch
from hwnas.builder import arch_cost, op_cost
from hwnas.errors import UserError
from hwnas.presets import get_space, list_spaces

app = typer.Typer(
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    help="Hardware-aware NAS: profile a device, search under a latency budget, prune and export.",
)
space_app = typer.Typer(no_args_is_help=True, help="Inspect search spaces.")
arch_app = typer.Typer(no_args_is_help=True, help="Inspect architectures.")
app.add_typer(space_app, name="space")
app.add_typer(arch_app, name="arch")
console = Console()

Preset = Annotated[str, typer.Option("--preset", "-p", help="search space preset (hwnas space list)")]
JsonFlag = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2))


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
        _print_json(space.to_json() | {"hash": space.hash})
        return
    console.print(f"[bold]{space.name}[/]: {space.description}  (hash {space.hash})")
    console.print(
        f"input {space.in_channels} ch, resolutions {space.resolutions}, {space.num_classes} classes; "
        f"stem {space.stem_kernel}x{space.stem_kernel} conv s{space.stem_stride} -> {space.stem_channels} ch {space.stem_act}"
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
        _print_json(counts)
    else:
        typer.echo(f"{space.name}: {counts['architectures']:.3e} architectures, {counts['op_keys']} distinct layers")


@space_app.command("sample")
def space_sample(
    preset: Preset = "default",
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    count: Annotated[int, typer.Option("-n", min=1, help="how many architectures")] = 1,
) -> None:
    """Print seeded random architecture strings, one a line."""
    space = get_space(preset)
    rng = random.Random(seed)
    for _ in range(count):
        typer.echo(space.sample(rng).format())


@arch_app.command("info")
def arch_info(arch: Annotated[str, typer.Argument(help="architecture string")], as_json: JsonFlag = False) -> None:
    """FLOPs, parameters and the layers (OpKeys) of an architecture."""
    parsed = Arch.parse(arch)
    space = get_space(parsed.space)
    space.validate(parsed)
    keys = space.op_keys(parsed)
    cost = arch_cost(space, parsed)
    if as_json:
        _print_json(
            {
                "arch": parsed.format(),
                "id": parsed.id,
                "flops": cost.flops,
                "params": cost.params,
                "op_keys": [key.describe() for key in keys],
            }
        )
        return
    console.print(f"[bold]{parsed.format()}[/]  id {parsed.id}")
    console.print(f"{cost.flops / 1e6:.2f} MFLOPs ({cost.flops / 2e6:.2f} M multiply-adds), {cost.params / 1e6:.3f} M parameters")
    table = Table("#", "layer (OFA key)", "MFLOPs", "params")
    for index, key in enumerate(keys):
        layer = op_cost(key)
        table.add_row(str(index), key.describe(), f"{layer.flops / 1e6:.3f}", str(layer.params))
    console.print(table)


def main() -> None:
    """Console-script entry point: user mistakes become one line and exit code 2."""
    from hwnas import cli_export, cli_predictor, cli_profile, cli_train  # noqa: F401  (registering their verbs)

    try:
        code = app(standalone_mode=False)
    except UserError as error:
        typer.echo(f"error: {error}", err=True)
        sys.exit(2)
    except typer.TyperException as error:  # typer's (vendored click's) usage errors: one line, not a box
        if type(error).__name__ == "NoArgsIsHelpError":
            error.show()  # a bare group (`hwnas`, `hwnas lut`): its help, as click would
            sys.exit(2)
        context = getattr(error, "ctx", None)
        hint = f" (see '{context.command_path} --help')" if context is not None else ""
        typer.echo(f"error: {error.format_message()}{hint}", err=True)
        sys.exit(error.exit_code)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
