"""The order in which a person reviews slices and series: those unlike the training data first,
then the least confident, ties in the tables' order (`review_key`); slices with every series
before any twice (`least_confident`)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from sliceseg.errors import ConfigError

__all__ = ["least_confident", "review_key"]


def review_key(*, is_unlike: bool, confidence: float, position: int) -> tuple[bool, float, int]:
    """Sort key of a slice or series in the review order: unlike the training data first, then
    the least confident (an unscored one, NaN, last), then ``position``, its place in the tables
    (csa_long.csv's order: series by name, slices in series order). The one rule of `suggest`
    and the study report (`least_confident`) and of the cohort report's series.

    Example:
        >>> review_key(is_unlike=False, confidence=0.4, position=2)
        (True, 0.4, 2)
    """
    return (not is_unlike, math.inf if math.isnan(confidence) else confidence, position)


def least_confident(
    confidence: Sequence[float],
    series: Sequence[object],
    *,
    n: int,
    spread: bool = True,
    flagged: Sequence[bool] | None = None,
) -> list[int]:
    """Return the positions of the ``n`` least confident slices, least confident first.

    With ``spread`` the series take turns: first the least confident slice of every series
    (those in confidence order), then the second of every series, and so on; so one poor
    series cannot fill the list, and every series is looked at before any is looked at twice.
    Slices of series unlike the training data (``flagged``) come before all others, in the
    same order among themselves; ties go by position (`review_key`).

    Args:
        confidence: one score per slice.
        series: one series id per slice (any hashable).
        n: at most this many positions.
        spread: take the series in turns; False ranks all slices together.
        flagged: per slice, True when its series is unlike the training data.

    Raises:
        ConfigError: ``n`` is below 1 or the lengths differ.

    Example:
        >>> least_confident([0.9, 0.2, 0.3, 0.8], ["a", "a", "a", "b"], n=3)
        [1, 3, 2]
    """
    if n < 1:
        raise ConfigError(f"n must be at least 1, got {n}.")
    if len(confidence) != len(series):
        raise ConfigError(f"{len(confidence)} scores for {len(series)} series ids; give one each.")
    later = [not is_flagged for is_flagged in flagged] if flagged else [False] * len(confidence)
    if len(later) != len(confidence):
        raise ConfigError(
            f"{len(flagged or ())} flags for {len(confidence)} scores; give one each."
        )
    keys = [
        review_key(is_unlike=not later[i], confidence=confidence[i], position=i)
        for i in range(len(confidence))
    ]
    order = sorted(range(len(confidence)), key=keys.__getitem__)
    if spread:
        seen: dict[object, int] = {}
        turn = {}
        for i in order:  # the k-th least confident of its series is in turn k
            turn[i] = seen.get(series[i], 0)
            seen[series[i]] = turn[i] + 1
        order.sort(key=lambda i: (later[i], turn[i], keys[i]))
    return order[:n]
