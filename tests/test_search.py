"""``hwnas search``: reward, codec, device latency, strategies, the trial loop on Optuna storage, executors, results.

Training is real (the embedded Fashion-MNIST images) on tiny proxies; the device is this machine's
TFLite interpreter with the shipped table that matches it. Strategy tests tell synthetic rewards:
they check what a strategy decides from what it is told, not how well a network trains.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hwnas.errors import UserError
from hwnas.presets import get_space
from hwnas.recipe import Recipe
from hwnas.search.codec import decisions, decode, decode_recipe, decode_unit, encode
from hwnas.search.measure import median_interval, verdict
from hwnas.search.reward import Reward, parse_reward

from stores import completed_trials

SPACE = get_space("default")
TINY = {"train_images": 192, "val_images": 128}


def hwnas(*args: str, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hwnas", *args], capture_output=True, text=True, timeout=timeout)


def assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


# ---- reward ------------------------------------------------------------------------------------
def test_hard_reward_keeps_accuracy_under_budget_and_divides_above() -> None:
    hard = parse_reward("hard", 1.0)
    assert hard(0.8, 0.5) == pytest.approx(0.8)
    assert hard(0.8, 1.0) == pytest.approx(0.8)
    assert hard(0.8, 2.0) == pytest.approx(0.4)


def test_soft_reward_trades_accuracy_for_latency_everywhere() -> None:
    soft = parse_reward("soft", 1.0)
    assert soft(0.8, 0.5) == pytest.approx(0.8 * 0.5**-0.07)
    assert soft(0.8, 0.5) > soft(0.8, 1.0) > soft(0.8, 2.0)
    custom = parse_reward("-0.1,-0.5", 1.0)
    assert (custom.alpha, custom.beta) == (-0.1, -0.5)


@pytest.mark.parametrize("text", ["medium", "1,2,3", "a,b", "0.1,-1"])
def test_bad_reward_is_a_user_error(text: str) -> None:
    with pytest.raises(UserError):
        parse_reward(text, 1.0)
    with pytest.raises(UserError):
        Reward(0.0)


# ---- codec -------------------------------------------------------------------------------------
def test_decisions_round_trip_every_sampled_architecture() -> None:
    for seed in range(50):
        arch = SPACE.sample(seed)
        values = encode(SPACE, arch)
        full = {d.name: values.get(d.name, d.choices[0]) for d in decisions(SPACE)}
        assert decode(SPACE, full) == arch


def test_unit_coordinates_decode_to_valid_pairs() -> None:
    rng = np.random.default_rng(0)
    base = Recipe(epochs=2, batch_size=32)
    for row in rng.random((200, len(decisions(SPACE)) + 11)):
        SPACE.validate(decode_unit(SPACE, row[: len(decisions(SPACE))]))
        recipe = decode_recipe(row[len(decisions(SPACE)) :], base)
        assert recipe.epochs == 2 and recipe.batch_size in (32, 64, 128)
    assert decode_recipe([0.999] * 11, base).optimizer == "adamw"


# ---- measurement statistics --------------------------------------------------------------------
def test_median_interval_is_the_order_statistic_interval() -> None:
    values = list(range(1, 11))
    low, high, level = median_interval(values)
    assert (low, high) == (2, 9) and level == pytest.approx(1 - 2 * 11 / 1024)
    low, high, level = median_interval([5.0] * 3)
    assert low == high == 5.0 and level < 0.95


def test_verdict_uses_the_interval_and_drift() -> None:
    measured = {"median_ms": 1.0, "ci_low_ms": 0.95, "ci_high_ms": 1.05}
    assert verdict(measured, 1.1, 1.0, False)["verdict"] == "within"
    assert verdict(measured, 1.0, 1.0, False)["verdict"] == "borderline"
    assert verdict(measured, 0.9, 1.0, False)["verdict"] == "over"
    assert verdict(measured, 0.9, 1.25, True)["verdict"] == "within"  # the device runs 25% slow today


# ---- the device --------------------------------------------------------------------------------
def test_device_latency_uses_the_table_of_this_machine(device) -> None:
    device.table.check(device.backend.fingerprint(), SPACE.hash)  # raises when the table is of another CPU
    assert device.predictor.kind == "calibrated"
    archs = [n["arch"] for n in device.table.networks[:20]]
    measured = np.array([n["median_ms"] for n in device.table.networks[:20]])
    predicted = device.predict([SPACE.parse(a) for a in archs])
    assert np.median(np.abs(predicted / measured - 1)) < 0.1


def test_fastest_architecture_beats_every_sampled_one(device) -> None:
    arch, fastest = device.fastest()
    sampled = device.predict([SPACE.sample(seed) for seed in range(300)])
    assert fastest <= sampled.min()
    assert all(stage.depth == min(spec.depths) for stage, spec in zip(arch.stages, SPACE.stages, strict=True))


def test_device_without_a_table_says_how_to_profile(tmp_path: Path) -> None:
    spec = tmp_path / "my-phone.toml"
    spec.write_text('name = "my-board"\nbackend = "onnxruntime"\n')
    from hwnas.search.device import load_device_latency

    with pytest.raises(UserError, match="profile it first: hwnas profile"):
        load_device_latency(str(spec), SPACE)


# ---- strategies (what they decide from what they are told) ------------------------------------
def _context(device, trials: int = 20, budget: float = 0.6):
    from hwnas.search.strategies import StrategyContext

    return StrategyContext(SPACE, Recipe(batch_size=32), parse_reward("hard", budget), device.predict, trials, 0, budget)


def test_random_search_asks_feasible_architectures(device) -> None:
    from hwnas.search.strategies import make_strategy

    strategy = make_strategy("random", _context(device, budget=0.4))
    archs = [strategy.ask(None).arch for _ in range(20)]
    assert (device.predict(archs) <= 0.4).all() and len(set(archs)) == 20


def test_evolution_mutates_tournament_winners_and_ages_out_the_oldest(device) -> None:
    from hwnas.search.strategies import Outcome, make_strategy

    strategy = make_strategy("evolution", _context(device, trials=16))
    population = strategy.population_size
    first = [strategy.ask(None) for _ in range(population)]
    for index, candidate in enumerate(first):
        strategy.tell(candidate, Outcome("complete", 0.3, 0.5 + index / 100, 0.5 + index / 100))
    child = strategy.ask(None)
    assert child.arch not in {c.arch for c in first}
    assert min(_distance(c.arch, child.arch) for c in first) <= 5  # a mutated member, not a fresh sample
    strategy.tell(child, Outcome("complete", 0.3, 0.9, 0.9))
    assert len(strategy.population) == population and strategy.population[0][0] == first[1]


def _distance(first, second) -> int:
    """Decisions (resolution, widths, depths, block slots) in which two architectures differ."""
    a, b = encode(SPACE, first), encode(SPACE, second)
    return sum(a.get(key) != b.get(key) for key in set(a) | set(b))


def test_mnas_controller_learns_the_rewarded_choice(device) -> None:
    from hwnas.search.strategies import Outcome, make_strategy

    strategy = make_strategy("mnas", _context(device))
    before = strategy.probabilities("s1.width")[1]
    for _ in range(60):
        candidate = strategy.ask(None)
        good = candidate.arch.stages[0].width == SPACE.stages[0].widths[1]
        strategy.tell(candidate, Outcome("complete", 0.3, 0.9 if good else 0.5, 0.9 if good else 0.5))
    assert strategy.probabilities("s1.width")[1] > max(0.8, before)


def test_fbnetv3_pool_is_feasible_and_rounds_follow_the_predictor(device) -> None:
    from hwnas.search.strategies import Outcome, make_strategy

    strategy = make_strategy("fbnetv3", _context(device, trials=12, budget=0.5))
    assert strategy.pool and max(point.predicted_ms for point in strategy.pool) <= 0.5
    asked = []
    for _ in range(12):
        candidate = strategy.ask(None)
        asked.append(candidate.key)
        accuracy = 0.5 + 0.3 * (candidate.recipe.optimizer == "sgd")  # a learnable signal: sgd trains best here
        strategy.tell(
            candidate,
            Outcome("complete", device.predict_one(candidate.arch), accuracy, accuracy, (accuracy,), strategy.info(candidate)),
        )
    assert len(set(asked)) == 12
    report = strategy.report()
    assert report["early_stopping"]["epochs"] == 1 and report["stage2"]
    later = asked[strategy.round_size :]
    assert sum("optimizer=sgd" in key for key in later) > len(later) / 2


# ---- the trial loop with real training ---------------------------------------------------------
def _config(
    device, tmp_path: Path, strategy: str = "random", trials: int = 3, recipe: Recipe | None = None, budget: float = 0.6, **extra
):
    from hwnas.search.loop import SearchConfig

    return SearchConfig(
        SPACE,
        device,
        parse_reward("hard", budget),
        tmp_path / strategy,
        strategy=strategy,
        trials=trials,
        base_recipe=recipe or Recipe(batch_size=32),
        **(TINY | extra),
    )


def test_loop_trains_stores_every_trial_and_resumes_without_retraining(device, tmp_path: Path) -> None:
    import optuna

    from hwnas.search.executors import InlineExecutor
    from hwnas.search.loop import SearchLoop

    config = _config(device, tmp_path, trials=3)
    summary = SearchLoop(config).run(InlineExecutor())
    assert summary["trained"] == summary["completed"] == 3
    study = optuna.load_study(study_name=config.name, storage=config.storage_url)
    stored = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(stored) == 3
    for trial in stored:
        attrs = trial.user_attrs
        for key in ("arch", "recipe", "accuracy", "curve", "predicted_latency_ms", "state", "wall_time_s", "seed"):
            assert attrs[key] is not None, key
        assert trial.values[0] == pytest.approx(attrs["reward"]) and 0 < attrs["accuracy"] <= 1
    again = SearchLoop(replace(config, trials=4)).run(InlineExecutor())
    assert again["replayed_from_storage"] == 3 and again["trained"] == 4
    assert [t["accuracy"] for t in again["trials"][:3]] == [t["accuracy"] for t in summary["trials"]]


def test_a_trial_another_process_is_setting_up_is_not_failed_as_abandoned(device, tmp_path: Path) -> None:
    """Another process asks a trial under the study lock and stamps its owner a moment later: between the two the
    trial is RUNNING with no owner, which a sync would take for one a dead process left. A sync (here a read-back) must
    wait for the lock, so the trial stays the other process's (two searches on one study crashed on this:
    ``Trial#4 has already finished and can not be updated``)."""
    import socket
    import threading
    import time

    import optuna

    from hwnas.runfolder import held
    from hwnas.search.loop import CREATE_LOCK, SearchLoop

    config = _config(device, tmp_path, trials=1)
    loop = SearchLoop(config)  # creates the study
    asked, release = threading.Event(), threading.Event()
    other_pid = subprocess.Popen(["sleep", "60"])  # the other process, alive

    def other_process_asks() -> None:
        with held(Path(config.out) / CREATE_LOCK):
            trial = loop.study.ask()
            asked.set()
            release.wait(timeout=30)
            trial.set_user_attr("owner", f"{socket.gethostname()}:{other_pid.pid}")

    try:
        other = threading.Thread(target=other_process_asks)
        other.start()
        assert asked.wait(timeout=30)
        threading.Timer(0.5, release.set).start()
        started = time.perf_counter()
        loop.read_back()
        other.join(timeout=30)
        assert time.perf_counter() - started >= 0.4  # it waited for the other process's ask
    finally:
        release.set()
        other_pid.kill()
    study = optuna.load_study(study_name=config.name, storage=config.storage_url)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.RUNNING]
    assert study.trials[0].user_attrs.get("state") is None  # not marked interrupted


@pytest.mark.parametrize("killed_before", ["owner", "arch", "accuracy", "number"])
def test_a_search_killed_while_it_writes_a_trial_retrains_it_and_ends_with_every_trial(
    device, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, killed_before: str
) -> None:
    """The process dies as it writes one field of a trial, while setting it up (``owner`` ... ``info``) or recording its
    result (``state`` ... ``number``): the rerun fails that trial as interrupted, trains it again and ends with every trial
    the study asked for. (Killed with a heartbeat written and no owner yet, the trial read as another host's live worker
    and a resumed ``kill -9`` search ended a trial short.)"""
    import optuna

    from hwnas.search.executors import InlineExecutor
    from hwnas.search.loop import INTERRUPTED, SearchLoop

    config = _config(device, tmp_path, trials=1)
    written = optuna.trial.Trial.set_user_attr

    def dies_before_the_field(trial: optuna.trial.Trial, key: str, value: object) -> None:
        if key == killed_before:
            raise KeyboardInterrupt  # as a kill would, nothing after it runs (a kill -9 skips even the cleanup below)
        written(trial, key, value)

    monkeypatch.setattr(optuna.trial.Trial, "set_user_attr", dies_before_the_field)
    monkeypatch.setattr(SearchLoop, "_interrupt_running", lambda self: None)  # kill -9 marks nothing
    with pytest.raises(KeyboardInterrupt):
        SearchLoop(config).run(InlineExecutor())
    monkeypatch.setattr(optuna.trial.Trial, "set_user_attr", written)
    summary = SearchLoop(config).run(InlineExecutor())
    assert (summary["trained"], summary["completed"], summary["interrupted_then_failed"]) == (1, 1, 1)
    study = optuna.load_study(study_name=config.name, storage=config.storage_url)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.FAIL, optuna.trial.TrialState.COMPLETE]
    assert study.trials[0].user_attrs["state"] == INTERRUPTED


def test_a_nan_loss_fails_the_trial_and_the_search_goes_on(device, tmp_path: Path) -> None:
    import optuna

    from hwnas.search.executors import InlineExecutor
    from hwnas.search.loop import SearchLoop

    diverging = Recipe(optimizer="sgd", lr=10.0, batch_size=8, warmup_epochs=0.0, weight_decay=1.0, label_smoothing=0.5)
    config = _config(device, tmp_path, trials=2, recipe=diverging)
    summary = SearchLoop(config).run(InlineExecutor())
    assert summary["trained"] == 2 and summary["failed"] == 2 and summary["best"] is None
    assert all("NaN" in t["error"] for t in summary["trials"])
    study = optuna.load_study(study_name=config.name, storage=config.storage_url)
    assert {t.state for t in study.trials} == {optuna.trial.TrialState.FAIL}


def test_resuming_with_another_configuration_is_refused(device, tmp_path: Path) -> None:
    from hwnas.search.executors import InlineExecutor
    from hwnas.search.loop import SearchLoop

    SearchLoop(_config(device, tmp_path, trials=1)).run(InlineExecutor())
    with pytest.raises(UserError, match="another"):
        SearchLoop(_config(device, tmp_path, trials=1, train_images=100))


def test_the_search_store_carries_a_schema_version_and_a_newer_one_is_refused(device, tmp_path: Path) -> None:
    import optuna

    from hwnas.formats import FORMATS
    from hwnas.search.loop import SearchLoop

    fmt = FORMATS["search-store"]
    config = _config(device, tmp_path, trials=1)
    SearchLoop(config)  # creates the study, trains nothing
    study = optuna.load_study(study_name=config.name, storage=config.storage_url)
    assert study.user_attrs[fmt.key] == fmt.version
    SearchLoop(config)  # the same version resumes
    study.set_user_attr(fmt.key, fmt.version + 1)
    with pytest.raises(UserError, match=f"schema version {fmt.version + 1}, newer .* upgrade hwnas"):
        SearchLoop(config)


@pytest.fixture(scope="module")
def strategy_pool():
    """One pool of two worker processes for every strategy's search: a search starts no workers of its own, so the
    pool's start (torch imported in each worker) is paid once, and each search leaves the pool ready for the next."""
    from hwnas.search.executors import LocalExecutor

    executor = LocalExecutor(2)
    yield executor
    executor.close()


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["random", "evolution", "mnas", "fbnetv3", "tpe", "nsga2"])
def test_every_strategy_runs_a_real_search(device, tmp_path: Path, strategy: str, strategy_pool) -> None:
    from hwnas.search.loop import SearchLoop

    summary = SearchLoop(_config(device, tmp_path, strategy, trials=6, budget=1.0)).run(strategy_pool)
    assert not strategy_pool.outstanding  # nothing left running for the next search
    assert summary["trained"] == 6 and summary["completed"] == 6
    assert len({(t["arch"], json.dumps(t["recipe"], sort_keys=True)) for t in summary["trials"]}) == 6
    assert summary["best"] is not None and summary["best"]["predicted_latency_ms"] <= 1.0 * 0.95


# ---- the command line --------------------------------------------------------------------------
SEARCH = ("search", "--device", "host-tflite", "--proxy-images", "192", "--proxy-val-images", "200", "--workers", "1")


def test_impossible_budget_names_the_fastest_achievable_latency(device, hwnas_in_process) -> None:
    _, fastest = device.fastest()
    assert_one_line_error(hwnas_in_process(*SEARCH, "--budget-ms", "0.01"), "fastest achievable is", f"{fastest:.4g} ms")


def test_bad_inputs_are_one_line_each(device, tmp_path: Path, hwnas_in_process) -> None:
    hwnas = hwnas_in_process
    bad_space = tmp_path / "space.json"
    bad_space.write_text("{not json")
    assert_one_line_error(hwnas(*SEARCH, "--budget-ms", "0.5", "--space", str(bad_space)), "not valid JSON")
    assert_one_line_error(hwnas(*SEARCH, "--budget-ms", "0.5", "--reward", "steep"), "--reward 'steep'")
    assert_one_line_error(hwnas(*SEARCH, "--budget-ms", "0.5", "--strategy", "genius"), "unknown search strategy 'genius'")
    spec = tmp_path / "board.toml"
    spec.write_text('name = "my-board"\nbackend = "tflite"\n')
    assert_one_line_error(hwnas("search", "--device", str(spec), "--budget-ms", "0.5"), "profile it first")


def _pets(root: Path) -> Path:
    """An ImageFolder of 3 classes of small RGB images (what a user's CIFAR-like folder looks like)."""
    from PIL import Image

    for split in ("train", "test"):
        for label in ("cat", "dog", "fox"):
            folder = root / "pets" / split / label
            folder.mkdir(parents=True)
            for index in range(10):  # enough per class that the validation split holds some (else: a warning line)
                Image.new("RGB", (32, 32), (index * 20, 90 if label == "dog" else 20, 200)).save(folder / f"{index}.png")
    return root / "pets"


@pytest.mark.slow
def test_an_rgb_folder_is_searched_with_the_shipped_table_and_only_the_layers_it_lacks_measured(
    device, tmp_path: Path, hwnas_in_process, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``hwnas search --data RGB_FOLDER`` on the grayscale default space: the space gets a stem and classifier for 3
    channels and 3 classes (``default-3ch-3cls``), and its table is the shipped one completed with the layers it lacks,
    measured now, in the shipped table's time; every other layer and whole network carries over. A second search
    measures nothing."""
    from hwnas.latency_tables.derive import missing_layers
    from hwnas.latency_tables.table import LatencyTable

    pets = _pets(tmp_path)
    monkeypatch.chdir(tmp_path)  # the derived table is written under runs/profiles of the working directory
    command = [*SEARCH, "--budget-ms", "0.6", "--data", str(pets), "--trials", "2", "--no-measure"]
    first = hwnas_in_process(*command, "--out", str(tmp_path / "first"))
    assert first.returncode == 0, first.stderr[-3000:]
    assert "searching 'default-3ch-3cls'" in first.stdout and "with the 2 layers it lacks, measured now" in first.stdout
    space = SPACE.for_data(3, 3)
    derived = LatencyTable.load(tmp_path / "runs" / "profiles" / f"{device.spec.name}-{space.name}" / "table.json")
    assert (derived.space, derived.space_hash) == (space.name, space.hash)
    assert missing_layers(space, device.table) and not missing_layers(space, derived)
    assert derived.stats["layers_measured_now"] == len(missing_layers(space, device.table))
    assert all(derived.entries[key] == entry for key, entry in device.table.entries.items() if key in derived.entries)
    assert len(derived.networks) == len(device.table.networks) and all(row["derived"] for row in derived.networks)
    searched = json.loads((tmp_path / "first" / "result.json").read_text())["search"]
    assert searched["completed"] == 2 and searched["best"]["arch"].startswith("default-3ch-3cls:")
    assert searched["config"]["space"] == space.name and searched["config"]["space_hash"] == space.hash
    second = hwnas_in_process(*command, "--out", str(tmp_path / "second"))
    assert second.returncode == 0 and "layers it lacks" not in second.stdout, second.stderr[-3000:]


def test_a_supernet_search_on_data_of_other_channels_is_one_line(device, tmp_path: Path, hwnas_in_process) -> None:
    result = hwnas_in_process(*SEARCH, "--budget-ms", "0.5", "--supernet", "default", "--data", str(_pets(tmp_path)))
    assert_one_line_error(result, "3 channel(s) and 3 classes", "train a supernet for them")


def test_train_takes_a_space_file_whose_channels_and_classes_fit_the_data(tmp_path: Path) -> None:
    pets = _pets(tmp_path)
    arch = SPACE.sample(0).format()
    assert_one_line_error(hwnas("train", "--arch", arch, "--data", str(pets)), "3 channel(s) and 3 classes", "--space")
    space = json.loads(hwnas("space", "show", "--preset", "default", "--json").stdout) | {"in_channels": 3, "num_classes": 3}
    (tmp_path / "rgb.json").write_text(json.dumps(space))
    trained = hwnas(
        "train", "--arch", arch, "--data", str(pets), "--space", str(tmp_path / "rgb.json"), "--epochs", "1", "--json"
    )
    assert trained.returncode == 0, trained.stderr
    assert json.loads(trained.stdout)["params"] > 0


@pytest.mark.slow
def test_kill_9_mid_search_then_resume_loses_and_retrains_nothing(device, tmp_path: Path) -> None:
    import optuna

    out = tmp_path / "search"
    args = [
        *SEARCH,
        "--budget-ms",
        "0.6",
        "--strategy",
        "evolution",
        "--trials",
        "6",
        "--out",
        str(out),
        "--no-measure",
        "--json",
    ]
    process = subprocess.Popen(
        [sys.executable, "-m", "hwnas", *args], start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    database = out / "search.db"
    deadline = time.time() + 600
    completed_before: dict[int, tuple] = {}
    while time.time() < deadline and len(completed_before) < 2:
        time.sleep(1)
        if database.exists():
            completed_before = completed_trials(database)
    assert len(completed_before) >= 2, process.stderr.read().decode() if process.poll() is not None else "too slow"
    os.killpg(process.pid, signal.SIGKILL)  # the search and its worker, as a crash would
    process.wait()
    completed_before = completed_trials(database)
    resumed = hwnas(*args)
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)["search"]
    assert (summary["config"]["train_images"], summary["config"]["val_images"]) == (192, 200)  # --proxy-(val-)images
    assert summary["replayed_from_storage"] == len(completed_before)
    assert summary["trained"] == 6
    after = completed_trials(database)
    assert all(after[number] == values for number, values in completed_before.items())  # none lost, none changed
    study = optuna.load_study(study_name="evolution-seed0", storage=f"sqlite:///{database}")
    trained = [t for t in study.trials if t.user_attrs.get("state") == "complete"]
    keys = [(t.user_attrs["arch"], json.dumps(t.user_attrs["recipe"], sort_keys=True)) for t in trained]
    assert len(trained) == 6 and len(set(keys)) == 6  # none retrained


def _two_searches_at_once(args: list[str]) -> None:
    processes = [
        subprocess.Popen([sys.executable, "-m", "hwnas", *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    for process in processes:
        _, stderr = process.communicate(timeout=900)
        assert process.returncode == 0, stderr


def _trained_once(database: Path, trials: int) -> None:
    import sqlite3

    import optuna

    study = optuna.load_study(study_name="random-seed0", storage=f"sqlite:///{database}")
    states = {t.state for t in study.trials}
    trained = [t for t in study.trials if t.user_attrs.get("state") == "complete"]
    keys = [(t.user_attrs["arch"], json.dumps(t.user_attrs["recipe"], sort_keys=True)) for t in trained]
    assert optuna.trial.TrialState.RUNNING not in states
    assert len(trained) == trials and len(set(keys)) == trials  # every trial done, none twice
    with sqlite3.connect(database) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)


@pytest.mark.slow
def test_two_search_processes_on_one_study_do_every_trial_exactly_once(device, tmp_path: Path) -> None:
    """Two workers on one --out, first on a new study (created once, no race), then on the existing one with a
    larger budget: each trains what the other is not training, and the study's count is met exactly."""
    out = tmp_path / "shared"
    args = [*SEARCH, "--budget-ms", "0.6", "--strategy", "random", "--out", str(out), "--no-measure"]
    _two_searches_at_once([*args, "--trials", "3"])
    _trained_once(out / "search.db", 3)
    _two_searches_at_once([*args, "--trials", "5"])
    _trained_once(out / "search.db", 5)


@pytest.mark.slow
def test_ray_cluster_gives_the_same_result_keys(device, tmp_path: Path) -> None:
    ray = pytest.importorskip("ray")
    from hwnas.search.executors import InlineExecutor, RayExecutor
    from hwnas.search.loop import SearchLoop

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        executor = RayExecutor("local")
        through_ray = SearchLoop(_config(device, tmp_path / "ray", trials=2)).run(executor)
    finally:
        ray.shutdown()
    inline = SearchLoop(_config(device, tmp_path / "inline", trials=2)).run(InlineExecutor())
    assert through_ray["trained"] == 2 and through_ray["completed"] == 2
    assert set(through_ray) == set(inline)
    assert [set(t) for t in through_ray["trials"]] == [set(t) for t in inline["trials"]]
    assert [t["arch"] for t in through_ray["trials"]] == [t["arch"] for t in inline["trials"]]
    assert [t["accuracy"] for t in through_ray["trials"]] == pytest.approx([t["accuracy"] for t in inline["trials"]])


@pytest.mark.slow
def test_finished_search_is_measured_judged_and_plotted(device, tmp_path: Path) -> None:
    from hwnas.search.executors import InlineExecutor
    from hwnas.search.loop import SearchLoop
    from hwnas.search.result import finish_search

    config = _config(device, tmp_path, trials=3)
    summary = SearchLoop(config).run(InlineExecutor())
    result = finish_search(config, summary, top_k=2, final_epochs=1, rounds=6, references=2, retrain_images=512)
    assert len(result["top"]) == 2 and result["drift"]["ratio"] > 0
    for entry in result["top"]:
        assert entry["export"]["verification"]["passed"]
        measured = entry["measured"]
        assert measured["ci_low_ms"] <= measured["median_ms"] <= measured["ci_high_ms"] and measured["rounds"] == 6
        assert entry["judged"]["verdict"] in ("within", "over", "borderline")
    assert result["top"][0]["retrained"]["test_accuracy"] is not None
    assert Path(result["pareto_plot"]).stat().st_size > 10_000
    assert json.loads((tmp_path / "random" / "result.json").read_text())["best"]["arch"] == result["top"][0]["arch"]


# ---- drift: is the device as fast today as its table? ------------------------------------------------------
@pytest.fixture(scope="module")
def ort_device():
    from hwnas.search.device import load_device_latency

    try:
        return load_device_latency("host-ort", SPACE)
    except UserError as error:
        pytest.skip(f"no ONNX Runtime table for this CPU: {error}")


def test_the_search_re_times_its_tables_networks_and_records_the_ratio(ort_device, tmp_path: Path) -> None:
    """For real, on ONNX Runtime now: the table's reference networks, or (a table without them) three of its whole
    networks."""
    from hwnas.latency_tables.table import LatencyTable
    from hwnas.search.loop import SearchConfig, SearchLoop

    shipped = ort_device.table_path.read_text()
    check = ort_device.check_drift(tmp_path / "cache", context="test search")
    references = LatencyTable.load(ort_device.table_path).references
    how = "reference networks" if references else "3 of the table's whole networks"
    assert check["ratio"] > 0 and check["how"].startswith(how)
    assert len(check["references"]) == (len(references) or 3) and check["warn"] == (abs(check["ratio"] - 1) > 0.10)
    assert check["message"].startswith(f"drift check: {how}") and "--rescale" not in check["message"]
    assert ort_device.table_path.read_text() == shipped  # a shipped table is never written to
    config = SearchConfig(SPACE, ort_device, parse_reward("hard", 1.0), tmp_path / "search", trials=1, drift=check)
    summary = SearchLoop(config).summary()
    assert summary["table_drift"]["ratio"] == check["ratio"]  # what search.json / result.json carry
    assert "drift" not in json.dumps(config.identity())  # a resumed search is not refused for a new day's drift


# ---- trials read back from a study someone edited (issue 21) ------------------------------------------------
@pytest.fixture(scope="module")
def finished_study(device, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    """A real 2-trial search's study file, copied by each test that edits it."""
    from hwnas.search.executors import InlineExecutor
    from hwnas.search.loop import SearchLoop

    config = _config(device, tmp_path_factory.mktemp("study"), trials=2)
    SearchLoop(config).run(InlineExecutor())
    return config, Path(config.out) / "search.db"


def _edited(finished_study: tuple[Any, Path], tmp_path: Path, field: str, value: Any) -> Any:
    """The finished study copied to ``tmp_path`` with trial 0's ``field`` set to ``value`` in the SQLite file itself (as
    someone editing it would: Optuna refuses to change a finished trial); its config."""
    import shutil
    import sqlite3

    config, database = finished_study
    tmp_path.mkdir(parents=True, exist_ok=True)
    shutil.copy(database, tmp_path / "search.db")
    with sqlite3.connect(tmp_path / "search.db") as db:
        (trial,) = db.execute("SELECT trial_id FROM trials WHERE number = 0").fetchone()
        changed = db.execute(
            "UPDATE trial_user_attributes SET value_json = ? WHERE trial_id = ? AND key = ?", (json.dumps(value), trial, field)
        ).rowcount
        assert changed == 1
    return replace(config, out=tmp_path)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("accuracy", "high", "trial 0.accuracy: expected a number, found 'high'"),
        ("predicted_latency_ms", "abc", "trial 0.predicted_latency_ms: expected a number, found 'abc'"),
        ("predicted_latency_ms", -1e308, "trial 0.predicted_latency_ms: -1e+308 is not above 0"),
        ("accuracy", 1e308, "trial 0.accuracy: 1e+308 is not in [0, 1]"),
        ("curve", "not a curve", "trial 0.curve: expected a list"),
        ("recipe", "sgd", "trial 0.recipe: expected an object"),
        ("info", [1, 2], "trial 0.info: expected an object"),
        ("arch", "default:r32_c16", "trial 0: "),
    ],
)
def test_a_tampered_trial_attribute_is_one_line_naming_the_study_trial_and_field(
    finished_study: tuple[Any, Path], tmp_path: Path, field: str, value: Any, message: str
) -> None:
    from hwnas.search.executors import InlineExecutor
    from hwnas.search.loop import SearchLoop

    config = _edited(finished_study, tmp_path, field, value)
    with pytest.raises(UserError, match=re.escape(message)):
        SearchLoop(config).run(InlineExecutor())


def test_a_nan_accuracy_is_a_failed_trial_with_a_warning_and_a_failed_trial_is_never_the_best(
    finished_study: tuple[Any, Path], tmp_path: Path
) -> None:
    from hwnas.search.executors import InlineExecutor
    from hwnas.search.loop import SearchLoop

    config = _edited(finished_study, tmp_path, "accuracy", float("nan"))
    with pytest.warns(UserWarning, match="accuracy is NaN; counted as a failed trial"):
        summary = SearchLoop(config).run(InlineExecutor())
    assert summary["trained"] == 2 and summary["failed"] == 1 and summary["best"]["number"] == 1
    failed = _edited(finished_study, tmp_path / "failed", "state", "failed")  # a failed trial that kept its accuracy
    summary = SearchLoop(failed).run(InlineExecutor())
    assert summary["best"] is None or summary["best"]["number"] != 0


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    field=st.sampled_from(["arch", "recipe", "state", "predicted_latency_ms", "accuracy", "reward", "curve", "info", "number"]),
    value=st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
        max_leaves=5,
    ),
)
def test_any_json_value_in_any_trial_attribute_resumes_or_is_one_line(
    finished_study: tuple[Any, Path], tmp_path_factory: pytest.TempPathFactory, field: str, value: Any
) -> None:
    from hwnas.search.executors import InlineExecutor
    from hwnas.search.loop import SearchLoop

    config = _edited(finished_study, tmp_path_factory.mktemp("edit"), field, value)
    try:
        SearchLoop(config).run(InlineExecutor())
    except UserError as error:
        assert "\n" not in str(error)
