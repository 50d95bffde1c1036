"""Real-MR benchmark: sliceseg vs a plain MONAI baseline on the MNI152 template, same CPU budget.

Data (``real_mr_data``): the MNI152 2009a T1 and its grey/white-matter maps from nilearn,
labelled 1 right WM, 2 left WM, 3 right GM, 4 left GM, seen through 6 training and 3 test
simulated scanners (the test ones on held-out axial levels), written in the user manual's layout.
Contenders, one after the other, each for ``--minutes`` of training on ``--threads`` cores:
the baseline (``real_mr_baseline``) and ``sliceseg train`` + ``sliceseg predict`` with their
defaults. Both are scored by ``real_mr_score`` on the test slices' native grids.

Usage::

    python bench/real_mr.py --minutes 10                  # both, 10 minutes each
    python bench/real_mr.py --minutes 1 --out /tmp/rmr    # a quick end-to-end check
    python bench/real_mr.py --only sliceseg               # one contender (data reused)

Writes ``<out>/results.csv``, ``<out>/results.md`` and ``<out>/per_slice.csv``.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import functools
import json
import math
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from real_mr_data import ROI_NAMES, Anatomy, Plan, load_template
from real_mr_files import is_current, write_dataset
from real_mr_score import Score, score_folder
from real_mr_small import SMALL_NAMES, SMALL_SHORT
from spine_mr_data import ROI_NAMES as SPINE_NAMES
from spine_mr_data import ROI_SHORT as SPINE_SHORT

CONTENDERS = ("baseline", "sliceseg")
ROI_SHORT = ("RWM", "LWM", "RGM", "LGM")


@dataclass(frozen=True)
class ContenderResult:
    """One contender's training figures and score.

    Attributes:
        name: "baseline" or "sliceseg".
        score: Dice and area errors on the test slices.
        train_seconds: wall-clock time of the training loop.
        epochs: passes over the training slices (fractional for the baseline).
        steps: optimiser steps.
        slices_per_second: training slices processed per second.
        n_train_slices: slices trained on (sliceseg holds a validation series out).
        predict_seconds: wall-clock time of predicting the test slices.
        train_cpu_seconds: CPU time (user + system, all threads) the training used: under load
            the wall-clock budget buys less of it.
    """

    name: str
    score: Score
    train_seconds: float
    epochs: float
    steps: int
    slices_per_second: float
    n_train_slices: int
    predict_seconds: float
    train_cpu_seconds: float = math.nan


@dataclass(frozen=True)
class BenchSet:
    """One benchmark set: its ROIs, where it writes, and how its anatomy is built.

    Attributes:
        key: ``mni`` (hemispheric white and grey matter), ``small`` or ``spine``.
        title: the first words of the results' header.
        roi_names: ROI ``k`` is ``roi_names[k - 1]``.
        shorts: the ROIs' column names in the tables.
        default_out: the output folder when ``--out`` is not given.
        build: loads (anatomy, plan); None for the MNI set (``write_dataset``'s default).
    """

    key: str
    title: str
    roi_names: tuple[str, ...]
    shorts: tuple[str, ...]
    default_out: str
    build: Callable[[], tuple[Anatomy, Plan]] | None = None


def _small() -> tuple[Anatomy, Plan]:
    import real_mr_small

    return real_mr_small.small_set(load_template())


def _spine(**grid: Any) -> tuple[Anatomy, Plan]:
    """The spine set; ``grid``: the scanners' ``spacing_mm`` / ``fov_mm`` (`spine_plan`'s)."""
    import spine_mr_data

    volume = spine_mr_data.load_volume()
    plan = functools.partial(spine_mr_data.spine_plan, volume, **grid)
    return spine_mr_data.spine_anatomy(volume), plan


def _spine512() -> tuple[Anatomy, Plan]:
    """The spine set on an abdominal CT's grid: 0.7–0.95 mm, 360–480 mm fields (≈ 512²)."""
    import spine_mr_data

    anatomy, plan = _spine(
        spacing_mm=spine_mr_data.WIDE_SPACING_MM, fov_mm=spine_mr_data.WIDE_FOV_MM
    )
    return dataclasses.replace(anatomy, key="spine512"), plan


SETS: dict[str, BenchSet] = {
    "mni": BenchSet("mni", "Real-MR benchmark", ROI_NAMES, ROI_SHORT, "real_mr_output"),
    "small": BenchSet(
        "small", "Real-MR small structures", SMALL_NAMES, SMALL_SHORT, "real_mr_small", _small
    ),
    "spine": BenchSet(
        "spine", "Spine-MR benchmark", SPINE_NAMES, SPINE_SHORT, "spine_mr_output", _spine
    ),
    "spine512": BenchSet(
        "spine512",
        "Spine-MR benchmark on a CT-sized grid",
        SPINE_NAMES,
        SPINE_SHORT,
        "spine512_output",
        _spine512,
    ),
}


def prepare_data(
    out: Path,
    *,
    seed: int,
    regenerate: bool,
    bench_set: BenchSet = SETS["mni"],
    neighbour_mm: float = 0.0,
) -> float:
    """Write the data unless ``out`` already holds it for ``seed``; check it; return seconds.

    ``neighbour_mm`` > 0 also writes unlabelled slices that far on either side of each
    labelled one (`real_mr_files.neighbour_levels`), for 2.5D runs.
    """
    seconds = 0.0
    if regenerate or not is_current(out, seed=seed, key=bench_set.key, neighbour_mm=neighbour_mm):
        anatomy, plan = bench_set.build() if bench_set.build else (None, None)
        summary = write_dataset(
            out, seed=seed, anatomy=anatomy, plan=plan, neighbour_mm=neighbour_mm
        )
        seconds = summary.seconds
        print(
            f"Data: {summary.n_train_slices} training slices (levels from "
            f"{len(summary.train_levels)}), {summary.n_test_slices} test slices "
            f"({len(summary.test_levels)} held-out levels) in {seconds:.1f} s"
        )
    else:
        stamp = json.loads((out / "data.json").read_text())
        seconds = float(stamp.get("seconds", math.nan))
        print(f"Data: reusing {out}/train and {out}/test (seed {seed})")
    check = subprocess.run(
        [sys.executable, "-m", "sliceseg", "check", str(out / "train")],
        capture_output=True,
        text=True,
    )
    if check.returncode != 0:
        raise SystemExit(f"sliceseg check {out / 'train'} failed:\n{check.stdout}{check.stderr}")
    print(check.stdout.splitlines()[1] if len(check.stdout.splitlines()) > 1 else check.stdout)
    return seconds


def run_baseline(
    out: Path, *, minutes: float, seed: int, threads: int, roi_names: Sequence[str] = ROI_NAMES
) -> ContenderResult:
    """Train the MONAI baseline for ``minutes``, predict the test slices, score them."""
    from real_mr_baseline import predict_cases, read_cases, train_baseline

    torch.set_num_threads(threads)
    work = out / "baseline"
    shutil.rmtree(work, ignore_errors=True)
    train_cases = read_cases(out / "train", with_labels=True)
    print(f"baseline: training on {len(train_cases)} slices for {minutes:g} min")
    cpu = time.process_time()
    model, stats = train_baseline(
        train_cases, minutes=minutes, seed=seed, num_classes=len(roi_names) + 1
    )
    cpu = time.process_time() - cpu
    start = time.perf_counter()
    labels_dir = predict_cases(model, read_cases(out / "test", with_labels=False), work / "pred")
    predict_seconds = time.perf_counter() - start
    torch.save(model.state_dict(), work / "baseline_last.pt")
    return ContenderResult(
        name="baseline",
        score=score_folder(out / "test", labels_dir, num_rois=len(roi_names)),
        train_seconds=stats.seconds,
        epochs=stats.epochs,
        steps=stats.steps,
        slices_per_second=stats.slices_per_second,
        n_train_slices=stats.n_train_slices,
        predict_seconds=predict_seconds,
        train_cpu_seconds=cpu,
    )


def _children_cpu_seconds() -> float:
    """User + system CPU seconds of the finished child processes so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run_logged(command: list[str], log_path: Path, env: dict[str, str], *, echo: bool) -> str:
    """Run ``command``, saving (and with ``echo`` printing) its output; return it; fail loudly."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    with (
        subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        ) as process,
        log_path.open("w") as log,
    ):
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            log.write(line)
            if echo:
                print(f"  | {line}", end="")
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} exited {process.returncode}; see {log_path}")
    return "".join(lines)


def _sliceseg_training(model_dir: Path, log_text: str) -> tuple[int, int, float, int]:
    """(epochs, steps, training seconds, training slices) from sliceseg's own files and log."""
    settings = json.loads((model_dir / "sliceseg_settings.json").read_text())
    epochs = int(settings["epochs_completed"])
    batch = int(settings["settings"]["batch_size"])
    with (model_dir / "sliceseg_history.csv").open(newline="") as handle:
        seconds = float(list(csv.DictReader(handle))[-1]["elapsed_seconds"])
    found = re.search(r"Training on (\d+) slices", log_text)
    n_train = int(found.group(1)) if found else 0
    steps = epochs * max(n_train // batch, 1) if n_train > batch else epochs
    return epochs, steps, seconds, n_train


def run_sliceseg(
    out: Path,
    *,
    minutes: float,
    seed: int,
    threads: int,
    config: Path | None = None,
    roi_names: Sequence[str] = ROI_NAMES,
    epochs: int | None = None,
) -> ContenderResult:
    """``sliceseg train`` (defaults, or ``config``'s settings; ``--max-minutes``, and
    ``--epochs`` only when ``epochs`` is given: a user passes the budget alone) then
    ``sliceseg predict``; score."""
    work = out / "sliceseg"
    shutil.rmtree(work, ignore_errors=True)
    model_dir = work / "model"
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    cli = [sys.executable, "-m", "sliceseg"]
    print(f"sliceseg: training for {minutes:g} min")
    cpu = _children_cpu_seconds()
    train_log = _run_logged(
        [
            *cli,
            "train",
            str(out / "train"),
            "--out",
            str(model_dir),
            "--max-minutes",
            f"{minutes:g}",
            *(["--epochs", str(epochs)] if epochs else []),
            "--seed",
            str(seed),
            *(["--config", str(config)] if config else []),
        ],
        work / "train.log",
        env,
        echo=True,
    )
    cpu = _children_cpu_seconds() - cpu
    found = re.search(r"Best model: (\S+\.pt)", train_log)
    best = Path(found.group(1)) if found else model_dir / "sliceseg_best.pt"
    start = time.perf_counter()
    predict = [*cli, "predict", str(best), str(out / "test" / "dicoms"), "--out"]
    predict_log = _run_logged(
        [*predict, str(work / "pred"), "--no-report"], work / "predict.log", env, echo=False
    )
    print(f"  | {predict_log.strip().splitlines()[-1]}")
    predict_seconds = time.perf_counter() - start
    labels = work / "pred" / "labels"  # the calibration on held-out slices (issue 17)
    try:
        from real_mr_calibration import check_calibration
    except ImportError as error:  # a sliceseg older than inference.area_bias
        print(f"  | no area-bias table ({error})")
    else:
        print(check_calibration(best, out / "test", labels, work, roi_names=roi_names, env=env))
    epochs, steps, seconds, n_train = _sliceseg_training(model_dir, train_log)
    return ContenderResult(
        name="sliceseg",
        score=score_folder(out / "test", work / "pred" / "labels", num_rois=len(roi_names)),
        train_seconds=seconds,
        epochs=epochs,
        steps=steps,
        slices_per_second=n_train * epochs / seconds if n_train else math.nan,
        n_train_slices=n_train,
        predict_seconds=predict_seconds,
        train_cpu_seconds=cpu,
    )


def table_row(result: ContenderResult, shorts: Sequence[str] = ROI_SHORT) -> dict[str, float | str]:
    """One row of the results table (Dice, area errors, speed); ``shorts`` name the ROIs."""
    score = result.score
    row: dict[str, float | str] = {"contender": result.name}
    row.update({f"dice_{s}": d for s, d in zip(shorts, score.dice, strict=True)})
    row.update({"dice_mean": score.mean_dice, "dice_worst": score.worst_dice})
    row.update({f"area_err_pct_{s}": e for s, e in zip(shorts, score.area_error_pct, strict=True)})
    row["area_err_pct_mean"] = score.mean_area_error_pct
    row.update(
        {
            "train_slices_per_s": result.slices_per_second,
            "epochs": result.epochs,
            "steps": float(result.steps),
            "train_s": result.train_seconds,
            "train_cpu_s": result.train_cpu_seconds,
            "train_slices": float(result.n_train_slices),
            "predict_s": result.predict_seconds,
        }
    )
    return row


def ratio_row(rows: list[dict[str, float | str]]) -> dict[str, float | str] | None:
    """sliceseg / baseline for every number, when both ran."""
    by_name = {str(r["contender"]): r for r in rows}
    if set(by_name) != set(CONTENDERS):
        return None
    mine, theirs = by_name["sliceseg"], by_name["baseline"]
    ratio: dict[str, float | str] = {"contender": "sliceseg / baseline"}
    for key, value in mine.items():
        if key != "contender":
            other = float(theirs[key])
            ratio[key] = float(value) / other if other else math.nan
    return ratio


def verdict_line(rows: list[dict[str, float | str]]) -> str:
    """The issue's goals on this run: mean Dice +0.03, worst ROI no worse, area error ≤ 0.6×."""
    by_name = {str(r["contender"]): r for r in rows}
    if not set(CONTENDERS) <= set(by_name):
        return ""
    mine, theirs = by_name["sliceseg"], by_name["baseline"]
    gain = float(mine["dice_mean"]) - float(theirs["dice_mean"])
    worst = float(mine["dice_worst"]) - float(theirs["dice_worst"])
    area = float(mine["area_err_pct_mean"]) / float(theirs["area_err_pct_mean"])

    def met(ok: bool) -> str:
        return "met" if ok else "not met"

    return (
        f"sliceseg − baseline: mean Dice {gain:+.3f} (goal ≥ +0.03, {met(gain >= 0.03)}); "
        f"worst ROI {worst:+.3f} (goal ≥ 0, {met(worst >= 0)}); "
        f"mean area error × {area:.2f} (goal ≤ 0.6, {met(area <= 0.6)})."
    )


def _cell(key: str, value: float | str, *, is_ratio: bool) -> str:
    if isinstance(value, str):
        return value
    if math.isnan(value):
        return "–"
    if is_ratio or key.startswith("area"):
        return f"{value:.2f}"
    if key.startswith("dice"):
        return f"{value:.3f}"
    return f"{value:.0f}" if key in ("steps", "train_slices") or value >= 100 else f"{value:.2f}"


def markdown_table(rows: list[dict[str, float | str]]) -> str:
    """The results as a markdown table, one row per contender (and the ratio row)."""
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for row in rows:
        is_ratio = "/" in str(row["contender"])
        cells = [_cell(k, row[k], is_ratio=is_ratio) for k in keys]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def machine_line(threads: int) -> str:
    """Date, CPU, cores, torch and load average, for the table's header."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else math.nan
    return (
        f"{time.strftime('%Y-%m-%d %H:%M')}; {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, {threads} threads each; torch {torch.__version__}; "
        f"1-min load {load:.2f}"
    )


def write_results(
    out: Path, results: list[ContenderResult], header: str, shorts: Sequence[str] = ROI_SHORT
) -> str:
    """Write ``results.csv``, ``results.md`` and ``per_slice.csv``; return the markdown."""
    rows = [table_row(r, shorts) for r in results]
    ratio = ratio_row(rows)
    all_rows = rows + ([ratio] if ratio else [])
    with (out / "results.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(all_rows[0]))
        writer.writeheader()
        writer.writerows(all_rows)
    with (out / "per_slice.csv").open("w", newline="") as handle:
        fields = ["contender", "key", "roi", "dice", "true_mm2", "pred_mm2"]
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for result in results:
            writer.writerows({"contender": result.name, **r} for r in result.score.rows)
    text = f"{header}\n\n{markdown_table(all_rows)}\n\n{verdict_line(rows)}\n"
    (out / "results.md").write_text(text)
    return text


def main(argv: list[str] | None = None) -> int:
    """Generate (or reuse) the data, run the contenders, print and write the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="training budget each")
    parser.add_argument("--set", choices=sorted(SETS), default="mni", help="benchmark set")
    parser.add_argument("--out", help="output folder (default: the set's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", choices=CONTENDERS, help="run one contender")
    parser.add_argument("--threads", type=int, default=2, help="torch threads per contender")
    parser.add_argument("--regenerate", action="store_true", help="rewrite the data")
    parser.add_argument(
        "--neighbour-mm",
        type=float,
        default=0.0,
        help="also write unlabelled slices this far on either side of each labelled one (the "
        "neighbours a --context-slices model reads; default 0: none)",
    )
    parser.add_argument(
        "--epochs",
        type=int,
        help="pass sliceseg train --epochs N (default: none, the budget alone, as a user runs it)",
    )
    parser.add_argument(
        "--train-config",
        type=Path,
        help="a TOML settings file for sliceseg train (a variant to measure against the defaults)",
    )
    args = parser.parse_args(argv)
    bench_set = SETS[args.set]
    out = Path(args.out or bench_set.default_out)
    out.mkdir(parents=True, exist_ok=True)
    data_seconds = prepare_data(
        out,
        seed=args.seed,
        regenerate=args.regenerate,
        bench_set=bench_set,
        neighbour_mm=args.neighbour_mm,
    )
    start_line = machine_line(args.threads)
    runners = {
        "baseline": run_baseline,
        "sliceseg": functools.partial(run_sliceseg, config=args.train_config, epochs=args.epochs),
    }
    results = [
        runners[name](  # type: ignore[operator]
            out,
            minutes=args.minutes,
            seed=args.seed,
            threads=args.threads,
            roi_names=bench_set.roi_names,
        )
        for name in ([args.only] if args.only else CONTENDERS)
    ]
    names = zip(bench_set.shorts, bench_set.roi_names, strict=True)
    header = (
        f"{bench_set.title}, {args.minutes:g} min each, seed {args.seed}; start: {start_line}; "
        f"end load {os.getloadavg()[0]:.2f}; data generated in {data_seconds:.1f} s. "
        f"ROIs: {', '.join(f'{s} {n}' for s, n in names)}."
    )
    print(write_results(out, results, header, bench_set.shorts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
