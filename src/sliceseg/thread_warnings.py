"""Warnings silenced or recorded in the calling thread only, where ``catch_warnings`` is global.

`warnings.catch_warnings` swaps the process's filter list and restores, on exit, the list it
saw on entry (Python's docs: not thread-safe). A cohort run decodes series in the main thread
while writer threads measure and write others, so a ``catch_warnings`` in one thread silenced
the other's warnings, recorded them as its own, or dropped filters set meanwhile. `silenced`
and `recorded` act on their own thread: two filters stay at the front of the list whose
category matches only the warnings of a thread inside such a block (its class's subclass
check asks the thread), and one ``warnings.showwarning`` hands a recording thread's warnings
to its list and every other warning on to the handler it replaced. Use them for third-party
code that warns (pydicom, highdicom); sliceseg's own notes are better returned than warned.
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from collections.abc import Callable, Iterator
from typing import Any, TextIO

__all__ = ["recorded", "silenced"]

_local = threading.local()  # .scopes: this thread's open blocks, innermost last
_LOCK = threading.Lock()  # one thread at a time edits the filter list


_Scope = list[warnings.WarningMessage] | tuple[type[Warning], ...] | None


def _innermost() -> _Scope | bool:
    """This thread's innermost block: its record list, None (all silenced), the categories it
    silences, or False (none)."""
    scopes = getattr(_local, "scopes", None)
    return scopes[-1] if scopes else False


class _ThisThread(type):
    """A warning category that matches any warning, but only in a thread inside its block."""

    def __subclasscheck__(cls, subclass: type) -> bool:
        scope = _innermost()
        if cls is _Silenced:
            chosen = (Warning,) if scope is None else scope if isinstance(scope, tuple) else ()
        else:
            chosen = (Warning,) if isinstance(scope, list) else ()
        return any(type.__subclasscheck__(category, subclass) for category in chosen)


class _Silenced(Warning, metaclass=_ThisThread):
    """Matches the warnings of a thread inside `silenced`."""


class _Recorded(Warning, metaclass=_ThisThread):
    """Matches the warnings of a thread inside `recorded`."""


class _Handler:
    """``warnings.showwarning``: a recording thread's warnings to its list, others on."""

    def __init__(self, previous: Callable[..., Any]) -> None:
        self.previous = previous

    def __call__(
        self,
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        scope = _innermost()
        if isinstance(scope, list):
            scope.append(warnings.WarningMessage(message, category, filename, lineno, file, line))
        else:
            self.previous(message, category, filename, lineno, file, line)


def _install() -> None:
    """Put both filters first (they win over filters set outside the block, as the block's
    own ``simplefilter`` did; this also resets the "shown once" registries, as it did) and the
    handler in place; a ``catch_warnings`` that ended since may have removed them."""
    with _LOCK:
        warnings.filterwarnings("always", category=_Recorded)
        warnings.filterwarnings("ignore", category=_Silenced)
        if not isinstance(warnings.showwarning, _Handler):
            warnings.showwarning = _Handler(warnings.showwarning)


@contextlib.contextmanager
def _scope(scope: _Scope) -> Iterator[None]:
    _install()
    scopes = _local.__dict__.setdefault("scopes", [])
    scopes.append(scope)
    try:
        yield
    finally:
        scopes.pop()


@contextlib.contextmanager
def silenced(*categories: type[Warning]) -> Iterator[None]:
    """Drop the warnings this thread raises inside the block (of ``categories`` only, when
    given: others are shown, not recorded by an outer `recorded`); other threads' are untouched.

    Example:
        >>> with silenced():
        ...     warnings.warn("not shown")
    """
    with _scope(tuple(categories) if categories else None):
        yield


@contextlib.contextmanager
def recorded() -> Iterator[list[warnings.WarningMessage]]:
    """Record every warning this thread raises inside the block (each time, none shown), as
    ``catch_warnings(record=True)`` with ``simplefilter("always")``; other threads' warnings
    are neither recorded nor changed.

    Example:
        >>> with recorded() as caught:
        ...     warnings.warn("odd header")
        >>> [str(w.message) for w in caught]
        ['odd header']
    """
    caught: list[warnings.WarningMessage] = []
    with _scope(caught):
        yield caught
