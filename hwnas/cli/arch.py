"""``hwnas arch info``: FLOPs, parameters and layers of one architecture."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from hwnas.arch import Arch
from hwnas.cli.common import JsonFlag, console, esc, group, print_json
from hwnas.presets import get_space

arch_app = group("arch", "Inspect architectures.")


@arch_app.command("info")
def arch_info(arch: Annotated[str, typer.Argument(help="architecture string")], as_json: JsonFlag = False) -> None:
    """FLOPs, parameters and the layers (OpKeys) of an architecture."""
    parsed = Arch.parse(arch)
    space = get_space(parsed.space)
    space.validate(parsed)
    keys = space.op_keys(parsed)
    from hwnas.builder import arch_cost, op_cost

    cost = arch_cost(space, parsed)
    if as_json:
        print_json(
            {
                "arch": parsed.format(),
                "id": parsed.id,
                "flops": cost.flops,
                "params": cost.params,
                "op_keys": [key.describe() for key in keys],
            }
        )
        return
    console.print(f"[bold]{esc(parsed.format())}[/]  id {parsed.id}")
    console.print(f"{cost.flops / 1e6:.2f} MFLOPs ({cost.flops / 2e6:.2f} M multiply-adds), {cost.params / 1e6:.3f} M parameters")
    table = Table("#", "layer (OFA key)", "MFLOPs", "params")
    for index, key in enumerate(keys):
        layer = op_cost(key)
        table.add_row(str(index), esc(key.describe()), f"{layer.flops / 1e6:.3f}", str(layer.params))
    console.print(table)
