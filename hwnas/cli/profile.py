"""``hwnas profile``: measure every layer of a search space (and whole networks) on a device."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from hwnas.cli.common import AllowMismatch, JsonFlag, SpaceOption, SpecArg, app, console, esc, print_json
from hwnas.errors import UserError
from hwnas.fileio import check_writable_folder
from hwnas.paths import model_cache, profiles_dir

ZooNetworksOption = Annotated[
    int,
    typer.Option(
        "--zoo-networks", min=0, help="also measure N torchvision networks whole at random widths and resolutions (a "
        "per-family correction)",
    ),
]  # fmt: skip
ZooLayersOption = Annotated[
    int,
    typer.Option("--zoo-layers", min=0, help="also measure N layers of torchvision networks at random widths and resolutions"),
]


@app.command("profile")
def profile_command(
    spec: SpecArg,
    space: SpaceOption = "default",
    out: Annotated[Path | None, typer.Option(help="profile folder (default: runs/profiles/<device>-<space>)")] = None,
    cache: Annotated[Path | None, typer.Option(help="converted-model cache (default: ~/.cache/hwnas/models)")] = None,
    networks: Annotated[int, typer.Option(min=0, help="whole sampled networks to measure too")] = 40,
    seed: Annotated[int, typer.Option(help="seed of the sampled networks")] = 0,
    zoo_networks: ZooNetworksOption = 0,
    workers: Annotated[int, typer.Option(min=1, help="conversion processes")] = max(1, len(os.sched_getaffinity(0))),
    cv_threshold: Annotated[float, typer.Option(min=0.0, help="re-measure attempts noisier than this CV")] = 0.15,
    max_attempts: Annotated[int, typer.Option(min=1, help="attempts per layer at most")] = 3,
    allow_mismatch: AllowMismatch = False,
    layers: Annotated[
        int, typer.Option("--layers", min=0, help="also measure N sampled layers beyond the space (for the layer models)")
    ] = 0,
    zoo_layers: ZooLayersOption = 0,
    layer_seed: Annotated[int, typer.Option(help="seed of the sampled layers (more --layers later extends the same list)")] = 0,
    space_layers: Annotated[bool, typer.Option(help="measure the space's own layers (--no-space-layers: sampled only)")] = True,
    reuse: Annotated[
        bool, typer.Option(help="take layers already timed on this CPU from earlier tables if the drift check holds")
    ] = True,
    as_json: JsonFlag = False,
) -> None:
    """Measure every layer of a search space (and sampled whole networks) on a device -> latency table."""
    from hwnas.devices import DeviceSpec, make_backend
    from hwnas.latency_tables.drift import DEFAULT_REFERENCES
    from hwnas.latency_tables.profiler import Profiler, ProfileSettings
    from hwnas.latency_tables.reuse import describe, find_lenders, profile_reusing
    from hwnas.latency_tables.sampling import draw_zoo_networks
    from hwnas.presets import resolve_space

    device = DeviceSpec.from_toml(spec)
    search_space = resolve_space(space)
    out = out or profiles_dir() / f"{device.name}-{search_space.name}"
    check_writable_folder(out)
    settings = ProfileSettings(networks, seed, workers, cv_threshold, max_attempts, allow_mismatch)
    space_keys = search_space.enumerate_op_keys() if space_layers else []
    keys = _layers_to_measure(space_keys, layers, zoo_layers, layer_seed)
    backend = make_backend(device)
    backend.require_available()

    def run_profile(measured: list[Any]) -> Any:
        profiler = Profiler(
            device, search_space, out, cache or model_cache(), settings, backend=backend, layers=measured,
            references=DEFAULT_REFERENCES, zoo=draw_zoo_networks(zoo_networks, seed),
        )  # fmt: skip
        return profiler.run(progress=not as_json)

    lenders = find_lenders(device.name, backend.fingerprint(), keys, profiles_dir(), out / "table.json") if reuse else []
    report, lent = profile_reusing(run_profile, keys, lenders, out / "table.json")
    sampled = len(keys) - len(space_keys)
    if as_json:
        lenders = [{k: v for k, v in record.items() if k != "keys"} for record in lent.records]
        print_json(_summary(report, out, sampled) | {"ops": len(keys), "layers_lent": len(lent.entries), "lenders": lenders})
        return
    for record in lent.records:
        console.print(esc(describe(record)))
    _show(report, search_space.name, device.name, out, sampled, cv_threshold, max_attempts)


def _layers_to_measure(space_keys: list[Any], layers: int, zoo_layers: int, layer_seed: int) -> list[Any]:
    """The space's layers, then the sampled and zoo layers (in that order, each once)."""
    from hwnas.latency_tables.sampling import sample_layers, sample_zoo_layers

    keys = list(dict.fromkeys(space_keys + sample_layers(layers, layer_seed) + sample_zoo_layers(zoo_layers, layer_seed)))
    if not keys:
        raise UserError("nothing to measure: --no-space-layers needs --layers N or --zoo-layers N")
    return keys


def _summary(report: Any, out: Path, layers: int) -> dict[str, Any]:
    return {
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
        "sampled_layers": layers,
        "drift": report.drift.to_json() if report.drift else None,
    }


def _show(report: Any, space: str, device: str, out: Path, layers: int, cv_threshold: float, max_attempts: int) -> None:
    console.print(
        f"{report.ops} layers ({layers} sampled beyond the space) and {report.networks} networks of "
        f"{esc(repr(space))} on {esc(device)}: "
        f"measured {report.measured_now} now ({report.attempts_now} attempts) in {report.wall_s:.1f} s "
        f"(converting {report.convert_s:.1f} s, measuring {report.measure_s:.1f} s)"
    )
    if report.drift is not None:
        console.print(
            ("[yellow]" if report.drift.warn else "") + esc(report.drift.message()) + ("[/]" if report.drift.warn else "")
        )
    if report.noisy:
        console.print(f"[yellow]{len(report.noisy)} layers stayed above CV {cv_threshold} after {max_attempts} attempts[/]")
    console.print(f"table: {esc(out / 'table.json')}")
