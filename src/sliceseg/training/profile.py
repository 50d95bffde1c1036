"""The training data's profile for the model file: what `predict` compares each series with.

At the end of training the best network looks once more at every training slice (features,
normalised intensities) and its true label (ROI areas and positions), and at the validation
slices (whose feature distances set the threshold); the result is stored in the model file's
``familiarity`` section (see `sliceseg.measure.familiarity`).
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from sliceseg.data.batches import SpacedTensors
from sliceseg.measure.familiarity import TrainingProfile, build_profile, slice_traits
from sliceseg.models.bundle import ModelMetadata, load_bundle, save_bundle
from sliceseg.models.features import deepest_features
from sliceseg.models.inference import inference_network

__all__ = ["add_profile", "training_profile"]


def add_profile(
    path: Path, train: SpacedTensors, validation: SpacedTensors | None, *, divisor: int
) -> TrainingProfile:
    """Rewrite the model file at ``path`` with the profile of its own network (see
    :func:`training_profile`) in its ``familiarity`` section; return the profile.

    Raises:
        BundleError: the file cannot be read.
        ValueError: the training set has no labels or fewer than two slices.
    """
    bundle = load_bundle(path)
    profile = training_profile(
        bundle.model, train, validation, num_labels=bundle.metadata.num_labels, divisor=divisor
    )
    data = {**bundle.metadata.to_dict(), "familiarity": profile.to_dict()}
    save_bundle(
        path, bundle.model, ModelMetadata.from_dict(data), training_state=bundle.training_state
    )
    return profile


def training_profile(
    model: nn.Module,
    train: SpacedTensors,
    validation: SpacedTensors | None,
    *,
    num_labels: int,
    divisor: int,
) -> TrainingProfile:
    """Describe the training slices as the (trained) ``model`` sees them.

    Args:
        model: the network whose features the profile describes (left as it is).
        train: the labelled training slices at the target spacing.
        validation: slices not trained on (their distances set the threshold), or None.
        num_labels: K.
        divisor: what the network's input sides must divide by.

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
    features = deepest_features(network, train.images, divisor=divisor)
    reference = None
    if validation is not None and len(validation):
        reference = deepest_features(network, validation.images, divisor=divisor)
    traits = slice_traits(
        features,
        [image[0].numpy() for image in train.images],
        [label.cpu().numpy() for label in train.labels],
        [train.target_spacing_mm] * len(train),
        num_labels,
    )
    return build_profile(traits, reference)
