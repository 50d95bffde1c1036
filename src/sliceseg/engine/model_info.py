"""What a model file holds, in words: for the report, ``sliceseg info MODEL`` and methods sections.

A researcher who publishes areas needs to say how they were made: the network, its training,
the spacing it works at, how ``predict`` normalises intensities for it, and what ``predict`` does
after the network (the area calibration and the per-ROI clean-up chosen on validation). It sits
in the engine, above both the model file (`models`) and the intensity normalisation
(`model_space`), so that it reads the normalisation as `engine.predictor` applies it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sliceseg.dataset.split import held_out_text
from sliceseg.engine.predictor import model_preparation
from sliceseg.errors import BundleError
from sliceseg.measure.familiarity import ALWAYS_PRESENT, MIN_SERIES, TrainingProfile
from sliceseg.measure.profile_damage import damage_in_words, damaged_checks
from sliceseg.model_space.intensity import PER_SLICE
from sliceseg.models.bundle import Bundle, as_bundle
from sliceseg.models.run_end import checked_run_end
from sliceseg.postprocess.cleanup import PostProcessing

__all__ = ["model_summary"]


def model_summary(model: Bundle | Path | str) -> dict[str, str]:
    """Return the model's description as ordered ``name → text`` rows.

    Args:
        model: a loaded model or the path of a model file.

    Raises:
        BundleError: the file is missing or not a sliceseg model.

    Example:
        >>> model_summary("model/sliceseg_best.pt")["area calibration (chosen on validation)"]
        'disc: area bias +0.8 → -0.1 % (background ×1.28; held-out half +0.9 → +0.2 %); ...'
    """
    bundle = as_bundle(model)
    meta = bundle.metadata
    post = PostProcessing.from_dict(meta.postprocessing or {})
    return {
        "model file": str(bundle.source) if bundle.source else "(in memory)",
        "architecture": meta.arch,
        "trained epochs": _epochs_text(bundle),
        "started from": _start_text(meta.started_from, meta.settings),
        "model grid": f"{meta.input_size}×{meta.input_size}",
        "target spacing": _spacing_text(meta.target_spacing_mm),
        "view": _view_text(meta.settings, meta.target_spacing_mm),
        "intensity normalisation": _normalisation_text(bundle),
        "neighbouring slices": _context_text(meta.context_slices, meta.context_step_mm),
        "loss": str(meta.settings.get("loss") or _UNRECORDED),
        "learning rate": _learning_rate_text(meta.settings.get("learning_rate")),
        "planned training": _length_text(meta.settings),
        "validation series (held out)": _UNRECORDED
        if meta.validation_series is None
        else held_out_text(meta.validation_series),
        "weights": _weights_text(float(meta.settings.get("ema_decay") or 0.0)),
        "post-processing (chosen on validation)": post.describe(meta.roi_names),
        "area calibration (chosen on validation)": post.calibration.describe(meta.roi_names),
        "ROIs": ", ".join(meta.roi_names),
        "training data profile": _profile_text(meta.familiarity, _best_name(bundle)),
        "training modality": _modality_text(meta.modalities, meta.familiarity),
        "intensity check": _intensity_text(meta.familiarity),
        "ROIs expected on every slice": _expected_text(meta.familiarity, meta.roi_names),
        "sliceseg version (model)": str(meta.sliceseg_version),
    }


_UNRECORDED = "not recorded (an older model file)"

_VIEWS = {
    "native": "the training slices' median spacing",
    "whole": "coarser where needed, so that a whole slice fits one crop",
    "wide": "coarser where needed, so that one crop shows most of a slice",
    "auto": "wide where a crop at the training slices' median spacing showed too little of a "
    "slice, else native",
}
"""What each ``view`` setting trained at (`sliceseg.training.config.TrainConfig.view`)."""


def _normalisation_text(bundle: Bundle) -> str:
    """The intensity normalisation predict applies to the model's slices, and why it is that."""
    try:
        preparation = model_preparation(bundle)  # None: an older square-grid file
    except BundleError as error:
        return f"not one this sliceseg knows, so predict refuses the file: {error}"
    normalisation = PER_SLICE if preparation is None else preparation.normalisation
    settings = bundle.metadata.settings
    setting = settings.get("normalisation")
    if settings.get("init_from"):
        why = "taken from the model it was fine-tuned from"
    elif setting is None and normalisation == PER_SLICE:  # written before CT normalisation
        why = (
            "a model file from before the normalisation setting: predict z-scores every slice, "
            "a CT's too"
        )
    elif setting == "auto":
        every = "every" if normalisation != PER_SLICE else "not every"
        why = f"normalisation auto: {every} training slice was CT"
    else:
        why = f"normalisation {setting}" if setting else ""
    return f"{normalisation.describe()}; {why}" if why else normalisation.describe()


def _start_text(start: dict[str, Any] | None, settings: dict[str, Any]) -> str:
    """The weights training started from: the ``--init-from`` file it records, or random."""
    if start is None:
        if settings.get("init_from"):  # fine-tuned before the file recorded its start
            return f"{settings['init_from']} (as given; {_UNRECORDED})"
        return "random weights (a new model)" if settings else _UNRECORDED
    digest = start.get("sha256")
    what = f"sha256 {str(digest)[:12]}…, " if digest else ""
    return (
        f"{start.get('file')} ({what}{_counted(int(start.get('epoch') or 0), 'epoch')}): "
        "fine-tuned from its weights with a fresh optimiser and learning-rate schedule"
    )


def _view_text(settings: dict[str, Any], spacing_mm: tuple[float, float] | None) -> str:
    """The ``view`` the model trained with, and whether it chose the target spacing."""
    view = settings.get("view")
    if spacing_mm is None:
        return "none: an older square-grid model file"
    if view is None:
        return _UNRECORDED
    if settings.get("target_spacing_mm") is not None:
        return f"{view} (no effect: target_spacing_mm was set)"
    if settings.get("init_from"):
        return f"{view} (no effect: fine-tuned at the spacing of the model it started from)"
    return f"{view}: {_VIEWS[view]}" if view in _VIEWS else str(view)


def _learning_rate_text(rate: object) -> str:
    if not isinstance(rate, (int, float)):
        return _UNRECORDED
    return f"{rate:g} at the start, decaying to 0 over the planned training"


def _counted(number: float, unit: str) -> str:
    """``1 epoch``, ``2 epochs``, ``0.5 minutes``: the unit singular for exactly one."""
    return f"{number:g} {unit}{'' if number == 1 else 's'}"


def _length_text(settings: dict[str, Any]) -> str:
    """The epochs and the time budget the run was given (``epochs``, ``max_minutes``)."""
    if "epochs" not in settings:
        return _UNRECORDED
    epochs, minutes = settings.get("epochs"), settings.get("max_minutes")
    budget = None if minutes is None else _counted(float(minutes), "minute")
    if epochs is not None and budget is not None:
        return f"{_counted(int(epochs), 'epoch')}, or fewer within a time budget of {budget}"
    if epochs is not None:
        return f"{_counted(int(epochs), 'epoch')}, no time budget"
    if budget is not None:
        return f"until a time budget of {budget} (no epoch count; the learning rate decays over it)"
    return "the default number of epochs (neither epochs nor max_minutes set), no time budget"


def _expected_text(familiarity: dict[str, Any] | None, roi_names: Sequence[str]) -> str:
    """Which ROIs score confidence 0 where a prediction misses them (`inference.confidence`)."""
    if familiarity is None:
        return "not known (no training data profile): a missing ROI is not marked"
    try:
        expected = TrainingProfile.from_dict(familiarity).always_present
    except (KeyError, TypeError, ValueError):
        return "not known (the training data profile is unreadable)"
    names = [name for name, on in zip(roi_names, expected, strict=False) if on]
    share = f"on ≥ {ALWAYS_PRESENT * 100:g} % of the training slices"
    if not names:
        return f"none ({share}): a slice without an ROI is not marked for it"
    return f"{', '.join(names)} ({share}): a slice missing one has confidence 0"


def _best_name(bundle: Bundle) -> str | None:
    """An epoch checkpoint's best model file (``<name>_best.pt``), which training gives the
    profile; None for any other model file."""
    if bundle.training_state is None:
        return None
    return f"{_run_name(bundle)}_best.pt"


def _run_name(bundle: Bundle) -> str:
    """The run's ``model_filename``, which names its files."""
    return str(bundle.metadata.settings.get("model_filename") or "sliceseg")


def _epochs_text(bundle: Bundle) -> str:
    """The epochs the weights trained; for a run's best model, of how many it chose them."""
    epoch, end = bundle.metadata.epoch, bundle.metadata.run_end
    source = bundle.source
    is_best = source is not None and source.name == f"{_run_name(bundle)}_best.pt"
    if end is None and is_best and source is not None:
        end = _ended_beside(source, epoch, _run_name(bundle))
    if end is None:
        if not is_best or bundle.training_state is not None:
            return str(epoch)
        return (
            f"{epoch}: the best so far at epoch {epoch} (the run had not ended when it was "
            "written, or its settings file is not beside it: how many epochs it trained is "
            "not recorded)"
        )
    dice = end.get("best_val_dice")
    chosen = (
        "the last (no validation Dice chose it)"
        if dice is None
        else f"the best by validation Dice ({float(dice):.3f})"
    )
    why = [f"it ended by {end['ended_by']}"] if end.get("ended_by") else []
    why += [f"from {end['read_from']} beside it"] if end.get("read_from") else []
    return (
        f"{epoch}: {chosen} of the {_counted(int(end['epochs_completed']), 'epoch')} the run "
        "trained" + (f" ({'; '.join(why)})" if why else "")
    )


def _ended_beside(best: Path, epoch: int, name: str) -> dict[str, Any] | None:
    """How the run ended, from the settings file beside a best model written before the run
    recorded it in the file; None when that file is missing, unreadable, of another best epoch
    or older than the model (a later run's best)."""
    path = best.parent / f"{name}_settings.json"
    try:
        written = json.loads(path.read_text(encoding="utf-8"))
        is_newer = path.stat().st_mtime >= best.stat().st_mtime
    except (OSError, ValueError):
        return None
    if not (is_newer and isinstance(written, dict) and written.get("best_epoch") == epoch):
        return None
    fields = ("epochs_completed", "ended_by", "best_val_dice")
    try:  # one edited by hand (a null count of epochs) is not a record of the run's end
        end = checked_run_end({k: written.get(k) for k in fields})
    except ValueError:
        return None
    return None if end is None else {**end, "read_from": path.name}


def _profile_text(familiarity: dict[str, Any] | None, best_name: str | None = None) -> str:
    if familiarity is None and best_name is not None:
        return (
            "none: series are not checked against the training data (an epoch checkpoint: "
            f"training stores the profile in {best_name} only; predict with that file, or "
            "'sliceseg reprofile MODEL TRAIN_DIR' adds it)"
        )
    if familiarity is None:
        return (
            "none: series are not checked against the training data (an older model file: "
            "'sliceseg reprofile MODEL TRAIN_DIR' adds it; or one trained on a single slice, "
            "which gives none)"
        )
    text = (
        f"{int(familiarity.get('num_slices', 0))} training slices: a series unlike them is "
        "flagged and left out of the overall mean"
    )
    if familiarity.get("edge_series_threshold") is None:  # not learnt, or before version 3
        text += (
            " (no field-of-view check: a profile from before version 3, or not measured; "
            "'sliceseg reprofile MODEL TRAIN_DIR' rebuilds it)"
        )
    if familiarity.get("feature_threshold") is None:  # two training slices, no validation
        text += (
            " (no feature check: 2 training slices and no validation slice leave no slice "
            "outside the fit to set its threshold; train on 3 or more)"
        )
    return text + _damage_text(familiarity)


def _damage_text(familiarity: dict[str, Any]) -> str:
    """What predict will say of a damaged profile (`damaged_checks`), or nothing."""
    try:
        damaged = damaged_checks(TrainingProfile.from_dict(familiarity))
    except (KeyError, TypeError, ValueError):
        return " (unreadable: predict refuses the file; retrain or restore it)"
    if not damaged:
        return ""
    fields, checks = damage_in_words(damaged)
    return (
        f" (damaged: NaN or infinite numbers in {fields}, so predict runs without the "
        f"{checks}; 'sliceseg reprofile MODEL TRAIN_DIR' rebuilds it)"
    )


def _modality_text(modalities: Sequence[str] | None, familiarity: dict[str, Any] | None) -> str:
    """The training slices' (0008,0060) Modality and whether predict checks a series' own."""
    if familiarity is None:
        return (
            ", ".join(modalities) + " (not checked: no training data profile)"
            if modalities
            else "not recorded, not checked (no training data profile)"
        )
    if modalities is None:
        return (
            "not recorded (an older model file): a series of another modality is not flagged; "
            "'sliceseg reprofile MODEL TRAIN_DIR' adds it"
        )
    if not modalities:
        return (
            "none: the training slices had no (0008,0060) Modality, so a series of another "
            "modality is not flagged"
        )
    return f"{', '.join(modalities)}: a series of another modality is flagged"


def _intensity_text(familiarity: dict[str, Any] | None) -> str:
    """Whether the intensity distance's threshold was learnt, and from how many series."""
    if familiarity is None:
        return "none (no training data profile)"
    if "intensity_series_threshold" not in familiarity:
        return (
            "not learnt (a profile from before version 2: only the intensity range is "
            "checked; 'sliceseg reprofile MODEL TRAIN_DIR' learns it)"
        )
    series = int(familiarity.get("num_series") or 0)  # 0: a profile from before version 4
    if familiarity["intensity_series_threshold"] is not None:
        each = f"each of the {series}" if series else "each"
        return f"learnt by leaving {each} training series out"
    if not series:
        return (
            f"not learnt (fewer than {MIN_SERIES} training series, counted by folder before "
            "profile version 4; 'sliceseg reprofile MODEL TRAIN_DIR' counts them by "
            "SeriesInstanceUID)"
        )
    return (
        f"not learnt (needs {MIN_SERIES} training series, had {series}): only the intensity "
        "range is checked"
    )


def _weights_text(ema_decay: float) -> str:
    if ema_decay <= 0:
        return "as trained at the epoch saved"
    return f"moving average over the training steps (decay {ema_decay:g} per step)"


def _context_text(context_slices: int, step_mm: float | None) -> str:
    if context_slices == 0:
        return "none: each slice alone (2D)"
    apart = "" if step_mm is None else f", {step_mm:.3g} mm apart in training"
    return (
        f"{context_slices} on either side of each slice in its series (2.5D{apart}: give "
        "predict whole series of that spacing)"
    )


def _spacing_text(spacing_mm: tuple[float, float] | None) -> str:
    if spacing_mm is None:
        return "none: slices squeezed onto the square model grid (an older model file)"
    return f"{spacing_mm[0]:.3g} × {spacing_mm[1]:.3g} mm (row × column)"
