"""How a message names a list compactly (`few_of`): the first few, then how many more.

One wording for every message that names series, files or planes, so that a long list reads the
same wherever it is cut ("a, b, c and 2 more", never "a, b, c, …" in one place and
"a, b, c (+2 more files)" in another).
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["few_of"]


def few_of(names: Sequence[str], *, shown: int = 3) -> str:
    """Return the first ``shown`` names joined by ", ", then "and K more" for the rest.

    Args:
        names: what to name, in the order to name it.
        shown: how many to name (at least 1); all are named when there are no more.

    Returns:
        The names, e.g. ``"a, b, c and 2 more"``; "" when ``names`` is empty.

    Example:
        >>> few_of(["a", "b", "c", "d", "e"])
        'a, b, c and 2 more'
    """
    listed = ", ".join(names[:shown])
    more = len(names) - len(names[:shown])
    return f"{listed} and {more} more" if more else listed
