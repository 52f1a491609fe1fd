"""The kill harness (``benchmarks/kill_harness.py``): its store audit on real stores, and a reduced run of it.

The fast tests give the audit (``tests/stores.py``) stores written by hwnas's own classes and Optuna,
then lose, change or repeat an item, or break a file, and check that it is counted: a harness whose
counts stay 0 must be one that could have seen otherwise. The slow test runs the harness itself, two
SIGKILLs of ``hwnas profile``, as ``benchmarks/kill_harness.py --commands profile --kills-per-command 2``
would (search, prune and run have their own kill tests in test_search, test_pruning and test_pipeline).
"""

from __future__ import annotations

import importlib.util
import json
import signal
import sqlite3
import sys
from dataclasses import replace
from functools import partial
from pathlib import Path

import pytest

from hwnas.devices.measurement import Measurement
from hwnas.latency_tables.store import LatencyStore
from hwnas.pruning.store import Episode, EpisodeStore

from stores import audit, compare

REPO = Path(__file__).resolve().parents[1]


def load_harness():
    """``benchmarks/kill_harness.py`` (benchmarks/ is not a package), imported once."""
    if "kill_harness" in sys.modules:
        return sys.modules["kill_harness"]
    spec = importlib.util.spec_from_file_location("kill_harness", REPO / "benchmarks" / "kill_harness.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["kill_harness"] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


# ---- the audit counts what it must -------------------------------------------------------------------------
def _measurement(ms: float) -> Measurement:
    return Measurement((ms, ms * 1.01, ms * 0.99, ms))


def test_a_layer_accepted_twice_or_a_round_timed_twice_is_redone(tmp_path: Path) -> None:
    store = LatencyStore.open(tmp_path / "profile" / "store.sqlite", {"fingerprint": {}, "space_hash": "x"})
    store.record("op", "a", {"round": 1}, _measurement(1.0), accepted=False)
    store.record("op", "a", {"round": 2}, _measurement(1.0), accepted=True)
    store.record("op", "b", {}, _measurement(2.0), accepted=True)
    first = audit(tmp_path)
    assert first.stores == {"profile/store.sqlite": "profile"} and len(first.items) == 3 and first.redone == {}
    assert first.integrity == {"profile/store.sqlite": "ok"}
    store.record("op", "b", {}, _measurement(2.0), accepted=True)  # b measured again after it was accepted
    store.record("op", "a", {"round": 2}, _measurement(1.0), accepted=False)  # a's round 2 timed again
    store.close()
    again = audit(tmp_path)
    assert set(again.redone) == {"profile/store.sqlite accepted op b", "profile/store.sqlite round 2 of op a"}
    found = compare(first, again)
    assert found.lost == [] and found.changed == [] and not found.ok


def _episode(number: int, reward: float) -> Episode:
    return Episode(number, [0.5, 0.5], [8, 16], reward, 0.8, 0.5, 100, 10, 0.2)


def test_an_episode_lost_or_run_again_is_counted(tmp_path: Path) -> None:
    path = tmp_path / "prune" / "search.db"
    store = EpisodeStore(path, {"budget": "flops=0.5"})
    for number in range(3):
        store.add("search", _episode(number, -0.1 * number), b"agent")
    store.close()
    before = audit(tmp_path)
    assert before.stores == {"prune/search.db": "episodes"} and len(before.items) == 3
    assert compare(before, audit(tmp_path)).ok
    with sqlite3.connect(path) as db:
        db.execute("UPDATE episodes SET seconds = 0.3 WHERE episode = 1")  # run again: another wall time
        db.execute("DELETE FROM episodes WHERE episode = 2")
    found = compare(before, audit(tmp_path))
    assert found.changed == ["prune/search.db episode search/1"] and found.lost == ["prune/search.db episode search/2"]


def test_a_candidate_trained_twice_is_redone_and_an_interrupted_one_is_not_an_item(tmp_path: Path) -> None:
    optuna = pytest.importorskip("optuna")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = f"sqlite:///{tmp_path / 'search' / 'search.db'}"
    (tmp_path / "search").mkdir()
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")

    def trained(arch: str, accuracy: float) -> None:
        trial = study.ask()
        for key, value in {"arch": arch, "recipe": {"lr": 0.1}, "accuracy": accuracy, "state": "complete"}.items():
            trial.set_user_attr(key, value)
        study.tell(trial, accuracy)

    trained("a", 0.5)
    trained("b", 0.6)
    study.ask().set_user_attr("arch", "c")  # left running by a killed process: not finished, not an item
    first = audit(tmp_path)
    assert first.stores == {"search/search.db": "optuna"}
    assert sorted(first.items) == ["search/search.db trial s/0", "search/search.db trial s/1"] and first.redone == {}
    trained("a", 0.55)  # the same pair trained again
    assert list(audit(tmp_path).redone.values()) == [2]


def test_a_broken_store_or_half_written_record_is_an_integrity_failure(tmp_path: Path) -> None:
    (tmp_path / "stages").mkdir()
    (tmp_path / "stages" / "search.json").write_text('{"stage": "search", "session": 1}')
    (tmp_path / "stages" / ".train.json.x1.tmp").write_text('{"stage": "tr')  # a temporary name: not a record
    assert audit(tmp_path).integrity_failures == [] and list(audit(tmp_path).items) == ["record stages/search.json"]
    (tmp_path / "stages" / "train.json").write_text('{"stage": "tr')
    (tmp_path / "store.sqlite").write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000)
    failures = audit(tmp_path).integrity_failures
    assert len(failures) == 2 and failures[0].startswith("store.sqlite: ") and failures[1] == "stages/train.json: not whole JSON"


def test_a_changed_stage_record_is_counted_and_the_output_keys_are_read(tmp_path: Path) -> None:
    (tmp_path / "stages").mkdir()
    (tmp_path / "stages" / "table.json").write_text('{"stage": "table", "session": 1}')
    before = audit(tmp_path)
    (tmp_path / "stages" / "table.json").write_text('{"stage": "table", "session": 2}')
    assert compare(before, audit(tmp_path)).changed == ["record stages/table.json"]
    harness = load_harness()
    (tmp_path / "summary.json").write_text('{"b": 1, "a": {"c": 2}}')
    (tmp_path / "sessions.json").write_text("[]")
    (tmp_path / "table.json").write_text('{"entries": [], "drift": []}')  # drift: only a resumed profile has one
    assert harness.output_keys('{"x": 1}', tmp_path) == {
        "stdout": ["x"],
        "files": {"sessions.json": None, "summary.json": ["a", "b"], "table.json": ["entries"]},
    }
    assert harness.output_keys("not json", tmp_path)["stdout"] is None


def test_the_kill_takes_the_whole_process_group(tmp_path: Path) -> None:
    """SIGKILL lands on the command and the child it started; none survives."""
    harness = load_harness()
    marker = tmp_path / "child.pid"
    script = (
        "import subprocess, sys, time; "
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
        f"open({str(marker)!r}, 'w').write(str(child.pid)); time.sleep(60)"
    )
    outcome = harness.start_and_kill([sys.executable, "-c", script], 2.0, tmp_path / "log")
    assert outcome["killed"] and not outcome["survivors"] and 2.0 <= outcome["at_s"] < 10
    child = int(marker.read_text())
    assert not Path(f"/proc/{child}").exists() or Path(f"/proc/{child}/stat").read_text().split(") ")[1][0] in "ZX"
    ended = harness.start_and_kill([sys.executable, "-c", "print('done')"], 30.0, tmp_path / "log2")
    assert not ended["killed"] and ended["exit"] == 0


def test_sigterm_must_end_the_command_by_itself_with_its_terminated_line(tmp_path: Path) -> None:
    """A command that stops on SIGTERM as hwnas does is a clean stop; one that ignores it is not (it is killed)."""
    harness = load_harness()
    polite = (
        "import signal, sys, time\n"
        "def stop(*_):\n    print('terminated: kept, rerun to continue', file=sys.stderr); sys.exit(143)\n"
        "signal.signal(signal.SIGTERM, stop); time.sleep(60)"
    )
    clean = harness.start_and_kill([sys.executable, "-c", polite], 2.0, tmp_path / "log", signal.SIGTERM)
    assert clean["killed"] and clean["clean_stop"] and clean["exit"] == 143 and not clean["survivors"]
    silent = "import signal, sys, time; signal.signal(signal.SIGTERM, lambda *_: sys.exit(0)); time.sleep(60)"
    unclean = harness.start_and_kill([sys.executable, "-c", silent], 2.0, tmp_path / "log2", signal.SIGTERM)
    assert unclean["killed"] and not unclean["clean_stop"] and unclean["exit"] == 0


def test_interrupted_candidates_are_read_from_every_study(tmp_path: Path) -> None:
    import optuna

    storage = f"sqlite:///{tmp_path / 'out' / 'search.db'}"
    (tmp_path / "out").mkdir()
    study = optuna.create_study(storage=storage, study_name="s")
    for arch, state in (("a", "interrupted"), ("a", "complete"), ("b", "interrupted"), ("c", "complete")):
        trial = study.ask()
        for key, value in (("arch", arch), ("recipe", {"lr": 0.1}), ("state", state)):
            trial.set_user_attr(key, value)
        if state == "complete":
            study.tell(trial, 1.0)
        else:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
    interrupted, completed = load_harness().interrupted_candidates(tmp_path)
    assert len(interrupted) == 2 and len(completed) == 2 and len(interrupted & completed) == 1  # a retried, b not


# ---- the harness, reduced ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_profile_killed_twice_loses_and_redoes_nothing(tmp_path: Path) -> None:
    harness = load_harness()
    smaller = replace(harness.COMMANDS["profile"], args=partial(harness._profile_args, layers=10))  # the benchmark's: 24
    result = harness.run_harness(
        ["profile"], kills=2, seed=0, workdir=tmp_path, log=lambda _: None, commands_by_name={"profile": smaller}
    )
    totals = result["totals"]
    details = json.dumps(result["commands"], indent=1)[-6000:]
    assert totals["kills"] + totals["finished_before_kill"] == 2, details
    assert totals["kills"] >= 1 and totals["items_before_kill"] > 0, details  # a kill landed mid-command, items kept
    assert totals["failed_resumes"] == 0 and totals["survivors"] == 0, details
    assert totals["items_lost"] == totals["items_changed"] == totals["items_redone"] == 0, details
    assert totals["integrity_failures"] == 0 and totals["key_mismatches"] == 0, details
    reference = result["commands"]["profile"]["reference"]
    assert reference["items"] > 0 and reference["keys"]["stdout"], reference  # there was something to lose
    assert reference["stores"] == {"profile": 1}


def test_a_rerun_of_some_commands_replaces_theirs_and_keeps_the_others(tmp_path: Path) -> None:
    harness = load_harness()
    entry = {"reference": {"integrity_failures": [], "redone": {}}, "kills": []}
    path = tmp_path / "kill_harness.json"
    first = {"seed": 0, "kills_per_command": 3, "measured_at": "t1", "commands": {"search": entry, "profile": entry}}
    path.write_text(json.dumps(harness.merged(first, path)))  # nothing earlier: the result as it is
    killed = {"killed": True, "resume_exit": 0, "after_kill": {"items": 5, "integrity_failures": []},
              "after_resume": {"integrity_failures": []}, "lost": [], "changed": [], "redone": {}, "keys_match": True,
              "survivors": []}  # fmt: skip
    again = {"seed": 1, "kills_per_command": 1, "measured_at": "t2", "commands": {"profile": entry | {"kills": [killed]}}}
    result = harness.merged(again, path)
    assert sorted(result["commands"]) == ["profile", "search"] and result["commands_run"] == ["profile", "search"]
    assert result["commands"]["search"]["run"] == {"seed": 0, "kills_per_command": 3, "measured_at": "t1"}
    assert result["commands"]["profile"]["run"]["measured_at"] == "t2"
    assert result["totals"]["kills"] == 1 and result["totals"]["items_before_kill"] == 5
