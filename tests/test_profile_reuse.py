"""``hwnas profile`` takes layers this CPU was timed on before from earlier tables, when the drift check says they hold.

Issue 23's "profile only what is missing": converting and timing a layer again costs 1.2-1.6 s with TFLite, and a
profile of a second space (or with more ``--layers``) shares many layers with tables already made on this CPU.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hwnas.latency_tables.reuse import Lender, find_lenders, lend
from hwnas.latency_tables.sampling import sample_layers
from hwnas.latency_tables.table import LatencyEntry, LatencyTable

ZEN3 = {"device": "AMD EPYC", "runtime": "onnxruntime", "threads": 1, "cpu_family": "25", "cpu_model": "17"}
REFERENCES = {"mobilenet_v2-w0.5-r96": {"median_ms": 1.0}, "mobilenet_v3_small-r96": {"median_ms": 0.5}}


def table_of(keys: list, fingerprint: dict, created: str, ms: float = 0.1, device: str = "dev") -> LatencyTable:
    entries = {key: LatencyEntry(key, ms) for key in keys}
    return LatencyTable({"name": device}, fingerprint, "default", "h", entries, created=created, references=REFERENCES)


def test_earlier_tables_of_this_cpu_generation_lend_their_layers_newest_first(tmp_path: Path) -> None:
    keys = sample_layers(6, seed=11)
    profiles = tmp_path / "profiles"
    older = table_of(keys[:4], ZEN3, "2026-12-01T00:00:00Z", ms=0.1).save(profiles / "dev-a" / "table.json")
    newer = table_of(keys[2:5], ZEN3 | {"cpu_flags_hash": "x"}, "2026-12-03T00:00:00Z", ms=0.2).save(
        profiles / "dev-b" / "table.json"
    )  # another VM of the same generation: lends, the drift check judges it
    table_of(keys, ZEN3 | {"cpu_family": "26"}, "2026-12-04T00:00:00Z").save(profiles / "dev-c" / "table.json")  # other CPU
    table_of(keys, ZEN3, "2026-12-04T00:00:00Z", device="other").save(profiles / "dev-d" / "table.json")  # other device
    own = table_of(keys, ZEN3, "2026-12-05T00:00:00Z").save(profiles / "dev-e" / "table.json")  # this profile's own
    lenders = find_lenders("dev", ZEN3, keys, profiles, exclude=own)
    assert [(lender.path, lender.keys) for lender in lenders] == [(newer, tuple(keys[2:5])), (older, tuple(keys[:2]))]
    assert find_lenders("dev", ZEN3 | {"runtime": "tflite"}, keys, profiles, exclude=own) == []


@pytest.mark.parametrize(("today_ms", "used"), [(1.05, True), (0.93, True), (1.2, False), (0.8, False)])
def test_a_lender_whose_reference_networks_moved_more_than_ten_percent_lends_nothing(today_ms: float, used: bool) -> None:
    keys = sample_layers(3, seed=11)
    table = table_of(keys, ZEN3, "2026-12-01T00:00:00Z")
    today = {name: {"median_ms": row["median_ms"] * today_ms} for name, row in REFERENCES.items()}
    lent = lend([Lender(Path("t.json"), table, tuple(keys))], today)
    assert lent.records[0]["ratio_today"] == pytest.approx(today_ms) and lent.records[0]["used"] is used
    assert set(lent.entries) == (set(keys) if used else set()) and lent.refused == ([] if used else keys)
    without_references = LatencyTable({"name": "dev"}, ZEN3, "default", "h", table.entries)
    assert lend([Lender(Path("t.json"), without_references, tuple(keys))], today).refused == keys


def test_a_second_profile_measures_only_the_layers_no_earlier_table_holds(
    tmp_path: Path, hwnas_in_process, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Real ONNX Runtime profiles: 4 sampled layers into the profiles folder, then 6 elsewhere. The second takes the 4
    as they are when its reference networks ran within 10% of the first's, and measures them again otherwise."""
    monkeypatch.chdir(tmp_path)  # runs/profiles, where earlier profiles are found, is relative to the working folder
    spec = tmp_path / "cpu.toml"
    spec.write_text('name = "cpu"\nbackend = "onnxruntime"\nwarmup = 5\nrepeats = 40\nsessions = 2\n')
    common = ["--no-space-layers", "--layer-seed", "11", "--networks", "0", "--json"]
    first = hwnas_in_process("profile", spec, "--layers", "4", "--out", "runs/profiles/cpu-default", *common)
    assert first.returncode == 0, first.stderr
    earlier = LatencyTable.load(tmp_path / "runs/profiles/cpu-default/table.json")
    second = hwnas_in_process("profile", spec, "--layers", "6", "--out", tmp_path / "second", *common)
    assert second.returncode == 0, second.stderr
    printed = json.loads(second.stdout)
    [lender] = printed["lenders"]
    table = LatencyTable.load(tmp_path / "second" / "table.json")
    assert len(table.entries) == 6 and table.stats["ops"] == 6 == printed["ops"]
    kept = [key for key in earlier.entries if table.entries[key].median_ms == earlier.entries[key].median_ms]
    assert lender["layers"] == 4 and (len(kept) == 4) is lender["used"] and printed["layers_lent"] == len(kept)
    again = hwnas_in_process("profile", spec, "--layers", "6", "--out", tmp_path / "third", "--no-reuse", *common)
    assert again.returncode == 0 and json.loads(again.stdout)["layers_lent"] == 0
