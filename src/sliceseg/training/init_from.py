"""Fine-tuning: start a run from an existing model's weights, once its scheme and grid match.

``sliceseg train DATA --init-from MODEL`` is the last step of the correction loop (predict →
review the least confident slices → correct their labels → add them to the data → fine-tune →
predict again): the new run takes the model's network (architecture, hyper-parameters, grid)
and weights instead of random ones, and trains them further on the enlarged data with a fresh
optimiser and schedule. The run takes the model's network and settings wherever the user
gives none, from the CLI and from Python alike (`plan_new_run`). The data must have the
model's label scheme (ROI names and stored label values) and the run the model's network and
geometry; anything else is refused in one line before training starts. Its dropout rate too,
unless the run sets one its weights fit (`model_settings`, `with_model_dropout` for a resumed
run, `check_dropout_fits`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sliceseg.errors import ConfigError
from sliceseg.io.files import file_sha256
from sliceseg.models.bundle import Bundle, ModelMetadata, load_bundle, recorded_hyperparameters
from sliceseg.training.config import TrainConfig
from sliceseg.training.setting_kinds import named_setting

MATCHED: tuple[tuple[str, str], ...] = (
    ("roi_names", "label scheme (ROI names)"),
    ("label_values", "label scheme (stored label values)"),
    ("num_classes", "number of classes"),
    ("arch", "architecture"),
    ("hyperparameters", "network hyper-parameters"),
    ("input_size", "model grid (input_shape)"),
    ("orientation", "orientation convention"),
    ("normalisation", "intensity normalisation"),
    ("target_spacing_mm", "target spacing"),
    ("context_slices", "neighbouring slices (context_slices)"),
)
"""Metadata entries a fine-tuned run must share with its starting model, with their names."""

NETWORK_SETTINGS: tuple[tuple[str, str], ...] = (
    ("arch", "arch"),
    ("input_shape", "input_size"),
    ("context_slices", "context_slices"),
    ("target_spacing_mm", "target_spacing_mm"),
    ("hyperparameters", "hyperparameters"),
)
"""The settings of `model_settings` a run may give only at its model file's value (dropout
aside: `check_dropout_fits`), each with the `MATCHED` entry it sets."""


def model_settings(start: Bundle) -> dict[str, Any]:
    """Return the settings that define a model's network, to start a run from it.

    The training settings recorded in the model file where present (``arch``,
    ``input_shape``, ``hyperparameters``), else what its metadata says, its neighbouring
    slices, its target spacing and the dropout rate its network was built with
    (`model_dropout`). The rate travels as ``dropout_rate`` only, never inside
    ``hyperparameters``, where it would win over a ``dropout_rate`` the run is given.

    Args:
        start: the ``init_from`` model, opened by :func:`plan_new_run`.

    Example:
        >>> model_settings(starting_model("model/sliceseg_best.pt"))["input_shape"]
        160
    """
    meta, recorded = start.metadata, start.metadata.settings
    hyper = recorded.get("hyperparameters", meta.hyperparameters)
    settings: dict[str, Any] = {
        "arch": meta.arch,
        "input_shape": meta.input_size,
        "hyperparameters": {k: v for k, v in hyper.items() if k != "dropout_rate"},
        "context_slices": meta.context_slices,
        "dropout_rate": model_dropout(start),
    }
    if meta.target_spacing_mm is not None:  # the model's scale, not the new data's median
        settings["target_spacing_mm"] = list(meta.target_spacing_mm)
    return settings


def plan_new_run(
    config: TrainConfig | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    start: Bundle | None = None,
) -> tuple[TrainConfig, Bundle | None]:
    """Return a new run's settings and the ``init_from`` model it starts from (None without).

    A run from a model file takes the file's network and settings (`model_settings`: arch,
    input_shape, hyperparameters, context_slices, target spacing, dropout rate) except those
    the user gives: a setting in ``overrides``, or one given to ``config``
    (`TrainConfig.given_names`). The CLI passes what was typed (and its ``--config`` file) as
    ``overrides``; a notebook's ``TrainConfig(init_from=...)`` needs no ``arch`` or
    ``input_shape``. A network setting given at another value than the file's is refused
    (`check_given_network`).

    Args:
        config: the settings of the run (None: the defaults).
        overrides: settings given explicitly, applied over ``config``.
        start: the ``init_from`` model when the caller has opened it already; None opens it
            here, once.

    Raises:
        ConfigError: a setting is invalid, or a network setting given differs from the file's.
        BundleError: the ``init_from`` file is not a sliceseg model.

    Example:
        >>> config, start = plan_new_run(TrainConfig(init_from="model/sliceseg_best.pt"))
        >>> config.arch == start.metadata.arch
        True
    """
    base, given = config if config is not None else TrainConfig(), dict(overrides or {})
    init_from = given.get("init_from", base.init_from)
    if init_from is None:
        return base.with_settings(given) if given else base, None
    start = start if start is not None else load_bundle(init_from)  # the one load
    named = base.given_names() | given.keys()
    taken = {k: v for k, v in model_settings(start).items() if k not in named}
    planned = base.with_settings({**taken, **given})
    check_given_network(planned, start, named, source=str(init_from))
    return planned, start


def check_given_network(
    config: TrainConfig, start: Bundle, given: Collection[str], *, source: str
) -> None:
    """Refuse a network setting the user gave at another value than the model file's.

    Entries the file does not record (older files) and settings given as None are not
    compared; the dropout rate is `check_dropout_fits`'.

    Args:
        config: the run's settings, planned from the file's and the given ones.
        start: the ``init_from`` model.
        given: the names of the settings the user gave.
        source: the model's file, for the message.

    Raises:
        ConfigError: the first of `NETWORK_SETTINGS` given and different, in one line naming
            it, its flag and both values.
    """
    hyper = config.model_hyperparameters()
    mine = {
        "arch": config.arch,
        "input_size": config.input_shape,
        "context_slices": config.context_slices,
        "target_spacing_mm": config.target_spacing_pair(),
        "hyperparameters": {k: v for k, v in hyper.items() if k != "dropout_rate"},
    }
    theirs, what = _compared(start.metadata), dict(MATCHED)
    for name, key in NETWORK_SETTINGS:
        ours, its = _plain(mine[key]), _plain(theirs.get(key))
        if name not in given or ours is None or its is None or ours == its:
            continue
        raise ConfigError(
            f"--init-from {source}: the model's {what[key]} is {its!r} but this run's is "
            f"{ours!r}; leave out {named_setting(name)} to take the model's, or train a new "
            "model without --init-from."
        )


def starting_model(path: Path | str | None) -> Bundle | None:
    """Open the ``--init-from`` model once (None without one); the run passes it along.

    Raises:
        BundleError: the file is not a sliceseg model.
    """
    return None if path is None else load_bundle(path)


def started_from(start: Bundle | None, *, resumed: bool) -> dict[str, Any] | None:
    """Return what a run's model file records of the weights it started from
    (`ModelMetadata.started_from`): the ``--init-from`` file's absolute path, SHA-256 and
    epochs, so that a fine-tuned model names its origin after the file moved or changed; a
    resumed run keeps its checkpoint's record; None for random weights.

    Example:
        >>> started_from(starting_model("model/sliceseg_best.pt"), resumed=False)["epoch"]
        30
    """
    if start is None or resumed:
        return None if start is None else start.metadata.started_from
    source = start.source
    return {
        "file": str(source.resolve()) if source is not None else "(in memory)",
        "sha256": file_sha256(source) if source is not None and source.is_file() else None,
        "epoch": int(start.metadata.epoch),
    }


def model_target_spacing(start: Bundle) -> tuple[float, float] | None:
    """Return the (row, col) mm a model works at; None for fixed-grid (older) models."""
    spacing = start.metadata.target_spacing_mm
    return None if spacing is None else (float(spacing[0]), float(spacing[1]))


def initial_state(
    start: Bundle, run: ModelMetadata, *, source: Path | str, network: nn.Module
) -> dict[str, torch.Tensor]:
    """Return a model's weights for a run whose model file would have metadata ``run``.

    Args:
        start: the model to start from (``--init-from``, opened by :func:`starting_model`).
        run: the metadata of the new run (its data's label scheme, its network and grid).
        source: the model's file, for the messages.
        network: the run's fresh network, which the weights must fit.

    Returns:
        The state dict to load into ``network``.

    Raises:
        ConfigError: the label scheme, network or geometry differs, or a dropout rate the
            weights do not fit (one line naming both).

    Example:
        >>> start = starting_model("model/sliceseg_best.pt")
        >>> state = initial_state(start, session.metadata, source=path, network=session.model)
    """
    check_same_model(start.metadata, run, source=str(source))
    check_dropout_fits(network, start, run, source=f"--init-from {source}")
    return start.model.state_dict()


def model_dropout(model: Bundle) -> float:
    """Return the dropout rate a model file's network was built with: its hyper-parameters'
    ``dropout_rate``, a file's missing one as its writer meant it (`recorded_hyperparameters`:
    0, no dropout)."""
    return _dropout_rate(model.metadata)


def _dropout_rate(meta: ModelMetadata) -> float:
    hyper = recorded_hyperparameters(meta.arch, meta.hyperparameters)
    return float(hyper.get("dropout_rate", 0.0))  # 0: an architecture without dropout


def with_model_dropout(config: TrainConfig, model: Bundle) -> TrainConfig:
    """Return ``config`` with the dropout rate of the checkpoint a run goes on from
    (``--resume``; ``--init-from`` takes it with the network, `model_settings`) where the run
    sets none.

    Without one each architecture takes its own (the pyramid's published 0.2), but a pyramid
    trained before sliceseg kept it had none: its file has no dropout layers to load into.

    Example:
        >>> with_model_dropout(TrainConfig(arch="pyramid"), old_pyramid).dropout_rate
        0.0
    """
    if config.dropout_rate is not None or "dropout_rate" in config.hyperparameters.to_dict():
        return config
    return config.with_settings({"dropout_rate": model_dropout(model)})


def check_dropout_fits(
    network: nn.Module, model: Bundle, run: ModelMetadata, *, source: str
) -> None:
    """Refuse a run's dropout rate when the model file's weights do not fit its network.

    Another rate is fine where the layout stays (the U-Net's dropout holds no weights and
    shifts none; a pyramid's between two rates above 0); a pyramid has dropout layers only
    at a rate above 0, so its weights do not cross 0.

    Raises:
        ConfigError: the rates differ and so do the networks' weight names or shapes.
    """
    theirs, mine = model_dropout(model), _dropout_rate(run)
    if mine == theirs or _layout(network) == _layout(model.model):
        return
    raise ConfigError(
        f"{source}: the model was trained with dropout_rate {theirs:g} but this run asks "
        f"for {mine:g}, a network its weights do not fit (a pyramid has dropout layers only "
        f"above 0); leave out --dropout-rate (dropout_rate) to keep the model's {theirs:g}."
    )


def _layout(network: nn.Module) -> dict[str, tuple[int, ...]]:
    return {name: tuple(value.shape) for name, value in network.state_dict().items()}


def check_same_model(start: ModelMetadata, run: ModelMetadata, *, source: str) -> None:
    """Refuse to fine-tune ``start`` into a run of another label scheme, network or grid.

    Entries one of the two files does not record (older files) are not compared.

    Raises:
        ConfigError: the first entry of :data:`MATCHED` that differs.
    """
    mine, theirs = _compared(start), _compared(run)
    for key, what in MATCHED:
        if key in mine and key in theirs and _plain(mine[key]) != _plain(theirs[key]):
            raise ConfigError(
                f"--init-from {source}: the model's {what} is {_plain(mine[key])!r} but this "
                f"run's is {_plain(theirs[key])!r}; fine-tune on data and settings with the "
                f"model's {what}, or train a new model without --init-from."
            )


def _compared(meta: ModelMetadata) -> dict[str, Any]:
    """The metadata a fine-tuned run must share, less the dropout rate: a training setting
    whose change `check_dropout_fits` allows where the weights still fit."""
    data = meta.to_dict()
    hyper = {k: v for k, v in data.get("hyperparameters", {}).items() if k != "dropout_rate"}
    return {**data, "hyperparameters": hyper}


def _plain(value: Any) -> Any:
    """Lists and tuples compare alike (a model file stores lists); a float to 6 significant
    digits, as `sliceseg info` shows it and a user types it back (3.4322399999999997 is the
    3.43224 of ``--target-spacing 3.43224``)."""
    if isinstance(value, float):
        return float(f"{value:.6g}")
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value
