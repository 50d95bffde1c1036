"""Recipe A/B on the phantom: variants trained side by side, scored on its unseen subjects.

The phantom half of a recipe A/B (`bench/recipe_ab.sh` runs the real-MR sets): every variant
trains at the same time, one torch thread each, for the same wall-clock budget on the default
phantom (`sliceseg phantom`: 16 training subjects, 4 test subjects × 10 slices), then predicts
the test subjects; Dice against their label maps (`evaluate_model`), area error against their
continuous true areas (`compare_with_truth`, as `sliceseg demo`). Prints one markdown row per
variant (the phantom tables of docs/benchmarks.md).

    python bench/phantom_ab.py WORK MINUTES default ema.toml ...

A variant is ``default`` or a TOML settings file for ``sliceseg train --config`` (named by its
file name without .toml). The phantom is generated once in WORK/phantom.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from sliceseg.demo import compare_with_truth
from sliceseg.inference.evaluate import evaluate_model
from sliceseg.inference.folder import predict_folder
from sliceseg.phantom.generate import generate_phantom

ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def variant_name(variant: str) -> str:
    """``default`` or the settings file's stem."""
    return "default" if variant == "default" else Path(variant).stem


def start_training(variant: str, train_dir: Path, out: Path, minutes: float) -> subprocess.Popen:
    """Launch ``sliceseg train`` for one variant, one torch thread, its log beside its folder."""
    command = [sys.executable, "-m", "sliceseg", "train", str(train_dir), "--out", str(out)]
    command += ["--max-minutes", str(minutes), "--overwrite"]
    if variant != "default":
        command += ["--config", str(Path(variant).resolve())]
    env = {**os.environ, **ONE_THREAD}
    with out.with_suffix(".log").open("w") as log:  # the child keeps its own copy of the file
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)


def cpu_seconds(process: subprocess.Popen) -> float:
    """Wait for ``process`` and return the CPU seconds it used (user + system)."""
    _pid, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{process.args!r}: exit code {process.returncode}")
    return usage.ru_utime + usage.ru_stime


def score(model_dir: Path, phantom_dir: Path, truth_csv: Path) -> tuple[list[float], list[float]]:
    """Dice per ROI (test label maps) and mean |area error| % per ROI (continuous truth)."""
    best = model_dir / "sliceseg_best.pt"
    run = predict_folder(
        best, phantom_dir / "test" / "dicoms", model_dir / "predictions", overwrite=True
    )
    errors = compare_with_truth(run.areas, truth_csv)
    evaluation = evaluate_model(
        best, phantom_dir / "test", model_dir / "evaluation", overwrite=True
    )
    dice = [float(v) for v in evaluation.summary["dice_mean"]]
    return dice, [float(v) for v in errors["mean_abs_error_pct"]]


def row(name: str, cpu: float, epochs: int, dice: list[float], errors: list[float]) -> str:
    """One markdown table row."""
    d = " / ".join(f"{v:.3f}" for v in dice)
    e = " / ".join(f"{v:.2f}" for v in errors)
    mean_d, mean_e = sum(dice) / len(dice), sum(errors) / len(errors)
    cells = [name, f"{cpu:.0f}", str(epochs), d, f"{mean_d:.3f}", f"{min(dice):.3f}", e]
    return "| " + " | ".join([*cells, f"{mean_e:.2f}"]) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work", type=Path)
    parser.add_argument("minutes", type=float)
    parser.add_argument("variants", nargs="+")
    args = parser.parse_args()
    phantom_dir = args.work / "phantom"
    if not (phantom_dir / "truth.csv").exists():
        generate_phantom(phantom_dir, seed=0, overwrite=True)
    names = [variant_name(v) for v in args.variants]
    outs = [args.work / f"phantom-{name}" for name in names]
    processes = [
        start_training(v, phantom_dir / "train", out, args.minutes)
        for v, out in zip(args.variants, outs, strict=True)
    ]
    cpu = [cpu_seconds(p) for p in processes]
    print(
        "| variant | CPU s | epochs | Dice per ROI | mean | worst | area error % per ROI | mean |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, out, seconds in zip(names, outs, cpu, strict=True):
        settings = json.loads((out / "sliceseg_settings.json").read_text())
        dice, errors = score(out, phantom_dir, phantom_dir / "truth.csv")
        print(row(name, seconds, settings["epochs_completed"], dice, errors), flush=True)


if __name__ == "__main__":
    main()
