"""``hwnas run``: settings, stage records and resume, the run folder, the report (in headless Chromium too).

The fast tests check the settings and the records; the slow ones run the real pipeline (``--quick``:
real tables, training, exports and measurements), kill it with SIGKILL between stages and count that
nothing finished is done again, and open the report in Debian's ``chromium``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from hwnas.errors import UserError
from hwnas.pipeline.config import DEFAULT, QUICK, read_config, resolve_config, write_config
from hwnas.pipeline.records import Records
from hwnas.pipeline.run import STAGE_NAMES, prepare_folder
from hwnas.pipeline.stage import Skipped, Stage, StageResult
from hwnas.pipeline.stages.search import TrialInfo
from hwnas.search.plots import pareto_front

from stores import stage_records

REPO = Path(__file__).resolve().parents[1]
QuickRun = tuple[Path, subprocess.CompletedProcess[str]]


# ---- settings -----------------------------------------------------------------------------------------
def test_options_override_the_config_file_which_overrides_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "run.toml"
    path.write_text('space = "default"\nbudget_ms = 0.4\n[search]\ntrials = 7\n[train]\nepochs = 2\n')
    config = resolve_config(False, path, {"budget_ms": 0.5, "devices": ["host-ort"], "data": None})
    assert config.budget_ms == 0.5 and config.devices == ("host-ort",)
    assert config.search.trials == 7 and config.train.epochs == 2 and config.prune == DEFAULT.prune
    quick = resolve_config(True, None, {})
    assert quick == QUICK and quick.search.trials < DEFAULT.search.trials


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("trails = 3\n", "unknown key 'trails'"),
        ("[search]\ntrails = 3\n", "unknown key search.trails"),
        ("[search]\ntrials = 'many'\n", "search.trials must be a int"),
        ("budget_ms = -1\n", "positive number"),
        ("devices = 'host-ort'\n", "devices must be a list"),
        ("[train]\nepochs = 0\n", "train.epochs must be at least 1"),
    ],
)
def test_a_bad_run_config_is_one_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "run.toml"
    path.write_text(text)
    with pytest.raises(UserError, match=re.escape(message)):
        resolve_config(False, path, {})


@pytest.mark.slow
def test_a_run_on_colour_images_searches_trains_and_exports_three_channel_networks_from_the_shipped_table(
    embedded_data, tmp_path: Path, hwnas_in_process
) -> None:
    """``hwnas run --data RGB_FOLDER`` on the default (1-channel, 10-class) space: the run searches ``default-3ch-3cls``
    (its stem and classifier made for the images), its table the shipped one with the 2 layers it lacks measured now,
    and exports networks that take 3 channels (until 2026-12-04 it trained on gray copies and said nothing; then it
    refused). Small settings: no pruning and no references, which the quick-run tests cover, and ONNX Runtime as the
    device (cold, its conversions made the run 52 s against TFLite's 88 s; the search's RGB test derives on TFLite)."""
    import onnxruntime
    from test_supernet_train import _rgb_folder

    images, out, config = _rgb_folder(embedded_data, tmp_path / "rgb", per_class=10), tmp_path / "run", tmp_path / "run.toml"
    config.write_text('devices = ["host-ort"]\n[search]\ntrials = 2\n[prune]\nepisodes = 0\n[references]\nmodels = []\n')
    result = hwnas_in_process("run", "--quick", "--config", config, "--data", images, "--out", out)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "searching 'default-3ch-3cls', its stem and classifier made for them" in result.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"]["arch"].startswith("default-3ch-3cls:")
    primary = summary["device"]["name"]
    assert summary["tables"][primary]["origin"].startswith("derived from a table")
    table = json.loads((out / "tables" / f"{primary}-default-3ch-3cls" / "table.json").read_text())
    assert table["stats"]["layers_measured_now"] == 2 and table["space"] == "default-3ch-3cls"
    onnx = next(item for item in summary["exports"] if item["format"] == "onnx")
    assert onnx["verified"]
    session = onnxruntime.InferenceSession(str(out / onnx["file"]), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape[1] == 3 and session.get_outputs()[0].shape[-1] == 3


def test_the_written_config_reads_back_the_same(tmp_path: Path) -> None:
    config = resolve_config(True, None, {"budget_ms": 0.25, "data": 'some folder/with "quotes"', "devices": ["a", "b"]})
    write_config(tmp_path / "config.toml", config, {"budget_ms": 0.25})
    assert read_config(tmp_path / "config.toml") == config
    assert "[resolved]" in (tmp_path / "config.toml").read_text()


def test_a_family_ladder_reads_back_from_the_run_folder_and_a_bad_one_is_one_line(tmp_path: Path) -> None:
    config = resolve_config(True, None, {"family_ms": [0.9, 1.8]})
    assert config.family_ms == (0.9, 1.8)
    write_config(tmp_path / "config.toml", config)
    assert read_config(tmp_path / "config.toml") == config
    assert read_config(tmp_path / "config.toml").identity() == config.identity()
    (tmp_path / "run.toml").write_text("family_ms = [2]\n")
    assert resolve_config(False, tmp_path / "run.toml", {}).family_ms == (2.0,)
    for bad, message in (([-1.0], "positive number"), ([1.0, 1.0], "given twice"), ("1.0", "list of milliseconds")):
        with pytest.raises(UserError, match=message):
            resolve_config(False, None, {"family_ms": bad})


def test_a_run_folder_of_other_settings_is_refused_and_fresh_starts_over(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    prepare_folder(folder, QUICK, fresh=False)
    prepare_folder(folder, QUICK, fresh=False)  # the same settings: resumes
    other = resolve_config(True, None, {"budget_ms": 0.3})
    with pytest.raises(UserError, match=r"other settings \(budget_ms: None vs 0.3\).*--fresh"):
        prepare_folder(folder, other, fresh=False)
    (folder / "stages").mkdir()
    (folder / "stages" / "device.json").write_text("{}")
    prepare_folder(folder, other, fresh=True)
    assert not (folder / "stages").exists() and read_config(folder / "config.toml") == other


def test_a_supernet_run_keeps_where_its_supernet_is_scores_by_it_and_evaluates_more_candidates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--supernet reaches the library's search settings; a shipped name is kept as a name (found wherever hwnas is
    installed), a folder as an absolute path (the run resumes from anywhere); trials default to the supernet's count
    unless given; the folder name tells the two kinds of run apart; --ray and an unknown name are one line."""
    from hwnas.pipeline.run import default_out
    from hwnas.search.api import DEFAULTS
    from hwnas.supernets import DEFAULT_SUPERNET

    shipped = resolve_config(False, None, {"search": {"supernet": "default"}})
    assert shipped.search.supernet == "default" and shipped.search.library_settings().supernet == DEFAULT_SUPERNET
    assert shipped.search.trials == DEFAULTS.supernet_trials and DEFAULT.search.library_settings().supernet is None
    quick = resolve_config(True, None, {"search": {"supernet": "default"}})
    assert quick.search.trials == DEFAULTS.supernet_trials // 5 and default_out(quick).name.endswith("-supernet-quick")
    path = tmp_path / "run.toml"
    path.write_text('[search]\ntrials = 7\nstrategy = "random"\n')
    typed = resolve_config(False, path, {"search": {"supernet": "default"}})
    assert (typed.search.trials, typed.search.strategy, typed.search.supernet) == (7, "random", "default")

    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine").mkdir()
    folder = resolve_config(True, None, {"search": {"supernet": "mine"}})
    assert folder.search.supernet == str((tmp_path / "mine").resolve())
    write_config(tmp_path / "config.toml", folder)
    assert read_config(tmp_path / "config.toml") == folder
    with pytest.raises(UserError, match="no shipped supernet of that name"):
        resolve_config(True, None, {"search": {"supernet": "imagenet"}})
    with pytest.raises(UserError, match="leave out --ray"):
        resolve_config(True, None, {"search": {"supernet": "default"}, "ray": "local"})


def test_fresh_never_empties_a_folder_that_is_not_a_run_folder(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(UserError, match="not a run folder"):
        prepare_folder(tmp_path, QUICK, fresh=True)
    assert (tmp_path / "precious.txt").read_text() == "keep me"


# ---- records --------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Found(StageResult):
    STAGE = "device"

    x: int


def test_a_finished_stage_or_item_is_never_done_again(tmp_path: Path) -> None:
    calls: list[str] = []
    device = Stage("device", (), Found, lambda context: Found(1))
    search = Stage("search", (), Found, lambda context: Skipped("search skipped: not here"))
    first = Records.open(tmp_path, ["run"])
    first.stage(device, lambda: calls.append("device") or Found(1), lambda _: None)
    first.item("export", "onnx", lambda: calls.append("onnx") or {"file": "model.onnx"})
    second = Records.open(tmp_path, ["run"])
    value = second.stage(device, lambda: calls.append("device again") or Found(2), lambda _: None)
    item = second.item("export", "onnx", lambda: calls.append("onnx again") or {})
    second.item("export", "tflite", lambda: calls.append("tflite") or {"file": "model.tflite"})
    skipped = second.stage(search, lambda: Skipped("search skipped: not here"), lambda _: None)
    assert calls == ["device", "onnx", "tflite"]
    assert value == Found(1) and second.meta("device").session == 1 and item["session"] == 1 and second.session == 2
    assert second.reused == ["device"] and second.ran == ["search"]
    assert skipped == Skipped("search skipped: not here") and second.meta("search").status == "skipped"
    assert Records.open(tmp_path, []).read_value(search) == skipped  # a skipped stage finished: not tried again


def test_a_record_that_does_not_fit_its_type_is_one_line_naming_the_field_and_the_remaking_command(tmp_path: Path) -> None:
    device = Stage("device", (), Found, lambda context: Found(1))
    Records.open(tmp_path, ["run", "--quick", "--out", str(tmp_path)]).stage(device, lambda: Found(1), lambda _: None)
    path = tmp_path / "stages" / "device.json"
    record = json.loads(path.read_text())
    path.write_text(json.dumps(record | {"result": {"x": "one"}}))
    with pytest.raises(
        UserError,
        match=r"device\.json: result\.x: expected a whole number, found 'one'; remake the run folder "
        r"with: hwnas run --quick --out \S+ --fresh",
    ):
        Records(tmp_path).read_value(device)
    path.write_text(json.dumps(record | {"result_schema": 9}))
    with pytest.raises(UserError, match="written by a newer hwnas"):
        Records(tmp_path).read_value(device)


def test_pareto_front_keeps_only_points_nothing_beats() -> None:
    points = [
        TrialInfo("a", predicted_ms=1.0, accuracy=0.70),
        TrialInfo("b", predicted_ms=1.2, accuracy=0.69),  # slower and worse than the first
        TrialInfo("c", predicted_ms=1.5, accuracy=0.80),
        TrialInfo("d", predicted_ms=2.0, accuracy=0.78),
        TrialInfo("e", predicted_ms=0.8, accuracy=None),
    ]
    assert [p.arch for p in pareto_front(points, latency=lambda p: p.predicted_ms, accuracy=lambda p: p.accuracy)] == ["a", "c"]


# ---- the report, from the records of a real --quick run (tests/data/pipeline-run: this machine, 2026-11-23) -------
RECORDED = REPO / "tests" / "data" / "pipeline-run"


def synthetic_references(folder: Path, models: list[tuple[str, float, float]]) -> dict:
    """A references stage record beside a recorded run's: ``models`` (name, test accuracy, measured ms) are made up,
    the searched network's figures are the run's own (its train record and its measured TFLite file)."""
    from hwnas.pipeline.references import compare

    train = json.loads((folder / "stages" / "train.json").read_text())["result"]
    export = json.loads((folder / "stages" / "export.json").read_text())["result"]
    budget = json.loads((folder / "stages" / "table.json").read_text())["result"]["budget_ms"]
    searched = {
        "name": "searched",
        "arch": train["arch"],
        "kept": "unpruned",
        "test_accuracy": train["test_accuracy"],
        "measured_ms": export["measured_ms"]["host-cpu-tflite-xnnpack"],
    }
    rows = [{"name": n, "test_accuracy": a, "measured_ms": ms, "flops": 5e6, "params": 10_000} for n, a, ms in models]
    compared, winners, verdict = compare(rows, searched, budget)
    result = {
        "ran": True,
        "device": "host-cpu-tflite-xnnpack",
        "format": "tflite",
        "rounds": 6,
        "epochs": 1,
        "train_images": 3000,
        "budget_ms": budget,
        "searched": searched,
        "models": compared,
        "beaten_by": winners,
        "verdict": verdict,
        "threads": 1,
    }
    record = {"stage": "references", "status": "done", "reason": None, "session": 1, "finished": "", "seconds": 1.0}
    (folder / "stages" / "references.json").write_text(json.dumps(record | {"result": result}))
    return result


@pytest.fixture
def recorded_run(tmp_path: Path) -> Path:
    """A real --quick run's records (made before the references stage existed) plus a synthetic references record."""
    folder = tmp_path / "run"
    shutil.copytree(RECORDED, folder)
    synthetic_references(folder, [("mobilenet_v3_small", 0.70, 0.5), ("mobilenet_v2-0.35", 0.80, 0.6)])
    return folder


def test_the_report_renders_from_the_records_alone(recorded_run: Path) -> None:
    from hwnas.pipeline.report import render_report

    markdown, html = render_report(recorded_run)
    summary = json.loads((recorded_run / "summary.json").read_text())
    assert [stage["stage"] for stage in summary["stages"]] == list(STAGE_NAMES)
    assert {"fidelity.png", "pareto.png", "pruning.png", "stages.png"} <= {p.name for p in (recorded_run / "report").iterdir()}
    text = markdown.read_text()
    assert "## Reference networks" in text and "mobilenet_v2-0.35" in text and "beat the searched network" in text
    primary = summary["device"]["name"]
    for expected in (
        "## Device",
        f"{summary['drift'][primary]:.3f}",  # the drift check's ratio
        "within ±10%",
        "## Search",
        "## Pruning",
        "| tflite | export/model.tflite",
        "## Time per stage",
        "(report/pareto.png)",
    ):
        assert expected in text, expected
    page = html.read_text()
    assert page.count('<img class="plot"') == 4 and page.count("data:image/png;base64,") == 4
    assert 'src="http' not in page and "{'" not in page and "{'" not in text  # self-contained, no Python reprs


def test_a_run_folder_without_a_finished_stage_has_no_report_yet(recorded_run: Path) -> None:
    from hwnas.pipeline.report import render_report

    (recorded_run / "stages" / "export.json").unlink()
    with pytest.raises(UserError, match="stage export has not finished; run the same hwnas run command again"):
        render_report(recorded_run)


def test_the_report_says_plainly_which_references_beat_the_searched_network(recorded_run: Path) -> None:
    from hwnas.pipeline.report import render_report

    result = synthetic_references(
        recorded_run,
        [
            ("mobilenet_v3_small", 0.99, 0.2),  # more accurate and faster: beats it
            ("mnasnet0_5", 0.99, 5.0),  # more accurate, but slower and over the budget: does not
            ("mobilenet_v2-0.35", 0.50, 0.1),  # faster, less accurate: does not
        ],
    )
    assert result["beaten_by"] == ["mobilenet_v3_small"]
    markdown, html = render_report(recorded_run)
    text, page = markdown.read_text(), html.read_text()
    sentence = (
        "1 of 3 reference networks beat the searched network (more accurate, and within the budget or no slower): "
        "mobilenet_v3_small."
    )
    assert sentence in text and sentence in page
    rows = {line.split(" | ")[0].strip("| "): line for line in text.splitlines() if line.startswith("| m")}
    assert "**yes**: more accurate and no slower" in rows["mobilenet_v3_small"]
    assert "no: more accurate but slower and over the" in rows["mnasnet0_5"]
    assert "no: less accurate" in rows["mobilenet_v2-0.35"]
    summary = json.loads((recorded_run / "summary.json").read_text())
    assert [m["beats"] for m in summary["references"]["models"]] == [True, False, False]


def test_the_report_says_a_supernet_winner_had_more_training_than_its_references(recorded_run: Path) -> None:
    """References train from scratch; a winner fine-tuned from a supernet's weights had the supernet's training besides,
    and the report says it favours the winner (a trained search's report does not)."""
    from html import unescape

    from hwnas.pipeline.report import render_report

    markdown, _ = render_report(recorded_run)
    trained = markdown.read_text()
    assert "trained from scratch with the winner's final recipe" in trained and "favours it here" not in trained
    record_file = recorded_run / "stages" / "search.json"
    record = json.loads(record_file.read_text())
    record["result"]["executor"] |= {"evaluation": "inherited", "supernet": "default"}
    record_file.write_text(json.dumps(record))
    markdown, html = render_report(recorded_run)
    for page in (markdown.read_text(), unescape(html.read_text())):
        assert "trained from scratch with the supernet's recipe" in page and "which favours it here" in page


def test_no_reference_beating_it_is_said_too() -> None:
    from hwnas.pipeline.references import beats, compare

    searched = {"test_accuracy": 0.85, "measured_ms": 0.4}
    rows, winners, verdict = compare(
        [{"name": "a", "test_accuracy": 0.86, "measured_ms": 0.9}, {"name": "b", "test_accuracy": 0.80, "measured_ms": 0.3}],
        searched,
        budget_ms=0.5,
    )
    assert winners == [] and verdict.startswith("No reference network beats the searched network")
    assert [row["within_budget"] for row in rows] == [False, True]
    assert beats({"test_accuracy": 0.86, "measured_ms": 0.45}, searched, 0.5)[0]  # slower, but within the budget
    assert not beats({"test_accuracy": 0.86, "measured_ms": None}, searched, 0.5)[0]  # not measured: never claimed


def test_the_pareto_plot_puts_references_and_the_searched_network_on_the_same_axes(recorded_run: Path) -> None:
    from hwnas.pipeline.report import pareto_plot

    search = json.loads((recorded_run / "stages" / "search.json").read_text())["result"]
    references = json.loads((recorded_run / "stages" / "references.json").read_text())["result"]
    path = pareto_plot(search, 0.97, references, "host-cpu-tflite-xnnpack", recorded_run / "p.png")
    assert path is not None and path.stat().st_size > 20_000
    import matplotlib.image

    assert matplotlib.image.imread(path).shape[1] > 1000  # two panels: the search, and searched vs references


def test_reference_settings_read_back_and_unknown_names_are_one_line(tmp_path: Path) -> None:
    path = tmp_path / "run.toml"
    path.write_text('[references]\nmodels = ["mnasnet0_5"]\nrounds = 3\n')
    config = resolve_config(False, path, {})
    assert config.references.models == ("mnasnet0_5",) and config.references.rounds == 3
    write_config(tmp_path / "config.toml", config)
    assert read_config(tmp_path / "config.toml") == config
    assert QUICK.references.models == ("mobilenet_v3_small", "mobilenet_v2-0.35")
    assert DEFAULT.references.models == ("mobilenet_v3_small", "mobilenet_v2-0.35", "mnasnet0_5")
    path.write_text('[references]\nmodels = ["resnet50"]\n')
    with pytest.raises(UserError, match=re.escape("unknown reference 'resnet50'; known: mobilenet_v2-0.35")):
        resolve_config(False, path, {})
    path.write_text('[references]\nmodels = "mnasnet0_5"\n')
    with pytest.raises(UserError, match=r"references\.models must be a list of names"):
        resolve_config(False, path, {})


def test_reference_networks_take_the_datas_channels_and_classes() -> None:
    import torch
    import torchvision

    from hwnas.pipeline.references import ALL_REFERENCES, REFERENCE_MODELS, reference_module

    assert {name for name, _ in REFERENCE_MODELS.values()} <= set(torchvision.models.list_models())
    image = torch.zeros(2, 1, 32, 32)
    for label in ("mobilenet_v2-0.35", "mobilenet_v3_small", "mnasnet0_5"):  # one of each family (all 8 take ~30 s here)
        assert reference_module(label, 1, 7).eval()(image).shape == (2, 7), label
    assert len(ALL_REFERENCES) == 8
    first = reference_module("mobilenet_v2-0.35", 3, 10, seed=1)
    again = reference_module("mobilenet_v2-0.35", 3, 10, seed=1)
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), again.state_dict().values(), strict=True))
    small = reference_module("mobilenet_v3_small", 1, 10, small_image=True)
    strided = [m.stride for m in small.modules() if isinstance(m, torch.nn.Conv2d)][:3]
    assert strided[0] == (1, 1) and (1, 1) in strided[1:]


def test_the_references_stage_trains_exports_and_times_them_once(tmp_path: Path) -> None:
    """On tiny settings, for real: ONNX Runtime on this CPU, 200 training images, one epoch, one timing round."""
    from hwnas.pipeline.context import RunContext
    from hwnas.pipeline.stages import device
    from hwnas.pipeline.stages.export import ExportResult
    from hwnas.pipeline.stages.references import run as references_stage
    from hwnas.pipeline.stages.table import TableResult
    from hwnas.pipeline.stages.train import TrainResult
    from hwnas.presets import get_space
    from hwnas.recipe import Recipe

    config = resolve_config(True, None, {"devices": ["host-ort"], "budget_ms": 50.0})
    config = dataclasses.replace(
        config,
        train=dataclasses.replace(config.train, train_images=200),
        references=dataclasses.replace(config.references, models=("mobilenet_v3_small",), rounds=1),
    )
    messages: list[str] = []
    trained = TrainResult(
        arch="x",
        recipe=Recipe(epochs=1, batch_size=64).to_json(),
        dataset="embedded",
        resolution=32,
        val_accuracy=0.5,
        curve=[],
        wall_time_s=1.0,
        params=1,
        flops=1,
        seed=0,
        threads=1,
        folder="model",
        test_accuracy=0.5,
    )
    exported = ExportResult(  # no final file: only the reference is timed
        model="model",
        input_shape=[1, 1, 32, 32],
        formats=[],
        exports=[],
        predicted={},
        measured_ms={},
        verified=True,
        within_budget=True,
        budget_ms=50.0,
        model_card="",
    )

    def new_run(session: list[str]) -> RunContext:
        context = RunContext(config, tmp_path, Records.open(tmp_path, session), get_space("default"), messages.append, False)
        context.values["device"] = device.run(context)
        context.values |= {
            "table": TableResult(tables=[], budget_ms=50.0, budget_source="given"),
            "train": trained,
            "prune": Skipped("not pruned"),
            "export": exported,
        }
        return context

    result = references_stage(new_run(["first"]))
    assert not isinstance(result, Skipped)
    [row] = result.models
    assert row["name"] == "mobilenet_v3_small" and row["verified"] and (tmp_path / row["file"]).stat().st_size > 0
    assert 0 <= row["test_accuracy"] <= 1 and row["epochs"] == 1 and row["measured_ms"] > 0 and row["measured"]["rounds"] == 1
    assert result.searched["measured_ms"] is None and result.beaten_by == []
    item = (tmp_path / "stages" / "references" / "mobilenet_v3_small.json").read_text()
    again = references_stage(new_run(["second"]))  # a resumed run: nothing trained or timed again
    assert (tmp_path / "stages" / "references" / "mobilenet_v3_small.json").read_text() == item
    assert not isinstance(again, Skipped) and again.models[0]["measured_ms"] == row["measured_ms"]
    assert sum("reference mobilenet_v3_small: test accuracy" in m for m in messages) == 1


# ---- the real pipeline ------------------------------------------------------------------------------------
def hwnas(*args: str, cwd: Path = REPO, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hwnas", *args], capture_output=True, text=True, cwd=cwd, timeout=timeout)


KILLED_AFTER = ("table", "search", "train")  # the stages the quick run is SIGKILLed after, one session each


@dataclasses.dataclass(frozen=True)
class ResumedQuickRun:
    """The quick run every slow pipeline test reads: SIGKILLed as each of :data:`KILLED_AFTER` finished, rerun each time.

    One run serves both the kill test and the tests of a finished run (it used to be two runs, 120 s and 160 s on
    two cores): what those check of a finished run must hold for a run that was interrupted three times too.
    """

    folder: Path
    final: subprocess.CompletedProcess[str]  # the fourth session, which finished the run (stdout and stderr were pipes)
    killed_output: str  # what the three killed sessions printed
    records_after_kill: tuple[dict[str, str], ...]  # the stage records each killed session left
    sessions_after_kill: tuple[int, ...]  # the sessions sessions.json counted after each
    records_after_final: dict[str, str]  # as the fourth session left them (later tests run the command again)
    summary_after_final: dict[str, Any]


@pytest.fixture(scope="module")
def resumed_quick_run(tmp_path_factory: pytest.TempPathFactory) -> ResumedQuickRun:
    folder = tmp_path_factory.mktemp("quick") / "run"
    printed: list[str] = []
    snapshots: list[dict[str, str]] = []
    sessions: list[int] = []
    for stage in KILLED_AFTER:
        log = folder.parent / f"killed-after-{stage}.log"
        assert run_until(folder, None, stage, log), f"the run finished before {stage} could be interrupted"
        printed.append(log.read_text())
        snapshots.append(stage_records(folder))
        sessions.append(len(json.loads((folder / "sessions.json").read_text())))
    final = hwnas("run", "--quick", "--out", str(folder))
    summary = json.loads((folder / "summary.json").read_text()) if final.returncode == 0 else {}
    return ResumedQuickRun(folder, final, "".join(printed), tuple(snapshots), tuple(sessions), stage_records(folder), summary)


@pytest.fixture(scope="module")
def quick_run(resumed_quick_run: ResumedQuickRun) -> QuickRun:
    return resumed_quick_run.folder, resumed_quick_run.final


@pytest.mark.slow
def test_hwnas_export_with_a_tflite_fp16_device_exports_tflite_fp16(quick_run: QuickRun, tmp_path: Path) -> None:
    """``hwnas export`` without --format gives a TFLite fp16 device ``tflite-fp16`` first (see test_export_format.py)."""
    pytest.importorskip("ai_edge_litert", reason="the TFLite interpreter is not installed (pip install -e '.[tflite]')")
    from test_export_format import FP16

    folder, first = quick_run
    assert first.returncode == 0, first.stderr[-3000:]
    spec, out = tmp_path / "fp16.toml", tmp_path / "export"
    spec.write_text(FP16)
    result = hwnas("export", str(folder / "model"), "--device", str(spec), "--out", str(out), "--images", "50", "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    card = json.loads(result.stdout)
    assert [item["format"] for item in card["exports"]] == ["tflite-fp16", "onnx", "tflite"]
    fp16 = card["exports"][0]
    assert (out / fp16["file"]).stat().st_size > 0 and fp16["verification"]["passed"]
    assert [m["device"] for m in fp16["latency"]] == ["host-cpu-tflite-fp16"] and fp16["latency"][0]["median_ms"] > 0


@pytest.mark.slow
def test_quick_run_goes_from_device_to_verified_measured_files(quick_run: QuickRun) -> None:
    folder, result = quick_run
    assert result.returncode == 0, result.stderr[-3000:]  # its wall time is benchmarks/pipeline_quick.py's business
    summary = json.loads((folder / "summary.json").read_text())
    assert [stage["stage"] for stage in summary["stages"]] == list(STAGE_NAMES)
    for name in ("config.toml", "report.md", "report.html", "predictor", "tables", "model/model.pt", "export/model_card.md"):
        assert (folder / name).exists(), name
    exports = {item["format"]: item for item in summary["exports"]}
    assert {"onnx", "tflite"} <= set(exports) or "tflite" not in summary["device"]["backend"]
    assert all(item["verified"] and (folder / item["file"]).stat().st_size > 0 for item in exports.values())
    primary = summary["device"]["name"]
    measured = summary["final"]["measured_ms"][primary]
    predicted = summary["final"]["predicted"][primary]
    assert measured > 0 and summary["final"]["within_budget"] == (measured <= summary["budget_ms"])
    # the main job's prediction is the calibrated predictor's (for a pruned winner: its layers x the parent's correction)
    assert predicted["predictor"].startswith("calibrated") and predicted["calibrated_ms"] > 0
    assert predicted["calibrated_ms"] != predicted.get("lut_sum_ms", predicted.get("network_latency_ms"))
    assert f"predicted {predicted['today_ms']:.3f} ms" in result.stdout  # today's time, the measurement's
    assert f"{measured:.3f}" in result.stdout and "{'" not in result.stdout  # no Python dict reprs
    assert summary["predictor"]["within_10pct"] is not None
    assert summary["cores"]["available"] == len(os.sched_getaffinity(0))
    for use in summary["cores"]["use"]:
        assert use["workers"] * use["threads"] <= summary["cores"]["available"], use
    for stage in ("search", "prune"):  # a stage that did not run says why, and nothing pretends it ran
        if summary[stage]["status"] == "skipped":
            assert summary[stage]["reason"] and summary[stage]["reason"] in result.stdout.replace("\n", " ")
    markdown = (folder / "report.md").read_text()
    assert "## Latency predictor" in markdown and "within ±10%" in markdown and "## Time per stage" in markdown
    # the search was finished like hwnas search's: the best re-measured and judged, the references timed beside the winner
    search = json.loads((folder / "stages" / "search.json").read_text())["result"]
    if search["ran"]:
        assert search["finished"]["best"]["verdict"] in ("within", "over", "borderline")
        assert (folder / "search" / "result.json").exists() and summary["search"]["measured_best"]["verdict"]
    references = summary["references"]
    assert [m["name"] for m in references["models"]] == list(QUICK.references.models)
    assert all(m["measured_ms"] > 0 and 0 < m["test_accuracy"] <= 1 for m in references["models"])
    assert references["searched_ms"] > 0 and references["verdict"] in markdown


@pytest.mark.slow
def test_every_architecture_the_quick_run_printed_to_a_pipe_parses_back(
    quick_run: QuickRun, resumed_quick_run: ResumedQuickRun
) -> None:
    from test_logs import SUFFIX, architectures, unparsable

    folder, result = quick_run  # stdout and stderr were pipes, as in `hwnas run --quick > log 2>&1`
    assert result.returncode == 0, result.stderr[-3000:]
    text = resumed_quick_run.killed_output + result.stdout + result.stderr  # the killed sessions wrote to a file
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["model"]["arch"] in architectures(text) and len(architectures(text)) >= 3
    assert unparsable(text) == []
    assert [line for line in text.splitlines() if SUFFIX.search(line)] == []


@pytest.mark.slow
def test_every_stage_module_returned_its_declared_result_type_on_the_quick_run(quick_run: QuickRun) -> None:
    import importlib
    import pkgutil

    from hwnas.pipeline import stages

    folder, result = quick_run
    assert result.returncode == 0, result.stderr[-3000:]
    records = Records(folder)
    for info in pkgutil.iter_modules(stages.__path__):
        stage = importlib.import_module(f"hwnas.pipeline.stages.{info.name}").STAGE
        value = records.read_value(stage)
        assert isinstance(value, stage.result_type | Skipped), info.name
        assert records.meta(stage.name).status == ("skipped" if isinstance(value, Skipped) else "done")
        if not isinstance(value, Skipped):  # what was written is what reads back
            assert (
                stage.result_type.from_json(json.loads((folder / "stages" / f"{info.name}.json").read_text())["result"]) == value
            )


@pytest.mark.slow
def test_running_the_same_command_again_redoes_nothing(quick_run: QuickRun) -> None:
    folder, first = quick_run
    assert first.returncode == 0, first.stderr[-3000:]
    before = {path.name: path.read_text() for path in (folder / "stages").glob("*.json")}
    again = hwnas("run", "--quick", "--out", str(folder))
    assert again.returncode == 0, again.stderr[-3000:]
    after = {path.name: path.read_text() for path in (folder / "stages").glob("*.json")}
    assert after == before
    assert again.stdout.count("reused") >= len(STAGE_NAMES)
    other = hwnas("run", "--quick", "--out", str(folder), "--budget-ms", "9")
    assert other.returncode == 2 and "other settings" in other.stderr and "budget_ms" in other.stderr


def tree_bytes(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.mark.slow
def test_a_moved_run_folder_resumes_and_rerenders_from_another_working_directory(quick_run: QuickRun, tmp_path: Path) -> None:
    folder, first = quick_run
    assert first.returncode == 0, first.stderr[-3000:]
    moved = tmp_path / "elsewhere" / "moved-run"
    shutil.copytree(folder, moved, symlinks=True)
    (moved / "stages" / "train.json").unlink()  # the train stage runs again: it reads the search's model by its record
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    before = tree_bytes(folder)
    resumed = hwnas("run", "--quick", "--out", str(moved), cwd=elsewhere)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "reused" in resumed.stdout and tree_bytes(folder) == before  # the original was neither read for writing nor changed
    train = json.loads((moved / "stages" / "train.json").read_text())["result"]
    assert train["folder"] == "model" and (moved / "model" / "model.pt").stat().st_size > 0
    (moved / "report.html").unlink()
    report = hwnas("report", str(moved), cwd=elsewhere)
    assert report.returncode == 0 and (moved / "report.html").stat().st_size > 10_000, report.stderr
    assert str(moved) in (moved / "report.md").read_text()


@pytest.mark.slow
def test_a_resumed_run_never_writes_through_a_link_nor_reads_what_a_record_points_to_outside(
    quick_run: QuickRun, tmp_path: Path
) -> None:
    folder, first = quick_run
    assert first.returncode == 0, first.stderr[-3000:]
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.pt").write_bytes(b"not a model")
    (outside / "best").mkdir()
    (outside / "best" / "model.pt").write_bytes(b"someone else's weights")
    copy = tmp_path / "run"
    shutil.copytree(folder, copy, symlinks=True)
    (copy / "stages" / "train.json").unlink()
    (copy / "model" / "model.pt").unlink()
    (copy / "model" / "model.pt").symlink_to(outside / "precious.pt")
    before = tree_bytes(outside)
    resumed = hwnas("run", "--quick", "--out", str(copy))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert tree_bytes(outside) == before and not (copy / "model" / "model.pt").is_symlink()
    # a record naming a folder outside the run folder: refused in one line, nothing copied in
    (copy / "stages" / "train.json").unlink()
    search = copy / "stages" / "search.json"  # the search's record names the folder of the model it retrained
    record = json.loads(search.read_text())
    record["result"]["finished"]["retrained"]["folder"] = str(outside / "best")
    search.write_text(json.dumps(record))
    refused = hwnas("run", "--quick", "--out", str(copy))
    assert refused.returncode == 2 and "is not inside the run folder" in refused.stderr, refused.stderr[-2000:]
    assert len(refused.stderr.strip().splitlines()) == 1 and tree_bytes(outside) == before
    assert (copy / "model" / "model.pt").read_bytes() != b"someone else's weights"


@pytest.mark.slow
def test_report_rerenders_from_the_records(quick_run: QuickRun) -> None:
    folder, first = quick_run
    assert first.returncode == 0, first.stderr[-3000:]
    (folder / "report.html").unlink()
    result = hwnas("report", str(folder))
    assert result.returncode == 0, result.stderr
    assert (folder / "report.html").stat().st_size > 10_000
    missing = hwnas("report", str(folder / "nope"))
    assert missing.returncode == 2 and "not a run folder" in missing.stderr


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def render_in_chromium(html: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="hwnas-chromium-") as profile:
        command = [
            chromium() or "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=5000",
            *extra,
            html.resolve().as_uri(),
        ]
        return subprocess.run(command, capture_output=True, text=True, timeout=120)


def console_errors(stderr: str) -> list[str]:
    """Console messages Chromium logged for the page. Its ``--enable-logging`` writes every one, ``console.error``
    and uncaught exceptions included, as an ``INFO:CONSOLE`` line (no ERROR level): the report logs nothing, so any is one."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


@pytest.mark.skipif(chromium() is None, reason="Debian's chromium is not installed (apt-get install -y chromium)")
@pytest.mark.parametrize("script", ["console.error('deliberate');", "undefinedFunction();"])
def test_chromium_reports_a_console_error_when_there_is_one(tmp_path: Path, script: str) -> None:
    """The check below can fail: a page with an error is seen as one."""
    page = tmp_path / "bad.html"
    page.write_text(f"<html><body><script>{script}</script></body></html>")
    result = render_in_chromium(page, "--dump-dom")
    assert len(console_errors(result.stderr)) == 1, result.stderr[-2000:]


def check_in_chromium(html: Path, plots: tuple[str, ...], tmp_path: Path) -> None:
    """``html`` opens with no console error, its script runs, and every plot decodes into an image; a screenshot is taken."""
    text = html.read_text()
    assert 'src="http' not in text and 'href="http' not in text  # self-contained: nothing fetched
    result = render_in_chromium(html, "--dump-dom")
    assert result.returncode == 0, result.stderr[-2000:]
    assert console_errors(result.stderr) == [], console_errors(result.stderr)
    found = re.search(r'data-plots="(\d+)"', result.stdout)
    loaded = re.search(r'data-plots-loaded="(\d+)"', result.stdout)
    assert found and loaded, result.stdout[:2000]  # the page's script ran
    assert int(found.group(1)) >= len(plots) and loaded.group(1) == found.group(1)  # every plot decoded into an image
    for plot in plots:
        assert f'data-plot="{plot}"' in result.stdout
    shot = tmp_path / "report.png"
    screenshot = render_in_chromium(html, f"--screenshot={shot}", "--window-size=1200,2400", "--hide-scrollbars")
    assert shot.exists() and shot.stat().st_size > 20_000, screenshot.stderr[-2000:]


@pytest.mark.skipif(chromium() is None, reason="Debian's chromium is not installed (apt-get install -y chromium)")
def test_the_recorded_report_opens_in_headless_chromium_with_its_four_plots(recorded_run: Path, tmp_path: Path) -> None:
    from hwnas.pipeline.report import render_report

    _, html = render_report(recorded_run)
    check_in_chromium(html, ("fidelity", "pareto", "pruning", "stages"), tmp_path)


@pytest.mark.slow
@pytest.mark.skipif(chromium() is None, reason="Debian's chromium is not installed (apt-get install -y chromium)")
def test_the_quick_runs_report_opens_in_headless_chromium(quick_run: QuickRun, tmp_path: Path) -> None:
    folder, first = quick_run
    assert first.returncode == 0, first.stderr[-3000:]
    check_in_chromium(folder / "report.html", ("fidelity", "stages"), tmp_path)


@pytest.mark.slow
def test_a_run_on_the_shipped_supernet_scores_by_inherited_weights_and_fine_tunes_the_winner(tmp_path: Path) -> None:
    """``hwnas run --quick`` with ``[search] supernet = "default"``, end to end on host ONNX Runtime (the TFLite path is
    the quick run's): candidates scored by inherited weights, the winner fine-tuned from them, exported, verified and
    measured; the summary and the report say how candidates were scored; it ends with a family grown from the winner
    for one budget (``family_ms``); the same command again redoes nothing."""
    from hwnas.recipe import Recipe
    from hwnas.supernet.store import read_description
    from hwnas.supernets import DEFAULT_SUPERNET

    config, folder = tmp_path / "run.toml", tmp_path / "run"
    config.write_text(
        'family_ms = [0.6]\n\n[search]\nsupernet = "default"\ntrials = 8\n\n[train]\ntrain_images = 600\n\n'
        "[prune]\nepisodes = 0\n\n"
        "[references]\nmodels = []\n"
    )
    command = ("run", "--quick", "--device", "host-ort", "--config", str(config), "--out", str(folder))
    result = hwnas(*command)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((folder / "summary.json").read_text())
    search = summary["search"]
    assert search["evaluation"] == "inherited" and Path(search["supernet"]).name == "default" and search["trials"] == 8
    trials = json.loads((folder / "stages" / "search.json").read_text())["result"]["trials"]
    assert len(trials) == 8 and all(0 < trial["accuracy"] <= 1 for trial in trials)
    train = json.loads((folder / "stages" / "train.json").read_text())["result"]
    assert train["arch"] == search["best"]["arch"] and "inherited from the supernet" in train["source"]
    # fine-tuned (no warm-up, taught) while its relatives train from scratch with the supernet's own recipe
    supernet_recipe = read_description(DEFAULT_SUPERNET)["recipe"]
    assert train["recipe"]["distill"] > 0 and train["recipe"]["warmup_epochs"] == 0
    from_scratch = dataclasses.replace(Recipe.from_json(supernet_recipe), epochs=train["recipe"]["epochs"])
    assert train["scratch_recipe"] == from_scratch.to_json()
    assert summary["final"]["verified"] and summary["final"]["measured_ms"]["host-cpu-onnxruntime"] > 0
    assert "prune skipped: none asked for (prune.episodes = 0)" in result.stdout
    report = (folder / "report.md").read_text()
    assert "each scored by the weights it inherits from the supernet" in report
    family = json.loads((folder / "stages" / "family.json").read_text())["result"]
    (member,) = family["members"]
    assert member["budget_ms"] == 0.6 and member["measured_ms"] > family["base_ms"] > 0 and 0 < member["test_accuracy"] <= 1
    assert member["arch"].startswith(f"default-{member['scaling']}:") and family["ratios"]
    assert "## Family" in report and member["arch"] in report and (folder / "report" / "family.png").exists()
    before = {path.name: path.read_text() for path in (folder / "stages").glob("*.json")}
    again = hwnas(*command)
    assert again.returncode == 0, again.stderr[-3000:]
    assert {path.name: path.read_text() for path in (folder / "stages").glob("*.json")} == before


def test_the_winners_relatives_train_from_scratch_with_the_recorded_recipe_or_an_older_folders_untaught() -> None:
    """A train stage's ``scratch_recipe`` is what family members and references train with; a run folder from before
    it was recorded gives its winner's recipe without the teacher a supernet's fine-tuning had."""
    from hwnas.pipeline.stages.train import TrainResult
    from hwnas.recipe import Recipe

    taught = Recipe(epochs=2, warmup_epochs=0.0, distill=0.5).to_json()
    fields = dict(arch="default:x", recipe=taught, dataset="d", resolution=32, val_accuracy=0.5, curve=[], wall_time_s=1.0,
                  params=1, flops=1, seed=0, threads=1, folder="model")  # fmt: skip
    older = TrainResult(**fields)
    assert older.recipe_from_scratch() == Recipe(epochs=2, warmup_epochs=0.0, distill=0.0)
    recorded = TrainResult(**fields, scratch_recipe=Recipe(epochs=2, lr=0.2).to_json())
    assert recorded.recipe_from_scratch() == Recipe(epochs=2, lr=0.2)


# ---- kill -9 between stages ----------------------------------------------------------------------------
def run_until(folder: Path, config: Path | None, stage: str, log: Path, timeout: float = 600) -> bool:
    """Start the quick run, its output to ``log``, and SIGKILL it as soon as ``stage``'s record exists; False if it
    finished first."""
    settings = ["--config", str(config)] if config else []
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "hwnas", "run", "--quick", *settings, "--out", str(folder)],
            cwd=REPO,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if (folder / "stages" / f"{stage}.json").exists():
                os.killpg(process.pid, signal.SIGKILL)  # the run and its worker processes, at once
                process.wait()
                return True
            if process.poll() is not None:
                return False
            time.sleep(0.05)
        raise AssertionError(f"stage {stage} did not finish in {timeout} s")
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.mark.slow
def test_kill_9_at_three_stages_then_rerun_continues_and_redoes_nothing(resumed_quick_run: ResumedQuickRun) -> None:
    result = resumed_quick_run.final
    kept: dict[str, str] = {}
    for now in resumed_quick_run.records_after_kill:
        assert all(now[name] == text for name, text in kept.items())  # what was finished before is untouched
        kept = now
    assert result.returncode == 0, result.stderr[-3000:]
    final = resumed_quick_run.records_after_final
    assert all(final[name] == text for name, text in kept.items())  # nothing finished was done again
    records = {name: json.loads(final[f"stages/{name}.json"]) for name in STAGE_NAMES}
    made_by = {name: record["session"] for name, record in records.items()}
    assert made_by["device"] == made_by["table"] == 1 and made_by["search"] == 2 and made_by["train"] == 3
    assert made_by["export"] == 4  # only what had not finished ran in the last session
    reused = [line for line in result.stdout.splitlines() if "reused" in line]
    assert len(reused) == sum(session < 4 for session in made_by.values())  # each finished stage read back, not run
    summary = resumed_quick_run.summary_after_final
    assert summary["sessions"] == 4 and summary["final"]["verified"]
    assert resumed_quick_run.sessions_after_kill == (1, 2, 3)  # each killed session was recorded before it died


# ---- Ray -------------------------------------------------------------------------------------------------
def keys(value: object, prefix: str = "") -> set[str]:
    if isinstance(value, dict):
        return {f"{prefix}{k}" for k in value} | {key for k, v in value.items() for key in keys(v, f"{prefix}{k}.")}
    return set()


@pytest.mark.slow
def test_the_quick_run_through_a_local_ray_cluster_gives_the_same_summary(quick_run: QuickRun, tmp_path: Path) -> None:
    pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[ray]')")
    pytest.importorskip("hwnas.search.executors", reason="the search (issue 11) is not part of this hwnas")
    folder, first = quick_run
    assert first.returncode == 0, first.stderr[-3000:]
    result = hwnas("run", "--quick", "--ray", "local", "--out", str(tmp_path / "ray"))
    assert result.returncode == 0, result.stderr[-3000:]
    local = json.loads((folder / "summary.json").read_text())
    ray = json.loads((tmp_path / "ray" / "summary.json").read_text())
    # the same device: the same summary, key for key (a prediction's fields depend on whether pruning was kept)
    assert {k for k in keys(ray) if ".predicted." not in k} == {k for k in keys(local) if ".predicted." not in k}
    search = json.loads((tmp_path / "ray" / "stages" / "search.json").read_text())["result"]
    assert search["executor"]["kind"] == "RayExecutor" and search["executor"]["ray"] == "local"
    assert any(use["what"].endswith("(Ray)") for use in ray["cores"]["use"])
    assert (tmp_path / "ray" / "report.html").stat().st_size > 10_000 and ray["final"]["verified"]


def test_a_best_measured_over_the_budget_gives_way_to_the_next_feasible_candidate() -> None:
    from hwnas.pipeline.stages.search import FinishedSearch, Winner, _winner

    best = {"arch": "a", "recipe": {"lr": 0.1}, "accuracy": 0.9, "predicted_latency_ms": 0.4}
    top = [
        {"rank": 1, "arch": "a", "recipe": {"lr": 0.1}, "proxy_accuracy": 0.9, "predicted_ms": 0.4},
        {"rank": 2, "arch": "b", "recipe": {"lr": 0.2}, "proxy_accuracy": 0.8, "predicted_ms": 0.3},
    ]
    over = FinishedSearch(top, {"rank": 1, "arch": "a", "verdict": "over", "next_feasible": {"rank": 2, "arch": "b"}})
    run = type("Run", (), {"log": staticmethod(lambda message: None)})()
    assert _winner(run, best, over) == (Winner("b", {"lr": 0.2}, 0.8, 0.3), True)
    borderline = FinishedSearch(top, {"rank": 1, "arch": "a", "verdict": "borderline", "next_feasible": None})
    assert _winner(run, best, borderline) == (Winner("a", {"lr": 0.1}, 0.9, 0.4), False)
    nothing = FinishedSearch(top, {"rank": 1, "arch": "a", "verdict": "over", "next_feasible": None})
    assert _winner(run, best, nothing)[1] is False  # over, and no measured candidate within: the best stays (pruning may help)


# ---- which pruned model the run keeps -------------------------------------------------------------------------
def _models(**rows: tuple[float, float | None]) -> dict:
    """name=(test accuracy, measured ms on the primary device) -> the pruning stage's models."""
    from hwnas.pipeline.stages.prune import PrunedModel

    return {
        name: PrunedModel(accuracy, 1, 1, {} if ms is None else {"dev": ms}, f"prune/{name}")
        for name, (accuracy, ms) in rows.items()
    }


def test_the_best_pruned_model_is_kept_whichever_method_made_it() -> None:
    from hwnas.pipeline.stages.prune import choose_pruned

    # the 2026-12-01 default run: uniform as accurate as AMC and faster
    models = _models(unpruned=(0.8835, 0.326), amc=(0.882, 0.272), uniform=(0.882, 0.215), **{"global-magnitude": (0.828, 0.2)})
    kept, why = choose_pruned(models, "dev", 0.62)
    assert kept == "uniform" and "amc, uniform" in why
    models = _models(unpruned=(0.88, 0.30), amc=(0.879, 0.25), uniform=(0.874, 0.20))
    assert choose_pruned(models, "dev", 0.62)[0] == "amc"  # more accurate beats faster


def test_unpruned_is_kept_when_pruning_costs_too_much_unless_only_pruned_models_meet_the_budget() -> None:
    from hwnas.pipeline.stages.prune import choose_pruned

    models = _models(unpruned=(0.88, 0.30), amc=(0.86, 0.25), uniform=(0.85, 0.20))
    assert choose_pruned(models, "dev", 0.62) == ("unpruned", "the pruned models lose more accuracy than the speed is worth")
    kept, why = choose_pruned(models, "dev", 0.27)  # the unpruned model is over a 0.27 ms budget: the most accurate within
    assert kept == "amc" and "within the budget" in why
    assert choose_pruned(_models(unpruned=(0.88, 0.30), amc=(0.88, 0.31)), "dev", 0.62)[0] == "unpruned"
    assert choose_pruned(_models(unpruned=(0.88, None), amc=(0.88, 0.2)), "dev", 0.62)[0] == "unpruned"
