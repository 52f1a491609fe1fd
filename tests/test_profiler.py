"""Profiling for real on ONNX Runtime: tiny space, resumption after kill -9, one-line errors."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hwnas.devices import DeviceSpec, make_backend
from hwnas.devices.measurement import Measurement
from hwnas.latency_tables.drift import DEFAULT_REFERENCES
from hwnas.latency_tables.profiler import Profiler, ProfileSettings
from hwnas.latency_tables.store import LatencyStore
from hwnas.latency_tables.table import LatencyTable
from hwnas.space import SearchSpace, StageSpace

from stores import count_measurements, described_measurements, measurement_rows

TINY = SearchSpace(
    name="tiny",
    description="a few layers for profiling tests",
    in_channels=1,
    num_classes=10,
    resolutions=(16,),
    stem_channels=8,
    stem_stride=1,
    stages=(StageSpace(2, (8, 16), (1, 2), (3, 5), (3,)), StageSpace(1, (16,), (1,), (3,), (3, 6), (False, True))),
    final_expand=32,
)
ORT_SPEC = 'name = "cpu"\nbackend = "onnxruntime"\nwarmup = 5\nrepeats = 40\n'


@pytest.fixture(scope="module")
def conversion_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Converted files shared by this file's profiles (kept by what they hold, so sharing changes no result): each
    layer and reference network is converted once per test process, not once per test. No test here reads the cache."""
    return tmp_path_factory.mktemp("conversions")


@pytest.fixture()
def files(tmp_path: Path, conversion_cache: Path) -> dict[str, Path]:
    space, spec = tmp_path / "tiny.json", tmp_path / "cpu.toml"
    space.write_text(json.dumps(TINY.to_json()))
    spec.write_text(ORT_SPEC)
    return {"space": space, "spec": spec, "cache": conversion_cache}


def hwnas(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hwnas", *map(str, args)], capture_output=True, text=True, timeout=600)


rows = measurement_rows  # (subject, key, attempt, samples) of every stored row, in the order written


def test_profile_measures_every_layer_and_the_networks(tmp_path: Path, files: dict[str, Path]) -> None:
    spec = DeviceSpec.from_toml(files["spec"])
    report = Profiler(spec, TINY, tmp_path / "out", files["cache"], ProfileSettings(networks=3, workers=2)).run(progress=False)
    table = LatencyTable.load(tmp_path / "out" / "table.json")
    assert set(table.entries) == set(TINY.enumerate_op_keys()) and report.ops == len(TINY.enumerate_op_keys())
    assert len(table.networks) == 3 and table.space_hash == TINY.hash and table.fingerprint["runtime"] == "onnxruntime"
    assert all(entry.median_ms > 0 and entry.n >= 40 for entry in table.entries.values())
    assert report.measured_now == report.ops + 3
    again = Profiler(spec, TINY, tmp_path / "out", files["cache"], ProfileSettings(networks=3)).run(progress=False)
    assert again.measured_now == 0 and again.attempts_now == 0 and again.table.entries == table.entries


def test_noisy_layers_are_measured_again_and_every_attempt_kept(tmp_path: Path, files: dict[str, Path]) -> None:
    profiler = Profiler(
        DeviceSpec.from_toml(files["spec"]), TINY, tmp_path, files["cache"], ProfileSettings(cv_threshold=0.1, max_attempts=3)
    )
    store = LatencyStore.open(tmp_path / "s.sqlite", {"fingerprint": {}, "space_hash": TINY.hash})
    noisy, calm = Measurement((1.0, 1.5, 2.0, 2.5)), Measurement((1.0, 1.01, 0.99, 1.0))
    results = iter([noisy, calm])
    assert profiler.measure_until_stable(store, "op", "a", {}, lambda: next(results)) == 2
    assert profiler.measure_until_stable(store, "op", "b", {}, lambda: noisy) == 3
    assert [r.accepted for r in store.all()] == [False, True, False, False, True]


KILL_COMMON = ("--networks", "4", "--json")


@pytest.fixture(scope="module")
def uninterrupted_profile(tmp_path_factory: pytest.TempPathFactory, conversion_cache: Path) -> Path:
    """The table of a profile nobody interrupted, which each kill test's resumed table must equal (its layers and
    networks do not depend on ``sessions``); made once for both, and it fills the conversion cache they share."""
    folder = tmp_path_factory.mktemp("uninterrupted")
    space, spec = folder / "tiny.json", folder / "cpu.toml"
    space.write_text(json.dumps(TINY.to_json()))
    spec.write_text(ORT_SPEC)
    done = hwnas("profile", spec, "--out", folder / "profile", "--space", space, "--cache", conversion_cache, *KILL_COMMON)
    assert done.returncode == 0, done.stderr
    return folder / "profile" / "table.json"


@pytest.mark.slow
@pytest.mark.parametrize("sessions", [1, 2])
def test_kill_minus_nine_then_resume_loses_and_repeats_nothing(
    tmp_path: Path, files: dict[str, Path], uninterrupted_profile: Path, sessions: int
) -> None:
    """SIGKILL mid-profile, rerun: no accepted layer and no stored round is measured again, nothing stored changes.

    sessions = 1: each layer in one stretch, accepted as it goes; the kill lands after a few.
    sessions = 2: round-robin rounds (as the shipped specs use), pooled only after the last round;
    the kill lands in round 2, so every layer has round 1 stored and some have round 2.
    """
    spec = tmp_path / "spec.toml"
    spec.write_text(ORT_SPEC + f"sessions = {sessions}\n")
    out = tmp_path / "killed"
    common = ["--space", files["space"], "--cache", files["cache"], *KILL_COMMON]
    subjects = len(TINY.enumerate_op_keys()) + 4 + len(DEFAULT_REFERENCES)  # the CLI times the reference networks too
    process = subprocess.Popen(
        [sys.executable, "-m", "hwnas", "profile", str(spec), "--out", str(out), *map(str, common)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    store = out / "store.sqlite"
    kill_after = 5 if sessions == 1 else subjects + 3
    deadline = time.time() + 120
    while time.time() < deadline and not (store.exists() and count_measurements(store) >= kill_after):
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    before, described_before = rows(store), described_measurements(store)
    accepted_before = {(s, k) for s, k, _, accepted in described_before if accepted}
    rounds_before = {(s, k, r) for s, k, r, _ in described_before if r is not None}
    if sessions == 1:
        assert 0 < len(accepted_before) < subjects, "the kill should land in the middle of measuring"
    else:
        assert len({(s, k) for s, k, r in rounds_before if r == 1}) == subjects
        assert 0 < len({(s, k) for s, k, r in rounds_before if r == 2}) < subjects, "the kill should land in round 2"

    result = hwnas("profile", spec, "--out", out, *common)
    assert result.returncode == 0, result.stderr
    assert rows(store)[: len(before)] == before  # nothing stored was changed or lost
    described_after = described_measurements(store)
    new_rows = described_after[len(before) :]
    assert not [row for row in new_rows if (row[0], row[1]) in accepted_before]  # no accepted layer measured again
    new_rounds = [(s, k, r) for s, k, r, _ in new_rows if r is not None]
    assert not set(new_rounds) & rounds_before and len(new_rounds) == len(set(new_rounds))  # no round measured twice
    everything = {(s, k) for s, k, _, _ in described_after}
    if sessions == 2:
        all_rounds = rounds_before | set(new_rounds)
        assert {(s, k, r) for s, k in everything for r in (1, 2)} <= all_rounds  # every subject's two rounds, each once
        first_pool_rejected = {(s, k) for s, k, r, accepted in described_after if r is None and not accepted}
        assert {(s, k) for s, k, r in all_rounds if r > 2} <= first_pool_rejected  # more rounds only for noisy ones
    assert len(everything) == subjects and {(s, k) for s, k, _, accepted in described_after if accepted} == everything
    assert json.loads(result.stdout)["measured_now"] == subjects - len(accepted_before)
    resumed, uninterrupted = LatencyTable.load(out / "table.json"), LatencyTable.load(uninterrupted_profile)
    assert set(resumed.entries) == set(uninterrupted.entries)
    assert {n["arch"] for n in resumed.networks} == {n["arch"] for n in uninterrupted.networks}


def assert_one_line_error(result: subprocess.CompletedProcess[str], fragment: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr and fragment in lines[0], result.stderr


def test_profile_bad_input_is_one_line(tmp_path: Path, files: dict[str, Path]) -> None:
    bad_backend, bad_toml = tmp_path / "b.toml", tmp_path / "m.toml"
    bad_backend.write_text('name = "x"\nbackend = "coreml"\n')
    bad_toml.write_text('name = "x"\nbackend = \n')
    assert_one_line_error(hwnas("profile", bad_backend, "--space", files["space"]), "unknown backend 'coreml'")
    assert_one_line_error(hwnas("profile", bad_toml, "--space", files["space"]), "malformed TOML")
    assert_one_line_error(hwnas("profile", "nvidia-trt", "--space", files["space"], "--out", tmp_path / "t"), "cannot run here")
    assert_one_line_error(hwnas("devices", "check", "nvidia-trt"), "cannot run here")
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "store.sqlite").write_bytes(b"garbage" * 500)
    assert_one_line_error(hwnas("profile", files["spec"], "--space", files["space"], "--out", corrupt), "not a readable")
    assert (corrupt / "store.sqlite").read_bytes() == b"garbage" * 500  # left for the user to inspect, not replaced


@pytest.mark.slow
def test_store_of_another_device_is_refused_and_kept(tmp_path: Path, files: dict[str, Path]) -> None:
    out = tmp_path / "out"
    common = ["--space", files["space"], "--cache", files["cache"], "--networks", "0", "--out", out]
    assert hwnas("profile", files["spec"], *common).returncode == 0
    before = rows(out / "store.sqlite")
    two_threads = tmp_path / "two.toml"
    two_threads.write_text(ORT_SPEC + "threads = 2\n")
    assert_one_line_error(hwnas("profile", two_threads, *common), "fingerprint.threads: 1 vs 2")
    assert rows(out / "store.sqlite") == before


def test_rounds_spread_each_layer_over_the_run_and_resume_after_an_interruption(tmp_path: Path, files: dict[str, Path]) -> None:
    """sessions = 3: each layer is timed in 3 round-robin rounds, pooled; an interrupted run loses no stored round."""
    (tmp_path / "rounds.toml").write_text(ORT_SPEC + "sessions = 3\n")
    spec = DeviceSpec.from_toml(tmp_path / "rounds.toml")
    backend = make_backend(spec)
    real_session, calls, stop_at = backend.measure_session, [], [7]

    def interruptible(model_file: Path) -> Measurement:
        calls.append(model_file)
        if len(calls) == stop_at[0]:
            raise KeyboardInterrupt  # stands for the user's Ctrl-C in the middle of round 1
        return real_session(model_file)

    backend.measure_session = interruptible  # type: ignore[method-assign]
    settings = ProfileSettings(networks=2, workers=2, cv_threshold=10.0)
    profiler = Profiler(spec, TINY, tmp_path / "out", files["cache"], settings, backend=backend)
    with pytest.raises(KeyboardInterrupt):
        profiler.run(progress=False)
    store_path = tmp_path / "out" / "store.sqlite"
    before = rows(store_path)
    assert len(before) == 6  # the six rounds measured before the interruption, each committed

    calls.clear()
    stop_at[0] = -1
    report = profiler.run(progress=False)
    subjects = len(TINY.enumerate_op_keys()) + 2
    assert len(calls) == 3 * subjects - 6  # nothing stored was measured again
    after = rows(store_path)
    assert after[:6] == before
    store = LatencyStore.open_existing(store_path)
    try:
        for subject, key, _, _ in after:
            parts = store.round_samples(subject, key)
            assert len(parts) == 3
        pooled = {row.key: row for row in store.accepted("op")}
        assert all(row.detail["pooled_rounds"] == 3 for row in pooled.values())
        for op, entry in report.table.entries.items():
            assert entry.n == sum(len(part) for part in store.round_samples("op", op.describe()))
    finally:
        store.close()
    assert set(report.table.entries) == set(TINY.enumerate_op_keys()) and report.attempts_now == subjects
    assert profiler.run(progress=False).attempts_now == 0


def test_noisy_pooled_results_get_more_rounds_spread_over_the_noisy_ones(tmp_path: Path, files: dict[str, Path]) -> None:
    """cv_threshold = 0 makes every pooled result noisy: each attempt adds `sessions` rounds, round-robin, and pools all."""
    (tmp_path / "rounds.toml").write_text(ORT_SPEC + "sessions = 2\n")
    spec = DeviceSpec.from_toml(tmp_path / "rounds.toml")
    settings = ProfileSettings(networks=1, workers=2, cv_threshold=0.0, max_attempts=3)
    report = Profiler(spec, TINY, tmp_path / "out", files["cache"], settings).run(progress=False)
    subjects = len(TINY.enumerate_op_keys()) + 1
    with sqlite3.connect(tmp_path / "out" / "store.sqlite") as db:
        described = db.execute(
            "SELECT key, json_extract(detail, '$.round'), json_extract(detail, '$.pooled_rounds'), accepted, n "
            "FROM measurements ORDER BY id"
        ).fetchall()
    rounds_in_order = [round_number for _, round_number, _, _, _ in described if round_number is not None]
    assert rounds_in_order == sorted(rounds_in_order) and rounds_in_order.count(6) == subjects  # round r of all, then r+1
    for key in {key for key, *_ in described}:
        pooled = [(pooled_rounds, accepted, n) for k, _, pooled_rounds, accepted, n in described if k == key and pooled_rounds]
        assert [(p, a) for p, a, _ in pooled] == [(2, 0), (4, 0), (6, 1)]  # three attempts, the last accepted
        round_sizes = [n for k, round_number, _, _, n in described if k == key and round_number is not None]
        assert pooled[-1][2] == sum(round_sizes)  # the accepted attempt pools every round, not one stretch
    assert report.attempts_now == 3 * subjects


def test_a_profiles_conversions_neither_read_nor_fill_the_export_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The profile's ``--cache`` holds its converted layers; the export cache of the home folder stays out of it, so a
    profile into an empty ``--cache`` converts every layer (its conversion time and its Ctrl-C tests depend on it)."""
    from hwnas.latency_tables import convert

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "home"))
    made = convert.run_job(convert.op_job(TINY.enumerate_op_keys()[0], "onnx", tmp_path / "profile-cache"))
    assert made.is_file() and made.stat().st_size > 0
    assert not (tmp_path / "home").exists()  # nothing read from or written to the export cache
