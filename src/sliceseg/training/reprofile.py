"""Give a model file the training profile of today's code, without training it again.

A model trained by an older sliceseg has an older profile (or none): ``predict`` then skips the
checks that came later (the field-of-view check of profile version 3, the learnt intensity
threshold of version 2) and says so. Its training folder and the settings stored in the model
file are enough to rebuild the profile exactly as training writes it today: the same split
(validation fraction, seed, split kind), the model's own target spacing and intensity
normalisation, the network's own features; the training slices' Modality values are stored
too (older files lack them: no modality check). The weights are not touched, and the original file
is kept: the result is a new file.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from sliceseg.errors import ConfigError, LabelError
from sliceseg.io.files import file_target
from sliceseg.io.output_folders import refuse_existing_file
from sliceseg.measure.familiarity import TrainingProfile
from sliceseg.models import required_divisor
from sliceseg.models.bundle import load_bundle
from sliceseg.training.config import TrainConfig
from sliceseg.training.profile import add_profile
from sliceseg.training.run_data import load_training_data
from sliceseg.user_paths import user_path

__all__ = ["Reprofiled", "reprofile", "reprofiled_path"]

_FOLDER_SETTINGS = ("data_dir", "images_dir", "labels_dir", "out_dir", "init_from")
"""Where the original run read and wrote: replaced by the folder given now."""


@dataclass(frozen=True)
class Reprofiled:
    """What :func:`reprofile` wrote.

    Attributes:
        path: the new model file.
        profile: its training profile.
        validation_slices: slices of the held-out patients the feature threshold comes from.
    """

    path: Path
    profile: TrainingProfile
    validation_slices: int


def reprofiled_path(model: Path | str) -> Path:
    """The default name of the new file: ``<model stem>_reprofiled.pt`` beside the model."""
    model = Path(model)
    return model.with_name(f"{model.stem}_reprofiled{model.suffix}")


def reprofile(
    model: Path | str,
    data_dir: Path | str | None,
    out: Path | str | None = None,
    *,
    images_dir: Path | str | None = None,
    labels_dir: Path | str | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> Reprofiled:
    """Write a copy of ``model`` whose profile is rebuilt from its training data.

    Args:
        model: the model file (``sliceseg_best.pt``).
        data_dir: the training folder it was trained on (``dicoms/`` and ``labels/``).
        out: the new file; default :func:`reprofiled_path`.
        images_dir: DICOM folder, when not ``data_dir/dicoms``.
        labels_dir: label folder, when not ``data_dir/labels``.
        overwrite: replace ``out`` when it exists.
        progress: show a progress bar while reading the data.

    Returns:
        The new file, its profile and the number of validation slices.

    Raises:
        ConfigError: ``out`` is the model itself, a folder, or exists (without ``overwrite``), the
            model file does not say how it was trained, or its split leaves fewer than two
            training slices (no profile can be made).
        LabelError: the folder's ROIs are not the model's.
        BundleError: the model file cannot be read.

    Example:
        >>> reprofile("model/sliceseg_best.pt", "phantom/train").path
        PosixPath('model/sliceseg_best_reprofiled.pt')
    """
    source = user_path(model)
    target = user_path(out) if out is not None else reprofiled_path(source)
    _check_target(source, target, overwrite=overwrite)
    bundle = load_bundle(source)
    meta = bundle.metadata
    if not meta.settings:
        raise ConfigError(
            f"{source}: the file does not store the settings it was trained with, so its "
            "training split cannot be rebuilt; train it again to get today's profile."
        )
    kept = {k: v for k, v in meta.settings.items() if k not in _FOLDER_SETTINGS}
    folders = {"data_dir": data_dir, "images_dir": images_dir, "labels_dir": labels_dir}
    config = TrainConfig.from_dict({**kept, **_as_text(folders)})
    data = load_training_data(config, bundle, progress=progress)
    if tuple(data.roi_names) != tuple(meta.roi_names):
        raise LabelError(
            f"{config.data_dir}: its ROIs ({', '.join(data.roi_names)}) are not the model's "
            f"({', '.join(meta.roi_names)}); give the folder {source.name} was trained on."
        )
    if len(data.train) < 2:  # as training: it stored no profile either
        raise ConfigError(
            f"{config.data_dir}: its split leaves {len(data.train)} training slice; a training "
            f"data profile needs at least 2, so {source.name} cannot have one (predict runs "
            "without the check); train on more slices to get one."
        )
    temporary = target.with_name(f".{target.name}.partial")
    divisor = required_divisor(meta.arch, meta.hyperparameters)
    try:
        shutil.copyfile(source, temporary)
        profile = add_profile(
            temporary, data.train, data.validation, divisor=divisor, modalities=data.modalities
        )
        os.replace(temporary, target)  # whole or not at all
    finally:
        temporary.unlink(missing_ok=True)  # a failed profile leaves no half file
    return Reprofiled(path=target, profile=profile, validation_slices=len(data.validation))


def _check_target(source: Path, target: Path, *, overwrite: bool) -> None:
    if target.resolve() == source.resolve():
        raise ConfigError(
            f"{target}: the reprofiled model is written to a new file and the original is "
            "kept; give another --out."
        )
    # a folder is never replaced, --overwrite or not (`file_target` says so)
    refuse_existing_file(file_target(target), overwrite=overwrite)


def _as_text(folders: dict[str, Path | str | None]) -> dict[str, str | None]:
    return {k: None if v is None else str(v) for k, v in folders.items()}
