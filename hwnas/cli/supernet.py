"""``hwnas supernet train|eval``: train a weight-sharing supernet, and read a subnetwork's accuracy off it.

``supernet train`` makes the supernet for the data: a preset space whose input channels or classes are not the
data's is derived for it (:meth:`~hwnas.space.SearchSpace.for_data`: ``default-3ch-4cls``, its stem and classifier
made for the data) and that space is what ``supernet.json`` records, so eval, search and specialize use it; a space
file is the user's explicit choice, and one that does not fit the data is refused in one line. Under ``torchrun``
(``WORLD_SIZE`` > 1) every process runs this command and they train one supernet data-parallel
(:mod:`hwnas.supernet.train`); rank 0 alone prints, keeps the checkpoint and writes the folder.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from hwnas.arch import Arch
from hwnas.cli.common import (
    Accelerator,
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
from hwnas.presets import SPACES, resolve_space
from hwnas.space import SearchSpace, data_space_name

if TYPE_CHECKING:
    from hwnas.accelerator import Distributed
    from hwnas.data import ImageSplits
    from hwnas.recipe import Recipe
    from hwnas.supernet import Supernet  # torch: imported by the commands that need it, not to answer --help
    from hwnas.supernet.train import SupernetTraining

supernet_app = group("supernet", "Train a weight-sharing supernet and evaluate its subnetworks with inherited weights.")

OutFolder = Annotated[
    Path, typer.Option("--out", help="folder for supernet.pt, supernet.json and the per-epoch checkpoint; rerun to resume")
]
Subnets = Annotated[
    int, typer.Option("--subnets", min=0, max=16, help="random subnetworks per step besides the largest and smallest")
]
Method = Annotated[
    str,
    typer.Option(
        "--method",
        help="sandwich (BigNAS: largest, smallest and random subnetworks every step) or progressive (Once-for-All's "
        "progressive shrinking: the largest first, then kernel, depth and the rest elastic in turn)",
    ),
]
KernelTransform = Annotated[
    bool,
    typer.Option(
        "--kernel-transform",
        help="smaller kernels through Once-for-All's learned transformation of the larger kernel's centre, not the centre",
    ),
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
    method: Method = "sandwich",
    kernel_transform: KernelTransform = False,
    threads: Threads = None,
    fresh: Fresh = False,
    accelerator: Accelerator = "auto",
    as_json: JsonFlag = False,
) -> None:
    """Train a supernet of a space from scratch (sandwich rule or progressive shrinking, in-place distillation) into --out.

    Every finished epoch is kept in --out; re-running the same command resumes from the last one, --fresh starts over.
    A preset is made for the data's channels and classes. Under torchrun (e.g. torchrun --nproc_per_node=2 -m hwnas
    supernet train ...) the processes train data-parallel, --set batch_size being the batch of all of them together.
    """
    search_space = resolve_space(space)
    recipe = build_recipe(recipe_file, overrides, epochs)
    check_writable_folder(out)  # nothing is made before the data loads: a mistake leaves no folder behind
    from hwnas.accelerator import Distributed
    from hwnas.data import load_data
    from hwnas.supernet.store import data_description, save_supernet
    from hwnas.supernet.train import check_inputs, check_recipe

    check_recipe(recipe, subnets, method)
    distributed = Distributed.from_environment()
    main = distributed is None or distributed.is_main
    say = (lambda message: typer.echo(message, err=True)) if as_json else (lambda message: console.print(esc(message)))
    log = say if main else (lambda message: None)
    splits = load_data(data)
    search_space = _space_for_data(space, search_space, splits, log)
    check_inputs(search_space, recipe, splits, subnets, distributed.world_size if distributed is not None else 1, method)
    run = _Training(search_space, recipe, splits, seed, subnets, threads, out, accelerator, distributed, method, kernel_transform)
    trained = run.train(fresh=fresh, progress=not as_json and main, log=log)
    if not main:
        return
    info = save_supernet(out, trained.supernet, data=data_description(data, splits), recipe=recipe, seed=seed,
                         method=trained.method, curve=trained.curve, wall_time_s=trained.wall_time_s)  # fmt: skip
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
    folder: Annotated[Path, typer.Argument(help="a folder hwnas supernet train wrote, or 'default' (the shipped one)")],
    arch: ArchOption,
    data: Annotated[str | None, typer.Option("--data", help="images to evaluate on (default: those it was trained on)")] = None,
    threads: Threads = None,
    as_json: JsonFlag = False,
) -> None:
    """Validation accuracy of one subnetwork with the weights it inherits (BatchNorm re-estimated, no training)."""
    parsed = None if arch in ("largest", "smallest") else Arch.parse(arch)
    from hwnas.cli.train import _data_for
    from hwnas.supernet.store import inherited_accuracy, load_supernet
    from hwnas.supernets import resolve_supernet

    folder = resolve_supernet(folder, given_as="supernet")
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


@dataclasses.dataclass(frozen=True)
class _Training:
    """What ``supernet train`` trains, checked: run here, or in every process of a torchrun launch."""

    space: SearchSpace
    recipe: Recipe
    splits: ImageSplits
    seed: int
    subnets: int
    threads: int | None
    out: Path
    accelerator: str
    distributed: Distributed | None
    method: str = "sandwich"
    kernel_transform: bool = False

    def train(self, fresh: bool, progress: bool, log: Callable[[str], None]) -> SupernetTraining:
        """Train (or resume) in ``out``; ``fresh`` removes its checkpoint first (rank 0, before any process reads it)."""
        from hwnas.accelerator import distributed_session, resolve_device
        from hwnas.supernet.train import train_supernet
        from hwnas.trainer import remove_checkpoint

        distributed = self.distributed
        device = resolve_device(self.accelerator, distributed.local_rank if distributed is not None else None)
        with distributed_session(distributed, device):
            if fresh and (distributed is None or distributed.is_main):
                remove_checkpoint(self.out)
            if distributed is not None:
                distributed.barrier()  # no process reads a checkpoint --fresh is about to remove
            return train_supernet(
                self.space,
                self.recipe,
                self.splits,
                seed=self.seed,
                random_subnets=self.subnets,
                threads=self.threads,
                checkpoint=self.out,
                progress=progress,
                log=log,
                accelerator=self.accelerator,
                distributed=distributed,
                method=self.method,
                kernel_transform=self.kernel_transform,
            )


def _space_for_data(requested: str, space: SearchSpace, splits: ImageSplits, log: Callable[[str], None]) -> SearchSpace:
    """The space the supernet is made of: a preset made for the data (said in one line), a space file as it is.

    A space file names its ``in_channels`` and ``num_classes`` on purpose: data of another shape is refused in one line.
    """
    shape = (splits.channels, splits.num_classes)
    if shape == (space.in_channels, space.num_classes):
        return space
    if not _is_preset(requested):
        raise UserError(
            f"data {splits.name!r} has {splits.channels} channel(s) and {splits.num_classes} classes, space file "
            f"{requested} sets in_channels {space.in_channels} and num_classes {space.num_classes}: set them to "
            f"{splits.channels} and {splits.num_classes} in the file, or give a preset (hwnas space list), "
            "which is made for the data"
        )
    derived = space.for_data(*shape)
    log(
        f"space {space.name} is for {space.in_channels}-channel images of {space.num_classes} classes, data "
        f"{splits.name} has {splits.channels} and {splits.num_classes}: the supernet is of {derived.name} "
        "(the same choices; stem and classifier made for the data)"
    )
    return derived


def _is_preset(requested: str) -> bool:
    """``--space`` names a preset (as :func:`hwnas.presets.resolve_space` reads it), not a space file."""
    return requested in SPACES or not Path(requested).suffix


def _chosen_arch(supernet: Supernet, text: str, parsed: Arch | None) -> Arch:
    """``--arch``: the largest or smallest subnetwork, or a string of the supernet's space.

    A string of the preset a data-made space was derived from (``default:...`` for ``default-3ch-4cls``) is taken as
    the same architecture of the derived space: their choices are the same.
    """
    if parsed is None:
        return supernet.largest_arch() if text == "largest" else supernet.smallest_arch()
    space = supernet.space
    if space.name == data_space_name(parsed.space, space.in_channels, space.num_classes):
        parsed = dataclasses.replace(parsed, space=space.name)
    if parsed.space != space.name:
        raise UserError(f"architecture is of space {parsed.space!r}, the supernet of {space.name!r}")
    return space.validate(parsed)
