"""One time frame: what a run reports is the device as it runs today, even when its table was timed at another speed.

A table timed as on a day 4x slower than today stands for a machine that now runs faster than when its table was
made (on 2026-12-02 a fresh clone met 0.52x its shipped table). The run's drift check must find ~0.25, and the
headline predicted / measured ratio must compare the drift-corrected prediction with the measurement, not the
table-time prediction (which would read as a predictor ~4x off).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import shutil
from pathlib import Path

import pytest

from hwnas.pipeline.config import resolve_config
from hwnas.pipeline.context import RunContext
from hwnas.pipeline.records import Records
from hwnas.presets import get_space

from conftest import slower_day_factor

REPO = Path(__file__).resolve().parents[1]
OLD_RUN = REPO / "tests" / "data" / "run-2026-12-02"


def slower_day_table(device: str, into: Path) -> bool:
    """The shipped table of ``device`` matching this CPU, timed as on a day 4x slower, as the run's own profile; False if none."""
    from hwnas.devices import DeviceSpec, make_backend
    from hwnas.latency_tables.table import matching_table

    space = get_space("default")
    backend = make_backend(DeviceSpec.from_toml(device))
    found = matching_table(backend.spec.name, backend.fingerprint(), space.name, space.hash, stores=())
    if found is None:
        return False
    data = json.loads(found.path.read_text())
    data["fingerprint"] = backend.fingerprint()  # a run's own profile records this exact CPU
    factor = slower_day_factor(found.path, device)  # x4 of today's times, not of the shipped table's day
    for row in [*data["entries"], *data["networks"], *data.get("references", {}).values()]:
        for key in ("median_ms", "p10_ms", "p90_ms", "mean_ms"):
            if isinstance(row.get(key), float | int):
                row[key] = row[key] * factor
    target = into / "tables" / f"{backend.spec.name}-default" / "table.json"
    target.parent.mkdir(parents=True)
    target.write_text(json.dumps(data))
    return True


@pytest.mark.slow
def test_a_table_timed_at_a_quarter_of_the_speed_gives_a_drift_corrected_headline(tmp_path: Path) -> None:
    from hwnas.cli.run import prediction_line
    from hwnas.devices import make_backend
    from hwnas.latency_tables.convert import convert_all, network_job
    from hwnas.paths import model_cache
    from hwnas.pipeline.report import render_report
    from hwnas.pipeline.stages import device, predictor, table
    from hwnas.pipeline.stages.export import predict_arch
    from hwnas.pipeline.stages.search import SearchResult, Winner

    folder = tmp_path / "run"
    if not slower_day_table("host-ort", folder):
        pytest.skip("no shipped ONNX Runtime table matches this CPU")
    config = resolve_config(True, None, {"devices": ["host-ort"], "budget_ms": 50.0})
    context = RunContext(config, folder, Records.open(folder, ["test"]), get_space("default"), lambda _: None, False)
    for stage in (device, table, predictor):
        context.values[stage.STAGE.name] = stage.run(context)
    tables = context.result(table.TableResult)
    assert tables.primary.origin == table.RUN_PROFILED and tables.primary.drift_warn
    assert 0.08 < tables.scale < 0.6  # a quarter, with room for CI's load to move one timing 2x
    space = context.space
    arch = space.sample(7)
    context.values["search"] = SearchResult(best=Winner(arch.format()))  # no finish: the table stage's drift applies
    prediction = predict_arch(context, arch)[tables.primary.device]
    spec = context.result(device.DeviceResult).primary.device_spec()
    job = network_job(space, arch, "onnx", model_cache())
    convert_all([job], 1)
    measured = make_backend(spec).measure(job.path).median_ms
    today, in_table = prediction.today_ms, prediction.calibrated_ms
    assert today == pytest.approx(in_table * tables.scale)
    assert abs(math.log(today / measured)) < abs(math.log(in_table / measured))  # the corrected figure is the closer one
    line = prediction_line(spec.name, dataclasses.asdict(prediction) | {"today_ms": today}, measured)
    assert f"predicted {today:.3f} ms today" in line and f"(predicted / measured {today / measured:.2f})" in line
    assert f"{in_table:.3f} ms in table time x drift {prediction.drift_ratio:.2f}" in line

    # the report's headline table: the same figures, written into a finished run's records
    report_folder = tmp_path / "report"
    shutil.copytree(OLD_RUN, report_folder)
    path = report_folder / "stages" / "export.json"
    record = json.loads(path.read_text())
    record["result"]["predicted"][spec.name] = dataclasses.asdict(prediction)
    record["result"]["measured_ms"][spec.name] = measured
    path.write_text(json.dumps(record))
    markdown = render_report(report_folder)[0].read_text()
    [row] = [line for line in markdown.splitlines() if line.startswith(f"| {spec.name} |")]
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[1] == f"{today:.4f}" and cells[-1] == f"{today / measured:.3f}"
    assert re.match(rf"{in_table:.4f} x {prediction.drift_ratio:.3f}", cells[2])
