"""Segmentation networks and the registry that builds them by name (``unet``, ``pyramid``)."""

from sliceseg.models.registry import (
    MODELS,
    ModelSpec,
    build_model,
    default_hyperparameters,
    required_divisor,
)

__all__ = ["MODELS", "ModelSpec", "build_model", "default_hyperparameters", "required_divisor"]
