"""Print the rows of a recipe A/B (`bench/recipe_ab.sh`) as docs/benchmarks.md shows them.

    python bench/recipe_ab_table.py WORK default flip [--sets spine,mni] [--seeds 0,1]
        [--neighbour-mm 3]   # an A/B run with NEIGHBOUR_MM=3
    python bench/recipe_ab_table.py WORK default baseline --goals   # issue 18's goal table

One row per set, seed and variant found under WORK (``SET-sSEED-NAME/results.md``): the mean
1-minute load of that set and seed's last A/B, the training CPU seconds, epochs and steps, Dice
and area error per ROI, and their means; then each variant's means over the rows found. With
``--goals``, each variant's run against the ``baseline`` variant of the same set and seed, by
issue 18's goals (Dice ≥ baseline + 0.03, worst ROI ≥ the baseline's worst, area error ≤ 0.6×
the baseline's and ≤ 5 %). Default sets: spine, small, mni and spine512 (those found).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

GOALS_HEADER = (
    "| set, seed | variant | Dice − baseline (≥ +0.03) | worst ROI vs baseline's worst "
    "| area error ratio (≤ 0.6×) | area error (≤ 5 %) | goals met |\n|---|---|---|---|---|---|---|"
)

HEADER = (
    "| set | seed | variant | load | CPU s | epochs | steps | Dice per ROI | mean | worst "
    "| area error % per ROI | mean |\n|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def contender_row(results: Path) -> dict[str, str] | None:
    """The contender row of a ``results.md`` as {column: cell}, or None when it has none."""
    lines = [line for line in results.read_text().splitlines() if line.startswith("|")]
    header = next((line for line in lines if line.startswith("| contender")), None)
    row = next(
        (line for line in lines if line.split("|")[1].strip() in ("sliceseg", "baseline")), None
    )
    if header is None or row is None:
        return None
    names = [cell.strip() for cell in header.strip("|").split("|")]
    return dict(zip(names, (cell.strip() for cell in row.strip("|").split("|")), strict=True))


def table_row(bench_set: str, seed: str, name: str, cells: dict[str, str], load: float) -> str:
    """One markdown row of the A/B table."""
    dice = [
        v
        for k, v in cells.items()
        if k.startswith("dice_") and k not in ("dice_mean", "dice_worst")
    ]
    area = [
        f"{float(v):.1f}"
        for k, v in cells.items()
        if k.startswith("area_err_pct_") and k != "area_err_pct_mean"
    ]
    return (
        f"| {bench_set} | {seed} | {name} | {load:.1f} | {float(cells['train_cpu_s']):.0f} "
        f"| {float(cells['epochs']):.0f} | {cells['steps']} | {' / '.join(dice)} "
        f"| {cells['dice_mean']} | {cells['dice_worst']} | {' / '.join(area)} "
        f"| {float(cells['area_err_pct_mean']):.2f} |"
    )


def goal_row(
    bench_set: str, seed: str, name: str, run: dict[str, str], base: dict[str, str]
) -> str:
    """One row of the goal table: ``run`` against the baseline's run ``base``."""
    dice, base_dice = float(run["dice_mean"]), float(base["dice_mean"])
    worst, base_worst = float(run["dice_worst"]), float(base["dice_worst"])
    area, base_area = float(run["area_err_pct_mean"]), float(base["area_err_pct_mean"])
    ratio = area / base_area if base_area > 0 else float("inf")
    met = [dice >= base_dice + 0.03, worst >= base_worst, ratio <= 0.6, area <= 5.0]
    return (
        f"| {bench_set}, {seed} | {name} | {dice - base_dice:+.3f} ({dice:.3f} vs {base_dice:.3f}) "
        f"| {worst:.3f} {'≥' if met[1] else '<'} {base_worst:.3f} "
        f"| {ratio:.2f}× ({area:.2f} vs {base_area:.2f} %) | {area:.2f} % | {sum(met)} of 4 |"
    )


def set_seed_runs(base: Path, names: list[str]) -> dict[str, dict[str, str]]:
    """The contender rows of one set and seed's variants that have results, by variant."""
    found = {}
    for name in names:
        results = base.with_name(f"{base.name}-{name}") / "results.md"
        cells = contender_row(results) if results.is_file() else None
        if cells is not None:
            found[name] = cells
    return found


def collect(
    args: argparse.Namespace,
) -> tuple[list[str], list[str], dict[str, list[tuple[float, float]]]]:
    """The table rows, the goal rows, and each variant's (Dice, area error) per run."""
    tail = "" if args.neighbour_mm == "0" else f"-n{args.neighbour_mm}"
    rows: list[str] = []
    goals: list[str] = []
    means: dict[str, list[tuple[float, float]]] = {name: [] for name in args.names}
    for bench_set in args.sets.split(","):
        for seed in args.seeds.split(","):
            base = args.work / f"{bench_set}-s{seed}{tail}"
            loads = base.with_name(base.name + "-load.txt")
            samples = [float(x) for x in loads.read_text().split()] if loads.is_file() else []
            load = statistics.mean(samples) if samples else float("nan")
            found = set_seed_runs(base, args.names)
            for name, cells in found.items():
                rows.append(table_row(bench_set, seed, name, cells, load))
                means[name].append((float(cells["dice_mean"]), float(cells["area_err_pct_mean"])))
            if args.goals and "baseline" in found:
                goals += [
                    goal_row(bench_set, seed, name, cells, found["baseline"])
                    for name, cells in found.items()
                    if name != "baseline"
                ]
    return rows, goals, means


def main(argv: list[str] | None = None) -> int:
    """Print the table and the means; 1 when no run was found."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work", type=Path, help="the WORK folder given to recipe_ab.sh")
    parser.add_argument("names", nargs="+", help="variant names (TOML file names without .toml)")
    parser.add_argument("--sets", default="spine,small,mni,spine512")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument(
        "--neighbour-mm", default="0", help="the NEIGHBOUR_MM the A/B ran with (its folders)"
    )
    parser.add_argument(
        "--goals", action="store_true", help="also each variant against `baseline` by the goals"
    )
    args = parser.parse_args(argv)
    rows, goals, means = collect(args)
    if not rows:
        print(f"no A/B results under {args.work} for {', '.join(args.names)}", file=sys.stderr)
        return 1
    print("\n".join([HEADER, *rows]))
    for name, values in means.items():
        if values:
            dice, area = (statistics.mean(v) for v in zip(*values, strict=True))
            print(f"{name}: mean Dice {dice:.3f}, area error {area:.2f} % over {len(values)} runs")
    if goals:
        print("\n".join(["", GOALS_HEADER, *goals]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
