"""docs/results.md's quality-against-minutes table and figure are what benchmarks/quality_curve.py
makes of the measured points (benchmarks/results/quality_vs_minutes.csv)."""

from __future__ import annotations

import pytest

from project_helpers import PROJECT_ROOT, benchmark_module

quality_curve = benchmark_module("quality_curve")
RESULTS = PROJECT_ROOT / "docs" / "results.md"
BEGIN, END = "<!-- quality-curve: begin -->\n", "<!-- quality-curve: end -->"


def test_results_md_carries_the_table_of_the_measured_points() -> None:
    text = RESULTS.read_text()
    assert BEGIN in text and END in text, f"{RESULTS}: the quality-curve markers are missing"
    committed = text.split(BEGIN, 1)[1].split(END, 1)[0]
    assert committed == quality_curve.markdown_table(quality_curve.read_points()), (
        "docs/results.md's table differs from the points: run benchmarks/quality_curve.py and paste its output")


def test_every_curve_has_quick_s_point_once() -> None:
    for name, points in quality_curve.curves(quality_curve.read_points()).items():
        assert [row["quick"] for row in points].count("yes") == 1, name
        assert all(float(row["minutes"]) > 0 for row in points), name


def test_the_committed_figure_is_drawn_from_the_points(tmp_path) -> None:
    drawn = tmp_path / "figure.png"
    quality_curve.draw(quality_curve.read_points(), drawn)
    assert drawn.read_bytes() == quality_curve.FIGURE.read_bytes(), (
        f"{quality_curve.FIGURE} is not the figure of the points: run benchmarks/quality_curve.py")
    assert quality_curve.FIGURE.name in RESULTS.read_text()


def test_a_file_with_other_columns_is_refused_naming_it(tmp_path) -> None:
    points = tmp_path / "points.csv"
    points.write_text("curve,minutes\nbinary,1\n")
    with pytest.raises(ValueError, match="points.csv: columns"):
        quality_curve.read_points(points)
