"""How a training setting is named in messages, and the kind of value it takes (a whole number,
a number, true or false), made plain Python once.

Plain values matter beyond the check: the settings travel inside every model file, which
``torch.load(weights_only=True)`` opens only when it holds plain data; a notebook's
``np.float64`` learning rate made every model file of the run unopenable.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from sliceseg.errors import ConfigError, option_name
from sliceseg.user_paths import user_path

__all__ = ["FLAGS", "canonical_kinds", "named_setting"]

FLAGS: dict[str, str] = {
    "arch": "--arch",
    "images_dir": "--images",
    "labels_dir": "--labels",
    "model_filename": "--model-filename",
    "input_shape": "--input-shape",
    "num_labels": "--num-labels",
    "epochs": "--epochs",
    "batch_size": "--batch-size",
    "num_workers": "--num-workers",
    "learning_rate": "--learning-rate",
    "dropout_rate": "--dropout-rate",
    "print_checkpoint": "--print-checkpoint",
    "save_checkpoint": "--save-checkpoint",
    "validation_fraction": "--validation-fraction",
    "max_minutes": "--max-minutes",
    "unlabelled_slices": "--unlabelled-slices",
    "area_calibration": "--area-calibration",
    "normalisation": "--normalisation",
    "target_spacing_mm": "--target-spacing",
    "validation_split": "--validation-split",
    "view": "--view",
    "context_slices": "--context-slices",
    "ema_decay": "--ema-decay",
    "loss": "--loss",
    "seed": "--seed",
    "out_dir": "--out",
    "init_from": "--init-from",
}
"""The flag of `train` (and `preview`) that sets each `TrainConfig` setting it checks; messages
name such a setting by both (``--max-minutes (max_minutes)``), a setting without one by name."""

# The settings of each kind; None is allowed where it means "not set" (see TrainConfig).
_WHOLE = (
    "input_shape",
    "epochs",
    "batch_size",
    "num_workers",
    "print_checkpoint",
    "save_checkpoint",
    "seed",
    "num_labels",
    "context_slices",
)
_REAL = (
    "learning_rate",
    "dropout_rate",
    "validation_fraction",
    "max_minutes",
    "foreground_fraction",
    "ema_decay",
)
_TRUTH = ("augment", "overwrite", "area_calibration")
_PATHS = ("data_dir", "images_dir", "labels_dir", "out_dir", "init_from")  # text, `~` expanded


def named_setting(setting: str) -> str:
    """A setting as a message names it: ``--epochs (epochs)``, or its name alone (`FLAGS`).

    Example:
        >>> named_setting("target_spacing_mm"), named_setting("foreground_fraction")
        ('--target-spacing (target_spacing_mm)', 'foreground_fraction')
    """
    flag = FLAGS.get(setting)
    return option_name(flag, setting) if flag else setting


def canonical_kinds(values: Mapping[str, Any]) -> dict[str, Any]:
    """Return the numeric and true/false settings among ``values`` as plain ``int``, ``float``
    and ``bool`` (a numpy number becomes its Python value; None stays None), and the folder and
    file settings as text with ``~`` expanded (`sliceseg.user_paths.user_path`).

    Raises:
        ConfigError: a value of another kind (text such as ``"0.01"``, a fraction where a whole
            number belongs, a number where true or false belongs), naming the setting.

    Example:
        >>> canonical_kinds({"learning_rate": np.float64(0.01), "epochs": np.int64(5)})
        {'learning_rate': 0.01, 'epochs': 5}
    """
    plain: dict[str, Any] = {}
    for name, value in values.items():
        if value is None or name not in (*_WHOLE, *_REAL, *_TRUTH, *_PATHS):
            continue
        plain[name] = _expanded(value) if name in _PATHS else _canonical(name, value)
    return plain


def _expanded(value: Any) -> Any:
    """A path setting as text, ``~`` expanded; "" (not set) and other kinds stay as they are."""
    is_path = isinstance(value, str | os.PathLike) and os.fspath(value) != ""
    return str(user_path(value)) if is_path else value


def _canonical(name: str, value: Any) -> Any:
    is_truth = isinstance(value, bool | np.bool_)
    if name in _TRUTH and is_truth:
        return bool(value)
    if name in _WHOLE and isinstance(value, numbers.Integral) and not is_truth:
        return int(value)
    is_real = name in _REAL and isinstance(value, numbers.Real) and not is_truth
    if is_real and math.isfinite(value):
        return float(value)
    if is_real:  # an infinite budget never ends; an infinite learning rate gives NaN weights
        raise ConfigError(f"{named_setting(name)} must be a finite number, got {value!r}.")
    kind = {**dict.fromkeys(_WHOLE, "a whole number"), **dict.fromkeys(_REAL, "a number")}
    expected = kind.get(name, "true or false")
    hint = "; in a settings file, write it without quotes" if isinstance(value, str) else ""
    raise ConfigError(f"{named_setting(name)} must be {expected}, got {value!r}{hint}.")
