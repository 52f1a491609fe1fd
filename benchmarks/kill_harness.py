"""Kill anywhere: SIGKILL or SIGTERM ``hwnas profile``, ``search``, ``prune``, ``run --quick`` at seeded moments, resume, count.

For each command (small settings, below) the harness

1. runs it once uninterrupted (the *reference*: its wall time D, the top-level keys of its ``--json``
   output and of every ``*.json`` it leaves in its output folder; a profile's D leaves out converting,
   which later runs find in the shared cache);
2. for each of ``--kills-per-command`` kills: starts it in a fresh output folder, sends SIGKILL to its
   process group (the command and its worker processes, as a crash or the OOM killer would) at a
   moment drawn uniformly from [a few seconds, 0.9 D] with a seeded generator, reads every store and record
   the killed process left (``tests/stores.py``), checks them with SQLite's ``PRAGMA integrity_check``,
   then runs the same command again to completion and reads them again.

It counts what the resumed command lost (an item stored before the kill that is gone), changed (one
whose stored content differs: done again or overwritten), and did twice (a layer accepted twice, a
round timed twice, an (architecture, recipe) trained twice, an episode or stage record made twice),
the integrity failures (a store that fails the check, a JSON file under its final name that does not
parse), and whether the final outputs have the same keys as the reference's. All must be 0 / equal.
A kill drawn after the command had already finished is counted as such, not as a kill.

With ``--signal TERM`` the group gets SIGTERM instead (a scheduler or ``docker stop``): the command must
stop by itself with exit 143 and its "terminated" line, leave no worker behind, and the candidates it
interrupted (search trials stored as ``interrupted``) must be trained on resume (``interrupted`` /
``interrupted_retried``).

Writes ``benchmarks/results/kill_harness.json`` (``kill_harness_sigterm.json`` with ``--signal TERM``).
``tests/test_kill_harness.py`` runs a reduced form (one kill of profile and of search) through the same code.

    flock /tmp/hwnas-cpu.lock .venv/bin/python benchmarks/kill_harness.py [--seed 0] [--kills-per-command 3]
        [--commands profile,search,prune,run] [--workdir DIR] [--signal KILL|TERM]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT / "tests"))  # the store readers the tests count with

from inputs import SMALL_ARCH, write_idx_folder  # noqa: E402
from processes import group_members  # noqa: E402
from stores import Audit, audit, compare  # noqa: E402

Args = Callable[[Path, Path], list[str]]  # (shared folder, output folder) -> hwnas arguments


@dataclass(frozen=True)
class Command:
    name: str
    args: Args
    prepare: Callable[[Path], None] | None = None  # shared inputs, made once and never killed
    # how long a rerun takes, from the uninterrupted run's seconds and --json output (default: as long)
    expected_s: Callable[[float, Any], float] | None = None
    earliest_s: float = 3.0  # no kill before this (the interpreter is still importing)
    timeout_s: float = 1200.0  # one run, uninterrupted


def hwnas(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "hwnas", *map(str, args)]


def run_to_end(command: list[str], timeout_s: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, cwd=ROOT, env=_env(), check=False)


def _env() -> dict[str, str]:
    return os.environ | {"PYTHONUNBUFFERED": "1"}


# ---- the commands, small -----------------------------------------------------------------------------------
def _profile_args(shared: Path, out: Path, layers: int = 24) -> list[str]:
    return [
        "profile", "host-ort", "--space", "default", "--no-space-layers", "--layers", str(layers), "--networks", "3",
        "--workers", "1", "--cache", str(shared / "cache"), "--out", str(out), "--json", "--no-reuse",
    ]  # fmt: skip


def _profile_expected_s(seconds: float, printed: Any) -> float:
    """The uninterrupted run filled the shared conversion cache: a later one measures without converting."""
    return seconds - float(printed["convert_s"])


def _search_args(shared: Path, out: Path) -> list[str]:
    return [
        "search", "--device", "host-tflite", "--budget-ms", "0.6", "--strategy", "evolution", "--trials", "4",
        "--proxy-images", "192", "--workers", "1", "--no-measure", "--out", str(out), "--json",
    ]  # fmt: skip


def _prepare_prune(shared: Path) -> None:
    """A small data folder and a base network trained on it for one epoch (``hwnas train --out``)."""
    write_idx_folder(shared / "data", train=1000, test=200)
    train = [
        "train", "--arch", SMALL_ARCH, "--data", str(shared / "data"), "--epochs", "1", "--threads", "1",
        "--out", str(shared / "base"), "--json",
    ]  # fmt: skip
    done = run_to_end(hwnas(*train), 900)
    if done.returncode != 0:
        raise RuntimeError(f"training the base network failed: {done.stderr[-2000:]}")


def _prune_args(shared: Path, out: Path) -> list[str]:
    return [
        "prune", str(shared / "base"), "--budget", "flops=0.5", "--episodes", "24", "--finetune-epochs", "1",
        "--no-baselines", "--heldout", "100", "--data", str(shared / "data"), "--threads", "1", "--out", str(out), "--json",
    ]  # fmt: skip


def _run_args(shared: Path, out: Path) -> list[str]:
    return ["run", "--quick", "--out", str(out), "--json"]


COMMANDS = {
    "profile": Command("profile", _profile_args, expected_s=_profile_expected_s),
    "search": Command("search", _search_args),
    "prune": Command("prune", _prune_args, _prepare_prune),
    "run": Command("run", _run_args, earliest_s=5.0, timeout_s=1800.0),
}


# ---- one command's outputs ---------------------------------------------------------------------------------
# keys a file carries only when its run was resumed at a particular point, so an uninterrupted reference cannot have
# them: a profile resumed after its reference networks were timed re-times them and records the ratio (table.json "drift")
RESUME_ONLY_KEYS = {"table.json": {"drift"}}


def _keys(value: Any, resume_only: frozenset[str] | set[str] = frozenset()) -> list[str] | None:
    return sorted(set(value) - resume_only) if isinstance(value, dict) else None


def output_keys(stdout: str, out: Path) -> dict[str, Any]:
    """Top-level keys of the ``--json`` output and of every JSON file directly in the output folder."""
    try:
        printed = _keys(json.loads(stdout))
    except ValueError:
        printed = None
    files = {}
    for path in sorted(out.glob("*.json")):
        if path.name.startswith("."):
            continue
        try:
            files[path.name] = _keys(json.loads(path.read_text()), RESUME_ONLY_KEYS.get(path.name, set()))
        except ValueError:
            files[path.name] = "not JSON"
    return {"stdout": printed, "files": files}


def group_gone(pgid: int, within_s: float = 10.0) -> bool:
    """True once no process of the group is left (the workers died with the command)."""
    end = time.monotonic() + within_s
    while time.monotonic() < end:
        if not group_members(pgid):
            return True
        time.sleep(0.05)
    return not group_members(pgid)


def start_and_kill(command: list[str], at_s: float, log_file: Path, stop: signal.Signals = signal.SIGKILL) -> dict[str, Any]:
    """Start ``command`` in its own process group and send ``stop`` to the group ``at_s`` seconds later (unless it ended).

    After SIGTERM the command must end by itself (within 60 s) with exit 143 and a "terminated" line."""
    started = time.monotonic()
    with log_file.open("w") as stderr:
        process = subprocess.Popen(
            command, cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True
        )
        try:
            process.wait(timeout=at_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, stop)
            process.wait(timeout=60)
            entry = {"killed": True, "at_s": round(time.monotonic() - started, 2), "survivors": not group_gone(process.pid)}
            if stop != signal.SIGKILL:
                stderr.flush()
                last = (log_file.read_text().strip().splitlines() or [""])[-1]
                entry |= {"exit": process.returncode, "clean_stop": process.returncode == 143 and "terminated" in last}
                entry |= {} if entry["clean_stop"] else {"stderr": log_file.read_text()[-2000:]}
            return entry
        finally:
            if process.poll() is None:  # never leave one behind
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=60)
    ended = round(time.monotonic() - started, 2)
    return {"killed": False, "at_s": ended, "exit": process.returncode, "stderr": log_file.read_text()[-2000:]}


def _summary(found: Audit) -> dict[str, Any]:
    kinds: dict[str, int] = {}
    for kind in found.stores.values():
        kinds[kind] = kinds.get(kind, 0) + 1
    return {"items": len(found.items), "stores": kinds, "integrity_failures": found.integrity_failures}


def interrupted_candidates(out: Path) -> tuple[set[str], set[str]]:
    """(arch, recipe) keys of search trials stored as ``interrupted``, and of trials completed, in every study under ``out``."""
    interrupted: set[str] = set()
    completed: set[str] = set()
    for database in out.rglob("search.db"):
        with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as connection:
            tables = {name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if "trial_user_attributes" not in tables:  # not an Optuna study (e.g. pruning's own store)
                continue
            rows = connection.execute(
                "SELECT trial_id, key, value_json FROM trial_user_attributes WHERE key IN ('arch', 'recipe', 'state')"
            ).fetchall()
        trials: dict[int, dict[str, Any]] = {}
        for trial_id, key, value in rows:
            trials.setdefault(trial_id, {})[key] = json.loads(value)
        for attrs in trials.values():
            key = json.dumps([attrs.get("arch"), attrs.get("recipe")], sort_keys=True)
            if attrs.get("state") == "interrupted":
                interrupted.add(key)
            elif attrs.get("state") == "complete":
                completed.add(key)
    return interrupted, completed


def kill_once(
    spec: Command, shared: Path, out: Path, at_s: float, reference: dict[str, Any], stop: signal.Signals = signal.SIGKILL
) -> dict[str, Any]:
    command = hwnas(*spec.args(shared, out))
    outcome = start_and_kill(command, at_s, out.with_name(out.name + ".killed.log"), stop)
    entry: dict[str, Any] = {"drawn_s": round(at_s, 2), **outcome}
    if not outcome["killed"]:
        entry["note"] = "the command ended before the kill"
        return entry
    before = audit(out)
    entry["after_kill"] = _summary(before)
    started = time.monotonic()
    resumed = run_to_end(command, spec.timeout_s)
    entry["resume_s"] = round(time.monotonic() - started, 2)
    entry["resume_exit"] = resumed.returncode
    if resumed.returncode != 0:
        entry["resume_stderr"] = resumed.stderr[-3000:]
    after = audit(out)
    entry["after_resume"] = _summary(after)
    found = compare(before, after)
    entry["lost"], entry["changed"], entry["redone"] = found.lost, found.changed, found.redone
    interrupted, completed = interrupted_candidates(out)
    entry["interrupted"], entry["interrupted_retried"] = len(interrupted), len(interrupted & completed)
    keys = output_keys(resumed.stdout, out)
    entry["keys_match"] = keys == reference["keys"]
    if not entry["keys_match"]:
        entry["keys"] = keys
    return entry


def run_command(
    spec: Command, kills: int, seed: int, workdir: Path, log: Callable[[str], None] = print, stop: signal.Signals = signal.SIGKILL
) -> dict[str, Any]:
    shared = workdir / spec.name / "shared"
    shared.mkdir(parents=True, exist_ok=True)
    if spec.prepare is not None:
        log(f"{spec.name}: preparing")
        spec.prepare(shared)
    out = workdir / spec.name / "reference"
    started = time.monotonic()
    done = run_to_end(hwnas(*spec.args(shared, out)), spec.timeout_s)
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise RuntimeError(f"the uninterrupted {spec.name} failed (exit {done.returncode}): {done.stderr[-3000:]}")
    whole = audit(out)
    reference = {"seconds": round(seconds, 2), "keys": output_keys(done.stdout, out), **_summary(whole), "redone": whole.redone}
    expected = spec.expected_s(seconds, json.loads(done.stdout)) if spec.expected_s else seconds
    reference["expected_rerun_s"] = round(expected, 2)
    log(f"{spec.name}: uninterrupted in {seconds:.1f} s (a rerun: {expected:.1f} s), {len(whole.items)} items")
    rng = random.Random(f"{seed}:{spec.name}")
    entries = []
    for index in range(kills):
        at_s = rng.uniform(spec.earliest_s, max(spec.earliest_s + 1.0, 0.9 * expected))  # 0.9: a kill after the end is no kill
        entry = kill_once(spec, shared, workdir / spec.name / f"kill-{index}", at_s, reference, stop)
        entries.append(entry)
        log(
            f"{spec.name}: kill {index + 1}/{kills} at {entry['at_s']} s: "
            + (
                f"{entry['after_kill']['items']} items kept, resumed in {entry['resume_s']} s (exit {entry['resume_exit']}), "
                f"lost {len(entry['lost'])}, changed {len(entry['changed'])}, redone {len(entry['redone'])}, "
                f"keys {'match' if entry['keys_match'] else 'DIFFER'}, "
                f"{entry['interrupted']} interrupted ({entry['interrupted_retried']} retried)"
                + ("" if entry.get("clean_stop", True) else ", NOT a clean stop")
                if entry["killed"]
                else entry["note"]
            )
        )
    return {"reference": reference, "kills": entries}


def totals(commands: dict[str, dict[str, Any]]) -> dict[str, int]:
    counts = dict.fromkeys(
        (
            "kills", "resumes", "finished_before_kill", "failed_resumes", "items_before_kill", "items_lost", "items_changed",
            "items_redone", "integrity_failures", "key_mismatches", "survivors", "unclean_stops", "interrupted",
            "interrupted_not_retried",
        ),
        0,
    )  # fmt: skip
    for result in commands.values():
        counts["integrity_failures"] += len(result["reference"]["integrity_failures"])
        counts["items_redone"] += sum(count - 1 for count in result["reference"]["redone"].values())
        for entry in result["kills"]:
            if not entry["killed"]:
                counts["finished_before_kill"] += 1
                continue
            counts["kills"] += 1
            counts["resumes"] += 1
            counts["failed_resumes"] += entry["resume_exit"] != 0
            counts["items_before_kill"] += entry["after_kill"]["items"]
            counts["items_lost"] += len(entry["lost"])
            counts["items_changed"] += len(entry["changed"])
            counts["items_redone"] += sum(count - 1 for count in entry["redone"].values())
            counts["integrity_failures"] += len(entry["after_kill"]["integrity_failures"])
            counts["integrity_failures"] += len(entry["after_resume"]["integrity_failures"])
            counts["key_mismatches"] += not entry["keys_match"]
            counts["survivors"] += bool(entry["survivors"])
            counts["unclean_stops"] += entry.get("clean_stop") is False
            counts["interrupted"] += entry.get("interrupted", 0)
            counts["interrupted_not_retried"] += entry.get("interrupted", 0) - entry.get("interrupted_retried", 0)
    return counts


def run_harness(
    names: list[str],
    kills: int,
    seed: int,
    workdir: Path,
    log: Callable[[str], None] = print,
    stop: signal.Signals = signal.SIGKILL,
    commands_by_name: dict[str, Command] | None = None,
) -> dict[str, Any]:
    """Kill each named command ``kills`` times (``commands_by_name``: the commands to choose from, default
    :data:`COMMANDS`; a test passes smaller ones)."""
    known = COMMANDS if commands_by_name is None else commands_by_name
    unknown = [name for name in names if name not in known]
    if unknown:
        raise SystemExit(f"unknown command(s) {unknown}: choose from {', '.join(known)}")
    started = time.monotonic()
    load_before = os.getloadavg()
    commands = {name: run_command(known[name], kills, seed, workdir, log, stop) for name in names}
    return {
        "signal": stop.name,
        "seed": seed,
        "kills_per_command": kills,
        "commands_run": names,
        "totals": totals(commands),
        "commands": commands,
        "wall_s": round(time.monotonic() - started, 1),
        "machine": {"cpus": len(os.sched_getaffinity(0)), "load_before": load_before, "platform": platform.platform()},
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def merged(result: dict[str, Any], path: Path) -> dict[str, Any]:
    """A run of some commands replaces theirs in an earlier result file and keeps the others (each says when and with
    which settings it ran), so one command can be re-run without re-running all four."""
    for entry in result["commands"].values():
        entry["run"] = {key: result[key] for key in ("seed", "kills_per_command", "measured_at")}
    try:
        earlier = json.loads(path.read_text())
    except (OSError, ValueError):
        return result
    commands = {name: entry for name, entry in earlier.get("commands", {}).items() if name not in result["commands"]}
    if not commands:
        return result
    for entry in commands.values():
        entry.setdefault("run", {key: earlier.get(key) for key in ("seed", "kills_per_command", "measured_at")})
    commands |= result["commands"]
    return result | {"commands": commands, "commands_run": sorted(commands), "totals": totals(commands)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    parser.add_argument("--kills-per-command", type=int, default=3)
    parser.add_argument("--commands", default=",".join(COMMANDS), help=f"comma-separated, of {', '.join(COMMANDS)}")
    parser.add_argument("--workdir", type=Path, help="keep the runs here (default: a temporary folder, removed)")
    parser.add_argument("--signal", choices=("KILL", "TERM"), default="KILL", help="SIGKILL (a crash) or SIGTERM (a scheduler)")
    parser.add_argument("--out", type=Path, help="default: benchmarks/results/kill_harness[_sigterm].json")
    args = parser.parse_args()
    stop = signal.Signals[f"SIG{args.signal}"]
    args.out = args.out or RESULTS / ("kill_harness.json" if stop == signal.SIGKILL else "kill_harness_sigterm.json")
    if args.kills_per_command < 1:
        parser.error("--kills-per-command must be at least 1")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="hwnas-kill-harness-"))
    try:
        result = run_harness([name.strip() for name in args.commands.split(",") if name.strip()], args.kills_per_command,
                             args.seed, workdir, stop=stop)  # fmt: skip
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    result = merged(result, args.out)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["totals"], indent=2))
    counted = ("kills", "resumes", "finished_before_kill", "items_before_kill", "interrupted")
    bad = {key: value for key, value in result["totals"].items() if key not in counted and value}
    if bad:
        raise SystemExit(f"the kill harness found problems: {bad} (see {args.out})")


if __name__ == "__main__":
    main()
