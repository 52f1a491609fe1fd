"""``hwnas export``: deployable files, verified against PyTorch and re-measured on devices."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from hwnas.cli.common import JsonFlag, app, console, drift_checks, esc, log, print_json
from hwnas.errors import UserError
from hwnas.exporters.formats import FILE_NAMES
from hwnas.fileio import check_writable_folder


@app.command("export")
def export_command(
    model: Annotated[str, typer.Argument(help="run folder, architecture string, or torchvision:NAME")],
    formats: Annotated[
        str | None,
        typer.Option(
            "--format",
            help=f"comma-separated: {', '.join(FILE_NAMES)} (default: each --device's format, onnx and tflite)",
        ),
    ] = None,
    device: Annotated[list[str] | None, typer.Option("--device", help="device spec to re-measure on (repeatable)")] = None,
    out: Annotated[Path, typer.Option(help="output folder")] = Path("export"),
    checkpoint: Annotated[Path | None, typer.Option(help="weights (state dict) for an architecture string")] = None,
    data: Annotated[str | None, typer.Option("--data", help="images for verification and int8 calibration")] = None,
    images: Annotated[int, typer.Option(min=1, help="validation images to verify on")] = 500,
    calibration: Annotated[int, typer.Option(min=1, help="training images for int8 calibration")] = 200,
    as_json: JsonFlag = False,
) -> None:
    """Export MODEL, verify every file against PyTorch, re-measure it, and write a model card."""
    unknown = [name for name in (formats or "").split(",") if formats is not None and name not in FILE_NAMES]
    if unknown:
        raise UserError(f"unknown export format {unknown[0]!r} in --format; choose from {', '.join(FILE_NAMES)}")
    check_writable_folder(out)
    from hwnas.devices import DeviceSpec, formats_to_export
    from hwnas.export_model import build_request, resolve_model
    from hwnas.exporters import export_all

    specs = [DeviceSpec.from_toml(spec) for spec in device or []]
    chosen = formats.split(",") if formats is not None else formats_to_export(specs)
    checks = drift_checks(specs, quiet=as_json)
    resolved = resolve_model(model, checkpoint)
    request = build_request(resolved, data, images, calibration)
    card = export_all(request, chosen, out, specs, on_step=None if as_json else log)
    if as_json:  # the drift checks beside the card: its latencies are today's, and the ratio says how today runs
        print_json(card | {"drift": [check.to_json() | {"device": spec.name} for spec, check in checks]})
    else:
        show_exports(card, out)
    failed = [item for item in card["exports"] if not item["verification"]["passed"]]
    if failed:
        reasons = "; ".join(f"{i['format']}: {i['verification']['failure']}" for i in failed)
        raise UserError(f"verification failed (files moved to {out / 'rejected'}): {reasons}")


def show_exports(card: dict[str, Any], out: Path) -> None:
    """The verification table a person reads: one row per exported file."""
    table = Table("format", "file", "MB", "max |diff|", "top-1 agree", "accuracy", "latency (median ms)")
    for item in card["exports"]:
        check = item["verification"]
        latency = (
            ", ".join(
                f"{m['device']}: {m['median_ms']:.3f}" if "median_ms" in m else f"{m['device']}: {m['error']}"
                for m in item["latency"]
            )
            or "-"
        )
        accuracy = "-" if check["file_accuracy"] is None else f"{check['file_accuracy']:.4f}"
        table.add_row(
            item["format"],
            esc(item["file"]),
            f"{item['bytes'] / 1e6:.2f}",
            f"{check['max_abs_diff']:.2e}",
            f"{check['top1_agreement']:.4f}",
            accuracy,
            esc(latency),
        )
    console.print(table)
    console.print(f"model card: {esc(out / 'model_card.md')}")
