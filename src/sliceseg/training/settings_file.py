"""Settings files: a TOML file's training settings read, checked, and applied over the defaults."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from sliceseg.errors import ConfigError
from sliceseg.training.config import TrainConfig, normalise_settings, refuse_unknown_settings
from sliceseg.user_paths import user_path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


def read_settings(path: Path | str) -> dict[str, Any]:
    """Return the settings a TOML file gives (top level or a ``[train]`` table), unvalidated.

    Raises:
        ConfigError: the file is missing or not valid TOML.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "train.toml"
        >>> _ = path.write_text('[train]\\nepochs = 50\\nroi_names = "a, b"\\n')
        >>> read_settings(path)
        {'epochs': 50, 'roi_names': ('a', 'b')}
    """
    source = user_path(path)
    try:
        parsed = tomllib.loads(source.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise ConfigError(f"{source}: settings file not found.") from error
    except IsADirectoryError as error:
        raise ConfigError(
            f"{source}: is a folder; give the TOML settings file in it (e.g. train.toml)."
        ) from error
    except UnicodeDecodeError as error:
        raise ConfigError(f"{source}: not a UTF-8 text file; give a TOML settings file.") from error
    except OSError as error:
        raise ConfigError(f"{source}: cannot be read ({error.strerror}).") from error
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{source}: not valid TOML ({error}); fix the line it names.") from error
    settings = normalise_settings(parsed.get("train", parsed))
    refuse_unknown_settings(settings, source=source)
    return settings


def load_config(path: Path | str | None = None, **overrides: Any) -> TrainConfig:
    """Read settings from a TOML file (top level or a ``[train]`` table) and apply overrides.

    Args:
        path: TOML file, or None for the defaults.
        **overrides: settings given on the command line or in a notebook; None means "not given".

    Returns:
        The frozen configuration.

    Raises:
        ConfigError: the file is missing or not valid TOML, or a setting is unknown or invalid.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "train.toml"
        >>> _ = path.write_text('[train]\\nepochs = 5\\nbatch_size = 8\\n')
        >>> load_config(path, epochs=50, seed=None).epochs  # seed None: not given
        50
    """
    data = read_settings(path) if path is not None else {}
    data.update(normalise_settings({k: v for k, v in overrides.items() if v is not None}))
    return TrainConfig.from_dict(data)
