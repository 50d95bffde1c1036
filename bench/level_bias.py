"""Split a real-MR run's area error into the part every test scanner shares and the rest.

    python bench/level_bias.py WORK/spine-s0-default WORK/mni-s1-default ...
    python bench/level_bias.py RUN --levels   # also the shared bias per test level and ROI

The test subjects of `bench/real_mr.py`'s sets are simulated scanners of one anatomy: every test
subject shows the same held-out levels. The signed area error of a (level, ROI) averaged over the
scanners is what the network makes of that level's anatomy, the same on every scanner (the
"level bias"); what is left, the error minus its level's mean, is what differs between scanners
(noise, contrast, resolution). Each run's ``per_slice.csv`` (written by ``real_mr.py``) gives,
per ROI and then averaged over ROIs like the benchmark's area error (slices with a true area ≥
``MIN_AREA_MM2``): the mean |error|, the mean |level bias| and the mean |error − level bias|.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from real_mr_score import MIN_AREA_MM2


def signed_errors(run: Path, contender: str = "sliceseg") -> pd.DataFrame:
    """Per test slice and ROI: scanner, level, roi and the signed area error in %."""
    table = pd.read_csv(run / "per_slice.csv")
    table = table[(table["contender"] == contender) & (table["true_mm2"] >= MIN_AREA_MM2)].copy()
    table["error"] = (table["pred_mm2"] - table["true_mm2"]) / table["true_mm2"] * 100
    parts = table["key"].str.split("/", n=1, expand=True)
    table["scanner"], table["level"] = parts[0], parts[1]
    table["level_bias"] = table.groupby(["level", "roi"])["error"].transform("mean")
    return table


def split_row(table: pd.DataFrame) -> dict[str, float]:
    """The three means over ROIs of per-ROI mean absolute values (%)."""

    def mean_abs(values: pd.Series) -> float:
        return float(values.abs().groupby(table["roi"]).mean().mean())

    return {
        "area error": mean_abs(table["error"]),
        "level bias": mean_abs(table["level_bias"]),
        "scanner part": mean_abs(table["error"] - table["level_bias"]),
    }


def level_table(table: pd.DataFrame, run: Path) -> pd.DataFrame:
    """The shared bias (%) per test level (rows: the level in mm where the run's ``data.json``
    lists them in slice order, else the slice name) and ROI (columns)."""
    levels = table.pivot_table(index="level", columns="roi", values="level_bias").round(1)
    data = run / "data.json"
    millimetres = json.loads(data.read_text()).get("test_levels_mm") if data.exists() else None
    if millimetres and len(millimetres) == len(levels):
        pairs = zip(levels.index, millimetres, strict=True)
        levels.index = [f"{name} ({mm:.0f} mm)" for name, mm in pairs]
    return levels


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="+", help="real_mr.py --out folders")
    parser.add_argument("--contender", default="sliceseg", choices=("sliceseg", "baseline"))
    parser.add_argument("--levels", action="store_true", help="print each run's level table")
    args = parser.parse_args(argv)
    print("| run | area error % | mean level bias % | scanner part % |\n|---|---|---|---|")
    tables = {run: signed_errors(run, args.contender) for run in args.runs}
    for run, table in tables.items():
        row = split_row(table)
        print(f"| {run.name} | " + " | ".join(f"{value:.2f}" for value in row.values()) + " |")
    if args.levels:
        for run, table in tables.items():
            print(f"\n{run.name}: shared bias per level (rows) and ROI (columns), %\n")
            levels = level_table(table, run)
            print("| level | " + " | ".join(f"ROI {roi}" for roi in levels.columns) + " |")
            print("|---" * (len(levels.columns) + 1) + "|")
            for level, row in levels.iterrows():
                print(f"| {level} | " + " | ".join(f"{v:+.1f}" for v in row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
