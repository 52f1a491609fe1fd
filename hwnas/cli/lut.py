"""``hwnas lut show|diff|import``: read, compare and import latency tables."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from hwnas.cli.common import JsonFlag, SpaceOption, console, esc, group, print_json

lut_app = group("lut", "Show, compare and import latency tables.")


@lut_app.command("show")
def lut_show(
    table_file: Annotated[Path, typer.Argument(help="table.json")],
    top: Annotated[int, typer.Option(min=0, help="how many of the slowest layers to list")] = 10,
    as_json: JsonFlag = False,
) -> None:
    """Where a table comes from and its slowest layers."""
    from hwnas.latency_tables.table import LatencyTable

    table = LatencyTable.load(table_file)
    if as_json:
        print_json(table.to_json())
        return
    console.print(
        f"[bold]{esc(table.space)}[/] on [bold]{esc(table.device.get('name', '?'))}[/] ({esc(table.kind)}; "
        f"{len(table.entries)} layers, {len(table.networks)} networks"
        + (f", {len(table.zoo_networks)} zoo networks" if table.zoo_networks else "")
        + f"; created {esc(table.created)})"
    )
    for key, value in table.fingerprint.items():
        console.print(f"  {esc(key)}: {esc(value)}")
    rows = Table("layer", "median ms", "p10", "p90", "CV", "n")
    for entry in sorted(table.entries.values(), key=lambda e: -e.median_ms)[:top]:
        rows.add_row(
            esc(entry.op.describe()),
            f"{entry.median_ms:.4f}",
            _fmt(entry.p10_ms),
            _fmt(entry.p90_ms),
            _fmt(entry.cv),
            str(entry.n),
        )
    console.print(rows)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


@lut_app.command("diff")
def lut_diff(first: Path, second: Path, as_json: JsonFlag = False) -> None:
    """Per-layer relative differences of two tables (e.g. two profiles of one device)."""
    from hwnas.latency_tables.table import LatencyTable, diff_tables

    report = diff_tables(LatencyTable.load(first), LatencyTable.load(second))
    if as_json:
        print_json(report)
        return
    console.print(
        f"{report['common']} common layers ({report['only_first']} only in the first, {report['only_second']} only in the second)"
    )
    if report["common"]:
        console.print(f"median |relative difference| {report['median_abs_relative']:.2%}, max {report['max_abs_relative']:.2%}")
    for difference in report["fingerprint_differences"]:
        console.print(f"[yellow]fingerprint differs: {esc(difference)}[/]")


@lut_app.command("import")
def lut_import(
    sources: Annotated[list[Path], typer.Argument(help="OFA / ProxylessNAS latency YAML files, or folders of them")],
    space: SpaceOption = "proxylessnas",
    device: Annotated[str, typer.Option(help="name of the device the table was measured on")] = "imported",
    out: Annotated[Path, typer.Option(help="where to write the table")] = Path("table.json"),
    skip_unknown: Annotated[bool, typer.Option("--skip-unknown", help="leave out keys that are no layer of --space")] = False,
) -> None:
    """Import public latency tables (one file per resolution, or a folder) as one table of --space."""
    from hwnas.latency_tables.importer import import_public_tables
    from hwnas.presets import resolve_space

    report = import_public_tables(sources, resolve_space(space), device, skip_unknown=skip_unknown)
    report.table.save(out)
    console.print(
        f"imported {len(report.table.entries)} layers of {esc(repr(report.table.space))} measured on {esc(device)} "
        f"from {len(report.files)} file(s) -> {esc(out)}"
        + (f" ({report.pools_merged} AvgPool2D entries added to their Conv_2 / Logits layer)" if report.pools_merged else "")
    )
    if report.unknown:
        console.print(f"[yellow]skipped {len(report.unknown)} key(s) that are no layer of the space:[/]")
        for text in report.unknown:
            console.print(f"  {esc(text)}")
