"""Quality against minutes for the `quick` targets still missed: the measured points, drawn and tabled.

Reads ``benchmarks/results/quality_vs_minutes.csv``: one row per measured run (validation only,
never test), each with the command that produced it (``benchmarks/binary_run.py`` or
``benchmarks/multiclass_run.py`` on the AMX Xeon's 2 cores, 2 torch threads; minutes as the script
printed them) and ``quick`` set to ``yes`` on the row that is `quick`'s own configuration. Writes
``docs/figures/quality_vs_minutes.png`` (one panel per curve, `quick`'s point ringed) and prints
the markdown table that docs/results.md carries between its ``quality-curve`` markers
(tests/test_quality_curve.py checks that the two agree). Each panel also draws its target
(``dermascreen.targets.GOALS``), a test-split goal, against these validation points, and beside
`quick`'s point the test figure its `make all` ended with (the committed metrics files).

    PYTHONPATH=src .venv/bin/python benchmarks/quality_curve.py
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from dermascreen.targets import GOALS, REPORTING

ROOT = Path(__file__).resolve().parents[1]
POINTS = ROOT / "benchmarks" / "results" / "quality_vs_minutes.csv"
FIGURE = ROOT / "docs" / "figures" / "quality_vs_minutes.png"
COLUMNS = ("curve", "model", "budget", "minutes", "value", "command", "quick")
# Each curve's goal on the scale of its values (the 7-class accuracies are in %).
TARGET_LINES = {"binary ROC AUC": GOALS["binary_roc_auc"],
                "7-class accuracy: MAE-family": 100 * GOALS["mae_family_accuracy"],
                "7-class accuracy: CNN reference": 100 * GOALS["cnn_accuracy"]}


def quick_test_figures(reporting: Path = ROOT / REPORTING) -> dict[str, float]:
    """Each curve's test figure in the committed run of `quick` (the MAE curve: MAE's row)."""
    phase3 = json.loads((reporting / "phase3_metrics.json").read_text())
    pretraining = json.loads((reporting / "pretraining_metrics.json").read_text())
    return {"binary ROC AUC": phase3["test_roc_auc"],
            "7-class accuracy: MAE-family": 100 * pretraining["mae"]["accuracy_mean"],
            "7-class accuracy: CNN reference": 100 * pretraining["cnn"]["accuracy_mean"]}


def read_points(path: Path = POINTS) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) != COLUMNS:
            raise ValueError(f"{path}: columns {tuple(reader.fieldnames or ())}, expected {COLUMNS}")
        return list(reader)


def curves(rows: list[dict[str, str]]) -> dict[str, list[dict[str, str]]]:
    """The rows of each curve, in the file's order of first appearance, each curve by minutes."""
    grouped: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        grouped.setdefault(row["curve"], []).append(row)
    return {name: sorted(points, key=lambda row: float(row["minutes"])) for name, points in grouped.items()}


def markdown_table(rows: list[dict[str, str]]) -> str:
    lines = ["| curve (validation) | model | budget | minutes | value | `quick` | command |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, points in curves(rows).items():
        for row in points:
            quick = "**yes**" if row["quick"] == "yes" else ""
            lines.append(f"| {name} | {row['model']} | {row['budget']} | {row['minutes']} | {row['value']} | "
                         f"{quick} | `{row['command']}` |")
    return "\n".join(lines) + "\n"


def draw(rows: list[dict[str, str]], path: Path = FIGURE) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grouped, on_test = curves(rows), quick_test_figures()
    figure, axes = plt.subplots(1, len(grouped), figsize=(4.2 * len(grouped), 3.6), squeeze=False)
    for axis, (name, points) in zip(axes[0], grouped.items()):
        for model in dict.fromkeys(row["model"] for row in points):
            mine = [row for row in points if row["model"] == model]
            axis.plot([float(row["minutes"]) for row in mine], [float(row["value"]) for row in mine],
                      marker="o", label=model)
        for row in points:
            if row["quick"] == "yes":
                axis.scatter([float(row["minutes"])], [float(row["value"])], s=220, facecolors="none",
                             edgecolors="black", linewidths=1.5, zorder=3, label="quick (validation)")
                axis.scatter([float(row["minutes"])], [on_test[name]], marker="x", s=70, color="black",
                             zorder=3, label="quick, on test (make all)")
        axis.axhline(TARGET_LINES[name], color="red", linestyle="--", linewidth=1, label="target (on test)")
        axis.set_title(name, fontsize=9)
        axis.set_xlabel("minutes of training (2 cores)")
        axis.grid(alpha=0.3)
        low, high = axis.get_ylim()
        axis.set_ylim(low, high + 0.45 * (high - low))  # room for the legend above the curves and the target
        axis.legend(fontsize=7, loc="upper left")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(figure)


def main() -> None:
    rows = read_points()
    draw(rows)
    print(markdown_table(rows), end="")


if __name__ == "__main__":
    main()
