"""Stage ``train``: the winner retrained with its recipe for ``train.epochs`` on the run's training images.

When the search's finish already retrained this very network with this recipe, epochs and images, its
model is taken instead of training it again. Otherwise every finished epoch is checkpointed under
``checkpoints/<hash of arch + recipe>/``, so a killed run resumes mid-training, and a rerun with another
budget (another winner) never meets the old winner's checkpoint.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from hwnas.fileio import text_sha256
from hwnas.pipeline.context import RunContext, free_cores
from hwnas.pipeline.stage import Stage, StageResult
from hwnas.pipeline.stages.search import SearchResult
from hwnas.runfolder import copy_tree_into
from hwnas.typedjson import checked


@dataclass(frozen=True)
class TrainResult(StageResult):
    """The trainer's result (``hwnas.trainer.TrainResult``) and where the model is: ``folder`` (result.json, model.pt)."""

    STAGE = "train"

    arch: str
    recipe: dict[str, Any]
    dataset: str
    resolution: int
    val_accuracy: float = field(metadata=checked("fraction"))
    curve: list[dict[str, float]]
    wall_time_s: float
    params: int
    flops: int
    seed: int
    threads: int
    folder: str
    test_accuracy: float | None = field(default=None, metadata=checked("fraction"))
    load: dict[str, int] | None = None
    source: str | None = None  # "search (retrained by its finish)" when the search's model was taken
    # the recipe the winner's relatives (family members, reference networks) train from scratch with; None in run
    # folders from before it was recorded
    scratch_recipe: dict[str, Any] | None = None

    def recipe_from_scratch(self) -> Any:
        """The ``Recipe`` that trains a network like the winner from scratch, for ``train.epochs``: the winner's own
        for a trained search; with a supernet the supernet's recipe, warm-up included, for the winner's was a
        fine-tuning one (no warm-up, taught by the supernet's largest subnetwork)."""
        from hwnas.recipe import Recipe

        if self.scratch_recipe is not None:
            return Recipe.from_json(self.scratch_recipe)
        return Recipe.from_json(self.recipe).without_teacher()  # an older run folder's: its recipe, taught by nobody


def run(context: RunContext) -> TrainResult:
    from hwnas.recipe import Recipe

    best = context.result(SearchResult).best
    arch = context.space.parse(best.arch)
    recipe = (Recipe.from_json(best.recipe) if best.recipe else Recipe()).with_overrides(
        [f"epochs={context.config.train.epochs}"]
    )
    load = free_cores()
    folder = context.folder / "model"
    finished = context.result(SearchResult).finished
    retrained = finished.retrained if finished else None
    # taken when it is this network trained as asked; from a supernet it is this network fine-tuned (the recipe at
    # hwnas.search.result.FINETUNE_LR_SCALE, no warm-up), which is what a supernet run asks for
    inherited = retrained is not None and retrained.get("how", "retrained") != "retrained"
    scratch = _scratch_recipe(context, recipe).to_json()
    if retrained and retrained["arch"] == arch.format() and (inherited or retrained["recipe"] == recipe.to_json()):
        return replace(_take_retrained(context, retrained, folder, load), scratch_recipe=scratch)
    return replace(_train(context, arch, recipe, folder, load), scratch_recipe=scratch)


def _scratch_recipe(context: RunContext, recipe: Any) -> Any:
    """``recipe`` (the winner's, for ``train.epochs``), or with a supernet the supernet's own recipe for as many epochs:
    what trained the weights the winner inherited, the recipe its relatives train from scratch with."""
    from hwnas.recipe import Recipe
    from hwnas.supernet.store import read_description

    folder = context.config.search.supernet_folder()
    if folder is None:
        return recipe
    described = read_description(folder).get("recipe")
    return Recipe.from_json(described).with_overrides([f"epochs={recipe.epochs}"]) if isinstance(described, dict) else recipe


def _take_retrained(context: RunContext, retrained: dict[str, Any], folder: Path, load: dict[str, int]) -> TrainResult:
    """The search's finish retrained this very network with this recipe, epochs and images: take it, do not train twice."""
    source = context.inside(retrained["folder"], "stages/search-finish/result.json: retrained.folder")
    copy_tree_into(source, folder, context.folder)
    how = retrained.get("how", "retrained")  # with a supernet: inherited weights, fine-tuned
    done = f"retrained by the search ({len(retrained['curve'])} epoch(s), same recipe and images)" if how == "retrained" else how
    context.log(
        f"the winner was {done}: validation accuracy {retrained['val_accuracy']:.4f}, "
        f"test accuracy {retrained['test_accuracy']:.4f}"
    )
    fields = {key: value for key, value in retrained.items() if key not in ("folder", "load", "from", "how")}
    return TrainResult(**fields, folder=context.stored(folder), load=load, source=f"search ({how} by its finish)")


def _train(context: RunContext, arch: Any, recipe: Any, folder: Path, load: dict[str, int]) -> TrainResult:
    from hwnas.trainer import train

    data = context.training_data()
    threads = load["free"]
    if load["busy"]:
        context.log(f"{load['busy']} of {load['cores']} cores are busy with other processes: training on {threads} thread(s)")
    context.log(
        f"training the winner for {recipe.epochs} epoch(s) on {len(data.train)} images ({threads} thread(s)): {arch.format()}"
    )
    key = text_sha256(arch.format() + json.dumps(recipe.to_json(), sort_keys=True), 16)
    checkpoints = context.folder / "checkpoints" / key
    checkpoints.mkdir(parents=True, exist_ok=True)
    result = train(  # every finished epoch is kept in the folder: a killed run resumes mid-training
        context.space,
        arch,
        recipe,
        data,
        seed=context.config.seed,
        threads=threads,
        progress=context.progress,
        evaluate_test=True,
        checkpoint=checkpoints,
        log=context.log,
    )
    result.save(folder)
    context.log(f"validation accuracy {result.val_accuracy:.4f}, test accuracy {result.test_accuracy:.4f}")
    return TrainResult(**result.to_json(), folder=context.stored(folder), load=load)


STAGE = Stage("train", ("search",), TrainResult, run)
