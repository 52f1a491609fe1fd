"""Judge the latency predictors on held-out measured whole networks of each device, next to its noise floor.

For each table (device): every measured network (the table's own plus ``--networks`` files) is
predicted while held out, by K-fold cross-validation (so every network counts once as held out),
and additionally on one fixed 25% hold-out split (the split ``hwnas predictor fit`` uses). The
predictors: ``lut`` (sum of layer medians), ``flops`` (linear in FLOPs), and the calibrated
predictor with each correction model. The noise floor is each network's within-run spread and,
with ``--repeats``, the same networks measured again in a later session.

Writes ``benchmarks/results/predictor_latency_<device>.json`` and a scatter PNG beside it.

    .venv/bin/python benchmarks/predictor_latency.py --table latency_tables/data/default-host-cpu-onnxruntime.json \
        --networks predictors/data/default-host-cpu-onnxruntime-networks.json \
        --repeats predictors/data/default-host-cpu-onnxruntime-repeats.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hwnas.latency_tables.table import LatencyTable  # noqa: E402
from hwnas.predictors.data import split  # noqa: E402
from hwnas.predictors.evaluate import latency_metrics, scatter_plot  # noqa: E402
from hwnas.predictors.latency import CalibratedLatency, FlopsRegression, LutSum  # noqa: E402
from hwnas.predictors.workflow import fit_and_evaluate, load_networks, noise_floor, read_networks_file  # noqa: E402

CANDIDATES = {
    "lut": lambda table: LutSum(table),
    "flops": lambda table: FlopsRegression(table),
    "calibrated-ridge": lambda table: CalibratedLatency(table, correction="ridge"),
    "calibrated-gbr": lambda table: CalibratedLatency(table, correction="gbr"),
    "calibrated-ridge+gbr": lambda table: CalibratedLatency(table, correction="ridge+gbr"),
}


def cross_validated(table: LatencyTable, networks: list, folds: int, seed: int) -> dict:
    """Every network predicted once by each predictor fitted on the other folds."""
    order = np.random.default_rng(seed).permutation(len(networks))
    predicted = {name: np.zeros(len(networks)) for name in CANDIDATES}
    for fold in range(folds):
        test = order[fold::folds]
        train = np.setdiff1d(order, test)
        archs, ms = [networks[i].arch for i in train], [networks[i].ms for i in train]
        for name, make in CANDIDATES.items():
            predictor = make(table).fit(archs, ms)
            predicted[name][test] = predictor.predict([networks[i].arch for i in test])
    measured = np.array([n.ms for n in networks])
    by_source = {}
    for source in sorted({n.source for n in networks}):
        mask = np.array([n.source == source for n in networks])
        by_source[source] = {name: latency_metrics(values[mask], measured[mask]) for name, values in predicted.items()}
    return {
        "folds": folds,
        "train_networks_per_fold": len(networks) - len(networks) // folds,
        "held_out_total": len(networks),
        "metrics_by_source": by_source,
        "metrics": {name: latency_metrics(values, measured) for name, values in predicted.items()},
        "_predicted": predicted,
        "_measured": measured,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", type=Path, required=True)
    parser.add_argument(
        "--networks", type=Path, action="append", default=[], help="more measured networks (networks JSON or CSV)"
    )
    parser.add_argument("--repeats", type=Path, default=None, help="the table's networks measured again (between-run noise)")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()

    started = time.perf_counter()
    table = LatencyTable.load(args.table)
    networks = load_networks(table, args.networks)
    repeats = read_networks_file(args.repeats, table) if args.repeats else []
    device = table.device.get("name", "device")
    cv = cross_validated(table, networks, args.folds, args.seed)
    train, held_out = split(networks, 0.25, args.seed)
    _, fixed = fit_and_evaluate(table, networks, "calibrated", 0.25, args.seed, correction="ridge")
    fixed_all = {}
    for name, make in CANDIDATES.items():
        predictor = make(table).fit([n.arch for n in train], [n.ms for n in train])
        fixed_all[name] = latency_metrics(predictor.predict([n.arch for n in held_out]), [n.ms for n in held_out])
    table_networks = {n.arch for n in load_networks(table)}
    floor = noise_floor([n for n in networks if n.arch in table_networks], repeats)
    floor["within_run_all_networks"] = noise_floor(networks)["within_run"]
    plot = args.out / f"predictor_latency_{device}.png"
    series = {name: (cv["_predicted"][name], cv["_measured"]) for name in ("lut", "flops", "calibrated-ridge")}
    scatter_plot(series, plot, f"{table.space} on {device}: {len(networks)} networks, {args.folds}-fold CV (each held out once)")
    best = "calibrated-ridge"
    beats = {rival: all(_better(cv["metrics"][best], cv["metrics"][rival], key) for key in _KEYS) for rival in ("lut", "flops")}
    results = {
        "command": " ".join(["benchmarks/predictor_latency.py", *sys.argv[1:]]),
        "device": device,
        "fingerprint": table.fingerprint,
        "space": table.space,
        "space_hash": table.space_hash,
        "networks_measured": len(networks),
        "networks_from_table": len(table.networks),
        "cross_validation": {k: v for k, v in cv.items() if not k.startswith("_")},
        "fixed_split": {
            "train_networks": len(train),
            "held_out_networks": len(held_out),
            "seed": args.seed,
            "metrics": fixed_all,
            "cli_equivalent": fixed.get("held_out", {}),
        },
        "noise_floor": floor,
        "targets": {
            "calibrated_within_10pct_cv": cv["metrics"][best]["within_10pct"],
            "meets_95pct": cv["metrics"][best]["within_10pct"] >= 0.95,
            "meets_99pct": cv["metrics"][best]["within_10pct"] >= 0.99,
            "beats_on_every_metric": beats,
        },
        "plot": str(plot.relative_to(ROOT)) if plot.is_relative_to(ROOT) else str(plot),
        "machine": {"python": platform.python_version()},
        "wall_s": round(time.perf_counter() - started, 1),
    }
    out = args.out / f"predictor_latency_{device}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    for name, metrics in cv["metrics"].items():
        print(
            f"{device} {name:22s} within5 {metrics['within_5pct']:.1%} within10 {metrics['within_10pct']:.1%} "
            f"MAPE {metrics['mape_pct']:.2f}% RMSE {metrics['rmse_ms']:.4f} tau {metrics['kendall_tau']:.3f}"
        )
    between = floor.get("between_runs", {})
    if between.get("n", 0) > 1:
        print(
            f"{device} noise floor (between runs, {between['n']} networks): within5 {between['within_5pct']:.1%} "
            f"within10 {between['within_10pct']:.1%} MAPE {between['mape_pct']:.2f}% tau {between['kendall_tau']:.3f}"
        )
    print(f"-> {out}")


_KEYS = ("within_5pct", "within_10pct", "rmse_ms", "mape_pct", "kendall_tau")


def _better(ours: dict, theirs: dict, key: str) -> bool:
    """At least as good on a share / tau, strictly lower on an error (ties on 100% count as not worse)."""
    if key in ("rmse_ms", "mape_pct"):
        return ours[key] < theirs[key]
    return ours[key] >= theirs[key]


if __name__ == "__main__":
    main()
