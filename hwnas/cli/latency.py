"""``hwnas latency MODEL``: how fast is this network on that device? Predicted, and measured when it is here."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from hwnas.cli.common import AllowMismatch, JsonFlag, app, console, esc, print_json
from hwnas.errors import UserError


@app.command("latency")
def latency_command(
    model: Annotated[
        str,
        typer.Argument(
            help="architecture string, torchvision:NAME[?width=W&resolution=R], run folder, or checkpoint with --arch"
        ),
    ],
    device: Annotated[str | None, typer.Option("--device", help="device spec (its table is looked up)")] = None,
    table: Annotated[Path | None, typer.Option("--table", help="the device's latency table (table.json)")] = None,
    checkpoint: Annotated[Path | None, typer.Option(help="weights (state dict) for an architecture string")] = None,
    measure: Annotated[bool, typer.Option("--measure", help="also export the model and time it on the device")] = False,
    rescale: Annotated[bool, typer.Option("--rescale", help="multiply the prediction by the device's drift ratio")] = False,
    layers: Annotated[bool, typer.Option(help="print the per-layer breakdown")] = True,
    allow_mismatch: AllowMismatch = False,
    as_json: JsonFlag = False,
) -> None:
    """Predicted latency of MODEL on a profiled device (table entries, layer models for the rest), and measured."""
    if device is None and table is None:
        raise UserError("give --device SPEC or --table TABLE (or both)")
    from hwnas.devices import DeviceSpec
    from hwnas.export_model import resolve_model
    from hwnas.latency_tables.drift import device_table
    from hwnas.latency_tables.sampling import OVERHEAD_KEY
    from hwnas.latency_tables.table import LatencyTable
    from hwnas.predictors.network_latency import network_latency

    spec = DeviceSpec.from_toml(device) if device else None
    table_path = table or device_table(spec)  # type: ignore[arg-type]
    lut = LatencyTable.load(table_path)
    if spec is None and measure and lut.kind == "measured":
        spec = DeviceSpec.from_json(lut.device)  # a measured table names the device to time on
    backend = _checked_backend(spec, lut, measure, allow_mismatch)
    resolved = resolve_model(model, checkpoint)
    shape = (1, resolved.channels, resolved.resolution, resolved.resolution)
    drift, measured = (
        _measure_with_drift(table_path, backend, lut, resolved.module, shape) if measure and backend is not None else (None, None)
    )
    scale, scale_note = _scale(lut, drift, rescale)
    predicted = network_latency(resolved.module, shape, lut, scale=scale, family=_family(model, resolved))
    today_ms, today_interval = _today(predicted, drift, scale)
    report = {
        "model": model,
        "contention": _contention(drift, measured),
        "input_shape": list(shape),
        "table": str(table_path),
        "device": lut.device.get("name"),
        "predicted": predicted.to_json(),
        "rescale": scale_note,
        "drift": drift.to_json() if drift else None,
        "measured": measured,
        "predicted_today_ms": today_ms,
        "predicted_today_interval_ms": today_interval,
        "predicted_over_measured": _ratio(today_ms if today_ms is not None else predicted.total_ms, measured),
        "table_has_sampled_layers": OVERHEAD_KEY in lut.entries,
    }
    if as_json:
        print_json(report)
    else:
        _show(report, predicted, layers)


def _today(predicted: Any, drift: Any, scale: float) -> tuple[float | None, list[float] | None]:
    """The prediction and its interval in today's time: table time x the drift ratio (``None`` without a drift check)."""
    if drift is None:
        return None, None
    today = drift.ratio / scale
    interval = None if predicted.low_ms is None else [predicted.low_ms * today, predicted.high_ms * today]
    return predicted.total_ms * today, interval


def _family(model: str, resolved: Any) -> str | None:
    """The torchvision model name, whose family's correction the table may hold (``--zoo-networks``)."""
    return resolved.info.get("name") if model.startswith("torchvision:") else None


def _checked_backend(spec: Any, lut: Any, measure: bool, allow_mismatch: bool) -> Any:
    """The device's backend when it can run here; a table of another device is refused in one line."""
    from hwnas.devices import make_backend

    if spec is None:
        if measure:
            raise UserError("--measure needs --device SPEC (an imported table names no runtime here)")
        return None
    backend = make_backend(spec)
    if measure:
        backend.require_available()
    if backend.unavailable_reason() is None:
        lut.check(backend.fingerprint(), override=allow_mismatch)
        return backend
    if lut.device.get("name") != spec.name and not allow_mismatch:
        raise UserError(f"latency table is of device {lut.device.get('name')!r}, not {spec.name!r}; pass --allow-mismatch")
    return None


def _measure_with_drift(
    table_path: Path, backend: Any, lut: Any, module: Any, shape: tuple[int, int, int, int]
) -> tuple[Any, dict[str, Any]]:
    """Export MODEL to the device's format and time it in the same rounds as the drift check's networks (the table's
    reference networks; a table without them, as the shipped ones: a few of its own whole networks), as ``hwnas run``
    and ``hwnas search`` check drift first. Timed in the same rounds, a busy stretch of a shared machine slows the
    model and the ratio alike instead of reading as a predictor 2x off. The ratio is recorded in the table (not a
    shipped one)."""
    import torch

    from hwnas.exporters import get_exporter
    from hwnas.latency_tables.drift import DRIFT_NETWORKS, drift_first_with, table_space
    from hwnas.paths import model_cache

    exporter = get_exporter(backend.model_format)
    reason = exporter.unavailable_reason()
    if reason is not None:
        raise UserError(f"cannot export to {backend.model_format} here: {reason}")
    with tempfile.TemporaryDirectory(prefix="hwnas-latency-") as folder:
        path = exporter.export(module.eval(), torch.zeros(shape), Path(folder) / f"model{exporter.suffix}")
        check, measured = drift_first_with(
            table_path,
            backend,
            model_cache(),
            "latency --measure",
            {"model": path},
            space=table_space(lut),
            networks=DRIFT_NETWORKS,
        )
    return check, {"device": backend.spec.name, **measured["model"].summary()}


def _contention(drift: Any, measured: dict[str, Any] | None) -> str | None:
    """:func:`~hwnas.latency_tables.drift.contention_warning` for a measured model, with the machine's load read now."""
    from hwnas.devices.measurement import other_runnable
    from hwnas.latency_tables.drift import contention_warning
    from hwnas.pipeline.context import cores

    if drift is None or measured is None:
        return None
    return contention_warning(drift, measured["median_ms"], other_runnable(), cores())


def _ratio(predicted_ms: float, measured: dict[str, Any] | None) -> float | None:
    return None if measured is None else predicted_ms / measured["median_ms"]


def _scale(lut: Any, drift: Any, rescale: bool) -> tuple[float, str]:
    from hwnas.latency_tables.drift import latest_ratio

    if not rescale:
        return 1.0, "not rescaled"
    if drift is not None:
        return drift.ratio, f"x{drift.ratio:.3f} (drift measured now)"
    ratio = latest_ratio(lut)
    if ratio is None:
        return 1.0, "not rescaled: the table has no drift record (measure with --measure, or re-profile)"
    return ratio, f"x{ratio:.3f} (last recorded drift, {lut.drift[-1].get('measured_at', '?')})"


def _show(report: dict[str, Any], predicted: Any, layers: bool) -> None:
    if layers:
        rows = Table("#", "layer", "ms", "from")
        for index, layer in enumerate(predicted.layers, start=1):
            source = f"{layer.source} ({layer.how})" if layer.how else layer.source
            rows.add_row(str(index), esc(layer.key.describe()), f"{layer.ms:.4f}", esc(source))
        console.print(rows)
    total = len(predicted.layers)
    frame = "" if predicted.scale != 1.0 else " in table time"
    console.print(
        f"[bold]{esc(report['model'])}[/] {report['input_shape'][2]}px on {esc(report['device'])}: "
        f"predicted [bold]{predicted.total_ms:.3f} ms[/]{frame} ({predicted.looked_up}/{total} layers looked up in the table, "
        f"{predicted.modelled}/{total} modelled; per-call overhead {predicted.call_overhead_ms:.4f} ms counted once; "
        f"{esc(report['rescale'])})"
    )
    if predicted.family_networks:
        console.print(
            f"whole-network correction x{predicted.family_factor:.3f}: what {predicted.family_networks} networks of this "
            "family, measured whole at other widths and resolutions, took beyond their layers (included above)"
        )
    if predicted.low_ms is not None:
        console.print(
            f"80% interval {predicted.low_ms:.3f}-{predicted.high_ms:.3f} ms{frame} (the modelled layers' held-out errors, "
            "taken to go together)"
        )
    if predicted.modelled and not report["table_has_sampled_layers"]:
        console.print(
            f"[yellow]the table holds no sampled layers (hwnas profile SPEC --layers N): the {predicted.modelled} modelled "
            "layers are extrapolated from the space's own layers only[/]"
        )
    if report["drift"]:
        check = report["drift"]
        colour = "yellow" if check["warn"] else "green"
        console.print(f"[{colour}]drift check: {esc(check['how'])} now / in table = {check['ratio']:.3f}[/]")
        console.print(
            f"predicted today [bold]{report['predicted_today_ms']:.3f} ms[/] (the prediction in table time x the drift ratio"
            + (
                ", 80% interval {:.3f}-{:.3f} ms)".format(*report["predicted_today_interval_ms"])
                if report["predicted_today_interval_ms"]
                else ")"
            )
        )
    measured = report["measured"]
    if measured:
        frame = "predicted today" if report["predicted_today_ms"] is not None else "predicted (table time)"
        console.print(
            f"measured {measured['median_ms']:.3f} ms (median of {measured['n']}, CV {measured['cv']:.1%}); "
            f"{frame} / measured = {report['predicted_over_measured']:.3f}"
        )
    if report["contention"]:
        console.print(f"[yellow]{esc(report['contention'])}[/]")
