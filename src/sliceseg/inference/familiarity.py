"""Which predicted series are unlike the training data: the model file's profile against each.

A model file written by ``sliceseg train`` carries a profile of its training slices
(`sliceseg.measure.familiarity`). After prediction, each series is compared with it: the
network's deepest features and the normalised intensities of up to :data:`MAX_SLICES` of its
slices (evenly spread), and the areas and positions of its predicted ROIs on every slice. The
features come from the prediction's own forward passes where it hands them over
(`PredictionLook`, from `sliceseg.engine.predictor.Engine.labels`: the same numbers), else
from one extra look at part of the network. A model file without a profile (older files) gets
no check, said once by :data:`NO_PROFILE_NOTE`; one whose profile holds damaged numbers gets
the checks they do not feed, said once by `damaged_profile_note`.

The same verdict says when a series is not of the model's modality (`sliceseg.measure.modality`:
its Modality, CT against not CT, and a CT model's Hounsfield units), so tables, reports,
``suggest`` and the overall mean treat it as any series unlike the training data. A file without
the training slices' Modality (older files) compares none, said once by :data:`NO_MODALITY_NOTE`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from sliceseg.engine.predictor import model_preparation
from sliceseg.errors import BundleError
from sliceseg.inference.confidence import with_slice_column
from sliceseg.io.dicom import Slice
from sliceseg.io.neighbours import SPACING_TOLERANCE, neighbour_step_mm
from sliceseg.measure.areas import FAMILIARITY_COLUMN, AreaTable
from sliceseg.measure.familiarity import TrainingProfile
from sliceseg.measure.feature_pooling import feature_pooling_of
from sliceseg.measure.modality import is_ct_only, modality_reason
from sliceseg.measure.profile_damage import damage_in_words, damaged_checks, without_checks
from sliceseg.measure.series_verdict import Verdict, judge_series
from sliceseg.measure.slice_traits import SliceTraits, slice_traits
from sliceseg.measure.summary_rows import leave_out_flagged, overall_mean_clause
from sliceseg.model_space.batches import centre_channel
from sliceseg.model_space.intensity import CT_NAME
from sliceseg.models import required_divisor
from sliceseg.models.bundle import Bundle, ModelMetadata
from sliceseg.models.features import deepest_features
from sliceseg.models.folding import inference_network

__all__ = [
    "MAX_SLICES",
    "NO_MODALITY_NOTE",
    "NO_PROFILE_NOTE",
    "NO_TRAINING_MODALITY_NOTE",
    "FamiliarityWarning",
    "PredictionLook",
    "SeriesVerdict",
    "always_present_rois",
    "check_run",
    "check_series",
    "checked_slices",
    "damaged_profile_note",
    "modality_check",
    "model_profile",
    "neighbour_spacing_line",
    "series_traits",
    "unlike_line",
    "warn_no_profile",
    "warn_unchecked",
    "with_familiarity",
]

MAX_SLICES = 16
"""Slices per series whose features and intensities are measured (all slices' ROIs are)."""
NO_PROFILE_NOTE = (
    "no familiarity check in this model file (no training data profile: written before "
    "sliceseg stored one, or trained on a single slice, which gives none): series are not "
    "compared with the training data; for an older file, 'sliceseg reprofile MODEL TRAIN_DIR' "
    "adds it without retraining."
)

_NOT_COMPARED = (
    "a series of another modality is not flagged for its Modality (a CT-normalised model still "
    "flags values that are not Hounsfield units)"
)
NO_MODALITY_NOTE = (
    "no modality check in this model file (written before sliceseg stored its training "
    f"slices' (0008,0060) Modality): {_NOT_COMPARED}; 'sliceseg reprofile MODEL TRAIN_DIR' "
    "adds it without retraining."
)
NO_TRAINING_MODALITY_NOTE = (
    "no modality check in this model file: its training slices had no (0008,0060) Modality, "
    f"so {_NOT_COMPARED}."
)


class FamiliarityWarning(UserWarning):
    """The model file has no training profile, so no series is checked; a damaged one, so
    some checks are off; or no training Modality, so none is compared (said once a run)."""


def warn_no_profile() -> None:
    """Say once that the model file has no familiarity check."""
    warnings.warn(NO_PROFILE_NOTE, FamiliarityWarning, stacklevel=2)


def warn_unchecked(bundle: Bundle) -> None:
    """Say once what the model file cannot check: no profile (no check at all), else no
    training Modality (`NO_MODALITY_NOTE`; `NO_TRAINING_MODALITY_NOTE` when the training
    slices had none)."""
    modalities = bundle.metadata.modalities
    if bundle.metadata.familiarity is None:
        warn_no_profile()
    elif modalities is None:
        warnings.warn(NO_MODALITY_NOTE, FamiliarityWarning, stacklevel=2)
    elif not modalities:
        warnings.warn(NO_TRAINING_MODALITY_NOTE, FamiliarityWarning, stacklevel=2)


def modality_check(bundle: Bundle, images: Sequence[Slice]) -> str | None:
    """Why a series is not of the model's modality (`modality_reason`), None when it is or
    the model file cannot tell. A CT-normalised model expects Hounsfield units unless its
    training slices were not all CT (normalisation "ct" chosen for other data)."""
    meta = bundle.metadata
    trained = meta.modalities
    expects_hu = meta.normalisation == CT_NAME and (not trained or is_ct_only(trained))
    return modality_reason(images, trained, expects_hu=expects_hu)


@dataclass(frozen=True)
class SeriesVerdict:
    """The verdict on one series of a run.

    Attributes:
        series: the series' number in the area tables (1, 2, ...).
        first: the first slice's name; ``last`` the last's.
        slices: how many slices it has.
        verdict: flagged or not, and why.
    """

    series: int
    first: str
    last: str
    slices: int
    verdict: Verdict

    @property
    def is_flagged(self) -> bool:
        """True when the series is unlike the training data."""
        return self.verdict.is_flagged


def neighbour_spacing_line(name: str, slices: Sequence[Slice], meta: ModelMetadata) -> str | None:
    """A warning when a 2.5D model sees a series whose neighbours are not as in training: a
    slice step more than `SPACING_TOLERANCE` times off the training one, or a lone slice.

    Example:
        >>> neighbour_spacing_line("p01/t2", series_at_1mm, model_at_3mm.metadata)[:52]
        'series p01/t2: slices 1 mm apart, but this 2.5D model'
    """
    trained, k = meta.context_step_mm, meta.context_slices
    if k == 0 or trained is None:
        return None
    if len(slices) == 1:
        return (
            f"series {name}: one slice, so this 2.5D model (context_slices {k}) sees it in place "
            "of its neighbours; check its areas, or predict it with a model trained without "
            "--context-slices."
        )
    step = neighbour_step_mm(slices)
    if step is None or 1 / SPACING_TOLERANCE <= step / trained <= SPACING_TOLERANCE:
        return None
    return (
        f"series {name}: slices {step:.3g} mm apart, but this 2.5D model saw its neighbours "
        f"{trained:.3g} mm apart in training (context_slices {k}); its input is unlike "
        "training: check its areas, or predict series of the model's slice spacing."
    )


def unlike_line(name: str, verdict: Verdict) -> str:
    """One line naming a series (``name``: how to call it) unlike the training data and why.

    Example:
        >>> unlike_line("p01/t1", Verdict(True, ("ROI areas outside the trained range (disc)",)))
        'series p01/t1 is unlike the training data: ROI areas outside the trained range (disc); its areas are left out of the overall mean and std (unless every series is unlike the training data: then those are over all of them).'
    """  # noqa: E501
    return (
        f"series {name} is unlike the training data: {verdict.describe()}; "
        f"{overall_mean_clause('its areas')}."
    )


def model_profile(bundle: Bundle, *, say_damage: bool = False) -> TrainingProfile | None:
    """The model file's training profile, or None when it has none.

    The checks fed by numbers training never writes (NaN, infinite: a hand-edited or damaged
    file) are off (`without_checks`), not silently half-working; ``say_damage`` warns which
    (:func:`damaged_profile_note`): the callers that judge a run's series pass it, once a run.

    Raises:
        BundleError: the section is there but malformed.
    """
    data = bundle.metadata.familiarity
    if data is None:
        return None
    try:
        profile = TrainingProfile.from_dict(data)
    except (KeyError, TypeError, ValueError) as error:
        raise BundleError(
            f"{bundle.source or 'the model'}: its familiarity section is malformed "
            f"({type(error).__name__}: {error}); the file was edited; retrain or restore it."
        ) from error
    damaged = damaged_checks(profile)
    if not damaged:
        return profile
    if say_damage:
        warnings.warn(damaged_profile_note(bundle, damaged), FamiliarityWarning, stacklevel=2)
    return without_checks(profile, damaged)


def damaged_profile_note(bundle: Bundle, damaged: dict[str, list[str]]) -> str:
    """One line: the model file's profile is damaged, in which numbers, and which checks are
    off (`damaged_checks`).

    Example:
        >>> damaged_profile_note(bundle, {"field-of-view check": ["edge_slice_threshold"]})[-60:]
        "the other checks run; 'sliceseg reprofile MODEL TRAIN_DIR' rebuilds it."
    """
    fields, checks = damage_in_words(damaged)
    return (
        f"{bundle.source or 'the model file'}: its training data profile is damaged (NaN or "
        f"infinite numbers in {fields}): the {checks} {'is' if len(damaged) == 1 else 'are'} "
        "off for every series, the other checks run; 'sliceseg reprofile MODEL TRAIN_DIR' "
        "rebuilds it."
    )


def always_present_rois(bundle: Bundle) -> np.ndarray | None:
    """Per ROI, True where the model's training slices always showed it (its confidence is 0
    where it is missing; `inference.confidence`); None for a model file without a profile."""
    profile = model_profile(bundle)
    return None if profile is None else profile.always_present


@dataclass(frozen=True)
class PredictionLook:
    """What the prediction already computed of a series' slices (one entry per slice, or
    empty: computed here).

    Attributes:
        inputs: the network's ``(I, H, W)`` inputs at the model's spacing (prepared for it).
        features: the deepest features from the prediction's passes (`Engine.labels`), None
            where it could not take them.
    """

    inputs: Sequence[torch.Tensor] = ()
    features: Sequence[np.ndarray | None] = ()


def series_traits(
    bundle: Bundle,
    images: Sequence[Slice],
    labels: Sequence[np.ndarray],
    *,
    max_slices: int | None = MAX_SLICES,
    seen: PredictionLook = PredictionLook(),
) -> list[SliceTraits]:
    """Measure one series' slices for the check.

    Args:
        bundle: the model that predicted ``labels``.
        images: the series' slices, in order.
        labels: their predicted label maps, each on its slice's own grid.
        max_slices: measure features and intensities on at most this many slices, evenly
            spread (None: all).
        seen: what the prediction already computed (its network inputs and features).

    Returns:
        One `SliceTraits` per slice (features / intensity empty where not measured).
    """
    count = len(images)
    chosen = checked_slices(count, max_slices=max_slices)
    features: np.ndarray | None = None
    normalised: list[np.ndarray | None] = [None] * count
    if bundle.metadata.target_spacing_mm is not None and chosen:
        inputs = _network_inputs(bundle, images, chosen, seen)
        given = len(seen.features) == count
        measured = _features(bundle, inputs, [seen.features[i] if given else None for i in chosen])
        features = np.full((count, measured.shape[1]), np.nan)
        features[chosen] = measured
        for i, image in zip(chosen, inputs, strict=True):
            normalised[i] = centre_channel(image).numpy()
    spacings = [image.spacing_mm for image in images]
    return slice_traits(features, normalised, labels, spacings, bundle.metadata.num_labels)


def checked_slices(count: int, *, max_slices: int | None = MAX_SLICES) -> list[int]:
    """The slices of a series of ``count`` whose features and intensities the check measures
    (`series_traits`): all of up to ``max_slices`` (None: all), else that many evenly spread.
    The prediction pools the features of these alone (`Engine.labels`' ``feature_slices``).

    Example:
        >>> checked_slices(3), checked_slices(31)[:4]
        ([0, 1, 2], [0, 2, 4, 6])
    """
    if max_slices is None or count <= max_slices:
        return list(range(count))
    return sorted({round(i) for i in np.linspace(0, count - 1, max_slices)})


def _network_inputs(
    bundle: Bundle, images: Sequence[Slice], chosen: Sequence[int], seen: PredictionLook
) -> list[torch.Tensor]:
    """The chosen slices as the network sees them: oriented, at its spacing, normalised."""
    if len(seen.inputs) == len(images):
        return [seen.inputs[i] for i in chosen]
    preparation = model_preparation(bundle)
    assert preparation is not None  # series_traits checked: a model with a target spacing
    whole = preparation.context_slices > 0  # a 2.5D model's slices find neighbours in the series
    members = list(images) if whole else [images[i] for i in chosen]
    # Predict already warned about these slices: their orientation notes are dropped here,
    # not silenced by a warning filter (global: it would silence the other threads' warnings).
    spaced = preparation.prepare(members, notes=[])  # the network's own input (CT: HU numbers)
    return [spaced.images[i] for i in chosen] if whole else list(spaced.images)


def _features(
    bundle: Bundle, inputs: Sequence[torch.Tensor], taken: Sequence[np.ndarray | None]
) -> np.ndarray:
    """``(slices, channels)`` deepest features of ``inputs``: ``taken`` from the prediction
    where it has them, the others by a look at the network (a folded copy, as the
    prediction's: the same numbers)."""
    taken = list(taken)
    missing = [k for k, row in enumerate(taken) if row is None]
    if missing:
        meta = bundle.metadata
        network = inference_network(bundle.model)
        divisor = required_divisor(meta.arch, meta.hyperparameters)
        pooling = feature_pooling_of(meta.familiarity)  # as the profile's features were
        looked = deepest_features(
            network, [inputs[k] for k in missing], divisor=divisor, pooling=pooling
        )
        for k, row in zip(missing, looked, strict=True):
            taken[k] = row
    return np.stack([np.asarray(row, dtype=np.float64) for row in taken])


def check_series(
    bundle: Bundle,
    images: Sequence[Slice],
    labels: Sequence[np.ndarray],
    *,
    profile: TrainingProfile | None = None,
    seen: PredictionLook = PredictionLook(),
) -> Verdict | None:
    """Judge one series against the model's training profile (None: the model has none)
    and its training modality (`modality_check`: that reason first).

    ``seen``: what the prediction already computed (see `series_traits`).

    Example:
        >>> verdict = check_series(bundle, slices, labels)
        >>> verdict.is_flagged, verdict.describe()  # doctest: +SKIP
        (True, 'intensity quantiles far outside training (inverted contrast?)')
    """
    profile = profile if profile is not None else model_profile(bundle)
    if profile is None:
        return None
    traits = series_traits(bundle, images, labels, seen=seen)
    verdict = judge_series(profile, traits, bundle.roi_names)
    other = modality_check(bundle, images)
    return verdict if other is None else Verdict(True, (other, *verdict.reasons))


def check_run(
    bundle: Bundle,
    images: Sequence[Slice],
    labels: Sequence[np.ndarray],
    names: Sequence[str],
    series: Sequence[int],
) -> list[SeriesVerdict] | None:
    """Judge every series of a run (None: the model has no profile).

    Args:
        bundle: the model that predicted ``labels``.
        images: the slices, grouped by series.
        labels: their predicted label maps.
        names: the slices' names in the tables.
        series: each slice's series number (1, 2, ...), as ``AreaTable.series``.

    Returns:
        One verdict per series, in series order.
    """
    profile = model_profile(bundle, say_damage=True)  # once: a run judges its series here
    if profile is None:
        return None
    verdicts = []
    for number in dict.fromkeys(series):
        members = [i for i, k in enumerate(series) if k == number]
        verdict = check_series(
            bundle, [images[i] for i in members], [labels[i] for i in members], profile=profile
        )
        assert verdict is not None  # the profile is given
        first, last = names[members[0]], names[members[-1]]
        verdicts.append(SeriesVerdict(int(number), first, last, len(members), verdict))
    return verdicts


def with_familiarity(
    areas: AreaTable, verdicts: Sequence[SeriesVerdict], *, leave_out: bool = True
) -> AreaTable:
    """Return ``areas`` with the ``unlike_training`` column (1 on the slices of a flagged
    series, 0 on the others; empty on the summary rows) and the overall ``mean`` / ``std`` /
    ``n`` rows over the other series only (each series' own rows stay); their file cells say
    how many series and slices were left out. When every series is flagged the overall rows
    stay over all slices and say so. Unchanged when nothing is flagged, but for the column;
    ``leave_out=False`` only adds the column (a series' own table keeps its rows).

    Example:
        >>> table = with_familiarity(run.areas, verdicts)  # doctest: +SKIP
        >>> table.wide.loc["mean", "file"]  # doctest: +SKIP
        'slices with the ROI (area > 0); without 1 series unlike the training data (10 slices)'
    """
    flagged = {v.series for v in verdicts if v.is_flagged}
    series = list(areas.series) or [1] * len(areas.per_slice)
    marks = [int(k in flagged) for k in series]
    wide = with_slice_column(areas.wide, FAMILIARITY_COLUMN, marks)
    long = areas.long.copy()
    if len(long):
        # by the row's slice: the table may name its series (`AreaTable.named`)
        long[FAMILIARITY_COLUMN] = [int(series[k - 1] in flagged) for k in long["slice"]]
    if flagged and leave_out:
        leave_out_flagged(wide, areas.per_slice, [bool(m) for m in marks], len(flagged))
    return AreaTable(**{**vars(areas), "wide": wide, "long": long})
