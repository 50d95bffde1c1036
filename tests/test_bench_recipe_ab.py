"""bench/recipe_ab_table.py: the A/B rows and issue 18's goal table against the baseline."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import recipe_ab_table

COLUMNS = [
    "contender",
    *("dice_A", "dice_B", "dice_mean", "dice_worst"),
    *("area_err_pct_A", "area_err_pct_B", "area_err_pct_mean"),
    *("epochs", "steps", "train_cpu_s"),
]


def write_run(work: Path, name: str, contender: str, values: list[float]) -> None:
    folder = work / f"spine-s0-{name}"
    folder.mkdir(parents=True)
    header = "| " + " | ".join(COLUMNS) + " |"
    row = "| " + " | ".join([contender, *(f"{v:g}" for v in values)]) + " |"
    (folder / "results.md").write_text(f"Spine-MR benchmark\n\n{header}\n|---|\n{row}\n")


def test_goal_rows_compare_each_variant_with_the_baseline_of_its_set_and_seed(tmp_path, capsys):
    write_run(tmp_path, "baseline", "baseline", [0.8, 0.6, 0.7, 0.6, 10, 20, 15, 50, 900, 500])
    write_run(tmp_path, "default", "sliceseg", [0.95, 0.9, 0.925, 0.9, 4, 4, 4, 200, 5000, 500])
    write_run(tmp_path, "other", "sliceseg", [0.72, 0.7, 0.71, 0.7, 9, 9, 9, 200, 5000, 500])
    (tmp_path / "spine-s0-load.txt").write_text("2.0\n4.0\n")
    code = recipe_ab_table.main(
        [
            str(tmp_path),
            "default",
            "other",
            "baseline",
            "--sets",
            "spine",
            "--seeds",
            "0",
            "--goals",
        ]
    )
    lines = capsys.readouterr().out.splitlines()
    assert code == 0
    assert (
        "| spine | 0 | default | 3.0 | 500 | 200 | 5000 | 0.95 / 0.9 | 0.925 | 0.9 "
        "| 4.0 / 4.0 | 4.00 |"
    ) in lines
    assert (
        "| spine, 0 | default | +0.225 (0.925 vs 0.700) | 0.900 ≥ 0.600 "
        "| 0.27× (4.00 vs 15.00 %) | 4.00 % | 4 of 4 |"
    ) in lines
    assert (
        "| spine, 0 | other | +0.010 (0.710 vs 0.700) | 0.700 ≥ 0.600 "
        "| 0.60× (9.00 vs 15.00 %) | 9.00 % | 2 of 4 |"
    ) in lines
