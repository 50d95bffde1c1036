"""The order in which a person reviews slices: series unlike the training data first, then
the least confident, every series before any twice (`least_confident`)."""

from __future__ import annotations

from collections.abc import Sequence

from sliceseg.errors import ConfigError

__all__ = ["least_confident"]


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
    same order among themselves.

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
    order = sorted(range(len(confidence)), key=lambda i: (later[i], confidence[i], i))
    if spread:
        seen: dict[object, int] = {}
        turn = {}
        for i in order:  # the k-th least confident of its series is in turn k
            turn[i] = seen.get(series[i], 0)
            seen[series[i]] = turn[i] + 1
        order.sort(key=lambda i: (later[i], turn[i], confidence[i], i))
    return order[:n]
