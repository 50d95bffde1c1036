"""Segmentation networks and the registry that builds them by name (``unet``, ``pyramid``)."""

from sliceseg.models.registry import (
    MODELS,
    Hyperparameters,
    ModelSpec,
    PyramidHyperparameters,
    UNetHyperparameters,
    build_model,
    context_channels,
    default_hyperparameters,
    parse_hyperparameters,
    required_divisor,
)

__all__ = [
    "MODELS",
    "Hyperparameters",
    "ModelSpec",
    "PyramidHyperparameters",
    "UNetHyperparameters",
    "build_model",
    "context_channels",
    "default_hyperparameters",
    "parse_hyperparameters",
    "required_divisor",
]
