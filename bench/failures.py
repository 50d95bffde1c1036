"""Failure detection on degraded studies (issue 21): does the confidence find the failures, and
does the series warning say when a series is unlike the training data?

The clean test subjects of the phantom (rendered in memory exactly as ``generate_phantom``
writes them: subjects ``train_subjects + 1`` …, seed 0) are degraded at two strengths, strong
and mild, in seven ways:

- ``ghosting``: motion ghosting along the phase-encoding direction (rows): every other k-space
  line gets a phase error (1.2 rad strong, 0.6 mild), so a ghost appears half a field away;
- ``noise``: Rician noise of 22 % (strong) / 12 % (mild) of the slice's 99th percentile
  (the phantom's own is 1.5–3.5 % of fat);
- ``bias``: a smooth multiplicative field, log amplitude ±1.0 (strong) / ±0.6 (mild);
- ``contrast``: inverted (strong) / a gamma of 2.6, beyond the training augmentation's
  0.7–1.5 (mild);
- ``fov``: a field of view cutting the body: 55 % (strong) / 68 % (mild) of the columns kept
  (the body fills 80–92 % of the width);
- ``level``: the same subject rendered at series positions outside the trained range
  (0 … 1, about L3–L4): −3.0 … −2.6 (strong, towards the thoracolumbar junction: small
  psoas) / −1.6 … −1.2 (mild);
- ``streak``: a CT-like metal streak artefact on the MR phantom: bright and dark bands
  radiating from a point in the vertebral body (amplitude 1.0 (strong) / 0.5 (mild) of the
  slice's 99th percentile).

Slice level, per strength: every clean test slice and one degraded twin (the kind cycles with
subject and slice), so half the slices are degraded. A slice **fails** when any ROI whose true
area is ≥ 100 mm² is off by more than 20 %, or the mean Dice over the ROIs present is below
0.7. Reported: the AUROC of each uncertainty (1 − confidence) for "failed" and for
"degraded", and Spearman's ρ of the uncertainty with the Dice error on the clean slices.

Series level: every test subject whole, clean and degraded each way at each strength, judged
by `sliceseg.inference.familiarity.check_series` (the model file's training profile); hits
per kind and strength, false alarms on the clean series.

Usage::

    sliceseg train PHANTOM/train --out MODEL --max-minutes 6   # the phantom of generate_phantom
    python bench/failures.py MODEL/sliceseg_best.pt --train-subjects 16 --test-subjects 8 \\
        --json failures.json

Real MR (``--data``): the clean test subjects of a real-MR benchmark folder written by
``bench/real_mr.py --set mni|small|spine --out OUT`` (``OUT/test/dicoms`` with the labels
beside them), degraded the same ways; ``level`` renders each test subject's own scanner below
the trained range (mni, small; none for spine: see ``failures_real``)::

    python bench/failures.py OUT/sliceseg/model/sliceseg_best.pt --data OUT --threads 1 \
        --json spine.json
    python bench/failures_tables.py spine.json      # the tables of docs/benchmarks.md

``--reprofile TRAIN_DIR`` first rebuilds the model's profile with today's code from the folder
it was trained on (split as its settings file says), in a temporary copy: to measure a changed
check on a model trained before it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
import torch
from scipy import ndimage, stats

from failures_real import level_renderer, read_test_series, reprofile
from failures_tables import CONFIDENCE
from sliceseg.inference.confidence import ConfidenceCollector, slice_confidence
from sliceseg.inference.familiarity import model_profile, series_traits
from sliceseg.inference.predict import predict_slices
from sliceseg.io.dicom import Slice
from sliceseg.measure.familiarity import SliceOddness, TrainingProfile, slice_oddness
from sliceseg.measure.metrics import dice_per_class
from sliceseg.measure.series_verdict import Verdict, judge_series
from sliceseg.measure.slice_traits import SliceTraits
from sliceseg.models.bundle import Bundle, load_bundle
from sliceseg.phantom.generate import DEFAULT_MATRIX_SIZES, _subject_rng
from sliceseg.phantom.render import SliceParams, render_slice, sample_subject

KINDS = ("ghosting", "noise", "bias", "contrast", "fov", "level", "streak")


class Strength(TypedDict):
    """How strongly each degradation is applied (``level``: subject positions outside training;
    ``gamma`` None: the contrast inverted instead of a gamma)."""

    ghost: float
    noise: float
    bias: float
    fov: float
    level: tuple[float, float]
    streak: float
    gamma: float | None


STRENGTHS: dict[str, Strength] = {
    "strong": {"ghost": 1.2, "noise": 0.22, "bias": 1.0, "fov": 0.55, "level": (-3.0, -2.6),
               "streak": 1.0, "gamma": None},
    "mild": {"ghost": 0.6, "noise": 0.12, "bias": 0.6, "fov": 0.68, "level": (-1.6, -1.2),
             "streak": 0.5, "gamma": 2.6},
}  # fmt: skip
FAIL_AREA, FAIL_DICE, MIN_AREA_MM2 = 0.20, 0.7, 100.0
SLICES_PER_SUBJECT = 10
TTA_VIEWS = ((6.0, 1.0), (-6.0, 1.0), (0.0, 0.92))


@dataclass(frozen=True)
class Rendered:
    """One test slice: the image as a `Slice`, its true label map."""

    image: Slice
    truth: np.ndarray


def render_subject(index: int, *, positions: list[float] | None = None) -> list[Rendered]:
    """Render phantom subject ``index`` (seed 0) as ``generate_phantom`` does, in memory."""
    subject = sample_subject(
        _subject_rng(0, index),
        name=f"sub{index:02d}",
        matrix_shape=DEFAULT_MATRIX_SIZES[(index - 1) % len(DEFAULT_MATRIX_SIZES)],
        n_slices=SLICES_PER_SUBJECT,
    )
    steps = positions or [j / (SLICES_PER_SUBJECT - 1) for j in range(SLICES_PER_SUBJECT)]
    out = []
    for j, t in enumerate(steps):
        rendered = render_slice(SliceParams(subject, t), _subject_rng(0, index, j))
        image = Slice(
            pixels=rendered.image,
            spacing_mm=rendered.spacing_mm,
            spacing_source="PixelSpacing",
            source=Path(f"/bench/{subject.name}/{subject.name}_s{j:02d}.dcm"),
            series_uid=subject.name,
            instance_number=j + 1,
            orientation=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
            modality="MR",
        )
        out.append(Rendered(image, rendered.label))
    return out


def degrade(kind: str, strength: str, item: Rendered, rng: np.random.Generator) -> Rendered:
    """Return ``item`` degraded one way (``level`` is rendered, not degraded: see `level_twins`)."""
    s = STRENGTHS[strength]
    pixels, truth = item.image.pixels.astype(np.float64), item.truth
    top = float(np.percentile(pixels, 99))
    if kind == "ghosting":
        spectrum = np.fft.fft(pixels, axis=0)
        spectrum[1::2] *= np.exp(1j * float(s["ghost"]))
        pixels = np.abs(np.fft.ifft(spectrum, axis=0))
    elif kind == "noise":
        sigma = float(s["noise"]) * top
        real = pixels + sigma * rng.standard_normal(pixels.shape)
        pixels = np.hypot(real, sigma * rng.standard_normal(pixels.shape))
    elif kind == "bias":
        rows, cols = np.meshgrid(*(np.linspace(-1, 1, n) for n in pixels.shape), indexing="ij")
        a, b = rng.uniform(0.6, 1.0, 2) * rng.choice([-1, 1], 2)
        pixels = pixels * np.exp(float(s["bias"]) * (a * rows + b * cols) / 2)
    elif kind == "contrast":
        low = float(pixels.min())
        if s["gamma"] is None:
            pixels = top + low - pixels
        else:
            gamma = float(s["gamma"])
            pixels = low + (top - low) * (np.clip(pixels - low, 0, None) / (top - low)) ** gamma
    elif kind == "fov":
        keep = round(pixels.shape[1] * float(s["fov"]))
        start = pixels.shape[1] - keep if rng.random() < 0.5 else 0
        pixels, truth = pixels[:, start : start + keep], truth[:, start : start + keep]
    elif kind == "streak":
        pixels = pixels + float(s["streak"]) * top * _streaks(item.truth, rng)
    image = dataclasses.replace(item.image, pixels=np.ascontiguousarray(pixels, np.float32))
    return Rendered(image, np.ascontiguousarray(truth))


def _streaks(truth: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Bright and dark bands through a point of the vertebral body (ROI 1), like metal on CT."""
    rows, cols = np.nonzero(truth == 1)
    centre = (rows.mean(), cols.mean()) if len(rows) else np.array(truth.shape) / 2
    r, c = np.indices(truth.shape, dtype=np.float64)
    field = np.zeros(truth.shape)
    for angle in rng.uniform(0, np.pi, 4):
        distance = (r - centre[0]) * np.cos(angle) - (c - centre[1]) * np.sin(angle)
        field += np.exp(-((distance / 1.5) ** 2)) * rng.choice([1.0, -0.6])
    return field


def level_twins(index: int, strength: str) -> list[Rendered]:
    """The subject at positions outside the trained range (the ``level`` degradation)."""
    low, high = STRENGTHS[strength]["level"]
    return render_subject(index, positions=list(np.linspace(low, high, SLICES_PER_SUBJECT)))


@dataclass
class Scored:
    """Per slice: uncertainties, failure, and what it is."""

    kind: str
    degraded: bool
    failed: bool
    dice_error: float
    scores: dict[str, float]


def score_series(bundle: Bundle, items: list[Rendered]) -> tuple[list[dict], Verdict | None, dict]:
    """Predict one series; return per slice the uncertainties and truth numbers, the verdict and
    the series' raw check numbers."""
    images = [item.image for item in items]
    profile = model_profile(bundle)
    collector = ConfidenceCollector(None if profile is None else profile.always_present)
    labels = predict_slices(bundle, images, on_probabilities=collector)
    per_roi = collector.per_roi
    today = slice_confidence(per_roi)
    traits = series_traits(bundle, images, labels, max_slices=None)
    odd = slice_oddness(profile, traits) if profile is not None else None
    verdict = judge_series(profile, traits, bundle.roi_names) if profile is not None else None
    rows = []
    for i, item in enumerate(items):
        spacing = item.image.spacing_mm
        failed, dice_error = _failure(labels[i], item.truth, spacing, per_roi.shape[1])
        scores = {CONFIDENCE: 1 - today[i], "mean over ROIs (before)": 1 - per_roi[i].mean()}
        if odd is not None:
            plausible = (1 - odd.shape_score[i]) / max(1.0, float(odd.feature_ratio[i]))
            scores["shape plausibility"] = float(odd.shape_score[i])
            scores["feature distance"] = float(odd.feature_ratio[i])
            scores["confidence × plausibility"] = 1 - today[i] * plausible
        row = {"failed": failed, "dice_error": dice_error, "scores": scores}
        rows.append({**row, "image": images[i], "label": labels[i], "plausible": plausible})
    return rows, verdict, _series_numbers(profile, traits, odd)


def _series_numbers(
    profile: TrainingProfile | None, traits: Sequence[SliceTraits], odd: SliceOddness | None
) -> dict:
    """What the series verdict is made of, to study other thresholds offline."""
    if odd is None or profile is None:
        return {}
    median = np.median(np.stack([t.intensity for t in traits]), axis=0)
    excess = np.maximum(profile.intensity_low - median, median - profile.intensity_high)
    return {
        "feature_ratio": float(np.nanmedian(odd.feature_ratio)),
        "intensity_excess": float(np.max(excess / profile.intensity_std)),
        "intensity_distance": profile.intensity_distance(np.stack([t.intensity for t in traits])),
        "intensity_threshold": profile.intensity_series_threshold,
        "area_off": float(odd.area_off.mean(axis=0).max()),
        "distance_off": float(odd.distance_off.mean(axis=0).max()),
    }


def add_tta(bundle: Bundle, table: list[dict]) -> None:
    """Add the TTA disagreement (and confidence × plausibility × agreement) to the rows."""
    disagreement = _tta_disagreement(
        bundle, [row["image"] for row in table], [row["label"] for row in table]
    )
    for row, value in zip(table, disagreement, strict=True):
        row["scores"]["TTA disagreement"] = float(value)
        sure = (1 - row["scores"][CONFIDENCE]) * row["plausible"] * (1 - float(value))
        row["scores"]["confidence × plausibility × TTA agreement"] = 1 - sure


def _failure(
    label: np.ndarray, truth: np.ndarray, spacing: tuple[float, float] | None, k: int
) -> tuple[bool, float]:
    pixel = float(spacing[0] * spacing[1]) if spacing else 1.0
    dice = dice_per_class(label, truth, k + 1)
    mean_dice = float(np.nanmean(dice)) if np.isfinite(dice).any() else 1.0
    failed = mean_dice < FAIL_DICE
    for roi in range(1, k + 1):
        true_area = np.count_nonzero(truth == roi) * pixel
        if true_area >= MIN_AREA_MM2:
            error = abs(np.count_nonzero(label == roi) * pixel - true_area) / true_area
            failed = failed or error > FAIL_AREA
    return failed, 1.0 - mean_dice


def _tta_disagreement(bundle: Bundle, images: list[Slice], labels: list[np.ndarray]) -> np.ndarray:
    """Per slice, 1 − the mean Dice between the plain label and those of rotated/zoomed views
    (each predicted on the warped image and warped back, nearest neighbour)."""
    k = bundle.metadata.num_labels
    agreement = np.zeros(len(images))
    for angle, zoom in TTA_VIEWS:
        warped = [dataclasses.replace(im, pixels=_warp(im.pixels, angle, zoom, 1)) for im in images]
        views = predict_slices(bundle, warped)
        for i, view in enumerate(views):
            back = _warp(view, -angle, 1 / zoom, 0)
            dice = dice_per_class(back, labels[i], k + 1)
            agreement[i] += float(np.nanmean(dice)) if np.isfinite(dice).any() else 1.0
    return 1 - agreement / len(TTA_VIEWS)


def _warp(array: np.ndarray, angle: float, zoom: float, order: int) -> np.ndarray:
    """Rotate by ``angle`` degrees and zoom about the centre, same shape."""
    a = math.radians(angle)
    matrix = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]]) / zoom
    centre = (np.array(array.shape) - 1) / 2
    offset = centre - matrix @ centre
    fill = float(array.min())
    out = ndimage.affine_transform(array, matrix, offset, order=order, mode="constant", cval=fill)
    return out.astype(array.dtype)


def auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for ``positive`` (ties count half); NaN when one
    class is empty."""
    pos, neg = scores[positive], scores[~positive]
    if not len(pos) or not len(neg):
        return math.nan
    ranks = stats.rankdata(np.concatenate([pos, neg]))
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def phantom_series(subjects: list[int]) -> dict[str, list[Rendered]]:
    """The phantom's clean test subjects, by name."""
    return {f"sub{index:02d}": render_subject(index) for index in subjects}


def phantom_levels(name: str, strength: str, clean: list[Rendered]) -> list[Rendered]:
    """The ``level`` twin of a phantom series (rendered at positions outside training)."""
    return level_twins(int(name.removeprefix("sub")), strength)


Levels = Callable[[str, str, list[Rendered]], list[Rendered]]
"""(series name, strength, its clean slices) → the series at levels outside training."""


def run(
    bundle: Bundle,
    clean: dict[str, list[Rendered]],
    *,
    levels: Levels | None,
    tta: bool,
    log: Callable[[str], object] = print,
) -> dict:
    """Everything: per strength the slice table, per kind the series verdicts (the ``level``
    kind only when ``levels`` renders it)."""
    kinds = KINDS if levels is not None else tuple(k for k in KINDS if k != "level")
    result: dict = {"series": list(clean), "kinds": list(kinds), "clean_series": {}}
    result["strengths"] = {}
    clean_rows = {}
    for name, items in clean.items():
        rows, verdict, numbers = score_series(bundle, items)
        clean_rows[name] = rows
        result["clean_series"][name] = _verdict_data(verdict, numbers)
    for strength in STRENGTHS:
        log(f"{strength} …")
        table: list[dict] = []
        series: dict[str, dict[str, dict]] = {kind: {} for kind in kinds}
        for s, (name, items) in enumerate(clean.items()):
            rng = np.random.default_rng(1000 * s + len(strength))
            for kind in kinds:
                if kind == "level":
                    assert levels is not None  # the kind is there only with a renderer
                    degraded = levels(name, strength, items)
                else:
                    degraded = [degrade(kind, strength, item, rng) for item in items]
                rows, verdict, numbers = score_series(bundle, degraded)
                series[kind][name] = _verdict_data(verdict, numbers)
                for j, row in enumerate(rows):
                    if kinds[(s + j) % len(kinds)] == kind:  # this slice's degraded twin
                        table.append({**row, "kind": kind, "degraded": True})
            table += [{**row, "kind": "clean", "degraded": False} for row in clean_rows[name]]
        if tta:
            add_tta(bundle, table)
        result["strengths"][strength] = {"slices": _slice_summary(table, kinds), "series": series}
    return result


def _verdict_data(verdict: Verdict | None, numbers: dict) -> dict:
    if verdict is None:
        return {"flagged": None, "reasons": [], **numbers}
    return {"flagged": bool(verdict.is_flagged), "reasons": list(verdict.reasons), **numbers}


def _slice_summary(table: list[dict], kinds: tuple[str, ...]) -> dict:
    failed = np.array([row["failed"] for row in table])
    degraded = np.array([row["degraded"] for row in table])
    names = list(table[0]["scores"])
    summary: dict[str, Any] = {
        "n": len(table),
        "n_degraded": int(degraded.sum()),
        "n_failed": int(failed.sum()),
        "n_failed_degraded": int((failed & degraded).sum()),
        "n_failed_clean": int((failed & ~degraded).sum()),
        "failed_by_kind": {
            kind: [int(sum(r["failed"] for r in table if r["kind"] == kind)),
                   sum(1 for r in table if r["kind"] == kind)]
            for kind in ("clean", *kinds)
        },
        "scores": {},
        "rows": [
            {"kind": r["kind"], "failed": bool(r["failed"]), "dice_error": r["dice_error"],
             "scores": {k: float(v) for k, v in r["scores"].items()}}
            for r in table
        ],
    }  # fmt: skip
    dice_error = np.array([row["dice_error"] for row in table])
    for name in names:
        values = np.array([row["scores"][name] for row in table], dtype=np.float64)
        values = np.nan_to_num(values, nan=0.0)
        rho = stats.spearmanr(values[~degraded], dice_error[~degraded]).statistic
        summary["scores"][name] = {
            "auroc_failed": auroc(values, failed),
            "auroc_degraded": auroc(values, degraded),
            "spearman_clean": float(rho),
        }
    return summary


def real_series(out_dir: Path) -> tuple[dict[str, list[Rendered]], Levels | None]:
    """A real-MR benchmark folder's clean test series and its ``level`` renderer."""
    clean = {
        name: [Rendered(image, truth) for image, truth in items]
        for name, items in read_test_series(out_dir / "test").items()
    }
    render = level_renderer(out_dir)
    if render is None:
        return clean, None

    def levels(name: str, strength: str, items: list[Rendered]) -> list[Rendered]:
        twins = render(name, strength, [item.image for item in items])
        return [Rendered(image, truth) for image, truth in twins]

    return clean, levels


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print (and with ``--json`` write) its numbers."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="a model trained on the data's training split")
    parser.add_argument(
        "--data", type=Path, help="a real-MR benchmark folder (real_mr.py --out); default: phantom"
    )
    parser.add_argument("--train-subjects", type=int, default=16)
    parser.add_argument("--test-subjects", type=int, default=8)
    parser.add_argument("--no-tta", action="store_true", help="skip the TTA disagreement")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument(
        "--reprofile",
        type=Path,
        metavar="TRAIN_DIR",
        help="rebuild the model's profile with today's code from its training folder first",
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = args.model
    if args.reprofile is not None:
        model = reprofile(model, args.reprofile, Path(tempfile.mkdtemp()) / model.name)
    bundle = load_bundle(model)
    if bundle.metadata.familiarity is None:
        raise SystemExit(f"{args.model}: no training profile; add one (training.profile).")
    started = time.perf_counter()
    if args.data is not None:
        clean, levels = real_series(args.data)
    else:
        first = args.train_subjects + 1
        clean = phantom_series(list(range(first, first + args.test_subjects)))
        levels = phantom_levels
    result = run(bundle, clean, levels=levels, tta=not args.no_tta)
    result["data"] = str(args.data or "phantom")
    result["seconds"] = time.perf_counter() - started
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
