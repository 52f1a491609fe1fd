"""``hwnas run``: the main job on embedded defaults, everything kept in one run folder."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from hwnas.cli.common import (
    DataSource,
    Epochs,
    JsonFlag,
    Preset,
    Seed,
    Threads,
    app,
    build_recipe,
    console,
    esc,
    print_json,
    show_training,
)


@app.command("run")
def run_command(
    preset: Preset = "default",
    seed: Seed = 0,
    epochs: Epochs = None,
    data: DataSource = None,
    threads: Threads = None,
    out: Annotated[Path | None, typer.Option(help="run folder (default: runs/<time stamp>)")] = None,
    as_json: JsonFlag = False,
) -> None:
    """The main job on embedded defaults: sample, predict latency, train, export, verify, re-measure.

    Search and pruning join this command as they land; everything is kept in one run folder.
    """
    from hwnas.pipeline import describe_prediction, run_pipeline

    out = out or Path("runs") / time.strftime("run-%Y%m%d-%H%M%S")
    recipe = build_recipe(None, None, epochs)
    log = (lambda message: None) if as_json else (lambda message: console.log(esc(message)))
    outcome = run_pipeline(preset, seed, recipe, data, threads, out, progress=not as_json, log=log)
    if as_json:
        summary = {"result": outcome.result.to_json(), "predicted_latency": outcome.predicted_ms}
        print_json(summary | {"exports": outcome.card["exports"]})
        return
    show_training(outcome.result.to_json())
    console.print(f"predicted latency: {esc(describe_prediction(outcome.predicted_ms))}")
    for item in outcome.card["exports"]:
        check = item["verification"]
        measured = ", ".join(f"{m['device']} {m['median_ms']:.3f} ms" for m in item["latency"] if "median_ms" in m)
        console.print(f"{item['format']}: max |diff| {check['max_abs_diff']:.1e}, verified {check['passed']}; {esc(measured)}")
    console.print(f"run folder: {esc(out)} (model card: {esc(out / 'export' / 'model_card.md')})")
