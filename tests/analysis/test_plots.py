"""Comparison plots stay readable with many methods: smoothed curves, distinct colours, and
coefficient panels wrapped into rows."""

import json

import pytest
from matplotlib import image

from delta_rlvr.analysis.plots import (
    COEF_COLUMNS,
    _colors,
    moving_average,
    plot_coefficients,
    plot_comparison_curves,
    smoothing_window,
)


def test_moving_average_is_a_trailing_mean_shortened_at_the_start():
    assert moving_average([1.0, 2.0, 3.0, 4.0, 5.0], 3) == pytest.approx([1.0, 1.5, 2.0, 3.0, 4.0])
    assert moving_average([3.0, -1.0, 7.0], 1) == [3.0, -1.0, 7.0]
    assert moving_average([], 4) == []


def test_smoothing_window_is_about_four_percent_of_the_run():
    assert smoothing_window(250) == 10
    assert smoothing_window(150) == 6
    assert smoothing_window(10) == 1  # short runs are not smoothed


def test_fourteen_methods_get_fourteen_distinct_colours():
    for n in (3, 14, 25):
        assert len(set(_colors(n))) == n


def _runs(tmp_path, methods: int, steps: int = 30) -> dict:
    folders = {}
    for i in range(methods):
        folder = tmp_path / f"m{i}" / "seed-0"
        folder.mkdir(parents=True)
        rows = []
        for t in range(1, steps + 1):
            row = {"step": t, "reward_mean": 0.4 + 0.01 * t + 0.001 * i, "accuracy": 0.5, "response_length": 33.0,
                   "entropy": 0.05}
            row.update({f"delta/coef_q{q:02d}": 1.0 + (q - 50) / 500 for q in (5, 25, 50, 75, 95)})
            rows.append(json.dumps(row))
        (folder / "metrics.jsonl").write_text("\n".join(rows) + "\n")
        folders[f"m{i}"] = [folder]
    return folders


def test_coefficient_panels_wrap_into_rows_of_four(tmp_path):
    folders = _runs(tmp_path, 6)
    path = plot_coefficients(folders, tmp_path / "coef.png")
    height, width = image.imread(path).shape[:2]
    # 6 panels -> 2 rows of COEF_COLUMNS panels of 4.5 x 3.6 inches at 110 dpi
    assert (width, height) == (round(COEF_COLUMNS * 4.5 * 110), round(2 * 3.6 * 110))


def test_curves_of_many_methods_are_written_with_the_legend_beside_the_panels(tmp_path):
    path = plot_comparison_curves(_runs(tmp_path, 14), tmp_path / "curves.png")
    height, width = image.imread(path).shape[:2]
    assert width > 4 * 4.2 * 110  # the four panels plus the legend column
    assert height <= 3.6 * 110 + 1
