"""Every file format carries a schema version, and every reader refuses another version in one line.

One table (``CASES``) has an entry per format of :data:`hwnas.formats.FORMATS`: how to make a file
of it (the real writer where it is cheap), how to set its version, and the real reader. A test
checks the table covers every format, so a new format without a case fails here.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hwnas.errors import UserError
from hwnas.formats import FORMATS, FileFormat

REPO = Path(__file__).resolve().parents[1]
SHIPPED_TABLE = REPO / "latency_tables" / "data" / "default-host-cpu-onnxruntime.json"
PAIRS = REPO / "predictors" / "data" / "accuracy-pairs-default.json"
ARCH = "default:r32_c24[k3e3,k5e3]_c40[k5e6,k5e3,k5e6]_c48[k7e3h,k3e6h]_c80[k3e3sh,k7e3sh]"


# ---- the rules, on one format -------------------------------------------------------------------
RESULT = FORMATS["run-result"]


def test_the_current_version_and_an_unversioned_file_of_a_stable_layout_are_read() -> None:
    RESULT.check({"schema_version": 1}, "r.json")
    RESULT.check({}, "r.json")  # written before versions were stamped: version 1's layout


def test_a_newer_file_says_upgrade_hwnas() -> None:
    with pytest.raises(UserError, match=r"r\.json is schema version 2, newer than the 1 this hwnas reads: upgrade hwnas"):
        RESULT.check({"schema_version": 2}, "r.json")


def test_an_older_file_says_how_to_remake_it() -> None:
    fmt = FileFormat("x", "thing", 3, "make it again with hwnas x")
    with pytest.raises(UserError, match=r"thing t is schema version 2, older than the 3 this hwnas reads: make it again"):
        fmt.check({"schema_version": 2}, "t")


@pytest.mark.parametrize("value", ["1.0", 1.0, True, None, [1], "one"])
def test_a_version_that_is_no_whole_number_is_refused(value: Any) -> None:
    with pytest.raises(UserError, match=r"schema version|no schema version"):
        RESULT.check({"schema_version": value}, "r.json")


def test_a_format_whose_key_was_always_written_refuses_a_file_without_it() -> None:
    with pytest.raises(UserError, match="has no schema version"):
        FORMATS["latency-table"].check({"entries": []}, "t.json")


def test_a_hand_written_file_without_a_version_means_the_current_one() -> None:
    FORMATS["recipe"].check({"lr": 0.1}, "recipe.toml")
    with pytest.raises(UserError, match="newer"):
        FORMATS["recipe"].check({"schema_version": 2}, "recipe.toml")


def test_stamp_puts_the_version_first_and_strip_takes_it_away() -> None:
    stamped = RESULT.stamp({"arch": "a", "schema_version": 7})
    assert list(stamped) == ["schema_version", "arch"] and stamped["schema_version"] == 1
    assert RESULT.strip(stamped, "r.json") == {"arch": "a"}


def test_a_format_listed_twice_is_refused() -> None:
    from hwnas.formats import _table

    with pytest.raises(ValueError, match="twice"):
        _table(RESULT, RESULT)


# ---- every format: made, its version set, read by the real reader --------------------------------
def set_json(path: Path, key: str, value: Any) -> None:
    data = json.loads(path.read_text())
    data[key] = value
    path.write_text(json.dumps(data))


def set_toml(path: Path, key: str, value: Any) -> None:
    lines = [line for line in path.read_text().splitlines() if not line.startswith(f"{key} =")]
    path.write_text(f"{key} = {json.dumps(value)}\n" + "\n".join(lines) + "\n")


def set_meta(path: Path, key: str, value: Any) -> None:
    with sqlite3.connect(path) as db:
        db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, str(value)))


@dataclass(frozen=True)
class Case:
    make: Callable[[Path], Path]  # a file (or folder) of the current version, in a temporary folder
    target: Callable[[Path], Path]  # the file whose version is set
    set_version: Callable[[Path, str, Any], None]
    read: Callable[[Path], Any]  # the real reader (None: hwnas writes it but never reads it back)
    stamped: bool = True  # the writer writes the key (hand-written formats: optional)


def same(path: Path) -> Path:
    return path


# latency table and profile store
def make_table(tmp: Path) -> Path:
    from hwnas.latency_tables.table import LatencyTable

    return LatencyTable.load(SHIPPED_TABLE).save(tmp / "table.json")


def read_table(path: Path) -> Any:
    from hwnas.latency_tables.table import LatencyTable

    return LatencyTable.load(path)


STORE_META = {"device": {"name": "d"}, "space": {"name": "s"}}


def make_profile_store(tmp: Path) -> Path:
    from hwnas.latency_tables.store import LatencyStore

    LatencyStore.open(tmp / "profile.db", STORE_META).close()
    return tmp / "profile.db"


def read_profile_store(path: Path) -> Any:
    from hwnas.latency_tables.store import LatencyStore

    LatencyStore.open(path, STORE_META).close()


def stored_profile_version(path: Path) -> Any:
    with sqlite3.connect(path) as db:
        return dict(db.execute("SELECT key, value FROM meta").fetchall()).get("schema_version")


# predictor sidecar: written by save_predictor (its round trip is tested in test_predictors.py)
def make_predictor(tmp: Path) -> Path:
    from hwnas.latency_tables.table import LatencyTable
    from hwnas.predictors import LutSum, networks_from_table, save_predictor
    from hwnas.presets import get_space

    table = LatencyTable.load(SHIPPED_TABLE)
    networks = networks_from_table(table.networks[:5], get_space("default"))
    predictor = LutSum(table).fit([n.arch for n in networks], [n.ms for n in networks])
    model, _ = save_predictor(predictor, tmp / "lut.skops")
    return model


def read_predictor(path: Path) -> Any:
    from hwnas.predictors import load_predictor

    return load_predictor(path)


# training checkpoint: written by save_checkpoint each epoch (its resume is tested in test_kill.py)
def make_checkpoint(tmp: Path) -> Path:
    import torch

    from hwnas.trainer import CHECKPOINT_FORMAT, CHECKPOINT_SCHEMA

    payload = {"format": CHECKPOINT_FORMAT, CHECKPOINT_SCHEMA.key: CHECKPOINT_SCHEMA.version, "fingerprint": "{}", "epoch": 0}
    torch.save(payload, tmp / "checkpoint.pt")
    return tmp / "checkpoint.pt"


def set_checkpoint(path: Path, key: str, value: Any) -> None:
    import torch

    saved = torch.load(path, weights_only=True)
    saved[key] = value
    torch.save(saved, path)


def read_checkpoint(path: Path) -> Any:
    from hwnas.trainer import load_checkpoint

    try:
        return load_checkpoint(path, None, {}, 1)  # type: ignore[arg-type]
    except UserError as error:
        if "inconsistent" in str(error):  # past the version check: this payload has no epochs
            return None
        raise


def checkpoint_version(path: Path) -> Any:
    import torch

    return torch.load(path, weights_only=True)["version"]


# run folders: hwnas train's, and a pruned one
def make_run_folder(tmp: Path) -> Path:
    from hwnas.trainer import TrainResult

    folder = tmp / "run"
    TrainResult(ARCH, {}, "d", 32, 0.5, [], 1.0, 1, 1, 0, 1).save(folder)
    (folder / "model.pt").write_bytes(b"")  # the version is checked before the weights are read
    return folder


def read_run_folder(folder: Path) -> Any:
    from hwnas.export_model import resolve_model

    try:
        return resolve_model(str(folder))
    except UserError as error:
        if "is empty (0 bytes)" in str(error):  # past the version check
            return None
        raise


def make_pruned_folder(tmp: Path) -> Path:
    from hwnas.arch import Arch
    from hwnas.builder import build_model
    from hwnas.presets import get_space
    from hwnas.pruning.base import BaseModel, save_pruned

    module = build_model(get_space("default"), Arch.parse(ARCH))
    base = BaseModel(module, {"arch": ARCH}, 1, 32, "unpruned", "test")
    return save_pruned(tmp / "pruned", module, base, [], {})


# pruning store
PRUNE_CONFIG = {"model": "m", "budget": "flops=0.5"}


def make_pruning_store(tmp: Path) -> Path:
    from hwnas.pruning.store import EpisodeStore

    EpisodeStore(tmp / "search.db", PRUNE_CONFIG).close()
    return tmp / "search.db"


def read_pruning_store(path: Path) -> Any:
    from hwnas.pruning.store import EpisodeStore

    EpisodeStore(path, PRUNE_CONFIG).close()


# the pipeline's run folder
def make_run_config(tmp: Path) -> Path:
    from hwnas.pipeline.config import QUICK, write_config

    write_config(tmp / "config.toml", QUICK)
    return tmp / "config.toml"


def read_run_folder_config(path: Path) -> Any:
    from hwnas.pipeline.config import read_config

    return read_config(path)


def make_record(tmp: Path) -> Path:
    from hwnas.pipeline.records import Records
    from hwnas.pipeline.stage import Skipped, Stage, StageResult

    stage = Stage("device", (), StageResult, lambda context: Skipped("none"))
    Records(tmp, 1).stage(stage, lambda: Skipped("not here"), lambda _: None)
    return tmp


def read_record(folder: Path) -> Any:
    from hwnas.pipeline.records import Records

    return Records(folder, 2).get("device")


def make_summary(tmp: Path) -> Path:
    from test_pipeline import RECORDED, synthetic_references

    from hwnas.pipeline.report import render_report

    folder = tmp / "run"
    shutil.copytree(RECORDED, folder)
    synthetic_references(folder, [("mobilenet_v3_small", 0.70, 0.5)])
    render_report(folder)
    return folder / "summary.json"


def make_search_result(tmp: Path) -> Path:
    from hwnas.search.result import write_result

    return write_result(tmp, {"search": {}})


def make_card(tmp: Path) -> Path:
    from hwnas.exporters.model_card import write_model_card

    return write_model_card(tmp, {"name": "m"}, [])[0]


def make_pruning_report(tmp: Path) -> Path:
    """The pruning job writes report.json at its end (a real prune is in test_pruning.py); its writer's stamp is this."""
    from hwnas.fileio import atomic_write_json

    return atomic_write_json(tmp / "report.json", FORMATS["pruning-report"].stamp({"models": {}}))


# files people write
def copy_pairs(tmp: Path) -> Path:
    return Path(shutil.copy(PAIRS, tmp / "pairs.json"))


def read_pairs(path: Path) -> Any:
    from hwnas.predictors.accuracy import read_pairs
    from hwnas.presets import get_space

    return read_pairs(path, get_space("default"))


def make_spec(tmp: Path) -> Path:
    shutil.copy(REPO / "devices" / "specs" / "host-ort.toml", tmp / "spec.toml")
    return tmp / "spec.toml"


def read_spec(path: Path) -> Any:
    from hwnas.devices.spec import DeviceSpec

    return DeviceSpec.from_toml(path)


def make_recipe(tmp: Path) -> Path:
    (tmp / "recipe.toml").write_text('optimizer = "sgd"\nlr = 0.05\n')
    return tmp / "recipe.toml"


def read_recipe(path: Path) -> Any:
    from hwnas.recipe import Recipe

    return Recipe.from_file(path)


def make_space(tmp: Path) -> Path:
    from hwnas.presets import get_space

    space = get_space("default")
    path = tmp / "space.json"
    path.write_text(json.dumps(FORMATS["search-space"].stamp(space.to_json() | {"hash": space.hash})))
    return path


def read_space(path: Path) -> Any:
    from hwnas.presets import resolve_space

    return resolve_space(str(path))


def make_user_run_config(tmp: Path) -> Path:
    (tmp / "run.toml").write_text("seed = 3\n[search]\ntrials = 2\n")
    return tmp / "run.toml"


def read_user_run_config(path: Path) -> Any:
    from hwnas.pipeline.config import load_config_file

    return load_config_file(path)


def in_folder(name: str) -> Callable[[Path], Path]:
    return lambda folder: folder / name


def make_supernet(tmp: Path) -> Path:
    from hwnas.presets import get_space
    from hwnas.recipe import Recipe
    from hwnas.supernet import Supernet
    from hwnas.supernet.store import save_supernet

    folder = tmp / "supernet"
    save_supernet(folder, Supernet(get_space("default")), data={}, recipe=Recipe(), seed=0, method={}, curve=[], wall_time_s=0.0)
    return folder


def read_supernet(folder: Path) -> Any:
    from hwnas.supernet.store import load_supernet

    return load_supernet(folder)


def make_specialize(tmp: Path) -> Path:
    from hwnas.search.specialize import Specialized, SpecializeReport

    network = Specialized("host-ort", 0.3, str(tmp / "host-ort" / "0.3ms"), arch="default:r32_c16[k3e3]_c32[k3e3]")
    path = tmp / "specialize.json"
    path.write_text(json.dumps(SpecializeReport(settings={"seed": 0}, networks=[network]).to_json()))
    return path


def read_specialize(path: Path) -> Any:
    from hwnas.search.specialize import read_report

    return read_report(path)


def make_family(tmp: Path) -> Path:
    from hwnas.family.records import FamilyReport, Planned

    base = Planned("base", "d100w100r100", "default:r32_c16[k3e3]_c32[k3e3]_c48[k3e3h]_c80[k3e3h]", 0.1, 0.1)
    FamilyReport(settings={"seed": 0}, grid=[base]).save(tmp)
    return tmp / "family.json"


def read_family(path: Path) -> Any:
    from hwnas.family.records import read_report

    return read_report(path)


CASES: dict[str, Case] = {
    "scale-family": Case(make_family, same, set_json, read_family),
    "specialize": Case(make_specialize, same, set_json, read_specialize),
    "supernet": Case(make_supernet, in_folder("supernet.json"), set_json, read_supernet),
    "latency-table": Case(make_table, same, set_json, read_table),
    "profile-store": Case(make_profile_store, same, set_meta, read_profile_store),
    "predictor-sidecar": Case(make_predictor, lambda p: p.with_suffix(".json"), set_json, read_predictor),
    "training-checkpoint": Case(make_checkpoint, same, set_checkpoint, read_checkpoint),
    "run-result": Case(make_run_folder, in_folder("result.json"), set_json, read_run_folder),
    "pruned-model": Case(make_pruned_folder, in_folder("pruned.json"), set_json, read_run_folder),
    "pruning-store": Case(make_pruning_store, same, set_meta, read_pruning_store),
    "pruning-report": Case(make_pruning_report, same, set_json, None),
    "search-store": Case(lambda tmp: tmp, same, set_json, None),  # a study attribute: tests/test_search.py
    "search-result": Case(make_search_result, same, set_json, None),
    "run-folder": Case(make_run_config, same, set_toml, read_run_folder_config),
    "run-record": Case(make_record, in_folder("stages/device.json"), set_json, read_record),
    "run-summary": Case(make_summary, same, set_json, None),
    "model-card": Case(make_card, same, set_json, None),
    "accuracy-pairs": Case(copy_pairs, same, set_json, read_pairs),
    "device-spec": Case(make_spec, same, set_toml, read_spec, stamped=False),
    "recipe": Case(make_recipe, same, set_toml, read_recipe, stamped=False),
    "search-space": Case(make_space, same, set_json, read_space),
    "run-config": Case(make_user_run_config, same, set_toml, read_user_run_config, stamped=False),
}
READ_BACK = [name for name, case in CASES.items() if case.read is not None]
WRITTEN = [name for name, case in CASES.items() if case.stamped and name != "search-store"]


def test_every_format_has_a_case() -> None:
    assert set(CASES) == set(FORMATS)


def written_version(name: str, path: Path) -> Any:
    fmt = FORMATS[name]
    if path.suffix == ".db":
        return stored_profile_version(path)
    if path.suffix == ".pt":
        return checkpoint_version(path)
    if path.suffix == ".toml":
        import tomllib

        return tomllib.loads(path.read_text()).get(fmt.key)
    return json.loads(path.read_text()).get(fmt.key)


@pytest.mark.parametrize("name", WRITTEN)
def test_the_writer_stamps_the_current_version(name: str, tmp_path: Path) -> None:
    case = CASES[name]
    path = case.target(case.make(tmp_path))
    assert str(written_version(name, path)) == str(FORMATS[name].version)


@pytest.mark.parametrize("name", READ_BACK)
def test_the_reader_takes_the_current_version(name: str, tmp_path: Path) -> None:
    case = CASES[name]
    made = case.make(tmp_path)
    case.read(made)  # type: ignore[misc]


@pytest.mark.parametrize("name", READ_BACK)
def test_the_reader_refuses_a_newer_version_saying_upgrade(name: str, tmp_path: Path) -> None:
    case, fmt = CASES[name], FORMATS[name]
    made = case.make(tmp_path)
    case.set_version(case.target(made), fmt.key, fmt.version + 1)
    with pytest.raises(UserError) as caught:
        case.read(made)  # type: ignore[misc]
    message = str(caught.value)
    assert f"schema version {fmt.version + 1}, newer" in message and "upgrade hwnas" in message and "\n" not in message


@pytest.mark.parametrize("name", READ_BACK)
def test_the_reader_refuses_a_version_that_is_no_number(name: str, tmp_path: Path) -> None:
    case, fmt = CASES[name], FORMATS[name]
    made = case.make(tmp_path)
    case.set_version(case.target(made), fmt.key, "two")
    with pytest.raises(UserError, match=r"not a whole number|no schema version"):
        case.read(made)  # type: ignore[misc]


@pytest.mark.parametrize("name", [n for n in READ_BACK if FORMATS[n].version == 1 and not FORMATS[n].hand_written])
def test_a_version_0_file_is_older_and_names_how_to_remake_it(name: str, tmp_path: Path) -> None:
    case, fmt = CASES[name], FORMATS[name]
    made = case.make(tmp_path)
    case.set_version(case.target(made), fmt.key, 0)
    with pytest.raises(UserError, match=f"older than the {fmt.version}") as caught:
        case.read(made)  # type: ignore[misc]
    assert fmt.remake in str(caught.value)
