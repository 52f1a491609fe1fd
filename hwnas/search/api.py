"""The search as a library: what ``hwnas search`` and the pipeline's search stage both call, so it is written once.

``SearchSettings`` holds the search's defaults (the CLI's options take theirs from it, and so does ``hwnas run``'s
``[search]`` table); :func:`make_search_config` turns settings, a space, a device and a budget into the loop's
configuration (``settings.supernet``: candidates scored by inherited weights, not trained); :func:`run_search` runs the
trial loop on an executor; :func:`finish` retrains, exports and measures the best candidates; :func:`search` does all
of it, executor included, for a caller that wants one call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hwnas.errors import UserError

Log = Callable[[str], None]


@dataclass(frozen=True)
class SearchSettings:
    """What a search is asked to do; every default of ``hwnas search`` and ``hwnas run``'s search is here, once."""

    strategy: str = "fbnetv3"
    trials: int = 24  # candidates trained
    train_images: int = 2000  # the proxy: training images a candidate sees (0: all)
    val_images: int = 0  # the proxy: validation images its accuracy is taken on (0: all)
    epochs: int = 1  # proxy epochs a candidate trains for
    reward: str = "hard"  # hard, soft, or alpha,beta (MnasNet's exponents)
    # search under budget x (1 - margin): room for predictor error; "auto": the margin that held 90% of the table's
    # whole networks, each predicted without it (hwnas.search.device.DeviceLatency.held_out_margin)
    margin: float | str = 0.05
    top_k: int = 3  # candidates retrained, exported and measured at the end
    final_epochs: int = 3  # epochs the best is retrained for
    rounds: int = 10  # interleaved timing rounds per file at the end
    # a trained supernet folder: candidates are scored by the accuracy they inherit from it (hwnas.search.inherited),
    # about a second each, instead of training for a proxy epoch; train_images and epochs then play no part
    supernet: Path | None = None
    supernet_val_images: int = 1000  # validation images an inherited candidate is scored on (0: all)
    supernet_bn_images: int = 256  # training images its BatchNorm statistics are re-estimated from (1 to 512)
    supernet_trials: int = 200  # hwnas search's --trials when --supernet is given and --trials is not
    # tell the strategy results in the order it asked for them, so a seed's search with several workers repeats exactly
    # (hwnas.search.loop.SearchConfig.in_order); off by default: a worker then waits for the older candidate, which
    # made the supernet arm's 200-candidate search 93 s instead of 65-71 s (benchmarks/search_repeatability.py)
    in_order: bool = False


DEFAULTS = SearchSettings()


@dataclass(frozen=True)
class SearchOutcome:
    """A finished search: the loop's summary, the finish's report (``None`` when not measured) and the executor used."""

    summary: dict[str, Any]
    finished: dict[str, Any] | None
    executor: dict[str, Any]


def make_search_config(
    space: Any,
    latency: Any,
    budget_ms: float,
    settings: SearchSettings,
    out: Path,
    *,
    data: str | None = None,
    drift: dict[str, Any] | None = None,
    storage: str | None = None,
    seed: int = 0,
) -> Any:
    """The loop's configuration: ``budget_ms`` on ``latency``'s device (in the time its table predicts in).

    With ``settings.supernet`` the supernet is loaded (once per process) and must be of ``space``; ``data``
    defaults to the images it was trained on, and the proxy's image counts become the inherited
    evaluation's (BatchNorm and validation images), so they are part of the search's identity.
    """
    from hwnas.recipe import Recipe
    from hwnas.search.loop import SearchConfig
    from hwnas.search.reward import parse_reward
    from hwnas.search.strategies import STRATEGIES

    STRATEGIES.get(settings.strategy)  # an unknown strategy is one line naming the known ones
    train_images, val_images = settings.train_images or None, settings.val_images or None
    if settings.supernet is not None:
        data = check_supernet(settings, space, data)
        train_images, val_images = settings.supernet_bn_images, settings.supernet_val_images or None
    return SearchConfig(
        space,
        latency,
        parse_reward(settings.reward, budget_ms),
        out,
        strategy=settings.strategy,
        trials=settings.trials,
        base_recipe=Recipe(batch_size=32, epochs=settings.epochs),
        data=data,
        train_images=train_images,
        val_images=val_images,
        seed=seed,
        margin=resolve_margin(settings.margin, latency),
        storage=storage,
        drift=drift,
        supernet=settings.supernet,
        in_order=settings.in_order,
    )


AUTO_MARGIN = "auto"


def parse_margin(text: str) -> float | str:
    """``--margin``: a fraction in [0, 1) or ``auto`` (a bad one is one line)."""
    if text.strip().lower() == AUTO_MARGIN:
        return AUTO_MARGIN
    try:
        value = float(text)
    except ValueError:
        raise UserError(f"--margin must be a number in [0, 1) or 'auto', got {text!r}") from None
    if not 0 <= value < 1:  # NaN fails too
        raise UserError(f"--margin must be in [0, 1), got {text}")
    return value


def resolve_margin(margin: float | str, latency: Any) -> float:
    """The margin a search aims under: the number given, or ``auto``'s from the predictor's held-out error."""
    parsed = parse_margin(margin) if isinstance(margin, str) else margin
    return latency.held_out_margin().margin if parsed == AUTO_MARGIN else float(parsed)


def check_supernet(settings: SearchSettings, space: Any, data: str | None) -> str | None:
    """Refuse a supernet that is not of ``space`` or evaluation sizes out of range; return the data to score on.

    ``data`` given is kept (a supernet may be scored on other images of its classes); ``None`` is the data the
    supernet was trained on, as its ``supernet.json`` records it: its validation split is what it never trained on.
    """
    from hwnas.search.inherited import MAX_BN_IMAGES, check_space, loaded_supernet, recorded_data

    if not 1 <= settings.supernet_bn_images <= MAX_BN_IMAGES:
        raise UserError(f"BatchNorm images of a supernet search must be 1 to {MAX_BN_IMAGES}, not {settings.supernet_bn_images}")
    if settings.supernet_val_images < 0:
        raise UserError(f"validation images of a supernet search must be >= 0 (0: all), not {settings.supernet_val_images}")
    assert settings.supernet is not None
    supernet, info = loaded_supernet(settings.supernet)
    check_space(supernet, space, settings.supernet)
    return data if data is not None else recorded_data(info)


def check_budget(config: Any) -> None:
    """A budget no architecture of the space can meet: one line with the fastest achievable latency."""
    arch, fastest = config.device.fastest()
    if fastest > config.search_budget_ms:
        raise UserError(
            f"no network of space {config.space.name!r} meets {config.reward.budget_ms:g} ms on {config.device.spec.name}: the "
            f"fastest achievable is {fastest:.4g} ms predicted ({arch.format()})"
            + (f"; with --margin {config.margin:g} the search aims at {config.search_budget_ms:.4g} ms" if config.margin else "")
        )


def run_search(config: Any, executor: Any, on_progress: Callable[[Any], None] | None = None) -> dict[str, Any]:
    """The trial loop on ``executor`` (the caller's, and the caller closes it): trials stored as they finish."""
    from hwnas.search.loop import SearchLoop

    return SearchLoop(config).run(executor, on_progress)


def finish(
    config: Any,
    summary: dict[str, Any],
    *,
    top_k: int = DEFAULTS.top_k,
    final_epochs: int = DEFAULTS.final_epochs,
    rounds: int = DEFAULTS.rounds,
    references: int = 3,
    threads: int | None = None,
    retrain_images: int | None = None,
    log: Log = lambda message: None,
) -> dict[str, Any]:
    """The best candidates retrained, exported to the device's format, measured in interleaved rounds and judged."""
    from hwnas.search.result import finish_search

    return finish_search(
        config,
        summary,
        top_k=top_k,
        final_epochs=final_epochs,
        rounds=rounds,
        references=references,
        threads=threads,
        retrain_images=retrain_images,
        log=log,
    )


def search(
    config: Any,
    settings: SearchSettings = DEFAULTS,
    *,
    workers: int | None = None,
    ray: str | None = None,
    on_progress: Callable[[Any], None] | None = None,
    measure: bool = True,
    log: Log = lambda message: None,
    on_start: Callable[[Any], None] | None = None,
) -> SearchOutcome:
    """Make the executor, run the loop, close the executor, and (``measure``) finish with ``settings``' top K."""
    from hwnas.search.executors import make_executor

    executor = make_executor(workers, ray, supernet=config.supernet)
    try:
        if on_start is not None:
            on_start(executor)
        summary = run_search(config, executor, on_progress)
    finally:
        executor.close()
    finished = None
    if measure:
        finished = finish(
            config, summary, top_k=settings.top_k, final_epochs=settings.final_epochs, rounds=settings.rounds, log=log
        )
    return SearchOutcome(summary, finished, executor.describe())
