"""The run's report: ``report.md`` and ``report.html`` (one self-contained file, plots inline as PNG).

Rendered from the stage records alone (jinja2 templates in ``templates/``, matplotlib plots), so
``hwnas report RUN_DIR`` re-renders it at any time without running anything again.
"""

from __future__ import annotations

import base64
import importlib.resources
import math
from pathlib import Path
from typing import Any

from hwnas import typedjson
from hwnas.fileio import atomic_write
from hwnas.pipeline.records import Records
from hwnas.pipeline.stage import Skipped
from hwnas.pipeline.summary import read_values, records_as_written, write_summary
from hwnas.runfolder import inside_folder

PLOTS_DIR = "report"


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda temp: figure.savefig(temp, format="png", dpi=110))
    _pyplot().close(figure)
    return path


def fidelity_plot(entry: dict[str, Any], path: Path) -> Path | None:
    """Held-out networks: predicted vs measured, calibrated predictor and table sum, with the ±10% band."""
    points = entry.get("points")
    if not points or not points.get("measured"):
        return None
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(5.2, 4.6))
    measured = points["measured"]
    everything = measured + points["calibrated"] + points["lut"]
    low, high = min(everything) * 0.9, max(everything) * 1.1
    line = [low, high]
    axes.plot(line, line, color="black", linewidth=1, label="exact")
    axes.fill_between(line, [v * 0.9 for v in line], [v * 1.1 for v in line], color="grey", alpha=0.2, label="±10%")
    metrics = entry.get("held_out", {})
    for name, colour in (("lut", "tab:orange"), ("calibrated", "tab:blue")):
        share = metrics.get(name, {}).get("within_10pct")
        label = {"lut": "table sum", "calibrated": "calibrated"}[name] + (
            f" ({share:.0%} within ±10%)" if share is not None else ""
        )
        axes.scatter(measured, points[name], s=16, alpha=0.8, color=colour, label=label)
    axes.set_xlabel("measured latency (ms)")
    axes.set_ylabel("predicted latency (ms)")
    axes.set_title(f"{entry['device']}: {len(measured)} held-out networks", fontsize=9)
    axes.legend(fontsize=8)
    axes.grid(True, alpha=0.3)
    figure.tight_layout()
    return _save(figure, path)


def pareto_plot(search: dict[str, Any], budget_ms: float, references: dict[str, Any], device: str, path: Path) -> Path | None:
    """Two panels, the budget line on both.

    Left, the search: proxy accuracy vs latency, every trial at its predicted latency, front candidates at their
    measured one. Right, the final comparison on one pair of axes: test accuracy vs latency measured in one timing
    session, the run's final (searched) network and the torchvision reference networks (filled: beats it).
    """
    trials = [t for t in search.get("trials", []) if t.get("accuracy") is not None and t.get("predicted_ms") is not None]
    searched = references.get("searched") or {}
    compared = [m for m in references.get("models", []) if m.get("measured_ms") is not None and m.get("test_accuracy")]
    final_point = searched.get("measured_ms") is not None and searched.get("test_accuracy") is not None
    if not trials and not compared and not final_point:
        return None
    plt = _pyplot()
    figure, (axes, right) = plt.subplots(1, 2, figsize=(11.5, 4.6))
    _search_panel(axes, search, trials, budget_ms, device)
    _references_panel(right, compared, searched if final_point else None, budget_ms, device)
    figure.tight_layout()
    return _save(figure, path)


def _search_panel(axes: Any, search: dict[str, Any], trials: list[dict[str, Any]], budget_ms: float, device: str) -> None:
    """Proxy accuracy vs latency: trials at their predicted latency, front candidates at the measured one (arrows)."""
    if trials:
        axes.scatter(
            [t["predicted_ms"] for t in trials],
            [t["accuracy"] for t in trials],
            s=18,
            facecolors="none",
            edgecolors="grey",
            label="trials (predicted latency)",
        )
    front = [f for f in search.get("front", []) if f.get("measured_ms") is not None and f.get("accuracy") is not None]
    for item in front:
        axes.annotate(
            "",
            xy=(item["measured_ms"], item["accuracy"]),
            xytext=(item["predicted_ms"], item["accuracy"]),
            arrowprops={"arrowstyle": "->", "color": "tab:blue", "alpha": 0.5},
        )
    if front:
        axes.scatter(
            [f["measured_ms"] for f in front],
            [f["accuracy"] for f in front],
            color="tab:blue",
            zorder=4,
            label="measured on the device",
        )
        winner = [f for f in front if f.get("winner")]
        if winner:
            point = ([winner[0]["measured_ms"]], [winner[0]["accuracy"]])
            axes.scatter(*point, marker="*", s=220, color="tab:red", zorder=5, label="winner, measured")
    axes.axvline(budget_ms, color="tab:red", linestyle="--", linewidth=1, label=f"budget {budget_ms:.3f} ms")
    axes.set_xlabel(f"latency on {device} (ms)")
    axes.set_ylabel("validation accuracy (search proxy)")
    axes.set_title(f"search, {search.get('strategy', 'no search')}: {len(trials)} trials", fontsize=9)
    axes.legend(fontsize=7, loc="lower right")
    axes.grid(True, alpha=0.3)


def _references_panel(
    right: Any, compared: list[dict[str, Any]], searched: dict[str, Any] | None, budget_ms: float, device: str
) -> None:
    """Test accuracy vs latency measured in one session: the references (filled: beats it) and the searched network."""
    for ref in compared:
        beaten = bool(ref.get("beats"))
        colour = "tab:green" if beaten else "white"
        right.scatter(
            [ref["measured_ms"]], [ref["test_accuracy"]], marker="s", s=40, color=colour, edgecolors="tab:green", zorder=4
        )
        right.annotate(
            ref["name"], (ref["measured_ms"], ref["test_accuracy"]), fontsize=7, xytext=(4, 3), textcoords="offset points"
        )
    if compared:
        right.scatter([], [], marker="s", color="white", edgecolors="tab:green", label="torchvision reference")
        right.scatter([], [], marker="s", color="tab:green", label="reference that beats the searched network")
    if searched is not None:
        point = ([searched["measured_ms"]], [searched["test_accuracy"]])
        right.scatter(*point, marker="*", s=260, color="tab:red", zorder=5, label="searched network (final)")
    right.axvline(budget_ms, color="tab:red", linestyle="--", linewidth=1, label=f"budget {budget_ms:.3f} ms")
    xs = [r["measured_ms"] for r in compared] + ([searched["measured_ms"]] if searched else []) + [budget_ms]
    if max(xs) / min(xs) > 8:
        right.set_xscale("log")
    right.set_xlabel(f"latency on {device}, measured in one session (ms)")
    right.set_ylabel("test accuracy")
    right.set_title(f"searched vs torchvision references ({len(compared)}), trained with the same recipe and epochs", fontsize=9)
    right.legend(fontsize=7, loc="lower right")
    right.grid(True, alpha=0.3)


def pruning_plot(prune: dict[str, Any], device: str, path: Path) -> Path | None:
    models = prune.get("models") or {}
    rows = [(name, m) for name, m in models.items() if m.get("latency_ms", {}).get(device) is not None]
    if not rows:
        return None
    plt = _pyplot()
    figure, (left, right) = plt.subplots(1, 2, figsize=(7.5, 3.4))
    names = [name for name, _ in rows]
    colours = ["tab:grey" if name == "unpruned" else "tab:blue" for name in names]
    left.bar(names, [m["test_accuracy"] for _, m in rows], color=colours)
    left.set_ylabel("test accuracy")
    left.set_ylim(max(0.0, min(m["test_accuracy"] for _, m in rows) - 0.05), 1.0)
    right.bar(names, [m["latency_ms"][device] for _, m in rows], color=colours)
    right.set_ylabel(f"measured ms on {device}")
    for axes in (left, right):
        axes.tick_params(axis="x", labelsize=8, rotation=15)
        axes.grid(True, axis="y", alpha=0.3)
    figure.tight_layout()
    return _save(figure, path)


def stages_plot(stages: list[dict[str, Any]], path: Path) -> Path:
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(6.4, 0.45 * len(stages) + 1.0))
    names = [s["stage"] for s in stages][::-1]
    seconds = [s["seconds"] for s in stages][::-1]
    colours = ["tab:grey" if s["status"] == "skipped" else "tab:blue" for s in stages][::-1]
    axes.barh(names, seconds, color=colours)
    for y, value in enumerate(seconds):
        axes.annotate(_duration(value), (value, y), xytext=(3, -3), textcoords="offset points", fontsize=8)
    axes.set_xlabel("seconds")
    axes.set_xlim(0, max([*seconds, 1.0]) * 1.2)
    axes.grid(True, axis="x", alpha=0.3)
    figure.tight_layout()
    return _save(figure, path)


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s"


def _num(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "–"
        return f"{value:.{digits}f}"
    return str(value)


def _pct(value: Any) -> str:
    return "–" if value is None else f"{value:.0%}"


def markdown_text(value: Any) -> Any:
    """Text for ``report.md``: HTML's ``<``, ``>`` and ``&`` as entities, and ``|`` escaped (it would split a table cell).

    A record read back from a run folder may have been edited by anyone; Markdown renderers pass raw HTML through,
    so nothing from a record reaches the page as markup (``report.html`` is escaped by Jinja's autoescape).
    """
    if not isinstance(value, str):
        return value
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")


def _environment(markdown: bool) -> Any:
    import jinja2

    templates = importlib.resources.files("hwnas.pipeline") / "templates"
    loader = jinja2.FunctionLoader(lambda name: (templates / name).read_text(encoding="utf-8"))
    env = jinja2.Environment(
        loader=loader,
        autoescape=not markdown,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        finalize=markdown_text if markdown else None,
    )
    env.filters["num"] = _num
    env.filters["pct"] = _pct
    env.filters["duration"] = _duration
    return env


def render_report(folder: Path, summary: dict[str, Any] | None = None, report_seconds: float | None = None) -> tuple[Path, Path]:
    """Write ``report/*.png``, ``report.md`` and ``report.html`` from the run folder's records.

    The records' typed fields are checked as they are read; what a record holds beyond them (a drift check's
    details, a model card's entries) is read by the plots and templates, and a record edited there is one line
    naming the folder and how to remake it, not a traceback.
    """
    with records_as_written(Path(folder)):
        return _render(Path(folder), summary, report_seconds)


def _render(folder: Path, summary: dict[str, Any] | None, report_seconds: float | None) -> tuple[Path, Path]:
    import time

    started = time.perf_counter()
    values = read_values(Records(folder))
    summary = summary or write_summary(folder, values=values)
    # the templates read each stage's result as the JSON it is stored as; a skipped stage as {"ran": false, "reason": ...}
    result = {
        name: {"ran": False, "reason": value.reason} if isinstance(value, Skipped) else typedjson.to_json(value)
        for name, value in values.items()
    }
    primary = summary["device"]["name"]
    plots = _plots(folder / PLOTS_DIR, result, summary, primary)
    plots["family"] = _family_plot(folder, result)
    stage_rows = [*summary["stages"], _report_row(summary, (report_seconds or 0.0) + (time.perf_counter() - started))]
    plots["stages"] = stages_plot(stage_rows, folder / PLOTS_DIR / "stages.png")
    inline = {name: base64.b64encode(path.read_bytes()).decode("ascii") for name, path in plots.items() if path is not None}
    files = {name: f"{PLOTS_DIR}/{path.name}" for name, path in plots.items() if path is not None}
    context = {
        "summary": summary,
        "r": result,
        "primary": primary,
        "predictor": next((p for p in result["predictor"]["predictors"] if p["device"] == primary), {}),
        "stages": stage_rows,
        "total_seconds": sum(row["seconds"] for row in stage_rows),
        "plots": files,
        "inline": inline,
        "generated": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    return _write(folder, context)


def _plots(plots_dir: Path, result: dict[str, Any], summary: dict[str, Any], primary: str) -> dict[str, Path | None]:
    predictor = next((p for p in result["predictor"]["predictors"] if p["device"] == primary), {})
    return {
        "fidelity": fidelity_plot(predictor, plots_dir / "fidelity.png"),
        "pareto": pareto_plot(result["search"], summary["budget_ms"], result["references"], primary, plots_dir / "pareto.png"),
        "pruning": pruning_plot(result["prune"], primary, plots_dir / "pruning.png"),
    }


def _family_plot(folder: Path, result: dict[str, Any]) -> Path | None:
    """The family stage's own plot (``family/family.png``) copied beside the report's, when the run made a family."""
    import shutil

    stored = (result.get("family") or {}).get("plot")
    if not stored:
        return None
    path = inside_folder(folder, stored, "stages/family.json: plot")
    if not path.exists():
        return None
    (folder / PLOTS_DIR).mkdir(parents=True, exist_ok=True)
    return Path(shutil.copyfile(path, folder / PLOTS_DIR / "family.png"))


def _report_row(summary: dict[str, Any], seconds: float) -> dict[str, Any]:
    return {"stage": "report", "status": "done", "seconds": seconds, "session": summary["sessions"]}


def _write(folder: Path, context: dict[str, Any]) -> tuple[Path, Path]:
    markdown = _environment(markdown=True).get_template("report.md.j2").render(context)
    html = _environment(markdown=False).get_template("report.html.j2").render(context)
    md_path = atomic_write(folder / "report.md", lambda temp: temp.write_text(markdown, encoding="utf-8"))
    html_path = atomic_write(folder / "report.html", lambda temp: temp.write_text(html, encoding="utf-8"))
    return md_path, html_path
