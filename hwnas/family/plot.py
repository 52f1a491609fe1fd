"""The family at a glance: accuracy against measured latency, one line per way of scaling, and the table behind it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hwnas.family.records import FamilyReport, Planned

STYLES = {
    "compound": ("tab:red", "o", "compound (hwnas)"),
    "width": ("tab:blue", "s", "width only"),
    "depth": ("tab:green", "^", "depth only"),
    "resolution": ("tab:purple", "D", "resolution only"),
}


@dataclass(frozen=True)
class Row:
    """One network of the family as the report shows it."""

    role: str
    budget_ms: float | None
    scaling: str
    arch: str
    predicted_today_ms: float
    measured_ms: float | None
    val_accuracy: float | None
    test_accuracy: float | None

    @property
    def within_budget(self) -> bool:
        """Measured, and within its budget (the base has none: never)."""
        return self.measured_ms is not None and self.budget_ms is not None and self.measured_ms <= self.budget_ms

    @property
    def accuracy(self) -> float | None:
        """Test accuracy when there is one (held-out images), else validation."""
        return self.test_accuracy if self.test_accuracy is not None else self.val_accuracy


def rows(report: FamilyReport, planned: list[Planned]) -> list[Row]:
    found = []
    for network in planned:
        trained, measured = report.trained.get(network.scaling), report.measured.get(network.scaling)
        found.append(
            Row(
                network.role,
                network.budget_ms,
                network.scaling,
                network.arch,
                network.predicted_today_ms,
                measured.median_ms if measured else None,
                trained.val_accuracy if trained else None,
                trained.test_accuracy if trained else None,
            )
        )
    return found


def family_plot(report: FamilyReport, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    members = rows(report, report.members)
    for role, (colour, marker, label) in STYLES.items():
        points = sorted((r.measured_ms, r.accuracy) for r in members if r.role == role and r.measured_ms and r.accuracy)
        if points:  # compound on top and solid: where it equals a single dimension, the two lines coincide
            ours = role == "compound"
            ax.plot(*zip(*points, strict=True), marker=marker, color=colour, label=label, zorder=5 if ours else 3,
                    linewidth=2.5 if ours else 1.2, markersize=9 if ours else 6, markerfacecolor=colour if ours else "none")
    base = next((row for row in rows(report, report.grid) if row.role == "base"), None)
    if base is not None and base.measured_ms and base.accuracy:
        ax.plot([base.measured_ms], [base.accuracy], marker="*", markersize=14, color="black", linestyle="none", label="base")
    for budget in sorted({row.budget_ms for row in members if row.budget_ms}):
        ax.axvline(budget, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel(f"measured latency on {report.settings['device']} (ms)")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"family of {report.settings['base'].split(':')[0]} (ratios {report.ratios}); budgets dotted")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
