"""The one error hierarchy: each message says what was found, what was expected, and the fix.

::

    SlicesegError                 anything the user can fix: one line from the CLI, exit 2
    ├── DicomReadError            a file is not DICOM, is truncated, or its pixels can't be decoded
    ├── LabelError                a label map is unreadable, damaged, or inconsistent with the rest
    ├── PairingError              images and labels do not pair, or a folder holds nothing usable
    ├── BundleError               a model file is not a sliceseg model, or is incompatible
    └── ConfigError               a setting has a bad value or name

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
