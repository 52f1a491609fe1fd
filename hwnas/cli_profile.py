"""``hwnas devices``, ``hwnas profile`` and ``hwnas lut``: describe a device, measure it, read tables."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from devices import DeviceSpec, make_backend, shipped_specs
from hwnas.cli import JsonFlag, _print_json, app, console
from hwnas.presets import resolve_space
from latency_tables.importer import import_public_table
from latency_tables.profiler import Profiler, ProfileSettings
from latency_tables.table import LatencyTable, diff_tables

devices_app = typer.Typer(no_args_is_help=True, help="List device specs and check their runtimes.")
lut_app = typer.Typer(no_args_is_help=True, help="Show, compare and import latency tables.")
app.add_typer(devices_app, name="devices")
app.add_typer(lut_app, name="lut")

SpecArg = Annotated[str, typer.Argument(help="device spec: a TOML path or a shipped name (hwnas devices list)")]
SpaceOption = Annotated[str, typer.Option("--space", help="search-space preset or JSON file")]
AllowMismatch = Annotated[bool, typer.Option("--allow-mismatch", help="use a store/table of another device or space anyway")]


def default_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "hwnas" / "models"


@devices_app.command("list")
def devices_list() -> None:
    """The shipped device specs, their backends and whether each can run here."""
    table = Table("spec", "name", "backend", "here")
    for name in shipped_specs():
        spec = DeviceSpec.from_toml(name)
        reason = make_backend(spec).unavailable_reason()
        table.add_row(name, spec.name, spec.backend, "ready" if reason is None else f"[yellow]{reason}[/]")
    console.print(table)


@devices_app.command("check")
def devices_check(spec: SpecArg, as_json: JsonFlag = False) -> None:
    """Say whether the device's runtime is here; print its fingerprint (exit 2 when it is not)."""
    device = DeviceSpec.from_toml(spec)
    backend = make_backend(device)
    backend.require_available()
    fingerprint = backend.fingerprint()
    if as_json:
        _print_json({"spec": device.to_json(), "fingerprint": fingerprint})
        return
    console.print(f"[bold]{device.name}[/] ({device.backend}) is ready")
    for key, value in fingerprint.items():
        console.print(f"  {key}: {value}")


@app.command("profile")
def profile_command(
    spec: SpecArg,
    space: SpaceOption = "default",
    out: Annotated[Path | None, typer.Option(help="profile folder (default: runs/profiles/<device>-<space>)")] = None,
    cache: Annotated[Path | None, typer.Option(help="converted-model cache (default: ~/.cache/hwnas/models)")] = None,
    networks: Annotated[int, typer.Option(min=0, help="whole sampled networks to measure too")] = 40,
    seed: Annotated[int, typer.Option(help="seed of the sampled networks")] = 0,
    workers: Annotated[int, typer.Option(min=1, help="conversion processes")] = max(1, len(os.sched_getaffinity(0))),
    cv_threshold: Annotated[float, typer.Option(min=0.0, help="re-measure attempts noisier than this CV")] = 0.15,
    max_attempts: Annotated[int, typer.Option(min=1, help="attempts per layer at most")] = 3,
    allow_mismatch: AllowMismatch = False,
    as_json: JsonFlag = False,
) -> None:
    """Measure every layer of a search space (and sampled whole networks) on a device -> latency table."""
    device = DeviceSpec.from_toml(spec)
    search_space = resolve_space(space)
    out = out or Path("runs") / "profiles" / f"{device.name}-{search_space.name}"
    settings = ProfileSettings(networks, seed, workers, cv_threshold, max_attempts, allow_mismatch)
    report = Profiler(device, search_space, out, cache or default_cache(), settings).run(progress=not as_json)
    summary = {
        "table": str(out / "table.json"),
        "store": str(out / "store.sqlite"),
        "ops": report.ops,
        "networks": report.networks,
        "measured_now": report.measured_now,
        "attempts_now": report.attempts_now,
        "wall_s": round(report.wall_s, 2),
        "convert_s": round(report.convert_s, 2),
        "measure_s": round(report.measure_s, 2),
        "noisy": report.noisy,
    }
    if as_json:
        _print_json(summary)
        return
    console.print(
        f"{report.ops} layers and {report.networks} networks of {search_space.name!r} on {device.name}: "
        f"measured {report.measured_now} now ({report.attempts_now} attempts) in {report.wall_s:.1f} s "
        f"(converting {report.convert_s:.1f} s, measuring {report.measure_s:.1f} s)"
    )
    if report.noisy:
        console.print(f"[yellow]{len(report.noisy)} layers stayed above CV {cv_threshold} after {max_attempts} attempts[/]")
    console.print(f"table: {out / 'table.json'}")


@lut_app.command("show")
def lut_show(table_file: Annotated[Path, typer.Argument(help="table.json")], top: int = 10, as_json: JsonFlag = False) -> None:
    """Where a table comes from and its slowest layers."""
    table = LatencyTable.load(table_file)
    if as_json:
        _print_json(table.to_json())
        return
    console.print(
        f"[bold]{table.space}[/] on [bold]{table.device.get('name', '?')}[/] ({table.kind}; {len(table.entries)} layers, "
        f"{len(table.networks)} networks; created {table.created})"
    )
    for key, value in table.fingerprint.items():
        console.print(f"  {key}: {value}")
    rows = Table("layer", "median ms", "p10", "p90", "CV", "n")
    for entry in sorted(table.entries.values(), key=lambda e: -e.median_ms)[:top]:
        rows.add_row(
            entry.op.describe(), f"{entry.median_ms:.4f}", _fmt(entry.p10_ms), _fmt(entry.p90_ms), _fmt(entry.cv), str(entry.n)
        )
    console.print(rows)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


@lut_app.command("diff")
def lut_diff(first: Path, second: Path, as_json: JsonFlag = False) -> None:
    """Per-layer relative differences of two tables (e.g. two profiles of one device)."""
    report = diff_tables(LatencyTable.load(first), LatencyTable.load(second))
    if as_json:
        _print_json(report)
        return
    console.print(
        f"{report['common']} common layers ({report['only_first']} only in the first, {report['only_second']} only in the second)"
    )
    if report["common"]:
        console.print(f"median |relative difference| {report['median_abs_relative']:.2%}, max {report['max_abs_relative']:.2%}")
    for difference in report["fingerprint_differences"]:
        console.print(f"[yellow]fingerprint differs: {difference}[/]")


@lut_app.command("import")
def lut_import(
    source: Annotated[Path, typer.Argument(help="OFA / ProxylessNAS latency YAML")],
    space: SpaceOption = "proxylessnas",
    device: Annotated[str, typer.Option(help="name of the device the table was measured on")] = "imported",
    out: Annotated[Path, typer.Option(help="where to write the table")] = Path("table.json"),
) -> None:
    """Import a public latency table (keys must be layers of --space)."""
    table = import_public_table(source, resolve_space(space), device)
    table.save(out)
    console.print(f"imported {len(table.entries)} layers of {table.space!r} measured on {device} -> {out}")
