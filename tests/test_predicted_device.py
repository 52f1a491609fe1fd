"""A device that is not here, given as its latency table (``--device TABLE.json``): searched and specialized from the
table, its networks exported in its format and verified on this machine's TFLite interpreter, but never timed.

The "phone" is the shipped host TFLite table made 10x slower and renamed: a table a colleague profiled elsewhere. The
10x shows the table, not this machine, sets what is feasible: a budget this CPU reaches is refused for the phone.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_search import assert_one_line_error, hwnas

from hwnas.errors import UserError
from hwnas.presets import get_space
from hwnas.search.device import load_device_latency
from hwnas.search.measure import PREDICTED_ONLY
from hwnas.search.specialize import REPORT_FILE, SpecializeReport

SPACE = get_space("default")
SHIPPED_TFLITE = Path("latency_tables/data/default-host-cpu-tflite-xnnpack.json")
SLOWER = 10.0
SMALL = ("--trials", "6", "--supernet-val-images", "200", "--top-k", "2", "--finetune-epochs", "0")


def _phone_table(folder: Path, *, space: str | None = None) -> Path:
    """The shipped TFLite table as if profiled on a phone 10x slower (device ``pixel-test`` on android-adb)."""
    data = json.loads(SHIPPED_TFLITE.read_text())
    data["device"] = data["device"] | {"name": "pixel-test", "backend": "android-adb"}
    data["fingerprint"] = data["fingerprint"] | {"device": "a phone that is not here"}
    for rows in ("entries", "networks"):
        data[rows] = [row | {k: row[k] * SLOWER for k in ("median_ms", "p10_ms", "p90_ms") if k in row} for row in data[rows]]
    if space is not None:
        data["space"] = space
    path = folder / "pixel-test.json"
    path.write_text(json.dumps(data))
    return path


def test_a_table_device_predicts_from_its_table_and_has_no_runtime(tmp_path: Path) -> None:
    phone = load_device_latency(str(_phone_table(tmp_path)), SPACE)
    here = load_device_latency("host-tflite", SPACE, SHIPPED_TFLITE, allow_mismatch=True)
    assert phone.spec.name == "pixel-test-predicted" and phone.spec.backend == "android-adb"
    assert not phone.measurable and here.measurable and phone.describe()["measured_here"] is False
    assert phone.check_drift(tmp_path) is None  # nothing to time: no drift check, no error
    archs = [SPACE.parse(row["arch"]) for row in json.loads(SHIPPED_TFLITE.read_text())["networks"][:10]]
    assert phone.predict(archs) == pytest.approx(SLOWER * here.predict(archs), rel=1e-6)


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda folder: folder / "missing.json", "no such latency table file"),
        (lambda folder: _phone_table(folder, space="proxylessnas"), "not of the searched space 'default'"),
    ],
)
def test_a_bad_table_device_is_one_line(tmp_path: Path, make, fragment: str) -> None:
    with pytest.raises(UserError, match=fragment):
        load_device_latency(str(make(tmp_path)), SPACE)


def test_the_same_device_twice_and_a_budget_only_this_cpu_reaches_are_refused(tmp_path: Path, hwnas_in_process) -> None:
    out = tmp_path / "spec"
    twice = ("--device", "host-ort", "--device", "devices/specs/host-ort.toml", "--budget-ms", "0.5")
    assert_one_line_error(hwnas_in_process("specialize", *twice, "--out", str(out)), "same device (host-cpu-onnxruntime)")
    phone = str(_phone_table(tmp_path))
    refused = hwnas_in_process("specialize", "--device", phone, "--budget-ms", "0.5", "--out", str(out))
    assert_one_line_error(refused, "fastest achievable")
    assert not (out / REPORT_FILE).exists()


@pytest.mark.slow
def test_specialize_for_a_table_device_exports_and_verifies_but_does_not_measure(tmp_path: Path) -> None:
    phone = _phone_table(tmp_path)
    networks = sorted(row["median_ms"] for row in json.loads(phone.read_text())["networks"])
    budget = round(networks[len(networks) // 2], 3)
    out = tmp_path / "spec"
    done = hwnas("specialize", "--device", str(phone), "--budget-ms", str(budget), *SMALL, "--out", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "not measured" in done.stdout and "pixel-test-predicted" in done.stdout
    (network,) = SpecializeReport.from_json(json.loads((out / REPORT_FILE).read_text()), "specialize.json").networks
    assert network.device == "pixel-test-predicted" and network.error is None
    assert network.measured_ms is None and network.verdict == PREDICTED_ONLY
    assert network.predicted_ms is not None and network.predicted_ms <= budget
    result = json.loads((Path(network.folder) / "result.json").read_text())
    assert result["drift"] is None and result["device"]["measured_here"] is False
    assert [entry["measured"] for entry in result["top"]] == [None, None]
    for entry in result["top"]:  # the phone's own format, checked against PyTorch on this machine's interpreter
        assert entry["export"]["format"] == "tflite" and entry["export"]["verification"]["passed"]
        assert Path(entry["export"]["file"]).stat().st_size > 10_000
    assert result["top"][0]["arch"] == network.arch and network.inherited_accuracy == result["top"][0]["proxy_accuracy"]
    assert (out / "pixel-test-predicted" / "pareto.png").stat().st_size > 10_000


@pytest.mark.slow
def test_search_on_a_table_device_says_what_was_predicted_and_not_measured(tmp_path: Path) -> None:
    phone = _phone_table(tmp_path)
    budget = max(row["median_ms"] for row in json.loads(phone.read_text())["networks"])
    out = tmp_path / "search"
    command = ("search", "--device", str(phone), "--budget-ms", f"{budget:.3f}", "--supernet", "default", "--trials", "4")
    done = hwnas(*command, "--supernet-val-images", "200", "--top-k", "1", "--final-epochs", "1", "--out", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "drift check: none (pixel-test-predicted is not here" in done.stdout
    assert "top1: predicted" in done.stdout and "not measured (the device is not here)" in done.stdout
    assert "the best is" not in done.stdout  # a prediction is not a verdict "over the budget"
    result = json.loads((out / "result.json").read_text())
    assert result["best"]["verdict"] == PREDICTED_ONLY and result["top"][0]["export"]["verification"]["passed"]


@pytest.mark.parametrize("command", [("run", "--quick", "--device"), ("devices", "check"), ("profile",)])
def test_a_table_where_a_device_must_run_is_one_line(tmp_path: Path, command: tuple[str, ...], hwnas_in_process) -> None:
    phone = str(_phone_table(tmp_path))
    extra = ("--out", str(tmp_path / "run")) if command[0] == "run" else ()
    assert_one_line_error(hwnas_in_process(*command, phone, *extra), "is a latency table, not a device spec")


def test_a_table_device_with_another_table_is_one_line(tmp_path: Path, hwnas_in_process) -> None:
    phone = str(_phone_table(tmp_path))
    command = ("search", "--device", phone, "--table", str(SHIPPED_TFLITE), "--budget-ms", "5", "--out", str(tmp_path / "s"))
    assert_one_line_error(hwnas_in_process(*command), "is a latency table already")
