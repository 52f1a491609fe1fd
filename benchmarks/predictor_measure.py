"""Measure whole networks only (no layers) on a device, for fitting and judging latency predictors.

A shipped table holds 120 measured networks; a predictor judged on a quarter of them is judged on
30. This measures more, with the profiler's own machinery (conversion cache, SQLite store,
re-measure-while-noisy loop, so a killed run resumes), and writes them as a table file holding
networks only, stamped with the device fingerprint (so a predictor refuses them if they are of
another device):

- ``--new N --seed S``: N sampled networks not in the table (seed != the profiler's 0);
- ``--repeat``: the table's own networks measured again in this later session: the device's
  between-run noise floor.

    .venv/bin/python benchmarks/predictor_measure.py host-ort --table latency_tables/data/default-host-cpu-onnxruntime.json \
        --new 240 --seed 1 --out predictors/data/default-host-cpu-onnxruntime-networks.json
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hwnas.arch import Arch  # noqa: E402
from hwnas.devices import DeviceSpec, make_backend  # noqa: E402
from hwnas.latency_tables.convert import convert_all, network_job  # noqa: E402
from hwnas.latency_tables.profiler import Profiler, ProfileSettings, sample_networks, store_meta  # noqa: E402
from hwnas.latency_tables.store import LatencyStore  # noqa: E402
from hwnas.latency_tables.table import LatencyTable  # noqa: E402
from hwnas.predictors.latency import space_of  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec")
    parser.add_argument("--table", type=Path, required=True, help="the device's latency table (space, fingerprint, its networks)")
    parser.add_argument("--new", type=int, default=0, help="sampled networks to measure that the table does not hold")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", action="store_true", help="measure the table's own networks again instead")
    parser.add_argument("--limit", type=int, default=None, help="with --repeat: only the table's first N networks")
    parser.add_argument("--out", type=Path, required=True, help="networks file to write (a table JSON with networks only)")
    parser.add_argument("--work", type=Path, default=None, help="store + cache folder (default: a folder beside --out)")
    parser.add_argument("--workers", type=int, default=max(1, len(os.sched_getaffinity(0))))
    args = parser.parse_args()

    table = LatencyTable.load(args.table)
    space = space_of(table)
    spec = DeviceSpec.from_toml(args.spec)
    backend = make_backend(spec)
    backend.require_available()
    table.check(backend.fingerprint(), space.hash)
    if args.repeat:
        archs = [space.parse(row["arch"]) for row in table.networks][: args.limit]
    else:
        known = {row["arch"] for row in table.networks}
        archs = [a for a in sample_networks(space, args.new + len(known), args.seed) if a.format() not in known][: args.new]
    work = args.work or Path(tempfile.gettempdir()) / f"hwnas-predictor-measure-{args.out.stem}"
    started = time.perf_counter()
    measured = measure(spec, backend, space, archs, work, args.workers)
    networks = LatencyTable(
        device=table.device,
        fingerprint=backend.fingerprint(),
        space=space.name,
        space_hash=space.hash,
        entries={},
        networks=measured,
        kind="measured",
        source=" ".join(["benchmarks/predictor_measure.py", *sys.argv[1:]]),
        stats={
            "networks": len(measured),
            "wall_s": round(time.perf_counter() - started, 1),
            "repeat_of_table": bool(args.repeat),
            "seed": None if args.repeat else args.seed,
        },
    )
    networks.save(args.out)
    print(f"{len(measured)} networks of {space.name!r} on {spec.name} -> {args.out} ({time.perf_counter() - started:.0f} s)")


def measure(spec: DeviceSpec, backend, space, archs: list[Arch], work: Path, workers: int) -> list[dict]:
    """Convert (in parallel), then time each network on pinned cores; every attempt goes to the store."""
    cache = work / "cache"
    jobs = {arch.format(): network_job(space, arch, backend.model_format, cache) for arch in archs}
    convert_all(list(jobs.values()), workers)
    profiler = Profiler(spec, space, work, cache, ProfileSettings(networks=0), backend=backend)
    store = LatencyStore.open(work / "store.sqlite", store_meta(spec, backend, space))
    try:
        done = store.done("network")
        for key, job in jobs.items():
            if key not in done:
                profiler.measure_until_stable(store, "network", key, {"arch": key}, lambda job=job: backend.measure(job.path))
        accepted = {row.key: row.summary for row in store.accepted("network")}
    finally:
        store.close()
    return [{"arch": key, **accepted[key]} for key in jobs if key in accepted]


if __name__ == "__main__":
    main()
