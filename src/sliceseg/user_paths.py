"""What a path the user gave means (`user_path`): ``~`` is their home folder, as in a shell.

A shell expands ``~`` only where it stands unquoted; Python, a settings file and a quoted
``--out "~/results"`` pass it on as it is, and a folder literally named ``~`` appeared in the
working folder. Every public function and every command-line option that takes a path reads
it through `user_path`, so all of them agree.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["user_path"]


def user_path(value: str | os.PathLike[str]) -> Path:
    """Return the path a user gave, ``~`` and ``~user`` expanded to the home folder.

    Example:
        >>> user_path("~/results") == Path.home() / "results"
        True
    """
    return Path(value).expanduser()
