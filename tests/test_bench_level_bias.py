"""bench/level_bias.py: a run's area error split into the level's shared bias and the rest."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import level_bias


def write_run(run: Path) -> None:
    """Two scanners, two levels, two ROIs (true 100 mm² each, ROI 2 absent at level 2).

    ROI 1: level 1 errs +10 / +20 %, level 2 −10 / −10 %; ROI 2 at level 1: +4 / −4 %. A slice
    below ``MIN_AREA_MM2`` is left out whatever its error.
    """
    rows = []
    for scanner, errors in (("t01", (10, -10, 4)), ("t02", (20, -10, -4))):
        rows += [
            ("sliceseg", f"{scanner}/slice_001", 1, 0.9, 100.0, 100.0 + errors[0]),
            ("sliceseg", f"{scanner}/slice_002", 1, 0.9, 100.0, 100.0 + errors[1]),
            ("sliceseg", f"{scanner}/slice_001", 2, 0.9, 100.0, 100.0 + errors[2]),
            ("sliceseg", f"{scanner}/slice_002", 2, 0.0, 10.0, 30.0),  # too small to count
            ("baseline", f"{scanner}/slice_001", 1, 0.5, 100.0, 300.0),
        ]
    columns = ["contender", "key", "roi", "dice", "true_mm2", "pred_mm2"]
    run.mkdir()
    pd.DataFrame(rows, columns=columns).to_csv(run / "per_slice.csv", index=False)
    (run / "data.json").write_text(json.dumps({"test_levels_mm": [35.0, 36.0]}))


def test_the_split_by_hand(tmp_path):
    """ROI 1: |error| 12.5, |level bias| (15, 15, 10, 10) → 12.5, rest (5, 5, 0, 0) → 2.5;
    ROI 2: |error| 4, level bias 0, rest 4. Means over the two ROIs: 8.25, 6.25, 3.25."""
    write_run(tmp_path / "run")
    split = level_bias.split_row(level_bias.signed_errors(tmp_path / "run"))
    assert split == pytest.approx({"area error": 8.25, "level bias": 6.25, "scanner part": 3.25})


def test_level_table_names_the_levels_in_mm(tmp_path):
    write_run(tmp_path / "run")
    table = level_bias.level_table(level_bias.signed_errors(tmp_path / "run"), tmp_path / "run")
    assert table.index.tolist() == ["slice_001 (35 mm)", "slice_002 (36 mm)"]
    assert table.loc["slice_001 (35 mm)"].tolist() == pytest.approx([15.0, 0.0])
    assert table.loc["slice_002 (36 mm)", 1] == pytest.approx(-10.0)


def test_the_baseline_is_read_on_request(tmp_path, capsys):
    write_run(tmp_path / "run")
    assert level_bias.main([str(tmp_path / "run"), "--contender", "baseline"]) == 0
    assert "| run | 200.00 | 200.00 | 0.00 |" in capsys.readouterr().out
