"""``hwnas supernet train|eval``: train a weight-sharing supernet, and read a subnetwork's accuracy off it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from hwnas.arch import Arch
from hwnas.cli.common import (
    DataSource,
    Epochs,
    JsonFlag,
    Overrides,
    RecipeFile,
    Seed,
    SpaceOption,
    Threads,
    build_recipe,
    console,
    esc,
    group,
    print_json,
)
from hwnas.errors import UserError
from hwnas.fileio import check_writable_folder
from hwnas.presets import resolve_space

if TYPE_CHECKING:
    from hwnas.supernet import Supernet  # torch: imported by the commands that need it, not to answer --help

supernet_app = group("supernet", "Train a weight-sharing supernet and evaluate its subnetworks with inherited weights.")

OutFolder = Annotated[
    Path, typer.Option("--out", help="folder for supernet.pt, supernet.json and the per-epoch checkpoint; rerun to resume")
]
Subnets = Annotated[
    int, typer.Option("--subnets", min=0, max=16, help="random subnetworks per step besides the largest and smallest")
]
Fresh = Annotated[bool, typer.Option("--fresh", help="start training over instead of resuming the checkpoint in --out")]
ArchOption = Annotated[
    str, typer.Option("--arch", help="architecture string of the supernet's space (hwnas space sample), or largest / smallest")
]


@supernet_app.command("train")
def supernet_train(
    out: OutFolder,
    space: SpaceOption = "default",
    data: DataSource = None,
    epochs: Epochs = None,
    recipe_file: RecipeFile = None,
    overrides: Overrides = None,
    seed: Seed = 0,
    subnets: Subnets = 2,
    threads: Threads = None,
    fresh: Fresh = False,
    as_json: JsonFlag = False,
) -> None:
    """Train a supernet of a space from scratch (sandwich rule, in-place distillation) and keep it in --out.

    Every finished epoch is kept in --out; re-running the same command resumes from the last one, --fresh starts over.
    """
    search_space = resolve_space(space)
    recipe = build_recipe(recipe_file, overrides, epochs)
    check_writable_folder(out)  # nothing is made before the data loads: a mistake leaves no folder behind
    from hwnas.cli.train import _data_for
    from hwnas.supernet.store import data_description, save_supernet
    from hwnas.supernet.train import check_recipe, train_supernet
    from hwnas.trainer import remove_checkpoint

    check_recipe(recipe, subnets)
    splits = _data_for(data, search_space)
    if fresh:
        remove_checkpoint(out)
    log = (lambda message: typer.echo(message, err=True)) if as_json else (lambda message: console.print(esc(message)))
    trained = train_supernet(
        search_space,
        recipe,
        splits,
        seed=seed,
        random_subnets=subnets,
        threads=threads,
        checkpoint=out,
        progress=not as_json,
        log=log,
    )
    info = save_supernet(
        out,
        trained.supernet,
        data=data_description(data, splits),
        recipe=recipe,
        seed=seed,
        method=trained.method,
        curve=trained.curve,
        wall_time_s=trained.wall_time_s,
    )
    if as_json:
        print_json(info | {"out": str(out)})
        return
    last = trained.curve[-1]
    console.print(
        f"supernet of {esc(search_space.name)} trained {len(trained.curve)} epoch(s) on {esc(splits.name)} in "
        f"{trained.wall_time_s:.1f} s: validation accuracy largest {last['largest_val_accuracy']:.4f}, smallest "
        f"{last['smallest_val_accuracy']:.4f} (inherited weights); saved in {esc(out)}"
    )


@supernet_app.command("eval")
def supernet_eval(
    folder: Annotated[Path, typer.Argument(help="a folder hwnas supernet train wrote")],
    arch: ArchOption,
    data: Annotated[str | None, typer.Option("--data", help="images to evaluate on (default: those it was trained on)")] = None,
    threads: Threads = None,
    as_json: JsonFlag = False,
) -> None:
    """Validation accuracy of one subnetwork with the weights it inherits (BatchNorm re-estimated, no training)."""
    parsed = None if arch in ("largest", "smallest") else Arch.parse(arch)
    from hwnas.cli.train import _data_for
    from hwnas.supernet.store import inherited_accuracy, load_supernet

    supernet, info = load_supernet(folder)
    chosen = _chosen_arch(supernet, arch, parsed)
    recorded = info.get("data")
    splits = _data_for(data or (recorded.get("source") if isinstance(recorded, dict) else None), supernet.space)
    if threads:
        import torch

        torch.set_num_threads(threads)
    started = time.perf_counter()
    accuracy = inherited_accuracy(supernet, chosen, splits)
    result = {
        "arch": chosen.format(),
        "val_accuracy": accuracy,
        "dataset": splits.name,
        "val_images": len(splits.val),
        "seconds": time.perf_counter() - started,
        "supernet": str(folder),
    }
    if as_json:
        print_json(result)
        return
    console.print(f"[bold]{esc(result['arch'])}[/]")
    console.print(
        f"inherited validation accuracy {accuracy:.4f} on {esc(splits.name)} ({result['val_images']} images, BatchNorm "
        f"re-estimated) in {result['seconds']:.1f} s"
    )


def _chosen_arch(supernet: Supernet, text: str, parsed: Arch | None) -> Arch:
    """``--arch``: the largest or smallest subnetwork, or a string that must be of the supernet's space."""
    if parsed is None:
        return supernet.largest_arch() if text == "largest" else supernet.smallest_arch()
    space = supernet.space
    if parsed.space != space.name:
        raise UserError(f"architecture is of space {parsed.space!r}, the supernet of {space.name!r}")
    return space.validate(parsed)
