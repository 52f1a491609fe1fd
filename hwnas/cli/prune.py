"""``hwnas prune``: AMC channel pruning under a FLOPs, parameter or latency budget, measured against baselines."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from hwnas.cli.common import DataSource, JsonFlag, Seed, Threads, app, console, esc, print_json, quiet_or_log
from hwnas.errors import UserError
from hwnas.fileio import check_writable_folder
from hwnas.paths import runs_dir

Distill = Annotated[
    float, typer.Option(min=0.0, max=1.0, help="weight of the unpruned model's soft labels in fine-tuning (0: off)")
]
DistillTemperature = Annotated[
    float, typer.Option("--distill-temperature", min=1.0, max=20.0, help="temperature of those soft labels")
]


@app.command("prune")
def prune_command(
    model: Annotated[str, typer.Argument(help="run folder, architecture string (with --checkpoint), or torchvision:NAME")],
    budget: Annotated[str, typer.Option("--budget", help="flops=RATIO, params=RATIO or latency-ms=MS")],
    device: Annotated[
        str | None, typer.Option("--device", help="device spec: latency budget and prediction; measured first")
    ] = None,
    table_file: Annotated[
        Path | None, typer.Option("--table", help="the device's latency table (default: found for --device)")
    ] = None,
    episodes: Annotated[int, typer.Option(min=1, help="AMC search episodes")] = 100,
    finetune_epochs: Annotated[
        int, typer.Option("--finetune-epochs", min=1, help="fine-tuning epochs for every pruned model")
    ] = 1,
    finetune_lr: Annotated[float, typer.Option("--finetune-lr", help="fine-tuning learning rate (SGD, cosine)")] = 0.02,
    distill: Distill = 0.0,
    distill_temperature: DistillTemperature = 4.0,
    out: Annotated[Path | None, typer.Option(help="run folder (default: runs/prune-<time stamp>); rerun to resume")] = None,
    checkpoint: Annotated[
        Path | None, typer.Option(help="weights (state dict) for an architecture string or torchvision model")
    ] = None,
    data: DataSource = None,
    resolution: Annotated[int | None, typer.Option(min=8, help="input size of a torchvision model (default 64)")] = None,
    base_epochs: Annotated[int, typer.Option("--base-epochs", min=1, help="epochs to train torchvision:NAME here first")] = 1,
    reward: Annotated[str, typer.Option(help="error, or error-log-flops (AMC's accuracy-guaranteed reward)")] = "error",
    importance: Annotated[str, typer.Option(help="channel importance: l1 or l2 norm")] = "l1",
    round_to: Annotated[int, typer.Option("--round-to", min=1, help="kept channels are multiples of this")] = 8,
    reconstruct: Annotated[bool, typer.Option(help="least-squares refit of the layer after each pruned one")] = True,
    baselines: Annotated[bool, typer.Option(help="also prune uniformly and by global magnitude at the same budget")] = True,
    heldout: Annotated[int, typer.Option(min=10, help="validation images the reward is measured on")] = 1000,
    seed: Seed = 0,
    threads: Threads = None,
    as_json: JsonFlag = False,
) -> None:
    """Prune MODEL with AMC (a DDPG agent picks each layer's kept channels), fine-tune, and measure it and the baselines."""
    parsed = _budget(budget, reward, importance, device)
    if out is not None:
        check_writable_folder(out)
    from hwnas.pruning.api import make_prune_config, prune

    table, devices = _table_and_devices(device, table_file, required=parsed.kind == "latency-ms")
    out = out or runs_dir() / time.strftime("prune-%Y%m%d-%H%M%S")
    log = quiet_or_log(as_json)
    config = make_prune_config(
        parsed, episodes=episodes, finetune_epochs=finetune_epochs, finetune_lr=finetune_lr, distill=distill,
        distill_temperature=distill_temperature, baselines=baselines,
        devices=devices, heldout=heldout, seed=seed, reward=reward, norm=importance, round_to=round_to, reconstruct=reconstruct,
    )  # fmt: skip
    splits, base = _base(model, checkpoint, data, resolution, base_epochs, seed, threads, log, quiet=as_json)
    with _progress(as_json) as bar:
        task = bar.add_task("AMC search", total=episodes, best=float("nan"), use=float("nan"))

        def on_episode(progress: Any) -> None:
            reward, use = progress.best.reward, progress.budget_use
            bar.update(task, completed=progress.episode, total=progress.episodes, best=reward, use=use)

        report = prune(base, splits, config, out, data_source=data, table=table, log=log, on_episode=on_episode)
    if as_json:
        print_json(report)
    else:
        show_report(report, out)


def _base(
    model: str,
    checkpoint: Path | None,
    data: str | None,
    resolution: int | None,
    epochs: int,
    seed: int,
    threads: int | None,
    log: Any,
    quiet: bool,
) -> tuple[Any, Any]:
    """The images and the network to prune (a torchvision model is trained here first, ``epochs``)."""
    import torch

    from hwnas.data import load_data
    from hwnas.pruning import load_base

    if threads:
        torch.set_num_threads(threads)
    splits = load_data(data)
    torch.manual_seed(seed)
    base = load_base(
        model, checkpoint, splits, resolution=resolution, train_epochs=epochs, seed=seed, log=log, progress=not quiet
    )
    return splits, base


def _table_and_devices(device: str | None, table_file: Path | None, required: bool) -> tuple[Any, tuple[str, ...]]:
    """The latency table (``--device``'s; without one, host TFLite's when it fits this CPU, for the predicted column)
    and the devices the pruned models are timed on (``--device`` first, then this CPU's runtimes)."""
    from hwnas.devices import DeviceSpec
    from hwnas.pruning.api import HOST_DEVICES, find_table

    spec = DeviceSpec.from_toml(device) if device else None
    table = find_table(spec or DeviceSpec.from_toml(HOST_DEVICES[1]), table_file, required=required)
    others = tuple(d for d in HOST_DEVICES if spec is None or DeviceSpec.from_toml(d).name != spec.name)
    return table, ((device,) if device else ()) + others


def _budget(budget: str, reward: str, importance: str, device: str | None) -> Any:
    """The parsed budget, after the options that go with it are checked (one line each)."""
    from hwnas.pruning.budget import Budget

    parsed = Budget.parse(budget)
    if reward not in ("error", "error-log-flops"):
        raise UserError(f"--reward must be error or error-log-flops, got {esc(reward)!r}")
    if importance not in ("l1", "l2"):
        raise UserError(f"--importance must be l1 or l2, got {importance!r}")
    if parsed.kind == "latency-ms" and device is None:
        raise UserError("a latency budget needs --device SPEC (a device with a latency table, e.g. host-tflite)")
    return parsed


def _progress(disabled: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("best reward {task.fields[best]:.4f}, budget use {task.fields[use]:.1%}"),
        TimeElapsedColumn(),
        console=console,
        disable=disabled,
    )


def show_report(report: dict[str, Any], out: Path) -> None:
    """One row per model: accuracy, FLOPs, parameters, predicted and measured latency, speedup over unpruned."""
    models = report["models"]
    devices = sorted({d for entry in models.values() for d in entry["measured"]["latency_ms"]})
    table = Table("model", "test acc", "MFLOPs", "params (M)", "predicted ms", *[f"{d} ms (speedup)" for d in devices])
    base = models["unpruned"]["measured"]["latency_ms"]
    for name, entry in models.items():
        predicted = entry.get("predicted_ms")
        cells = []
        for d in devices:
            ms = entry["measured"]["latency_ms"].get(d)
            cells.append("-" if ms is None else f"{ms:.4f} ({base[d] / ms:.2f}x)" if d in base else f"{ms:.4f}")
        table.add_row(
            name,
            f"{entry['test_accuracy']:.4f}",
            f"{entry['flops'] / 1e6:.2f}",
            f"{entry['params'] / 1e6:.3f}",
            "-" if not predicted else f"{predicted['ms']:.4f}",
            *cells,
        )
    console.print(table)
    for retry in report["latency_retries"]:
        console.print(
            f"[yellow]amc measured {retry['measured_ms']:.4f} ms, over the budget: "
            f"searched again at {retry['tightened_to_ms']:.4f} ms[/]"
        )
    best = report["searches"][-1]["best"]
    console.print(
        f"AMC: best of {len(report['searches'][-1]['episodes'])} episodes was episode {best['episode'] + 1} "
        f"(reward {best['reward']:.4f}); "
        f"budget {esc(report['budget'])}; run folders in {esc(out)} (hwnas export {esc(out / 'amc')} ...)"
    )
