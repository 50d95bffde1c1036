"""Areas from the label map against areas from the summed probabilities, on a real-MR run.

    python bench/soft_area.py WORK/spine-s0-default [WORK/mni-s1-default ...]

A run of `bench/real_mr.py` (its ``sliceseg/model/sliceseg_best.pt`` and the test set it copied)
is predicted again on every test slice's native grid with the engine `sliceseg predict` uses;
per slice and ROI, the area of the label map (pixels × pixel area, what sliceseg publishes) and
the "soft" area (the ROI's probabilities summed over the slice × pixel area, the expected area
when the probabilities are calibrated) are compared with the truth as the benchmark scores it
(mean |error| % per ROI over slices with a true area ≥ ``MIN_AREA_MM2``, then the mean over
ROIs). Writes ``RUN/soft_area.csv`` (one row per slice and ROI).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
import torch

from real_mr_score import MIN_AREA_MM2, read_truth
from sliceseg.engine.predictor import Engine, ProbabilitySink
from sliceseg.io.dicom_folder import read_series
from sliceseg.models.bundle import load_bundle

COLUMNS = ("key", "roi", "true_mm2", "label_mm2", "soft_mm2")


def _collector(into: list[tuple[np.ndarray, np.ndarray]]) -> ProbabilitySink:
    """A sink keeping each slice's native-grid probabilities and label map, in order."""

    def keep(probs: torch.Tensor, label: np.ndarray) -> None:
        into.append((probs.float().numpy(), label))

    return keep


def area_rows(run: Path) -> list[tuple[str, int, float, float, float]]:
    """Per test slice and ROI: key, ROI, true, label-map and summed-probability areas (mm²)."""
    engine = Engine(load_bundle(run / "sliceseg/model/sliceseg_best.pt"), torch.device("cpu"))
    truth, spacing = read_truth(run / "test")
    rows = []
    for subject in sorted((run / "test/dicoms").iterdir()):
        slices = read_series(subject)
        seen: list[tuple[np.ndarray, np.ndarray]] = []
        engine.labels(slices, sink=_collector(seen))
        for image, (probs, label) in zip(slices, seen, strict=True):
            key = f"{subject.name}/{image.source.stem}"
            pixel_mm2 = float(np.prod(spacing[key]))
            for roi in range(1, probs.shape[0]):
                true, found = (truth[key] == roi).sum(), (label == roi).sum()
                rows.append(
                    (key, roi, true * pixel_mm2, found * pixel_mm2, probs[roi].sum() * pixel_mm2)
                )
    return rows


def area_errors(rows: list[tuple[str, int, float, float, float]], column: int) -> list[float]:
    """Mean |error| % per ROI of the areas in ``column`` (3: label map, 4: soft)."""
    table = np.array([row[1:] for row in rows], dtype=float)
    scored = table[:, 1] >= MIN_AREA_MM2
    errors = []
    for roi in np.unique(table[:, 0]):
        chosen = table[scored & (table[:, 0] == roi)]
        errors.append(
            float(np.mean(np.abs(chosen[:, column - 1] - chosen[:, 1]) / chosen[:, 1])) * 100
        )
    return errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print("| run | label map: area error % per ROI | mean | soft: per ROI | mean |")
    print("|---|---|---|---|---|")
    for run in args.runs:
        rows = area_rows(run)
        with (run / "soft_area.csv").open("w", newline="") as handle:
            csv.writer(handle).writerows([COLUMNS, *rows])
        label, soft = area_errors(rows, 3), area_errors(rows, 4)
        shown = [" / ".join(f"{e:.1f}" for e in errors) for errors in (label, soft)]
        print(
            f"| {run.name} | {shown[0]} | {np.mean(label):.2f} | {shown[1]} | {np.mean(soft):.2f} |"
        )


if __name__ == "__main__":
    main()
