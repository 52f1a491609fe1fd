"""Latency predictors on the shipped, measured tables of this machine: fit, judge, save, refuse bad input."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from hwnas.errors import UserError
from hwnas.latency_tables.table import LatencyTable
from hwnas.predictors import (
    CalibratedLatency,
    FlopsRegression,
    LutSum,
    latency_metrics,
    load_predictor,
    networks_from_table,
    read_latency_csv,
    save_predictor,
    split,
)
from hwnas.predictors.features import arch_features, feature_names
from hwnas.predictors.workflow import load_networks
from hwnas.presets import get_space

REPO = Path(__file__).resolve().parents[1]
TABLES = Path(os.environ.get("HWNAS_TEST_TABLES", REPO / "latency_tables" / "data"))
ORT = TABLES / "default-host-cpu-onnxruntime.json"
TFLITE = TABLES / "default-host-cpu-tflite-xnnpack.json"


@pytest.fixture(scope="module")
def ort() -> LatencyTable:
    return LatencyTable.load(ORT)


@pytest.fixture(scope="module")
def tflite() -> LatencyTable:
    return LatencyTable.load(TFLITE)


@pytest.fixture(scope="module")
def ort_split(ort):
    networks = networks_from_table(ort.networks, get_space("default"))
    return split(networks, 0.25, seed=0)


@pytest.fixture(scope="module")
def fitted(ort, ort_split):
    train, _ = ort_split
    return CalibratedLatency(ort).fit([n.arch for n in train], [n.ms for n in train])


def test_lut_sum_is_the_table_sum(ort):
    space = get_space("default")
    archs = [space.parse(row["arch"]) for row in ort.networks[:5]]
    expected = [ort.predict(space.op_keys(arch)) for arch in archs]
    assert np.allclose(LutSum(ort).predict(archs), expected)
    features = arch_features(space, {k: e.median_ms for k, e in ort.entries.items()}, archs[0])
    stages = sum(features[name] for name in feature_names(space) if name.startswith("lut_") and name != "lut_sum")
    assert features["lut_sum"] == pytest.approx(stages)


@pytest.mark.parametrize("table_name", ["ort", "tflite"])
def test_calibrated_beats_both_baselines_on_held_out_networks(request, table_name):
    table = request.getfixturevalue(table_name)
    train, held_out = split(networks_from_table(table.networks, get_space("default")), 0.25, seed=0)
    assert len(train) >= 15 and len(held_out) >= 5
    measured = [n.ms for n in held_out]
    scores = {}
    for name, predictor in {
        "calibrated": CalibratedLatency(table),
        "lut": LutSum(table),
        "flops": FlopsRegression(table),
    }.items():
        predictor.fit([n.arch for n in train], [n.ms for n in train])
        scores[name] = latency_metrics(predictor.predict([n.arch for n in held_out]), measured)
    assert scores["calibrated"]["mape_pct"] < scores["lut"]["mape_pct"]
    assert scores["calibrated"]["mape_pct"] < scores["flops"]["mape_pct"]
    assert scores["calibrated"]["within_10pct"] >= 0.8


def test_fit_returns_self_and_learns_underscore_attributes(ort, ort_split):
    train, _ = ort_split
    predictor = CalibratedLatency(ort, correction="gbr", n_estimators=20)
    assert not hasattr(predictor, "models_")
    assert predictor.fit([n.arch.format() for n in train], [n.ms for n in train]) is predictor
    assert predictor.n_train_ == len(train) and len(predictor.models_) == 1
    with pytest.raises(UserError, match="not fitted"):
        CalibratedLatency(ort).predict([train[0].arch])


def test_save_load_round_trip_predicts_the_same(tmp_path, ort, fitted, ort_split):
    _, held_out = ort_split
    model, sidecar = save_predictor(fitted, tmp_path / "ort.skops", metrics={"mape_pct": 1.0})
    meta = json.loads(sidecar.read_text())
    assert meta["space_hash"] == get_space("default").hash and meta["fingerprint"] == ort.fingerprint
    assert meta["features"] == feature_names(get_space("default")) and meta["training_set"]["networks"] == fitted.n_train_
    assert meta["libraries"]["scikit-learn"]
    loaded = load_predictor(model, fingerprint=ort.fingerprint, space_hash=get_space("default").hash)
    archs = [n.arch for n in held_out]
    assert np.array_equal(loaded.predict(archs), fitted.predict(archs))


def test_predictor_of_another_device_is_refused_naming_the_difference(tmp_path, fitted, tflite):
    model, _ = save_predictor(fitted, tmp_path / "ort.skops")
    with pytest.raises(UserError, match=r"another device or space.*fingerprint\.runtime: 'onnxruntime' vs 'tflite'"):
        load_predictor(model, fingerprint=tflite.fingerprint)
    with pytest.raises(UserError, match=r"space hash: \w+ \(default\) vs 0123"):
        load_predictor(model, space_hash="0123")


def test_corrupted_or_swapped_model_file_is_never_unpickled(tmp_path, ort, fitted):
    model, _ = save_predictor(fitted, tmp_path / "ort.skops")
    marker = tmp_path / "unpickled"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    model.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(UserError, match="does not match its sidecar"):
        load_predictor(model, fingerprint=ort.fingerprint)
    assert not marker.exists()
    model.unlink()
    with pytest.raises(UserError, match="cannot read predictor"):
        load_predictor(model)


class _RunsCodeWhenUnpickled:
    """An object whose unpickling creates a file: what a hostile shared predictor would hold."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _forge_sidecar(model: Path, sidecar: Path) -> None:
    """Point a genuine sidecar at a replaced model file, as whoever wrote both files could."""
    from hwnas.fileio import file_sha256

    meta = json.loads(sidecar.read_text())
    meta["model_sha256"] = file_sha256(model)
    sidecar.write_text(json.dumps(meta))


def test_a_forged_pickle_with_a_matching_sidecar_runs_no_code(tmp_path, ort, fitted):
    model, sidecar = save_predictor(fitted, tmp_path / "ort.skops")
    marker = tmp_path / "unpickled"
    model.write_bytes(pickle.dumps(_RunsCodeWhenUnpickled(marker)))
    _forge_sidecar(model, sidecar)
    with pytest.raises(UserError, match="not a readable predictor file"):
        load_predictor(model, fingerprint=ort.fingerprint)
    assert not marker.exists()


def test_a_forged_skops_file_with_an_untrusted_type_is_refused_naming_it(tmp_path, ort, fitted):
    import skops.io

    model, sidecar = save_predictor(fitted, tmp_path / "ort.skops")
    marker = tmp_path / "unpickled"
    skops.io.dump({"table": "{}", "fitted": _RunsCodeWhenUnpickled(marker)}, model)
    _forge_sidecar(model, sidecar)
    with pytest.raises(UserError, match=r"holds types hwnas does not load .*_RunsCodeWhenUnpickled"):
        load_predictor(model, fingerprint=ort.fingerprint)
    assert not marker.exists()


def test_get_params_and_clone_replace_hand_written_hyperparameters(ort, fitted):
    from sklearn.base import clone

    params = fitted.get_params()
    assert params["correction"] == "ridge" and params["table"] is ort
    copy = clone(fitted)
    assert copy.get_params()["alpha"] == fitted.alpha and not hasattr(copy, "models_")


def test_model_without_sidecar_is_refused(tmp_path, fitted):
    model, sidecar = save_predictor(fitted, tmp_path / "ort.skops")
    sidecar.unlink()
    with pytest.raises(UserError, match="has no sidecar"):
        load_predictor(model)


def test_fit_from_csv(tmp_path, ort, ort_split):
    train, held_out = ort_split
    csv = tmp_path / "measured.csv"
    quoted = [f'"{n.arch.format()}",{n.ms}\n' for n in train[: len(train) // 2]]  # as csv.writer writes them
    unquoted = [f"{n.arch.format()},{n.ms}\n" for n in train[len(train) // 2 :]]  # as people type them
    csv.write_text("arch,latency_ms\n" + "".join(quoted + unquoted))
    rows = read_latency_csv(csv, get_space("default"))
    assert [r.arch for r in rows] == [n.arch for n in train]
    predictor = CalibratedLatency(ort).fit([r.arch for r in rows], [r.ms for r in rows])
    assert latency_metrics(predictor.predict([n.arch for n in held_out]), [n.ms for n in held_out])["mape_pct"] < 10


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("arch,latency_ms\ndefault:r32_c16[k3e3]_c40[k5e6]_c48[k9e3h]_c80[k3e3h],0.2\n", r"line 2: unknown architecture .*k9e3h"),
        ("arch,latency_ms\nnot-an-arch,0.2\n", r"line 2: unknown architecture 'not-an-arch'"),
        (
            "arch,latency_ms\ndefault:r32_c16[k3e3]_c40[k5e6]_c48[k7e3h]_c80[k3e3h],fast\n",
            r"line 2: latency 'fast' is not a number",
        ),
        ("name,ms\nx,1\n", r"header must name an 'arch' and a 'latency_ms' column"),
    ],
)
def test_bad_csv_is_one_line_error(tmp_path, body, message):
    csv = tmp_path / "bad.csv"
    csv.write_text(body)
    with pytest.raises(UserError, match=message) as caught:
        read_latency_csv(csv, get_space("default"))
    assert "\n" not in str(caught.value)


def test_metrics_by_hand():
    metrics = latency_metrics([1.04, 2.19, 2.71], [1.0, 2.0, 3.0])
    assert metrics["within_5pct"] == pytest.approx(1 / 3)
    assert metrics["within_10pct"] == pytest.approx(1.0)
    assert metrics["mape_pct"] == pytest.approx((4 + 9.5 + 29 / 3) / 3)
    assert metrics["kendall_tau"] == pytest.approx(1.0)


def test_cli_fit_then_eval(tmp_path, hwnas_in_process, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fit = hwnas_in_process(
        "predictor",
        "fit",
        "--table",
        str(ORT),
        "--out",
        str(tmp_path / "p.skops"),
        "--plot",
        str(tmp_path / "p.png"),
        "--json",
    )
    assert fit.returncode == 0, fit.stderr
    report = json.loads(fit.stdout)
    assert report["held_out"]["calibrated"]["mape_pct"] < report["held_out"]["lut"]["mape_pct"]
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    evaluated = hwnas_in_process("predictor", "eval", str(tmp_path / "p.skops"), "--table", str(ORT), "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads(evaluated.stdout)["networks"] == report["held_out_networks"]
    wrong = hwnas_in_process("predictor", "eval", str(tmp_path / "p.skops"), "--table", str(TFLITE))
    assert wrong.returncode == 2
    assert wrong.stderr.startswith("error: predictor") and "another device" in wrong.stderr
    assert wrong.stderr.count("\n") == 1


def test_cli_bad_csv_and_missing_table_are_one_line_errors(tmp_path, hwnas_in_process):
    csv = tmp_path / "m.csv"
    csv.write_text("arch,latency_ms\nmobilenet_v2,1.0\n")
    bad_csv = hwnas_in_process(
        "predictor", "fit", "--table", str(ORT), "--networks", str(csv), "--out", str(tmp_path / "p.skops")
    )
    assert bad_csv.returncode == 2 and bad_csv.stderr.count("\n") == 1
    assert "unknown architecture 'mobilenet_v2'" in bad_csv.stderr
    missing = hwnas_in_process("predictor", "fit", "--table", str(tmp_path / "none.json"), "--out", str(tmp_path / "p.skops"))
    assert missing.returncode == 2 and missing.stderr.startswith("error: cannot read latency table")
    kind = hwnas_in_process("predictor", "fit", "--table", str(ORT), "--kind", "magic", "--out", str(tmp_path / "p.skops"))
    assert kind.returncode == 2 and "unknown predictor kind 'magic'" in kind.stderr


def test_networks_file_of_another_device_is_refused(ort):
    with pytest.raises(UserError, match=r"another device or space.*fingerprint\.runtime"):
        load_networks(ort, [TFLITE])
    assert len(load_networks(ort, [ORT])) == len(ort.networks)  # the same networks twice count once
