"""``hwnas specialize``: one network per device and budget from the shipped supernet, on this machine's real runtimes.

The end-to-end test runs ONNX Runtime and the TFLite interpreter (host-ort, host-tflite) with their shipped tables,
two budgets each, small searches (6 candidates scored on 200 validation images) and no fine-tuning, so the four
networks are the inherited ones; the fine-tuning path is checked on its own, on a few hundred images.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_search import assert_one_line_error, hwnas

from hwnas.errors import UserError
from hwnas.presets import get_space
from hwnas.search.specialize import REPORT_FILE, Specialized, SpecializeReport, parse_budgets

SPACE = get_space("default")
ARCH = SPACE.parse("default:r32_c24[k3e3]_c32[k5e6]_c64[k3e3sh]_c96[k3e6sh]")
SMALL = ("--trials", "6", "--supernet-val-images", "200", "--top-k", "1", "--finetune-epochs", "0")
BUDGETS = "0.3,0.5"


def test_budgets_parse_and_a_bad_list_is_one_line() -> None:
    assert parse_budgets("0.3,0.45") == [0.3, 0.45] and parse_budgets("2") == [2.0]
    for text, fragment in (("0.3,x", "not a number"), ("0.3,-1", "positive"), ("inf", "positive"), ("0.3,0.3", "twice")):
        with pytest.raises(UserError, match=fragment):
            parse_budgets(text)


def test_the_report_reads_back_and_a_newer_one_is_refused(tmp_path: Path) -> None:
    network = Specialized("host-ort", 0.3, "out/host-ort/0.3ms", arch=ARCH.format(), inherited_accuracy=0.77, trials=6)
    report = SpecializeReport(settings={"seed": 0}, networks=[network], plots={"host-ort": "p.png"})
    data = json.loads(json.dumps(report.to_json()))
    assert SpecializeReport.from_json(data, "x") == report and report.finished("host-ort", 0.3) == network
    with pytest.raises(UserError, match="newer"):
        SpecializeReport.from_json(data | {"schema_version": 99}, "x")


def test_the_inherited_network_scores_what_the_search_scored_and_fine_tuning_starts_from_it() -> None:
    """epochs 0: exactly ``inherited_accuracy`` of that architecture; epochs 1: trained from those weights (its first
    point is not a fresh network's), and weights of another architecture are refused in one line."""
    from hwnas.data import load_data
    from hwnas.recipe import Recipe
    from hwnas.search.inherited import loaded_supernet
    from hwnas.search.result import from_supernet
    from hwnas.supernet.store import inherited_accuracy, inherited_network
    from hwnas.supernets import DEFAULT_SUPERNET
    from hwnas.trainer import train

    data = load_data().head(300, 300)
    supernet, _ = loaded_supernet(DEFAULT_SUPERNET)
    inherited, how = from_supernet(DEFAULT_SUPERNET, ARCH, Recipe(batch_size=32), data, 0, seed=0)
    assert inherited.val_accuracy == pytest.approx(inherited_accuracy(supernet, ARCH, data), abs=1e-12)
    assert "not fine-tuned" in how and inherited.curve == [{"epoch": 0, "val_accuracy": inherited.val_accuracy}]
    assert inherited.val_accuracy > 0.6  # ten classes: chance is 0.1

    tuned, how = from_supernet(DEFAULT_SUPERNET, ARCH, Recipe(batch_size=32), data, 1, seed=0)
    fresh = train(SPACE, ARCH, Recipe(batch_size=32, epochs=1, warmup_epochs=0.0), data, seed=0, progress=False)
    assert "fine-tuned 1 epoch" in how and tuned.val_accuracy > fresh.val_accuracy + 0.1, (tuned.val_accuracy, fresh.val_accuracy)
    other = inherited_network(supernet, supernet.smallest_arch(), data)
    with pytest.raises(UserError, match="not those of"):
        train(SPACE, ARCH, Recipe(epochs=1), data, progress=False, initial=other)



def test_fine_tuning_from_a_supernet_can_be_taught_by_its_largest_subnetwork() -> None:
    """``distill=1``: the network learns from the largest subnetwork's soft outputs alone. With every training label
    made 3, fine-tuning on the labels alone (``distill=0``) teaches it to answer 3; taught by the supernet it keeps
    naming the garment. (``hwnas specialize`` fine-tunes at :data:`FINETUNE_DISTILL`, half of each.)"""
    from dataclasses import replace

    from hwnas.data import load_data
    from hwnas.recipe import Recipe
    from hwnas.search.result import from_supernet
    from hwnas.supernets import DEFAULT_SUPERNET

    data = load_data().head(1280, 300)
    lying = replace(data, train=[(image, 3) for image, _ in data.train])  # the validation labels stay true
    on_labels, _ = from_supernet(DEFAULT_SUPERNET, ARCH, Recipe(), lying, 1, seed=0, distill=0.0)
    taught, how = from_supernet(DEFAULT_SUPERNET, ARCH, Recipe(), lying, 1, seed=0, distill=1.0)
    assert "taught by the largest subnetwork" in how
    assert taught.val_accuracy > 0.6 > on_labels.val_accuracy, (taught.val_accuracy, on_labels.val_accuracy)

def test_networks_of_a_supernet_since_trained_again_are_not_kept(tmp_path: Path) -> None:
    """The report's identity holds the supernet's weights by hash: rerun in the same folder after the supernet was
    trained again (same folder, same settings), the old networks are refused in one line, not kept as finished."""
    from hwnas.search.api import SearchSettings
    from hwnas.search.specialize import _resumed, _save, _settings

    supernet, out = tmp_path / "sn", tmp_path / "out"
    supernet.mkdir()
    (supernet / "supernet.pt").write_bytes(b"weights of the first training")
    first = _settings(supernet, ["host-ort"], [0.3], SearchSettings(), 0, 0)
    _save(out, SpecializeReport(settings=first, networks=[Specialized("host-ort", 0.3, "x", arch=ARCH.format())]))
    assert _resumed(out, first).finished("host-ort", 0.3) is not None  # same weights: kept
    (supernet / "supernet.pt").write_bytes(b"weights of the second training")
    again = _settings(supernet, ["host-ort"], [0.3], SearchSettings(), 0, 0)
    with pytest.raises(UserError, match="other settings") as caught:
        _resumed(out, again)
    assert "supernet_sha256" in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.slow
def test_two_devices_two_budgets_give_four_measured_networks_and_a_rerun_redoes_nothing(tmp_path: Path, hwnas_in_process) -> None:
    out = tmp_path / "spec"
    command = ["specialize", "--device", "host-ort", "--device", "host-tflite", "--budget-ms", BUDGETS, *SMALL]
    done = hwnas(*command, "--out", str(out), "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    report = SpecializeReport.from_json(json.loads((out / REPORT_FILE).read_text()), "specialize.json")
    assert json.loads(done.stdout)["networks"] == report.to_json()["networks"]
    assert sorted((n.device, n.budget_ms) for n in report.networks) == [
        ("host-cpu-onnxruntime", 0.3), ("host-cpu-onnxruntime", 0.5),
        ("host-cpu-tflite-xnnpack", 0.3), ("host-cpu-tflite-xnnpack", 0.5),
    ]  # fmt: skip
    for network in report.networks:
        assert network.error is None and network.trials == 6 and network.measured_ms and network.measured_ms > 0
        assert network.predicted_ms is not None and network.predicted_ms <= network.budget_ms
        assert network.verdict in ("within", "over", "borderline") and "inherited" in (network.how or "")
        result = json.loads((Path(network.folder) / "result.json").read_text())
        best = result["top"][0]
        assert best["export"]["verification"]["passed"] and best["arch"] == network.arch
        assert network.inherited_accuracy == best["proxy_accuracy"]
        assert network.test_accuracy == best["retrained"]["test_accuracy"] and network.test_accuracy > 0.6
    assert set(report.plots) == {"host-cpu-onnxruntime", "host-cpu-tflite-xnnpack"}
    assert all(Path(plot).stat().st_size > 10_000 for plot in report.plots.values())

    again = hwnas_in_process(*command, "--out", str(out))  # in this process: nothing is left to search or export
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("finished before, kept") == 4 and "searching" not in again.stdout
    assert SpecializeReport.from_json(json.loads((out / REPORT_FILE).read_text()), "again").networks == report.networks
    assert_one_line_error(hwnas_in_process(*command[:-1], "2", "--out", str(out)), "other settings", "finetune_epochs: 0 vs 2")


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (("--device", "host-ort", "--budget-ms", "0.3,x"), "not a number"),
        (("--device", "nowhere", "--budget-ms", "0.3"), "nowhere"),
        (("--device", "host-ort", "--budget-ms", "0.001"), "fastest achievable"),
        (("--device", "host-ort", "--budget-ms", "0.3", "--supernet", "/nowhere/sn"), "no such folder"),
    ],
)
def test_a_mistake_is_one_line_before_any_work(tmp_path: Path, extra: tuple[str, ...], fragment: str, hwnas_in_process) -> None:
    out = tmp_path / "spec"
    assert_one_line_error(hwnas_in_process("specialize", *extra, "--out", str(out)), fragment)
    assert not (out / REPORT_FILE).exists()


def test_a_chosen_table_of_another_machine_sets_the_budgets_and_the_identity(tmp_path: Path) -> None:
    """``tables=``: the table given is used although made on another CPU (a benchmark's rows share one table): a budget
    the matching table reaches is refused by a table 10x slower, and a rerun with another table is another setting."""
    from hwnas.search.api import SearchSettings
    from hwnas.search.specialize import _resumed, _save, _settings, _tables_setting, specialize
    from hwnas.supernets import DEFAULT_SUPERNET

    shipped = json.loads((Path("latency_tables/data/default-host-cpu-onnxruntime.json")).read_text())
    slow = shipped | {"fingerprint": shipped["fingerprint"] | {"device": "Another CPU"}}
    slow["entries"] = [entry | {k: entry[k] * 10 for k in ("median_ms", "p10_ms", "p90_ms")} for entry in shipped["entries"]]
    slow["networks"] = [net | {k: net[k] * 10 for k in ("median_ms", "p10_ms", "p90_ms")} for net in shipped["networks"]]
    table = tmp_path / "slow.json"
    table.write_text(json.dumps(slow))
    with pytest.raises(UserError, match="fastest achievable"):
        specialize(
            DEFAULT_SUPERNET, ["host-ort"], [0.3], SearchSettings(trials=2), tmp_path / "out",
            space=SPACE, tables={"host-ort": table},
        )  # fmt: skip
    assert not (tmp_path / "out" / REPORT_FILE).exists()

    plain = _settings(DEFAULT_SUPERNET, ["host-ort"], [3.0], SearchSettings(), 0, 0)
    assert _tables_setting({}) == {}  # folders made before tables could be chosen keep matching
    chosen = plain | _tables_setting({"host-ort": table})
    _save(tmp_path / "out", SpecializeReport(settings=chosen))
    with pytest.raises(UserError, match="other settings"):
        _resumed(tmp_path / "out", plain)
