"""``hwnas search --supernet DIR``: candidates scored by the accuracy they inherit from a supernet, not trained.

The supernet is real but tiny: the default space trained one short epoch (sandwich rule) on 128
embedded images, made once for the module. Scores use small subsets (:data:`BN` BatchNorm images,
:data:`VAL` validation images) so every strategy's dozen trials take seconds. The device is this
machine's TFLite interpreter with the shipped table that matches it (skipped without one, as in
``tests/test_search.py``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_search import assert_one_line_error, hwnas

from hwnas.errors import UserError
from hwnas.presets import get_space
from hwnas.search.reward import parse_reward
from hwnas.space import SearchSpace

SPACE = get_space("default")
BN, VAL = 32, 100
STRATEGIES = ("random", "evolution", "mnas", "fbnetv3", "tpe", "nsga2")


def _save(folder: Path, supernet, data: dict, curve: list, seconds: float = 0.0) -> Path:
    from hwnas.recipe import Recipe
    from hwnas.supernet.store import save_supernet

    save_supernet(folder, supernet, data=data, recipe=Recipe(), seed=0, method={}, curve=curve, wall_time_s=seconds)
    return folder


@pytest.fixture(scope="module")
def supernet_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default space's supernet after one epoch on 128 images (its subnetworks score apart, not all at chance)."""
    from hwnas.data import load_data
    from hwnas.recipe import Recipe
    from hwnas.supernet.store import data_description
    from hwnas.supernet.train import train_supernet

    data = load_data(None).head(128, 100)
    trained = train_supernet(SPACE, Recipe(epochs=1, batch_size=32, warmup_epochs=0.0), data, seed=0, random_subnets=0)
    folder = tmp_path_factory.mktemp("supernet")
    return _save(folder, trained.supernet, data_description(None, data), trained.curve, trained.wall_time_s)


def _config(device, out: Path, supernet: Path | None, strategy: str = "random", trials: int = 12):
    from hwnas.search.loop import SearchConfig

    return SearchConfig(
        SPACE,
        device,
        parse_reward("hard", 0.6),
        out,
        strategy=strategy,
        trials=trials,
        train_images=BN if supernet else 192,
        val_images=VAL if supernet else 128,
        supernet=supernet,
    )


# ---- the loop, every strategy ------------------------------------------------------------------
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_scores_candidates_by_inherited_accuracy(
    device, supernet_dir: Path, tmp_path: Path, strategy: str
) -> None:
    import optuna

    from hwnas.search.inherited import InheritedExecutor, evaluation_data, loaded_supernet
    from hwnas.search.loop import SearchLoop
    from hwnas.supernet.store import inherited_accuracy
    from hwnas.trainer import batchnorm_images

    config = _config(device, tmp_path / strategy, supernet_dir, strategy)
    summary = SearchLoop(config).run(InheritedExecutor(supernet_dir, threads=1))
    assert summary["trained"] == summary["completed"] == 12 and summary["failed"] == 0
    assert summary["config"]["supernet"].startswith("sha256:") and summary["config"]["val_images"] == VAL
    supernet, _ = loaded_supernet(supernet_dir)
    data = evaluation_data(None, BN, VAL)
    bn_images = batchnorm_images(data, SPACE.resolutions[0], SPACE.in_channels, supernet)  # one resolution: read once
    exact = 0
    for trial in summary["trials"]:
        assert trial["state"] == "complete" and 0 <= trial["accuracy"] <= 1
        assert trial["curve"] == [{"epoch": 0, "val_accuracy": trial["accuracy"]}]
        assert trial["params"] > 0 and trial["wall_time_s"] > 0
        direct = inherited_accuracy(supernet, SPACE.parse(trial["arch"]), data, bn_images=bn_images)
        # folded BatchNorm and channels-last kernels sum in another order: a prediction tied to ~1e-6 may flip
        assert abs(trial["accuracy"] - direct) <= 1 / VAL + 1e-12, (trial["arch"], trial["accuracy"], direct)
        exact += trial["accuracy"] == direct
    assert exact >= len(summary["trials"]) - 1
    study = optuna.load_study(study_name=config.name, storage=config.storage_url)
    stored = {t.number: t.user_attrs for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE}
    assert {n: a["accuracy"] for n, a in stored.items()} == {t["number"]: t["accuracy"] for t in summary["trials"]}
    assert len({trial["accuracy"] for trial in summary["trials"]}) > 1  # the subnetworks do score apart


def _finishing_executor(folder: Path, newest_first: bool):
    """Real inherited scoring with two slots, where of the candidates running the oldest (or the newest) always finishes
    first: the two orders a pool of two workers can give when their candidates take unequal times."""
    from hwnas.search.inherited import InheritedExecutor

    class FinishingExecutor(InheritedExecutor):
        def __init__(self) -> None:
            super().__init__(folder, threads=1)
            self.slots = 2
            self.asked: dict[object, int] = {}

        def submit(self, job):
            handle = super().submit(job)
            self.asked[handle] = len(self.asked)
            return handle

        def wait_any(self, handles, timeout=None):
            first = (max if newest_first else min)(handles, key=self.asked.__getitem__)
            return [(first, first.result())]

    return FinishingExecutor()


def _search_telling(config, executor) -> tuple[list[str], list[int]]:
    """The architectures a search trained (by trial number) and the trial numbers in the order the loop told them."""
    from hwnas.search.loop import SearchLoop

    loop = SearchLoop(config)
    told: list[int] = []
    record = loop._record

    def spy(entry, result):
        told.append(entry.trial.number)
        return record(entry, result)

    loop._record = spy
    summary = loop.run(executor)
    trained = [trial["arch"] for trial in sorted(summary["trials"], key=lambda trial: trial["number"])]
    return trained, told


@pytest.mark.parametrize("in_order", [True, False], ids=["in-order", "as-finished"])
def test_in_order_tells_results_as_asked_so_a_search_repeats_whichever_worker_is_faster(
    device, supernet_dir: Path, tmp_path: Path, in_order: bool
) -> None:
    from dataclasses import replace

    searches = {}
    for newest_first in (False, True):
        config = replace(_config(device, tmp_path / f"newest-first-{newest_first}", supernet_dir, "evolution"), in_order=in_order)
        searches[newest_first] = _search_telling(config, _finishing_executor(supernet_dir, newest_first))
    for trained, told in searches.values():
        assert len(trained) == len(told) == 12 and len(set(told)) == 12
    assert searches[False][1] == sorted(searches[False][1])  # oldest first: told as asked either way
    trained, told = searches[True]
    if in_order:
        assert told == sorted(told)  # trial n told before trial n + 1, though n + 1 finished first
        assert searches[False][0] == trained  # evolution asks from what it was told: the same search either way
    else:
        assert told[0] > told[-1] == min(told)  # told as finished: the first asked waited behind every newer one


def test_a_study_made_without_the_supernet_is_not_resumed_with_it_and_vice_versa(
    device, supernet_dir: Path, tmp_path: Path
) -> None:
    from hwnas.search.loop import SearchLoop

    SearchLoop(_config(device, tmp_path / "trained", None))  # creates the study, trains nothing
    with pytest.raises(UserError, match=r"another configuration .*supernet: None vs 'sha256:"):
        SearchLoop(_config(device, tmp_path / "trained", supernet_dir))
    SearchLoop(_config(device, tmp_path / "inherited", supernet_dir))
    with pytest.raises(UserError, match=r"supernet: 'sha256:[0-9a-f]+' vs None"):
        SearchLoop(_config(device, tmp_path / "inherited", None))


# ---- the library API ---------------------------------------------------------------------------
def test_the_library_checks_the_supernet_and_makes_its_executor(device, supernet_dir: Path, tmp_path: Path) -> None:
    from hwnas.fileio import file_sha256
    from hwnas.search.api import SearchSettings, make_search_config
    from hwnas.search.executors import make_executor
    from hwnas.search.inherited import InheritedExecutor

    other = SearchSpace.from_json(SPACE.to_json() | {"name": "other", "resolutions": [28]})
    with pytest.raises(UserError, match=r"is of space 'default'.*the search's space 'other'"):
        make_search_config(other, device, 0.6, SearchSettings(supernet=supernet_dir), tmp_path / "s")
    config = make_search_config(SPACE, device, 0.6, SearchSettings(supernet=supernet_dir), tmp_path / "s")
    assert (config.train_images, config.val_images, config.supernet, config.in_order) == (256, 1000, supernet_dir, False)
    assert make_search_config(SPACE, device, 0.6, SearchSettings(supernet=supernet_dir, in_order=True), tmp_path / "o").in_order
    assert config.identity()["supernet"] == f"sha256:{file_sha256(supernet_dir / 'supernet.pt')[:16]}"
    assert isinstance(make_executor(inline=True, supernet=supernet_dir), InheritedExecutor)
    with pytest.raises(UserError, match="leave out --ray"):
        make_executor(ray_address="local", supernet=supernet_dir)


# ---- the command line --------------------------------------------------------------------------
@pytest.mark.slow
def test_search_with_a_supernet_names_a_best_architecture(device, supernet_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "search"
    result = hwnas(
        *("search", "--device", "host-tflite", "--budget-ms", "0.6", "--supernet", str(supernet_dir)),
        *("--trials", "20", "--no-measure", "--out", str(out), "--json"),
    )
    assert result.returncode == 0, result.stderr
    search = json.loads(result.stdout)["search"]
    assert search["trained"] == search["completed"] == 20
    assert search["config"]["supernet"].startswith("sha256:")
    best = search["best"]
    SPACE.validate(SPACE.parse(best["arch"]))
    assert best["predicted_latency_ms"] <= 0.6 * 0.95 and 0 <= best["accuracy"] <= 1
    # the same command without --supernet would mix trained scores into the inherited ones: one line, nothing trained
    again = hwnas("search", "--device", "host-tflite", "--budget-ms", "0.6", "--trials", "20", "--no-measure", "--out", str(out))
    assert_one_line_error(again, "another configuration", "supernet")


def test_a_supernet_of_another_space_is_one_line(
    supernet_dir: Path, tmp_path: Path, hwnas_in_process, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hwnas.supernet import Supernet

    other = SearchSpace.from_json(SPACE.to_json() | {"name": "other", "resolutions": [28]})
    folder = _save(tmp_path / "other", Supernet(other), {"source": "embedded"}, [])
    monkeypatch.chdir(tmp_path)  # a search folder would be made under runs/ here
    result = hwnas_in_process(
        "search", "--device", "host-tflite", "--budget-ms", "0.6", "--space", "default", "--supernet", str(folder)
    )
    assert_one_line_error(result, "is of space 'other'", "the search's space 'default'")
    assert not any(tmp_path.glob("runs*"))
