"""What a slice's deepest feature map is averaged over to give its one feature vector.

The "unlike the training data" check (`measure.familiarity`) compares a series' deepest
features with the training slices'. Averaged over the whole (padded) slice, they moved with how
much background a scanner framed around the body: a clean series framed more tightly than
every training series was flagged. Profiles from version 5 on average over the slice's body
(`slice_traits.body_mask` of the network input); older ones over the whole slice, and their
models keep being checked that way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "BODY_POOLING",
    "FEATURE_POOLINGS",
    "SLICE_POOLING",
    "checked_pooling",
    "feature_pooling_of",
]

SLICE_POOLING, BODY_POOLING = "slice", "body"
FEATURE_POOLINGS = (SLICE_POOLING, BODY_POOLING)


def checked_pooling(value: object) -> str:
    """``value`` as a pooling (ValueError: not one of :data:`FEATURE_POOLINGS`)."""
    if value not in FEATURE_POOLINGS:
        raise ValueError(f"unknown feature pooling {value!r}")
    return str(value)


def feature_pooling_of(familiarity: Mapping[str, Any] | None) -> str:
    """What a model file's profile (`ModelMetadata.familiarity`) averaged the features over:
    its ``feature_pooling``; :data:`SLICE_POOLING` before version 5, without a profile, or when
    the value is unreadable (the check is off then anyway).

    Example:
        >>> feature_pooling_of({"version": 4}), feature_pooling_of({"feature_pooling": "body"})
        ('slice', 'body')
    """
    value = (familiarity or {}).get("feature_pooling", SLICE_POOLING)
    return str(value) if value in FEATURE_POOLINGS else SLICE_POOLING
