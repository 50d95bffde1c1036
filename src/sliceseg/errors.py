"""The one error hierarchy: each message says what was found, what was expected, and the fix.

::

    SlicesegError                 anything the user can fix: one line from the CLI, exit 2
    ├── DicomReadError            a file is not DICOM, is truncated, or its pixels can't be decoded
    ├── LabelError                a label map is unreadable, damaged, or inconsistent with the rest
    ├── PairingError              images and labels do not pair, or a folder holds nothing usable
    ├── BundleError               a model file is not a sliceseg model, or is incompatible
    └── ConfigError               a setting has a bad value or name
        ├── LauncherError         a part of torchrun's or a SLURM array's variables, or not numbers
        └── UnwritableError       the file system refused to write an output (a full disk)

Third-party exceptions are caught at our boundary and re-raised ``from`` the original.
"""

from __future__ import annotations


class SlicesegError(Exception):
    """Base class: an error the user can fix, reported on one line without a traceback."""


class DicomReadError(SlicesegError):
    """A DICOM file cannot be read or decoded."""


class LabelError(SlicesegError):
    """A label map is unreadable, damaged, or inconsistent with the dataset."""


class PairingError(SlicesegError):
    """Images and labels do not pair, or a folder holds nothing usable."""


class BundleError(SlicesegError):
    """A model file is not a sliceseg model, or cannot be used as asked."""


class ConfigError(SlicesegError):
    """A setting has a bad value or an unknown name."""


class LauncherError(ConfigError):
    """A launcher's environment variables are set in part, or one is not a whole number.

    Raised by `sliceseg.launchers`; each command words the remedy for itself from ``found``.

    Attributes:
        found: what was found, e.g. ``"RANK is set but WORLD_SIZE is not"``.
        names: every variable the launcher sets together, in order.
        given: those of ``names`` that are set.
        missing: those of ``names`` that are not (empty when one is not a number).
    """

    def __init__(
        self,
        found: str,
        remedy: str,
        *,
        names: tuple[str, ...],
        given: tuple[str, ...],
        missing: tuple[str, ...],
    ) -> None:
        super().__init__(f"{found}: {remedy}")
        self.found, self.names, self.given, self.missing = found, names, given, missing


def option_name(flag: str, name: str) -> str:
    """An option as a message names it: the command line's flag and the Python argument, so
    that a user of either finds the one they typed.

    Example:
        >>> option_name("--max-minutes", "max_minutes")
        '--max-minutes (max_minutes)'
    """
    return f"{flag} ({name})"


class UnwritableError(ConfigError):
    """The file system refused to write an output: a full disk, a quota, permissions.

    Raised by `sliceseg.io.files.atomic_path`; a command whose rerun is not simply "the same
    command again" (``train``: ``--resume``) words its own remedy from the attributes.

    Attributes:
        path: the output that could not be written.
        reason: the operating system's words, e.g. ``"No space left on device"``.
    """

    def __init__(self, message: str, *, path: str, reason: str) -> None:
        super().__init__(message)
        self.path = path
        self.reason = reason
