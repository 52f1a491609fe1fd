"""The README's supernet tables, printed as Markdown from the results files (so a table is never copied by hand).

    .venv/bin/python benchmarks/readme_tables.py equal-cost | equal-cost-once | strategies | fidelity | final

``equal-cost``: every row of ``supernet_equal_cost.json`` (``equal-cost-once``: of ``supernet_equal_cost_once.json``,
the supernet's training counted once per budget), then per budget the mean of each difference with its 95%
t-interval over seeds beside the stand-alone range of the networks within the budget (``supernet_equal_cost_spread.json``).
``strategies``: ``search_strategies_supernet.json`` per strategy. ``fidelity``: ``supernet_fidelity.json``'s complete
networks with the rank agreement. ``final``: the specialized networks against 12 epochs of scratch training.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
BUDGET_ORDER = ("tight", "median", "loose")
# two-sided 95% Student t, n - 1 degrees of freedom, by n
T975 = {2: 12.706, 3: 4.303, 4: 3.182, 5: 2.776, 6: 2.571, 7: 2.447, 8: 2.365, 9: 2.306, 10: 2.262}


def mean_interval(points: list[float]) -> str:
    """Mean in points, with its 95% t-interval when there are at least two values."""
    mean = statistics.mean(points)
    if len(points) < 2:
        return f"{mean:+.1f}"
    half = T975[len(points)] * statistics.stdev(points) / len(points) ** 0.5
    return f"{mean:+.1f} ({mean - half:+.1f} to {mean + half:+.1f})"


def _cpu(row: dict[str, Any]) -> str:
    cpu = row.get("cpu") or "AMD EPYC"  # rows before the CPU was recorded ran on the EPYC
    return "Xeon" if "Xeon" in cpu else "EPYC" if "EPYC" in cpu else cpu


def _ms(arm: dict[str, Any], row: dict[str, Any]) -> str:
    """The arm's measured milliseconds, marked when this machine measured it over the budget the table set."""
    return f"{arm['measured_ms']:.3f}" + (", over" if arm["measured_ms"] > row["budget_ms"] else "")


def _training_share(fbnetv3: dict[str, Any]) -> str:
    """The share of the per-candidate search's wall clock its workers spent training, where the row recorded it."""
    share = fbnetv3.get("training_share")
    return "" if share is None else f" ({100 * share:.0f}% training)"


def equal_cost(results_file: str = "supernet_equal_cost.json") -> str:
    rows = json.loads((RESULTS / results_file).read_text())["rows"]
    spread = json.loads((RESULTS / "supernet_equal_cost_spread.json").read_text())
    rows.sort(key=lambda r: (BUDGET_ORDER.index(r["budget_name"]), r["seed"]))
    lines = [
        "| budget | seed | CPU | supernet: wall s | its arch, scratch (ms) | delivered | FBNetV3: trials in the same wall s "
        "| its arch, scratch (ms) | scratch minus FBNetV3 | delivered minus FBNetV3 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        s, f = r["supernet"], r["fbnetv3"]
        lines.append(
            f"| {r['budget_name']}, {r['budget_ms']} ms | {r['seed']} | {_cpu(r)} | {s['wall_s']:.0f} "
            f"| {s['scratch_test']:.4f} ({_ms(s, r)}) | {s['delivered_test']:.4f} "
            f"| {f['trials']} in {f['wall_s']:,.0f} s{_training_share(f)} "
            f"| {f['scratch_test']:.4f} ({_ms(f, r)}) | {100 * (s['scratch_test'] - f['scratch_test']):+.1f} "
            f"| {100 * (s['delivered_test'] - f['scratch_test']):+.1f} |"
        )
    lines += [
        "",
        "| budget | rows | supernet's arch minus FBNetV3's, scratch: mean (95% interval) | delivered minus FBNetV3's scratch "
        "| networks within the budget: stand-alone range |",
        "|---|---|---|---|---|",
    ]
    for name in BUDGET_ORDER:
        mine = [r for r in rows if r["budget_name"] == name]
        if not mine:
            continue
        scratch = [100 * (r["supernet"]["scratch_test"] - r["fbnetv3"]["scratch_test"]) for r in mine]
        delivered = [100 * (r["supernet"]["delivered_test"] - r["fbnetv3"]["scratch_test"]) for r in mine]
        low, high = spread[name]["standalone_test_range"]
        lines.append(
            f"| {name}, {spread[name]['budget_ms']} ms | {len(mine)} | {mean_interval(scratch)} | {mean_interval(delivered)} "
            f"| {spread[name]['networks']}: {low:.4f}-{high:.4f} ({100 * (high - low):.1f} points) |"
        )
    return "\n".join(lines)


def strategies() -> str:
    data = json.loads((RESULTS / "search_strategies_supernet.json").read_text())
    lines = [
        "| strategy | seeds | best val | its test | best val after 50 / 200 | wall s |",
        "|---|---|---|---|---|---|",
    ]
    for strategy, summary in data["table"].items():
        runs = sorted((r for r in data["runs"] if r["strategy"] == strategy), key=lambda r: r["seed"])
        at = summary["best_val_at"]
        val = _listed(r["best_val_accuracy"] for r in runs)
        test = _listed(r["best_test_accuracy"] for r in runs)
        wall = ", ".join(f"{r['wall_time_s']:,.0f}" for r in runs)
        lines.append(f"| {strategy} | {len(runs)} | {val} | {test} | {at['50']['mean']:.3f} / {at['200']['mean']:.3f} | {wall} |")
    return "\n".join(lines)


def _listed(values: Any) -> str:
    return ", ".join(f"{value:.3f}" for value in values)


def fidelity() -> str:
    data = json.loads((RESULTS / "supernet_fidelity.json").read_text())
    by_arch: dict[str, dict[str, list[float]]] = {}
    for row in data["rows"]:
        by_arch.setdefault(row["arch"], {}).setdefault(row["kind"], []).append(row["test_accuracy"])
    predicted = {entry["arch"]: entry["predicted_host_tflite_ms"] for entry in data["settings"]["archs"]}
    lines = [
        "| network (predicted ms) | inherited | proxy (1 epoch, 2,000 images) | stand-alone (seeds) |",
        "|---|---|---|---|",
    ]
    for arch in sorted(by_arch, key=lambda a: predicted.get(a, 0.0)):
        kinds = by_arch[arch]
        standalone = ", ".join(f"{value:.4f}" for value in kinds.get("standalone", [])) or "not yet"
        inherited, proxy = (f"{kinds[kind][0]:.4f}" if kind in kinds else "not yet" for kind in ("inherited", "proxy"))
        shown = f"`{arch.split(':', 1)[-1]}` ({predicted.get(arch, float('nan')):.3f})"
        lines.append(f"| {shown} | {inherited} | {proxy} | {standalone} |")
    return "\n".join(lines) + "\n\n" + fidelity_agreement(data["summary"])


FIDELITY_SIGNALS = {
    "inherited_vs_standalone": "inherited weights (the supernet)",
    "proxy_vs_standalone": "one-epoch proxy (today's per-candidate signal)",
    "flops_vs_standalone": "FLOPs, more is better (no training)",
    "params_vs_standalone": "parameters, more is better (no training)",
    "predicted_latency_vs_standalone": "predicted latency, slower is better (no training)",
    "ceiling_seed_vs_seed": "one stand-alone seed against the other (the ceiling)",
}


def fidelity_agreement(summary: dict[str, Any]) -> str:
    """How each signal ranks the stand-alone means (the ceiling: one seed against the other)."""
    lines = ["| ranked by | Kendall tau | 95% interval (bootstrap over networks) | Spearman |", "|---|---|---|---|"]
    for key, label in FIDELITY_SIGNALS.items():
        if key in summary:
            agreement = summary[key]
            low, high = agreement["kendall_tau_ci95"]
            lines.append(f"| {label} | {agreement['kendall_tau']:.2f} | {low:.2f} .. {high:.2f} | {agreement['spearman']:.2f} |")
    return "\n".join(lines)


def final() -> str:
    """The specialized networks against 12 epochs of scratch training (``specialized_fidelity_scratch12.json``),
    with the distilled fine-tuning of ``finetune_rate.json`` beside the labels-only one."""
    rows = json.loads((RESULTS / "specialized_fidelity_scratch12.json").read_text())["rows"]
    taught = {r["arch"]: r["test_accuracy"] for r in json.loads((RESULTS / "finetune_rate.json").read_text())["rows"]
              if r["scale"] == 1.0 and r.get("distill")}  # fmt: skip
    by_arch: dict[str, dict[str, float]] = {}
    for row in rows:
        by_arch.setdefault(row["arch"], {})[row["kind"]] = row["test_accuracy"]
    lines = [
        "| network | inherited | fine-tuned, labels | fine-tuned, taught | scratch, 12 epochs | taught minus scratch |",
        "|---|---|---|---|---|---|",
    ]
    gaps = []
    for arch, kinds in by_arch.items():
        scratch, mine = kinds.get("scratch"), taught.get(arch)
        gap = (mine - scratch) * 100 if scratch is not None and mine is not None else None
        gaps += [] if gap is None else [gap]
        cells = [kinds.get("inherited"), kinds.get("finetuned"), mine, scratch]
        shown = " | ".join(f"{value:.4f}" if value is not None else "not yet" for value in cells)
        lines.append(f"| `{arch.split(':', 1)[-1]}` | {shown} | {'' if gap is None else f'{gap:+.1f}'} |")
    within = sum(gap >= -1.0 for gap in gaps)
    summary = f"{len(gaps)} compared; taught minus scratch {mean_interval(gaps)} points; within 1 point or ahead: {within}"
    return "\n".join(lines) + "\n\n" + summary


def main() -> None:
    tables = {
        "equal-cost": equal_cost,
        "equal-cost-once": lambda: equal_cost("supernet_equal_cost_once.json"),
        "strategies": strategies,
        "fidelity": fidelity,
        "final": final,
    }
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("table", choices=sorted(tables))
    print(tables[parser.parse_args().table]())


if __name__ == "__main__":
    main()
