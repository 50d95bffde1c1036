"""What a model file holds, in words: for the report, ``sliceseg info MODEL`` and methods sections.

A researcher who publishes areas needs to say how they were made: the network, its training,
the spacing it works at, and what ``predict`` does after the network (the area calibration and
the per-ROI clean-up chosen on validation).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sliceseg.measure.familiarity import ALWAYS_PRESENT, MIN_SERIES, TrainingProfile
from sliceseg.models.bundle import Bundle, as_bundle
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
        "trained epochs": str(meta.epoch),
        "model grid": f"{meta.input_size}×{meta.input_size}",
        "target spacing": _spacing_text(meta.target_spacing_mm),
        "neighbouring slices": _context_text(meta.context_slices, meta.context_step_mm),
        "weights": _weights_text(float(meta.settings.get("ema_decay") or 0.0)),
        "post-processing (chosen on validation)": post.describe(meta.roi_names),
        "area calibration (chosen on validation)": post.calibration.describe(meta.roi_names),
        "ROIs": ", ".join(meta.roi_names),
        "training data profile": _profile_text(meta.familiarity, _best_name(bundle)),
        "intensity check": _intensity_text(meta.familiarity),
        "ROIs expected on every slice": _expected_text(meta.familiarity, meta.roi_names),
        "sliceseg version (model)": str(meta.sliceseg_version),
    }


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
    return f"{bundle.metadata.settings.get('model_filename') or 'sliceseg'}_best.pt"


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
    return text


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
