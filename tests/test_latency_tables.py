"""Measurement store, latency tables and importing public tables."""

from __future__ import annotations

import json
import shutil
import sqlite3
from dataclasses import replace
from pathlib import Path
from typing import ClassVar

import pytest

from hwnas.devices.measurement import Measurement
from hwnas.errors import UserError
from hwnas.latency_tables.importer import import_public_table
from hwnas.latency_tables.store import LatencyStore
from hwnas.latency_tables.table import LatencyEntry, LatencyTable, diff_tables
from hwnas.opkey import OpKey
from hwnas.presets import get_space

from conftest import SHARED_DATA

REPO = Path(__file__).resolve().parents[1]
PIXEL1 = SHARED_DATA / "lut" / "proxylessnas_mobile_pixel1.yaml"
SHIPPED = Path(__file__).resolve().parents[1] / "latency_tables" / "data"
META = {"fingerprint": {"device": "cpu", "threads": 1}, "space_hash": "abc", "spec": {"repeats": 10}}


def test_store_is_append_only_and_tracks_done(tmp_path: Path) -> None:
    store = LatencyStore.open(tmp_path / "s.sqlite", META)
    noisy, calm = Measurement((1.0, 2.0, 3.0)), Measurement((1.0, 1.0, 1.01))
    assert store.record("op", "k1", {"x": 1}, noisy, accepted=False) == 1
    assert store.record("op", "k1", {"x": 1}, calm, accepted=True) == 2
    assert store.done("op") == {"k1"} and store.done("network") == set()
    assert store.samples("op", "k1") == [[1.0, 2.0, 3.0], [1.0, 1.0, 1.01]]
    [row] = store.accepted("op")
    assert row.attempt == 2 and row.summary["median_ms"] == pytest.approx(1.0) and row.detail == {"x": 1}
    store.close()
    again = LatencyStore.open(tmp_path / "s.sqlite", META | {"spec": {"repeats": 99}})
    assert again.count() == 2 and again.meta()["fingerprint"] == META["fingerprint"]


def test_store_of_another_device_is_refused_naming_the_difference(tmp_path: Path) -> None:
    LatencyStore.open(tmp_path / "s.sqlite", META).close()
    other = META | {"fingerprint": {"device": "cpu", "threads": 2}}
    with pytest.raises(UserError, match=r"fingerprint\.threads: 1 vs 2"):
        LatencyStore.open(tmp_path / "s.sqlite", other)
    assert LatencyStore.open(tmp_path / "s.sqlite", other, allow_mismatch=True).count() == 0


def test_corrupt_store_is_a_user_error(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(UserError, match="not a readable hwnas measurement store"):
        LatencyStore.open(path, META)


def test_store_rows_cannot_be_duplicated(tmp_path: Path) -> None:
    store = LatencyStore.open(tmp_path / "s.sqlite", META)
    store.record("op", "k", {}, Measurement((1.0,)), True)
    with pytest.raises(sqlite3.IntegrityError):
        store._db.execute(
            "INSERT INTO measurements (subject, key, attempt, detail, samples, sample_kind, median_ms, p10_ms, "
            "p90_ms, cv, n, outliers, accepted, measured_at) SELECT subject, key, attempt, detail, samples, "
            "sample_kind, median_ms, p10_ms, p90_ms, cv, n, outliers, accepted, measured_at FROM measurements"
        )


def small_table(median: float = 1.0, threads: int = 1) -> LatencyTable:
    key = OpKey("Conv_1", 4, 8, 16)
    return LatencyTable(
        {"name": "cpu"},
        {"device": "cpu", "threads": threads},
        "default",
        "h1",
        {key: LatencyEntry(key, median, 0.9, 1.1, 0.05, 100)},
    )


def test_table_json_round_trip_and_atomic_save(tmp_path: Path) -> None:
    table = small_table()
    path = table.save(tmp_path / "t.json")
    assert LatencyTable.load(path) == table
    assert [p.name for p in tmp_path.iterdir()] == ["t.json"]


def test_table_check_names_what_differs() -> None:
    table = small_table()
    table.check({"device": "cpu", "threads": 1}, "h1")
    with pytest.raises(UserError, match=r"fingerprint\.threads: 1 vs 4"):
        table.check({"device": "cpu", "threads": 4})
    with pytest.raises(UserError, match="space hash: h1 vs h2"):
        table.check(space_hash="h2")
    table.check({"device": "gpu"}, "h2", override=True)


def test_table_lookup_and_diff() -> None:
    first, second = small_table(1.0), small_table(1.1, threads=2)
    key = next(iter(first.entries))
    assert first.predict([key, key]) == pytest.approx(2.0)
    with pytest.raises(UserError, match="no entry"):
        first.lookup(OpKey("Conv_1", 4, 8, 32))
    report = diff_tables(first, second)
    assert report["common"] == 1 and report["median_abs_relative"] == pytest.approx(0.1)
    assert report["fingerprint_differences"] == ["fingerprint.threads: 1 vs 2"]


@pytest.mark.parametrize("content", ["{not json", '{"schema_version": 99}', '{"schema_version": 1}'])
def test_bad_table_files_are_user_errors(tmp_path: Path, content: str) -> None:
    path = tmp_path / "t.json"
    path.write_text(content)
    with pytest.raises(UserError):
        LatencyTable.load(path)


@pytest.mark.skipif(not PIXEL1.exists(), reason="../shared/data is not present")
def test_import_proxylessnas_pixel1_table() -> None:
    space = get_space("proxylessnas")
    table = import_public_table(PIXEL1, space, "Pixel 1")
    assert len(table.entries) == 72 and table.kind == "imported" and table.source == str(PIXEL1)
    assert set(table.entries) == set(space.enumerate_op_keys())
    stem = OpKey("Conv", 224, 3, 32, kernel=3, stride=2)
    assert table.lookup(stem) == pytest.approx(4.083755600814664)
    assert table.entries[stem].n == 982 and table.entries[stem].cv == pytest.approx(0.2502372872758427**0.5 / 4.083755600814664)
    assert 20 < table.predict(space.op_keys(space.sample(0))) < 400


def test_import_rejects_keys_outside_the_space_and_bad_yaml(tmp_path: Path) -> None:
    outside = tmp_path / "outside.yaml"
    outside.write_text("Conv_1-input:7x7x999-output:7x7x1280:\n  count: 1\n  mean: 1.0\n  var: 0.1\n")
    with pytest.raises(UserError, match="not a layer of space 'proxylessnas'"):
        import_public_table(outside, get_space("proxylessnas"), "x")
    broken = tmp_path / "broken.yaml"
    broken.write_text("a: [unclosed\n")
    with pytest.raises(UserError, match="not valid YAML"):
        import_public_table(broken, get_space("proxylessnas"), "x")


def test_tables_ship_for_both_runtimes_of_this_machine_kind() -> None:
    names = {path.name for path in SHIPPED.glob("default-*.json")}
    assert {"default-host-cpu-onnxruntime.json", "default-host-cpu-tflite-xnnpack.json"} <= names


@pytest.mark.parametrize("name", sorted(path.name for path in SHIPPED.glob("default-*.json")))
def test_shipped_tables_cover_the_default_space(name: str) -> None:
    table = LatencyTable.load(SHIPPED / name)
    space = get_space("default")
    assert table.space_hash == space.hash and table.kind == "measured"
    assert set(space.enumerate_op_keys()) <= set(table.entries)  # beyond them: layers sampled for the layer models
    assert table.fingerprint["device"] and table.fingerprint["runtime"] in ("onnxruntime", "tflite")
    assert len(table.networks) >= 40 and all(n["median_ms"] > 0 for n in table.networks)
    assert json.loads((SHIPPED / name).read_text())["stats"]["ops"] == len(table.entries)


def test_a_shipped_table_answers_only_on_the_cpu_it_was_measured_on() -> None:
    from hwnas.devices import DeviceSpec, make_backend
    from hwnas.latency_tables.compat import extended_apart, fingerprint_differences
    from hwnas.latency_tables.table import matching_table

    space = get_space("default")
    arch = space.sample(0)
    for path in sorted(SHIPPED.glob("default-*.json")):
        table = LatencyTable.load(path)
        backend = make_backend(DeviceSpec.from_json(table.device))
        if backend.unavailable_reason() is not None:
            continue
        here = backend.fingerprint()
        matches = not fingerprint_differences("fingerprint", table.fingerprint, here)  # CPU details: both sides
        found = matching_table(table.device["name"], here, space.name, space.hash, stores=())
        exact = matches and not extended_apart(table.fingerprint, here)
        if exact:
            assert found is not None and found.path.name == path.name and found.apart == ()
            assert found.table.predict(space.op_keys(arch)) == table.predict(space.op_keys(arch))
        elif table.fingerprint.get("device") != here.get("device"):
            assert found is None or found.path.name != path.name  # a table of another CPU name never answers
        elif found is not None and found.path.name == path.name:  # the nearest, for want of a table of this exact CPU
            assert found is not None and found.apart and "no table of this exact CPU" in found.origin


@pytest.mark.parametrize("content", ["[]", "null", "5", '"text"'])
def test_a_table_file_that_is_not_an_object_is_one_line(tmp_path: Path, content: str) -> None:
    path = tmp_path / "t.json"
    path.write_text(content)
    with pytest.raises(UserError, match="is a JSON object"):
        LatencyTable.load(path)


@pytest.mark.parametrize("median", [0, -1.0, "NaN", "Infinity"])
def test_zero_negative_nan_and_infinite_latencies_are_refused(tmp_path: Path, median: object) -> None:
    table = json.loads((REPO / "latency_tables" / "data" / "default-host-cpu-onnxruntime.json").read_text())
    table["entries"][0]["median_ms"] = median
    path = tmp_path / "t.json"
    path.write_text(json.dumps(table).replace('"NaN"', "NaN").replace('"Infinity"', "Infinity"))
    with pytest.raises(UserError, match=r"positive number of ms|not a number hwnas accepts"):
        LatencyTable.load(path)


def test_a_nan_is_never_written_as_json(tmp_path: Path) -> None:
    from hwnas.fileio import atomic_write_json

    with pytest.raises(UserError, match="NaN or infinite"):
        atomic_write_json(tmp_path / "x.json", {"ms": float("nan")})
    assert not (tmp_path / "x.json").exists()
    with pytest.raises(UserError, match="is a folder"):
        atomic_write_json(tmp_path, {"ms": 1.0})


# ---- which table a device uses: one function, one search order ------------------------------------------------
XEON = {"device": "Intel Xeon", "runtime": "onnxruntime", "threads": 1}
EPYC = {"device": "AMD EPYC", "runtime": "onnxruntime", "threads": 1}


def write_table(path: Path, device: str = "dev", fingerprint: dict | None = None, space_hash: str = "h1") -> Path:
    """A real (tiny) table file: one layer, of ``device`` measured on ``fingerprint``."""
    op = get_space("default").op_keys(get_space("default").sample(0))[0]
    table = LatencyTable({"name": device}, fingerprint or XEON, "default", space_hash, {op: LatencyEntry(op, 0.1)})
    path.parent.mkdir(parents=True, exist_ok=True)
    return table.save(path)


def find(tmp_path: Path, fingerprint: dict | None = XEON, **extra):
    from hwnas.latency_tables.table import matching_table

    stores = extra.pop("stores", ((tmp_path / "run", "this run"), (tmp_path / "profiles", "profiled")))
    return matching_table(
        "dev", fingerprint, "default", extra.pop("space_hash", "h1"), stores=stores, shipped=tmp_path / "data", **extra
    )


def test_matching_table_takes_the_users_table_then_profiles_then_shipped(tmp_path: Path) -> None:
    from hwnas.latency_tables.table import GIVEN, SHIPPED_ORIGIN

    shipped = write_table(tmp_path / "data" / "default-dev.json")
    assert find(tmp_path).path == shipped and find(tmp_path).origin == SHIPPED_ORIGIN
    profiled = write_table(tmp_path / "profiles" / "dev-default" / "table.json")
    assert (find(tmp_path).path, find(tmp_path).origin) == (profiled, "profiled")  # a profile made here beats a shipped one
    own = write_table(tmp_path / "run" / "dev-default" / "table.json")
    assert find(tmp_path).path == own  # stores in the order given
    given = write_table(tmp_path / "mine.json")
    found = find(tmp_path, explicit=given)
    assert (found.path, found.origin) == (given, GIVEN) and found.table.space_hash == "h1"


def test_matching_table_passes_over_other_cpus_devices_spaces_and_broken_files(tmp_path: Path) -> None:
    write_table(tmp_path / "profiles" / "dev-default" / "table.json", fingerprint=EPYC)  # profiled on another CPU
    write_table(tmp_path / "run" / "dev-default" / "table.json", space_hash="other")  # another version of the space
    write_table(tmp_path / "data" / "default-dev-amd-epyc.json", fingerprint=EPYC)
    write_table(tmp_path / "data" / "default-aaa.json", device="aaa")  # another device, sorted first
    (tmp_path / "data" / "default-broken.json").write_text("{not json")
    assert find(tmp_path) is None
    xeon = write_table(tmp_path / "data" / "default-dev.json")
    assert find(tmp_path).path == xeon  # the shipped table of this CPU, not the EPYC's
    assert find(tmp_path, fingerprint=EPYC).path == tmp_path / "profiles" / "dev-default" / "table.json"
    assert find(tmp_path, fingerprint=None).path == tmp_path / "profiles" / "dev-default" / "table.json"  # device not here
    # extended CPU fields are compared only when both sides have them
    assert find(tmp_path, fingerprint=XEON | {"cpu_flags_hash": "abc"}).path == xeon


def test_a_table_of_this_exact_cpu_is_taken_first_then_the_nearest_one_saying_so(tmp_path: Path) -> None:
    zen4 = EPYC | {"cpu_family": "25", "cpu_model": "17", "cpu_flags_hash": "f1"}
    zen4_other_vm = zen4 | {"cpu_flags_hash": "f9"}
    zen5 = EPYC | {"cpu_family": "26", "cpu_model": "2", "cpu_flags_hash": "f2"}
    other_generation = write_table(tmp_path / "data" / "default-dev-amd-epyc-0.json", fingerprint=zen5)  # sorted first
    found = find(tmp_path, fingerprint=zen4)  # only another generation: the nearest, said
    assert found.path == other_generation and set(found.apart) == {"cpu_family", "cpu_model", "cpu_flags_hash"}
    assert "no table of this exact CPU (AMD EPYC, family 25, model 17)" in found.origin
    assert "cpu_family: '26' vs '25'" in found.origin and "hwnas profile" in found.origin
    name_only = write_table(tmp_path / "data" / "default-dev-amd-epyc-1.json", fingerprint=EPYC)
    found = find(tmp_path, fingerprint=zen4)  # a table that does not record the generation is nearer than another one
    assert found.path == name_only and "whose generation the table does not record" in found.origin
    same_generation = write_table(tmp_path / "data" / "default-dev-amd-epyc-2.json", fingerprint=zen4_other_vm)
    found = find(tmp_path, fingerprint=zen4)  # the same family and model on another VM's flags is nearer still
    assert (found.path, found.apart) == (same_generation, ("cpu_flags_hash",))
    exact = write_table(tmp_path / "data" / "default-dev-amd-epyc-3.json", fingerprint=zen4)
    found = find(tmp_path, fingerprint=zen4)
    assert (found.path, found.apart, found.origin) == (exact, (), "shipped with hwnas")
    assert find(tmp_path, fingerprint=zen5).path == other_generation  # each CPU its own table
    assert find(tmp_path, fingerprint=XEON) is None  # another CPU name is never near


def test_a_users_table_of_another_machine_is_refused_naming_what_differs(tmp_path: Path) -> None:
    given = write_table(tmp_path / "mine.json", fingerprint=EPYC)
    with pytest.raises(UserError, match=r"fingerprint\.device: 'AMD EPYC' vs 'Intel Xeon'.*--allow-mismatch"):
        find(tmp_path, explicit=given)
    assert find(tmp_path, explicit=given, allow_mismatch=True).path == given


def test_without_a_space_any_table_of_the_device_is_found(tmp_path: Path) -> None:
    from hwnas.latency_tables.drift import find_device_table
    from hwnas.latency_tables.table import matching_table

    table = write_table(tmp_path / "profiles" / "dev-mnasnet" / "table.json")
    write_table(tmp_path / "profiles" / "dev-other-default" / "table.json", device="dev-other")
    assert matching_table("dev", XEON, stores=((tmp_path / "profiles", "p"),), shipped=None).path == table
    assert matching_table("dev-other", XEON, stores=((tmp_path / "profiles", "p"),), shipped=None).path != table
    spec = type("Spec", (), {"name": "no-such-device"})()
    assert find_device_table(spec, XEON) is None  # the drift module's lookup is matching_table too


def test_the_drift_check_of_a_table_without_references_re_times_its_networks_in_the_rounds_of_the_model(
    tmp_path: Path,
) -> None:
    """For real on ONNX Runtime: one whole network of the table, converted and timed now against its table figure; a
    model measured with the check (``hwnas latency --measure``) takes turns with it, one session's share each per round,
    so a busy stretch of a shared machine slows both alike (a model timed after its check once read 0.44x its
    prediction in CI)."""
    from hwnas.devices import DeviceSpec, make_backend
    from hwnas.latency_tables.drift import _spread, drift_with, session_drift

    class RecordingBackend(type(make_backend(DeviceSpec.from_toml("host-ort")))):  # the real backend, calls written down
        calls: ClassVar[list[str]] = []

        def measure_session(self, model_file: Path) -> Measurement:
            self.calls.append(model_file.stem)
            return super().measure_session(model_file)

    backend = RecordingBackend(replace(DeviceSpec.from_toml("host-ort"), warmup=2, repeats=12, min_time_s=0.0, sessions=3))
    space = get_space("default")
    archs = [space.sample(seed).format() for seed in range(5)]
    networks = [{"arch": arch, "median_ms": ms} for arch, ms in zip(archs, (0.5, 0.1, 0.3, 0.9, 0.2), strict=True)]
    assert [row["median_ms"] for row in _spread(networks, 3)] == [0.3, 0.1, 0.9]  # the median, the fastest, the slowest
    table = LatencyTable({"name": "x"}, {}, "default", space.hash, {}, networks)
    assert session_drift(table, backend, tmp_path, "test", space=None) is None  # neither references nor a space
    check = session_drift(table, backend, tmp_path / "cache", "test", space=space, networks=1)
    assert check is not None and check.how == "1 of the table's whole networks (it has no reference networks)"
    [row] = check.rows
    assert row["reference"] == archs[2] and row["table_ms"] == 0.3 and check.ratio == pytest.approx(row["now_ms"] / 0.3)
    assert check.message(rescale_hint=False).startswith(
        "drift check: 1 of the table's whole networks (it has no reference networks) now / in table = "
    )
    assert "--rescale" not in check.message(rescale_hint=False)

    [network] = set(backend.calls)
    model = Path(shutil.copy(next((tmp_path / "cache").rglob(f"{network}.onnx")), tmp_path / "model.onnx"))  # no 2nd export
    backend.calls.clear()
    check, measured = drift_with(table, backend, tmp_path / "cache", "test", {"model": model}, space=space, networks=1)
    assert check is not None and backend.calls == [network, "model"] * 3
    assert list(measured) == ["model"] and measured["model"].summary()["n"] == 12  # 3 rounds of 4 runs, pooled
    _, alone = drift_with(table, backend, tmp_path / "cache", "test", {"model": model}, space=None)
    assert list(alone) == ["model"]  # no drift check possible: the model is timed alone


def test_predictor_fit_first_checks_drift_prints_the_ratio_and_keeps_it(tmp_path: Path, hwnas_in_process) -> None:
    """``hwnas predictor fit`` on a copy of this CPU's ONNX Runtime table without its reference networks: its networks
    re-timed, the ratio printed and kept."""
    from hwnas.devices import DeviceSpec, make_backend
    from hwnas.latency_tables.table import matching_table

    spec = DeviceSpec.from_toml("host-ort")
    found = matching_table(spec.name, make_backend(spec).fingerprint(), "default", stores=())
    if found is None:
        pytest.skip("no shipped ONNX Runtime table of this CPU")
    table = tmp_path / "table.json"
    replace(found.table, references={}).save(table)
    command = ["predictor", "fit", "--table", str(table), "--out", str(tmp_path / "p.skops")]
    result = hwnas_in_process(*command)
    assert result.returncode == 0, result.stderr
    assert "drift check: 3 of the table's whole networks (it has no reference networks) now / in table = " in result.stdout
    [recorded] = LatencyTable.load(table).drift  # a table of the user's own is given the ratio (a shipped one is not)
    assert recorded["context"] == f"predictor fit on {spec.name}" and recorded["ratio"] > 0
    sidecar = json.loads((tmp_path / "p.json").read_text())
    assert sidecar["evaluation"]["drift"]["ratio"] == recorded["ratio"]
    skipped = hwnas_in_process(*command, "--no-drift", "--json")
    assert skipped.returncode == 0 and json.loads(skipped.stdout)["drift"]["ratio"] is None
