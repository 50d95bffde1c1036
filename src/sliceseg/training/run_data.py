"""The data of one run, as training and its preview both see it: the dataset read and checked,
split by patient, resampled to the target spacing and normalised."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sliceseg.dataset.check import CheckReport
from sliceseg.dataset.context import context_pool
from sliceseg.dataset.pairing import Sample
from sliceseg.dataset.samples import load_samples
from sliceseg.dataset.source import DataSource
from sliceseg.dataset.split import held_out_series, hold_out_levels, split_by_patient
from sliceseg.errors import ConfigError, LabelError
from sliceseg.io.neighbours import neighbour_step_mm
from sliceseg.io.series_plan import CohortPlan, plan_cohort, planned_series_names
from sliceseg.measure.tissue import modality_values
from sliceseg.model_space.batches import native_crop_share, samples_to_spacing
from sliceseg.model_space.intensity import (
    PER_SLICE,
    IntensityNormalisation,
    choose_normalisation,
    ct_normalisation,
)
from sliceseg.models.bundle import Bundle
from sliceseg.training.config import AUTO_MIN_SHARE, VIEW_SHARES, TrainConfig
from sliceseg.training.init_from import model_target_spacing
from sliceseg.training.session import TrainingData
from sliceseg.training.setting_kinds import named_setting

__all__ = ["check_warning_lines", "load_training_data", "run_normalisation"]

SHOWN_WARNINGS = 10  # training's log shows the first ones; `sliceseg check` lists them all


def load_training_data(
    config: TrainConfig, start: Bundle | None, *, progress: bool = False
) -> TrainingData:
    """Read and check the dataset, split it by patient, resample it to the target spacing.

    Args:
        config: the run's settings (data folders, split, spacing, view, normalisation, seed).
        start: the ``--init-from`` model (`sliceseg.training.init_from.starting_model`), whose
            target spacing and normalisation a fine-tuning run takes; None for a new model.
        progress: show a progress bar while reading.

    Returns:
        The training and validation slices at the target spacing (by default the training
        slices' median, or what ``config.view`` asks; ``start``'s when fine-tuning), normalised,
        with the lines that show the check's warnings (`check_warning_lines`).

    Raises:
        SlicesegError: the data is unfit for training (the check report's reasons).

    Example:
        >>> data = load_training_data(TrainConfig(data_dir="phantom/train"), None)
    """
    source = config.data_source()
    samples, report = load_samples(source, progress=progress)
    if report.scheme is None:  # load_samples refuses unfit data, which this would be
        raise LabelError(f"{config.data_dir}: no label scheme could be inferred; run check.")
    _check_flip_pairs(config, report.roi_names)
    train_samples, val_samples = split_by_patient(
        samples, validation_fraction=config.validation_fraction, seed=config.seed
    )
    if config.validation_split == "levels":
        train_samples, val_samples = hold_out_levels(train_samples, val_samples)
    spacing, view_note = _grid(config, train_samples, start)
    normalisation = run_normalisation(config, train_samples, start, dataset=samples)
    # one header pass of the DICOM folder: the series' names and a 2.5D run's neighbours
    plan = plan_cohort(source.images_dir, exclude=source.labels_dir)
    neighbours = _neighbour_pool(config, samples, plan, progress=progress)
    train = samples_to_spacing(train_samples, spacing, normalisation=normalisation, **neighbours)
    return TrainingData(
        train=train,
        validation=samples_to_spacing(
            val_samples, train.target_spacing_mm, normalisation=normalisation, **neighbours
        ),
        roi_names=tuple(report.roi_names),
        label_values=tuple(report.scheme.stored_values),
        normalisation=normalisation,
        context_step_mm=_step(samples, neighbours),
        view_note=view_note,
        check_lines=check_warning_lines(report, source),
        num_check_warnings=len(report.warnings),
        modalities=modality_values(s.image.modality for s in samples),
        validation_series=held_out_series(val_samples, _series_names(samples, plan)),
    )


def _series_names(samples: Sequence[Sample], plan: CohortPlan) -> dict[str, str]:
    """Every training slice's series named as `sliceseg predict` names it in the DICOM folder
    (``plan``: an unlabelled series beside it included, `planned_series_names`)."""
    return planned_series_names(plan, [s.image for s in samples], [s.key for s in samples])


def check_warning_lines(report: CheckReport, source: DataSource) -> tuple[str, ...]:
    """The check's warnings as training logs them before its first epoch: a heading, then
    the first `SHOWN_WARNINGS` lines as `sliceseg check` prints them and how many more.

    Example:
        >>> source = DataSource.from_dirs("phantom/train")
        >>> check_warning_lines(check_dataset(source), source)  # the phantom: none
        ()
    """
    found = report.warnings
    if not found:
        return ()
    shown = [report.problem_line(p) for p in found[:SHOWN_WARNINGS]]
    more = len(found) - len(shown)
    return (
        f"Data check: {len(found)} warning(s); training goes on with the data as it is:",
        *shown,
        *([f"  ({more} more; run `{source.check_command}` for all)"] if more else []),
    )


def _check_flip_pairs(config: TrainConfig, roi_names: Sequence[str]) -> None:
    """Refuse flip pairs naming an ROI the data does not have: a flip would turn its partner
    into that label, which the network has no output for."""
    pairs = config.augment_params.flip_pairs if config.augment else None
    beyond = sorted({roi for pair in pairs or () for roi in pair if roi > len(roi_names)})
    if beyond:
        named = ", ".join(f"{k} {name}" for k, name in enumerate(roi_names, 1))
        raise ConfigError(
            f"augment_params.flip_pairs names ROI {', '.join(map(str, beyond))}, but the data "
            f"has {len(roi_names)} ROIs ({named}); pair only these numbers, e.g. the "
            "right/left ones."
        )


def _grid(
    config: TrainConfig, samples: Sequence[Sample], start: Bundle | None
) -> tuple[tuple[float, float] | None, str]:
    """The run's target spacing (None: each slice's own, older square grids) and the line
    that says how it was chosen, when that needs saying: what view auto coarsened to, or a
    ``view`` that a set spacing overrides."""
    spacing, source = config.target_spacing_pair(), named_setting("target_spacing_mm")
    if spacing is None and start is not None:  # fine-tuning (or resuming): the model's scale
        spacing, source = model_target_spacing(start), ""
    if config.init_from and start is not None and spacing == model_target_spacing(start):
        source = "the --init-from model's grid"  # plan_new_run passes it on
    if spacing is None:
        spacing = config.view_spacing(samples)
        return spacing, _auto_view_note(config, samples, spacing)
    if config.view in VIEW_SHARES and source:  # wide / whole choose a spacing: set here
        return spacing, (
            f"View {config.view} has no effect: the target spacing is set "
            f"({spacing[0]:.3g} × {spacing[1]:.3g} mm, {source}); leave out "
            f"{named_setting('target_spacing_mm')} (or, fine-tuning, train a new model) to let "
            "the view choose it."
        )
    return spacing, ""


def _auto_view_note(
    config: TrainConfig, samples: Sequence[Sample], spacing: tuple[float, float] | None
) -> str:
    """What ``view = "auto"`` chose, when it coarsened the grid ("" otherwise)."""
    if config.view != "auto" or spacing is None:  # auto kept the median spacing, or not auto
        return ""
    share = native_crop_share(samples, config.input_shape)
    if share is None:
        return ""
    row_mm, col_mm = spacing
    shown, floor, wide = 100 * share, 100 * AUTO_MIN_SHARE, 100 * VIEW_SHARES["wide"]
    return (
        f"View auto: a {config.input_shape}-pixel crop at the training slices' median spacing "
        f"would show {shown:.0f} % of a slice (under {floor:.0f} %), so training is at "
        f"{row_mm:.3g} × {col_mm:.3g} mm, where it shows {wide:.0f} % (view wide; --view "
        "native keeps the median spacing)."
    )


def _neighbour_pool(
    config: TrainConfig, samples: Sequence[Sample], plan: CohortPlan, *, progress: bool
) -> dict[str, Any]:
    """What a 2.5D run's slices take their neighbours from: every labelled slice (on either
    side of the split) and the unlabelled ones beside them (found in ``plan``, the DICOM
    folder's, which also names the series)."""
    k = config.context_slices
    if k == 0:
        return {}
    pool = context_pool(samples, plan, k, progress=progress)
    return {"context_slices": k, "context_pool": [*pool, *(s.image for s in samples)]}


def _step(samples: Sequence[Sample], neighbours: dict[str, Any]) -> float | None:
    """A 2.5D run's neighbour distance, recorded so that predict can tell another spacing."""
    if not neighbours:
        return None
    return neighbour_step_mm([s.image for s in samples], pool=neighbours["context_pool"])


def run_normalisation(
    config: TrainConfig,
    train: Sequence[Sample],
    start: Bundle | None,
    *,
    dataset: Sequence[Sample] | None = None,
) -> IntensityNormalisation:
    """The run's intensity normalisation: the ``--init-from`` model's (``start``) own; else by
    the setting and the Modality of every slice of ``dataset`` (both sides of the split;
    default ``train``), CT's numbers from the training slices' foreground.

    Raises:
        ConfigError: ``start`` given and a ``normalisation`` other than "auto" that is not its.
    """
    setting = named_setting("normalisation")
    if start is not None:
        meta = start.metadata
        # "auto": the model's, below
        asked = choose_normalisation(config.normalisation, [], name=setting)
        if config.normalisation != "auto" and asked != meta.normalisation:
            raise ConfigError(
                f"--init-from {config.init_from or 'the model'}: the model's intensity "
                f"normalisation is {meta.normalisation!r} but this run's is {asked!r} "
                f"({setting} {config.normalisation}); leave it at auto to fine-tune with the "
                "model's, or train a new model without --init-from."
            )
        return IntensityNormalisation.from_metadata(
            meta.normalisation, meta.intensity, source=config.init_from or "the model"
        )
    every = train if dataset is None else dataset  # an MR patient held out: not a CT set
    name = choose_normalisation(
        config.normalisation, [s.image.modality for s in every], name=setting
    )
    if name == PER_SLICE.name:
        return PER_SLICE
    return ct_normalisation([s.image.pixels for s in train], [s.label for s in train])
