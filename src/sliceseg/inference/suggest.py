"""Which slices to label next: the unlabelled slices a model is least sure of, over all series."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from sliceseg.dataset.labelled_slices import labelled_slices
from sliceseg.engine.predictor import PredictOptions
from sliceseg.errors import ConfigError, PairingError, option_name
from sliceseg.inference.confidence import ConfidenceCollector, least_confident, slice_confidence
from sliceseg.inference.familiarity import always_present_rois, check_run, warn_unchecked
from sliceseg.inference.predict import predict_slices
from sliceseg.io.dicom import Slice
from sliceseg.io.files import atomic_path, file_target
from sliceseg.io.identity import series_name_key, slice_key
from sliceseg.io.output_folders import refuse_existing_file
from sliceseg.io.series_plan import decode_series, plan_cohort
from sliceseg.io.tables import write_csv
from sliceseg.measure.spacing import SpacingFallback, with_fallback_spacing
from sliceseg.models.bundle import Bundle, as_bundle
from sliceseg.progress_bars import shows_progress
from sliceseg.user_paths import user_path


@dataclass(frozen=True)
class Suggestion:
    """One slice to label next.

    Attributes:
        rank: 1 = label this first.
        key: the slice's path below the DICOM folder, without suffix (a label's name).
        path: the DICOM file.
        series: the series' name as ``predict`` names it: its folder ``OUT/series/<name>/``
            and its row in ``series.csv`` (`sliceseg.io.identity.series_names`), e.g. ``p01``.
        confidence: the slice's confidence (its least confident ROI's; 1 = sure).
        weakest_roi: the name of the ROI the model is least sure of there.
        weakest_confidence: that ROI's confidence.
        unlike_training: its series is unlike the training data (such slices come first).
    """

    rank: int
    key: str
    path: Path
    series: str
    confidence: float
    weakest_roi: str
    weakest_confidence: float
    unlike_training: bool = False


def suggest_slices(
    model: Bundle | Path | str,
    dicom_dir: Path | str,
    *,
    n: int = 20,
    labels_dir: Path | str | None = None,
    spread: bool = True,
    device: str = "auto",
    batch_size: int = 8,
    tta: bool = False,
    fallback: SpacingFallback = SpacingFallback(pixels_only=True),
    log: Callable[[str], None] = print,
) -> list[Suggestion]:
    """Return the ``n`` unlabelled slices under a folder the model is least confident on.

    The series take turns (see `least_confident`): the least confident slice of every series
    comes before the second least confident of any, so the list covers the study instead of
    one poor series. Slices of a series unlike the training data (the model file's profile,
    `sliceseg.inference.familiarity`) come before all others. Labelling these, adding them to
    the training data and fine-tuning (``sliceseg train --init-from``) is the correction loop
    of ``docs/usage.md``.

    Args:
        model: a loaded bundle or a model file.
        dicom_dir: folder of DICOMs, searched recursively.
        n: how many slices to suggest.
        labels_dir: a label folder; slices it labels, paired as ``check`` pairs them (a label
            map of the slice, or its series' label volume where the volume's plane at the
            slice holds an ROI: `labelled_slices`), are left out of the list, not of the
            prediction: every series is predicted and judged whole, as ``predict`` does (a
            2.5D model's neighbours).
        spread: take the series in turns; False ranks every slice together.
        device: one of `sliceseg.system.DEVICE_CHOICES` ("auto", "cpu", "cuda", ...).
        batch_size: slices per forward pass.
        tta: test-time augmentation.
        fallback: the spacing of files without (0028,0030) PixelSpacing (``--fov`` /
            ``--matrix``): give ``predict``'s, so that the network sees such a slice at the
            same scale as there and the confidences agree. The default leaves those slices
            as they are: taken to be at the model's spacing already.
        log: where the line saying that nothing is left to suggest goes.

    Returns:
        Up to ``n`` suggestions, rank 1 first; none when every slice is labelled (nothing to
        suggest is not an error: one line to ``log`` says so, and nothing is predicted).

    Raises:
        PairingError: the folder holds no readable DICOM, or ``labels_dir`` is not a folder.
        ConfigError: ``n`` or ``batch_size`` is below 1, or ``fallback`` gives no spacing to a
            slice without one or a ``--matrix`` that is not its shape.
        BundleError: the model file is not a sliceseg model.

    Example:
        >>> for s in suggest_slices("model/sliceseg_best.pt", "new_scans/", n=20):
        ...     print(s.rank, s.key, f"{s.confidence:.3f}")
    """
    if n < 1:
        raise ConfigError(f"{option_name('--n', 'n')} must be at least 1, got {n!r}.")
    PredictOptions(batch_size=batch_size)  # checks --batch-size as predict does
    bundle = as_bundle(model)
    root = user_path(dicom_dir)
    scanned, names = _scan(root)
    images = [with_fallback_spacing(i, fallback) for i in scanned]
    wanted = _unlabelled(root, labels_dir, images, log)
    if not wanted:
        return []
    collector = ConfidenceCollector(always_present_rois(bundle))
    labels = predict_slices(  # every slice: each series whole, as predict sees it
        bundle,
        images,
        device=device,
        batch_size=batch_size,
        tta=tta,
        on_probabilities=collector,
        progress=shows_progress(),
    )
    scores, per_roi = slice_confidence(collector.per_roi), collector.per_roi
    flagged = _unfamiliar(bundle, images, labels, names)
    ranked = ([float(scores[i]) for i in wanted], [names[i] for i in wanted])
    chosen = least_confident(*ranked, n=n, spread=spread, flagged=[flagged[i] for i in wanted])
    return [
        Suggestion(
            rank=rank,
            key=slice_key(images[i], root),
            path=images[i].source,
            series=names[i],
            confidence=float(scores[i]),
            weakest_roi=bundle.roi_names[int(per_roi[i].argmin())],
            weakest_confidence=float(per_roi[i].min()),
            unlike_training=flagged[i],
        )
        for rank, i in enumerate((wanted[j] for j in chosen), 1)
    ]


def _unfamiliar(
    bundle: Bundle, images: list[Slice], labels: list[np.ndarray], series: list[str]
) -> list[bool]:
    """Per slice, whether its series is unlike the training data (all False without a profile)."""
    numbers = {name: k for k, name in enumerate(sorted(set(series), key=series_name_key), 1)}
    per_slice = [numbers[name] for name in series]
    verdicts = check_run(bundle, images, labels, [image.name for image in images], per_slice)
    warn_unchecked(bundle)
    if verdicts is None:
        return [False] * len(images)
    flagged = {v.series for v in verdicts if v.is_flagged}
    return [k in flagged for k in per_slice]


def _scan(root: Path) -> tuple[list[Slice], list[str]]:
    """Every slice under ``root`` and its series' name, from predict's plan (`plan_cohort`):
    a series none of whose files decode still takes its name, as in predict, so that the
    others keep theirs (``p01_2`` stays ``p01_2``)."""
    plan = plan_cohort(root)
    images: list[Slice] = []
    names: list[str] = []
    bar = tqdm(plan.series, desc="Reading DICOM", unit="series", disable=not shows_progress())
    for series in bar:
        slices, _skipped = decode_series([f.source for f in series.files])
        images += slices
        names += [series.name] * len(slices)
    if not images:
        raise PairingError(f"{root}: no readable DICOM files found; point to the .dcm slices.")
    return images, names


def _unlabelled(
    root: Path, labels_dir: Path | str | None, images: list[Slice], log: Callable[[str], None]
) -> list[int]:
    """The positions of the slices ``labels_dir`` does not label (all without one); none
    is nothing to suggest, which ``log`` is told in one line."""
    if labels_dir is None:
        return list(range(len(images)))
    labels = user_path(labels_dir)
    if not labels.is_dir():
        raise PairingError(f"{labels}: label folder not found; give the folder of label files.")
    found = labelled_slices(labels, root, images)
    for line in found.unfit:
        warnings.warn(f"{line} Its slices count as unlabelled.", UserWarning, stacklevel=3)
    wanted = [i for i, image in enumerate(images) if slice_key(image, root) not in found.keys]
    if not wanted:
        log(
            f"Nothing to suggest: every one of the {len(images)} slices in {root} has a label "
            f"in {labels_dir}."
        )
    return wanted


def _suggestions_frame(suggestions: list[Suggestion]) -> pd.DataFrame:
    """Return the suggestions as a table (rank, key, path, series, confidence, weakest ROI)."""
    columns = [field.name for field in fields(Suggestion)]  # an empty list's header too
    return pd.DataFrame([{**vars(s), "path": str(s.path)} for s in suggestions], columns=columns)


def suggestions_target(path: Path | str, *, overwrite: bool = False) -> Path:
    """``path`` as the CSV `write_suggestions` writes (check it before predicting): an
    existing file is replaced only with ``overwrite``, so that a mistyped ``--out`` cannot
    destroy a label map, ``labels.txt`` or an earlier list.

    Raises:
        ConfigError: ``path`` is a folder, or exists and ``overwrite`` is False.
    """
    target = file_target(path)
    refuse_existing_file(target, overwrite=overwrite)
    return target


def write_suggestions(
    path: Path | str, suggestions: list[Suggestion], *, overwrite: bool = False
) -> Path:
    """Write the suggestions as a CSV atomically; return ``path``.

    Raises:
        ConfigError: as `suggestions_target`.
    """
    target = suggestions_target(path, overwrite=overwrite)
    with atomic_path(target) as tmp:
        write_csv(_suggestions_frame(suggestions), tmp, index=False)
    return target


def suggestions_text(suggestions: list[Suggestion]) -> str:
    """Return the suggestions as aligned text, one line per slice."""
    width = max([6, *(len(s.series) for s in suggestions)])
    weakest = [f"{s.weakest_roi} ({s.weakest_confidence:.3f})" for s in suggestions]
    roi = max([len("weakest ROI"), *map(len, weakest)])  # sized to the names: none overflows
    lines = [f"{'rank':>4}  {'series':<{width}}  {'confidence':>10}  {'weakest ROI':<{roi}}  slice"]
    for s, cell in zip(suggestions, weakest, strict=True):
        note = "  (series unlike the training data)" if s.unlike_training else ""
        lines.append(
            f"{s.rank:>4}  {s.series:<{width}}  {s.confidence:>10.3f}  {cell:<{roi}}  {s.key}{note}"
        )
    return "\n".join(lines)
