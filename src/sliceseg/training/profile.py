"""The training data's profile for the model file: what `predict` compares each series with.

At the end of training the best network looks once more at every training slice (features,
normalised intensities) and its true label (ROI areas and positions), grouped by series (the
one definition of a series, `series_key`: SeriesInstanceUID, else the folder, so a flat folder
of several series is several; the intensity threshold leaves each out), and predicts the
validation slices (whose feature distances set the feature threshold, and whose predicted ROIs
say how often the model's own prediction is off on data like its training data); the result is
stored in the model file's ``familiarity`` section (see `sliceseg.measure.familiarity`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from sliceseg.engine.predictor import finish_label
from sliceseg.engine.probabilities import spaced_window_probabilities
from sliceseg.measure.familiarity import TrainingProfile, build_profile
from sliceseg.measure.feature_pooling import BODY_POOLING
from sliceseg.measure.slice_traits import slice_traits
from sliceseg.model_space.batches import SpacedTensors, centre_channel
from sliceseg.models.bundle import Bundle, ModelMetadata, load_bundle, save_bundle
from sliceseg.models.features import deepest_features
from sliceseg.models.folding import inference_network
from sliceseg.postprocess.cleanup import PostProcessing

__all__ = ["add_profile", "bundle_profile", "training_profile"]


def add_profile(
    path: Path,
    train: SpacedTensors,
    validation: SpacedTensors | None,
    *,
    divisor: int,
    modalities: tuple[str, ...] | None = None,
) -> TrainingProfile:
    """Rewrite the model file at ``path`` with the profile of its own network (see
    :func:`training_profile`) in its ``familiarity`` section; return the profile.
    ``modalities`` (the training slices' Modality values), when given, are stored too.

    Raises:
        BundleError: the file cannot be read.
        ValueError: the training set has no labels or fewer than two slices.
    """
    bundle = load_bundle(path)
    profile = bundle_profile(bundle, train, validation, divisor=divisor)
    data = {**bundle.metadata.to_dict(), "familiarity": profile.to_dict()}
    if modalities is not None:  # reprofile: an older file gains them too
        data["modalities"] = list(modalities)
    save_bundle(
        path, bundle.model, ModelMetadata.from_dict(data), training_state=bundle.training_state
    )
    return profile


def bundle_profile(
    bundle: Bundle, train: SpacedTensors, validation: SpacedTensors | None, *, divisor: int
) -> TrainingProfile:
    """The profile of ``bundle``'s network (:func:`training_profile`), its validation slices
    predicted with the file's own input size and post-processing.

    Raises:
        ValueError: the training set has no labels or fewer than two slices.
    """
    meta = bundle.metadata
    return training_profile(
        bundle.model,
        train,
        validation,
        num_labels=meta.num_labels,
        divisor=divisor,
        input_size=meta.input_size,
        post=PostProcessing.from_dict(meta.postprocessing or {}),
    )


def training_profile(
    model: nn.Module,
    train: SpacedTensors,
    validation: SpacedTensors | None,
    *,
    num_labels: int,
    divisor: int,
    input_size: int | None = None,
    post: PostProcessing | None = None,
) -> TrainingProfile:
    """Describe the training slices as the (trained) ``model`` sees them.

    Args:
        model: the network whose features the profile describes (left as it is).
        train: the labelled training slices at the target spacing.
        validation: slices not trained on (their distances set the threshold), or None.
        num_labels: K.
        divisor: what the network's input sides must divide by.
        input_size: the model's training crop side: given, the validation slices are
            predicted (with ``post``, the model's calibration and post-processing) to learn
            how often each ROI's prediction is off on them.
        post: the model file's calibration and post-processing (None: the plain argmax).

    Returns:
        The profile (``.to_dict()`` goes into ``ModelMetadata.familiarity``).

    Raises:
        ValueError: the training set has no labels or fewer than two slices.

    Example:
        >>> profile = training_profile(model, data.train, data.validation, num_labels=6,
        ...                            divisor=16)  # doctest: +SKIP
    """
    if train.labels is None:
        raise ValueError("the training slices carry no labels")
    network = inference_network(model)  # an eval-mode copy, as predict's check uses
    features = deepest_features(network, train.images, divisor=divisor, pooling=BODY_POOLING)
    reference = None
    checked = []
    if validation is not None and len(validation):
        reference = deepest_features(
            network, validation.images, divisor=divisor, pooling=BODY_POOLING
        )
        if input_size is not None:
            labels = _predicted(network, validation, input_size, divisor, post)
            spacings = [validation.target_spacing_mm] * len(validation)
            checked = slice_traits(None, [None] * len(labels), labels, spacings, num_labels)
    traits = slice_traits(
        features,
        [centre_channel(image).numpy() for image in train.images],
        [label.cpu().numpy() for label in train.labels],
        [train.target_spacing_mm] * len(train),
        num_labels,
    )
    return build_profile(
        traits,
        reference,
        series=train.series or None,
        checked=checked,
        feature_pooling=BODY_POOLING,
    )


def _predicted(
    network: nn.Module,
    data: SpacedTensors,
    input_size: int,
    divisor: int,
    post: PostProcessing | None,
) -> list[np.ndarray]:
    """The label maps ``network`` predicts for ``data`` at the target spacing, as predict's."""
    device = next(network.parameters(), torch.zeros(0)).device
    probabilities = spaced_window_probabilities(
        network, data.images, input_size=input_size, divisor=divisor, device=device
    )
    finish = post if post is not None else PostProcessing()
    return [finish_label(p, finish) for p in probabilities]
