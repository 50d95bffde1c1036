"""Training settings: one frozen ``TrainConfig`` from defaults and overrides (a TOML file's:
`sliceseg.training.settings_file`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any, ClassVar

from sliceseg.augment.params import AugmentParams
from sliceseg.dataset.pairing import Sample
from sliceseg.dataset.source import UNLABELLED_CHOICES, DataSource
from sliceseg.dataset.split import SPLIT_CHOICES
from sliceseg.errors import ConfigError
from sliceseg.io.roi_values import parse_roi_names, refuse_num_labels_below_one
from sliceseg.model_space.batches import native_crop_share, whole_slice_spacing
from sliceseg.model_space.crops import FOREGROUND_BALANCES
from sliceseg.model_space.intensity import NORMALISATION_CHOICES
from sliceseg.model_space.resample import parse_spacing
from sliceseg.models.registry import Hyperparameters, parse_hyperparameters, required_divisor
from sliceseg.training.losses import check_loss
from sliceseg.training.setting_kinds import canonical_kinds, named_setting

VIEW_SHARES = {"whole": 1.0, "wide": 0.7}
"""Share of the median slice extent a crop shows, per ``view`` coarser than "native"."""

VIEW_CHOICES = ("auto", "native", *VIEW_SHARES)
"""The ``view`` setting: crops at the median spacing, or at a spacing that shows that share;
"auto" chooses between "native" and "wide" by `AUTO_MIN_SHARE`."""

AUTO_MIN_SHARE = 0.4
"""``view = "auto"`` trains as "wide" when a crop at the median spacing would show less than
this share of the median slice (a 512² CT at 0.8 mm: 31 %), else as "native" (MR of 256–384
pixels a side at 0.9–1.4 mm: 45–65 %). docs/benchmarks.md, the spine512 set."""

DEFAULT_EPOCHS = 100
"""Epochs of a run given neither ``epochs`` nor ``max_minutes``."""


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of one training run, named as in the user manual where it has a name.

    Attributes:
        data_dir: folder holding ``dicoms/`` and ``labels/`` (the manual's ``data/train``).
        images_dir: DICOM folder, when not ``data_dir/dicoms``.
        labels_dir: label folder, when not ``data_dir/labels``.
        out_dir: where models, history and settings are written.
        model_filename: stem of every file written (``<model_filename>_<epoch>.pt``).
        arch: architecture name ("unet" or "pyramid").
        input_shape: side in pixels of the square crops the network trains on (and of the
            windows a network with instance norms predicts by), at the model's spacing: every
            slice is resampled to that spacing, aspect kept, and seen a crop at a time, never
            squeezed onto an ``input_shape``² grid. The spacing is ``target_spacing_mm``, else
            as ``view`` decides: "native", the training slices' median; "whole" / "wide", the
            median or coarser, so that ``input_shape`` pixels span that share of the median
            slice (a larger ``input_shape``: finer pixels, down to the median); "auto", one of
            "native" and "wide" by the share an ``input_shape`` crop at the median shows.
            Divisible by the architecture's divisor (a U-Net of depth 5: 16).
        num_labels: number of ROIs K; inferred from the data when None, checked when given.
        roi_names: names of ROIs 1..K; from ``labels.txt`` or "ROI k" when None.
        epochs: number of passes over the training slices; None (default): with
            ``max_minutes``, train until the budget with the learning rate decaying over the
            elapsed share of it, else `DEFAULT_EPOCHS`.
        batch_size: slices per optimisation step.
        num_workers: data-loader worker processes.
        learning_rate: initial learning rate (decays polynomially to 0).
        dropout_rate: dropout probability inside the network; None: the architecture's own
            (the pyramid's published 0.2 in its deep levels, none in the U-Net).
        loss: "dice_ce" (Dice + cross-entropy, default), "dice" (the published soft Dice) or
            "ce" (cross-entropy alone).
        augment: whether to augment training batches.
        augment_params: the manual's augmentation parameters (aug_prob, rot_range, ...); a
            plain dict (a TOML table) is accepted and converted.
        hyperparameters: the architecture's hyper-parameters overriding the registry's
            defaults (`UNetHyperparameters` / `PyramidHyperparameters`); a plain dict is
            accepted and converted.
        print_checkpoint: print progress and validate every this many epochs.
        save_checkpoint: save ``<model_filename>_<epoch>.pt`` every this many epochs.
        validation_fraction: share of series held out for validation.
        seed: seed of every random draw (split, shuffling, augmentation, weights).
        max_minutes: wall-clock budget; training stops at an epoch boundary before it runs out.
        device: one of `sliceseg.system.DEVICE_CHOICES` ("auto", "cpu", "cuda", "cuda:N", "mps").
        overwrite: allow writing into a non-empty ``out_dir``.
        unlabelled_slices: slices a label volume leaves empty: "skip" or "background".
        target_spacing_mm: in-plane spacing in mm the model works at (a number, or [row, col]);
            None (default) takes the training slices' median (0028,0030) PixelSpacing.
        foreground_fraction: share of training crops centred on a pixel of a random ROI.
        foreground_balance: which ROI such a crop centres on: "slice" (one of its slice's ROIs)
            or "roi" (every ROI of the training set equally often; `sliceseg.model_space.crops`).
        init_from: a model file whose weights the run starts from (fine-tuning, see
            `sliceseg.training.init_from`); None starts from random weights.
        view: how much of a slice one crop shows when ``target_spacing_mm`` is unset: "auto"
            (default: "wide" when a crop at the median spacing would show less than
            `AUTO_MIN_SHARE` of the median slice, as on a 512² CT, else "native"), "native"
            (the training slices' median spacing; a large slice is seen a part at a time),
            "whole" (coarser when needed, so that a slice of the median
            extent fits the ``input_shape`` crop;
            `sliceseg.model_space.batches.whole_slice_spacing`)
            or "wide" (coarser when needed, so that the crop shows 70 % of that extent).
        validation_split: "patient" (default: ``validation_fraction`` of the patients held
            out) or "levels" (the same patients, only their slices at levels no training slice
            shows; `sliceseg.dataset.split.hold_out_levels`).
        normalisation: intensity normalisation: "auto" (default: CT's dataset-level HU clip
            and z-score when every training slice's (0008,0060) Modality is CT, else each
            slice z-scored on its own), "slice" or "ct" (`sliceseg.model_space.intensity`).
        context_slices: neighbours on each side of a slice that the network sees beside it
            (2.5D: ``1 + 2k`` input channels, the series' adjacent slices along its normal,
            `sliceseg.io.neighbours`); the unlabelled DICOMs of a labelled slice's series are
            read for it. 0 (default): the slice alone.
        ema_decay: average the weights over the training steps with this decay per step
            (default 0.998: about the last 500 steps; `sliceseg.training.averaging`):
            validation, checkpoints and the model files use the average. 0: the weights as
            trained (a checkpoint from before this setting resumes with 0).
        area_calibration: choose, per ROI, the background weight that makes the validation
            areas unbiased (`sliceseg.postprocess.calibration`); False (default) keeps the plain
            argmax: on the real-MR benchmarks weights chosen on a few validation subjects made
            the test areas worse more often than better (docs/benchmarks.md).
    """

    data_dir: str | None = None
    images_dir: str | None = None
    labels_dir: str | None = None
    out_dir: str = "model"
    model_filename: str = "sliceseg"
    arch: str = "unet"
    input_shape: int = 160
    num_labels: int | None = None
    roi_names: tuple[str, ...] | None = None
    epochs: int | None = None
    batch_size: int = 4
    num_workers: int = 0
    learning_rate: float = 3e-3
    dropout_rate: float | None = None
    loss: str = "dice_ce"
    augment: bool = True
    # Plain dicts (TOML tables) are accepted and converted to the typed value in __post_init__.
    augment_params: AugmentParams = field(default_factory=AugmentParams)
    hyperparameters: Hyperparameters = field(default_factory=dict)  # type: ignore[assignment]
    print_checkpoint: int = 10
    save_checkpoint: int = 50
    validation_fraction: float = 0.2
    seed: int = 0
    max_minutes: float | None = None
    device: str = "auto"
    overwrite: bool = False
    unlabelled_slices: str = "skip"
    target_spacing_mm: float | tuple[float, float] | None = None
    foreground_fraction: float = 1.0 / 3.0
    foreground_balance: str = "slice"
    init_from: str | None = None
    area_calibration: bool = False
    normalisation: str = "auto"
    validation_split: str = "patient"
    view: str = "auto"
    context_slices: int = 0
    ema_decay: float = 0.998

    # Not a setting, so no field (eq, repr and to_dict skip it): each instance's own is set by
    # __new__; None: not known, judged by the defaults (`given_names`).
    _given: ClassVar[frozenset[str] | None] = None

    def __new__(cls, *args: Any, **kwargs: Any) -> TrainConfig:
        """Refuse an unknown setting (a notebook's typo, `epoch=50`, gets the valid settings,
        not dataclass's TypeError) and record which settings the caller gave (`given_names`),
        before __init__ fills in the defaults of the others."""
        refuse_unknown_settings(kwargs)
        config = super().__new__(cls)
        names = [f.name for f in dataclasses.fields(cls)]
        named = {**dict(zip(names, args, strict=False)), **kwargs}
        given = frozenset(name for name, value in named.items() if value is not None)
        # every setting named: a copy (dataclasses.replace, a saved settings file), which cannot
        # tell what was typed; `given_names` then judges by the defaults
        object.__setattr__(config, "_given", None if len(named) == len(names) else given)
        return config

    def __post_init__(self) -> None:
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for name, value in canonical_kinds(values).items():  # plain: a model file holds them
            object.__setattr__(self, name, value)
        self._check_numbers()
        check_loss(self.loss, setting=named_setting("loss"))  # before the data is read, not after
        if self.view not in VIEW_CHOICES:
            raise ConfigError(
                f"{named_setting('view')} must be one of {', '.join(VIEW_CHOICES)}, got "
                f"{self.view!r}."
            )
        if self.validation_split not in SPLIT_CHOICES:
            raise ConfigError(
                f"{named_setting('validation_split')} must be one of "
                f"{', '.join(SPLIT_CHOICES)}, got {self.validation_split!r}."
            )
        if self.normalisation not in NORMALISATION_CHOICES:
            raise ConfigError(
                f"{named_setting('normalisation')} must be one of "
                f"{', '.join(NORMALISATION_CHOICES)}, got {self.normalisation!r}."
            )
        if not self.model_filename or "/" in self.model_filename:
            raise ConfigError(
                f"{named_setting('model_filename')} must be a plain file stem, got "
                f"{self.model_filename!r}."
            )
        if self.roi_names is not None:
            object.__setattr__(self, "roi_names", parse_roi_names(self.roi_names))
        if self.unlabelled_slices not in UNLABELLED_CHOICES:
            raise ConfigError(
                f"{named_setting('unlabelled_slices')} must be one of "
                f"{', '.join(UNLABELLED_CHOICES)}, got "
                f"{self.unlabelled_slices!r}."
            )
        for name in ("data_dir", "images_dir", "labels_dir", "out_dir"):
            value = getattr(self, name)
            if isinstance(value, PurePath):  # a notebook's Path: stored as text, as in TOML
                object.__setattr__(self, name, str(value))
        if not isinstance(self.augment_params, AugmentParams):
            object.__setattr__(self, "augment_params", AugmentParams.from_dict(self.augment_params))
        hyper = parse_hyperparameters(self.arch, self.hyperparameters)
        object.__setattr__(self, "hyperparameters", hyper)
        self._check_input_shape()
        self._check_sampling()

    def _check_numbers(self) -> None:
        for name in ("input_shape", "epochs", "batch_size", "print_checkpoint", "save_checkpoint"):
            value = getattr(self, name)
            if value is None and name == "epochs":
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(
                    f"{named_setting(name)} must be a whole number ≥ 1, got {value!r}."
                )
        if self.seed < 0:
            raise ConfigError(
                f"{named_setting('seed')} must be a whole number ≥ 0, got {self.seed!r}."
            )
        k = self.context_slices
        if not isinstance(k, int) or isinstance(k, bool) or not 0 <= k <= 3:
            raise ConfigError(
                f"{named_setting('context_slices')} must be a whole number from 0 to 3, got {k!r}."
            )
        if isinstance(self.ema_decay, bool) or not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(
                f"{named_setting('ema_decay')} must be in [0, 1) (0 = off; default 0.998), got "
                f"{self.ema_decay!r}."
            )
        if self.num_workers < 0:
            raise ConfigError(
                f"{named_setting('num_workers')} must be ≥ 0, got {self.num_workers!r}."
            )
        refuse_num_labels_below_one(self.num_labels)
        if not self.learning_rate > 0:
            raise ConfigError(
                f"{named_setting('learning_rate')} must be > 0, got {self.learning_rate!r}."
            )
        if self.dropout_rate is not None and not 0 <= self.dropout_rate < 1:
            raise ConfigError(
                f"{named_setting('dropout_rate')} must be in [0, 1), got {self.dropout_rate!r}."
            )
        if not 0 <= self.validation_fraction < 1:
            raise ConfigError(
                f"{named_setting('validation_fraction')} must be in [0, 1), got "
                f"{self.validation_fraction!r}."
            )
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise ConfigError(
                f"{named_setting('max_minutes')} must be > 0, got {self.max_minutes!r}."
            )

    def _check_input_shape(self) -> None:
        divisor = required_divisor(self.arch, self.model_hyperparameters())
        if self.input_shape % divisor:
            below = (self.input_shape // divisor) * divisor
            raise ConfigError(
                f"{named_setting('input_shape')} {self.input_shape} is not divisible by {divisor}, "
                f"which the '{self.arch}' network needs; use {below or divisor} or "
                f"{below + divisor}."
            )

    def _check_sampling(self) -> None:
        if self.target_spacing_mm is not None:
            row, col = parse_spacing(
                self.target_spacing_mm, name=named_setting("target_spacing_mm")
            )
            object.__setattr__(self, "target_spacing_mm", row if row == col else (row, col))
        if not 0 <= self.foreground_fraction <= 1:
            raise ConfigError(
                f"foreground_fraction must be in [0, 1], got {self.foreground_fraction!r}."
            )
        if self.foreground_balance not in FOREGROUND_BALANCES:
            raise ConfigError(
                f"foreground_balance must be one of {', '.join(FOREGROUND_BALANCES)}, got "
                f"{self.foreground_balance!r}."
            )

    def view_spacing(self, samples: Sequence[Sample]) -> tuple[float, float] | None:
        """The spacing ``view`` asks for on these training samples; None for "native"."""
        view = self.chosen_view(samples)
        if view not in VIEW_SHARES:
            return None
        return whole_slice_spacing(samples, self.input_shape, share=VIEW_SHARES[view])

    def chosen_view(self, samples: Sequence[Sample]) -> str:
        """``view``, with "auto" resolved on these training samples (`AUTO_MIN_SHARE`)."""
        if self.view != "auto":
            return self.view
        share = native_crop_share(samples, self.input_shape)
        return "wide" if share is not None and share < AUTO_MIN_SHARE else "native"

    @property
    def planned_epochs(self) -> int | None:
        """The epochs the run stops after: ``epochs`` when given, else None with a time budget
        (train until ``max_minutes``), else `DEFAULT_EPOCHS`.

        Example:
            >>> TrainConfig(max_minutes=10).planned_epochs is None, TrainConfig().planned_epochs
            (True, 100)
        """
        if self.epochs is not None:
            return self.epochs
        return None if self.max_minutes is not None else DEFAULT_EPOCHS

    def target_spacing_pair(self) -> tuple[float, float] | None:
        """The target spacing as ``(row, col)`` mm, or None for the training set's median."""
        if self.target_spacing_mm is None:
            return None
        return parse_spacing(self.target_spacing_mm, name=named_setting("target_spacing_mm"))

    def model_hyperparameters(self) -> dict[str, Any]:
        """Return every hyper-parameter of the network for this grid, as the model file stores
        them: the registry's defaults, ``dropout_rate``, then the given ``hyperparameters``.

        Example:
            >>> TrainConfig(input_shape=64, hyperparameters={"depth": 4}).model_hyperparameters()
            ... # doctest: +ELLIPSIS
            {'base_channels': 8, 'depth': 4, ...}
        """
        return self.hyperparameters.resolve(self.input_shape, dropout_rate=self.dropout_rate)

    def data_source(self) -> DataSource:
        """Return the training data as the `DataSource` of `check_dataset` / `load_samples`.

        Raises:
            ConfigError: no data folder is set.
            PairingError: a data folder does not exist.
        """
        return DataSource.from_dirs(
            Path(self.data_dir) if self.data_dir else None,
            images_dir=Path(self.images_dir) if self.images_dir else None,
            labels_dir=Path(self.labels_dir) if self.labels_dir else None,
            num_labels=self.num_labels,
            roi_names=self.roi_names,
            unlabelled_slices=self.unlabelled_slices,
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the settings as plain data (saved next to the model and inside it)."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["roi_names"] = list(self.roi_names) if self.roi_names is not None else None
        data["augment_params"] = self.augment_params.to_dict()
        data["hyperparameters"] = self.hyperparameters.to_dict()
        if isinstance(self.target_spacing_mm, tuple):
            data["target_spacing_mm"] = list(self.target_spacing_mm)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """Build a config from plain data, refusing unknown names.

        Raises:
            ConfigError: a name is not a setting; the message lists the valid names.
        """
        refuse_unknown_settings(data)
        return cls(**dict(data))

    def replace(self, **changes: Any) -> TrainConfig:
        """Return a copy with some settings changed (None values are ignored); the copy's
        `given_names` are this config's and those changed."""
        return self.with_settings({k: v for k, v in changes.items() if v is not None})

    def with_settings(self, settings: Mapping[str, Any]) -> TrainConfig:
        """Return a copy with ``settings`` applied as given (None sets a setting to None); the
        copy's `given_names` are this config's and those set (to other than None).

        Raises:
            ConfigError: a name is not a setting, or a value is invalid.
        """
        changed = TrainConfig.from_dict({**self.to_dict(), **normalise_settings(settings)})
        unset = {name for name, value in settings.items() if value is None}
        object.__setattr__(changed, "_given", (self.given_names() | set(settings)) - unset)
        return changed

    def given_names(self) -> frozenset[str]:
        """Return the settings given, rather than left at their defaults: those named (not as
        None) to the constructor, to `from_dict`, `replace` or `with_settings`.

        A run from a model file takes the file's network where these do not set it
        (`sliceseg.training.init_from.plan_new_run`). A copy that names every setting
        (``dataclasses.replace``, a whole saved settings file) cannot tell what was typed: its
        given settings are those that differ from the defaults; `replace` keeps track.

        Example:
            >>> config = TrainConfig(arch="unet", epochs=None).replace(seed=3)
            >>> sorted(config.given_names())
            ['arch', 'seed']
        """
        if self._given is not None:
            return self._given
        defaults, held = TrainConfig().to_dict(), self.to_dict()
        return frozenset(name for name, value in held.items() if value != defaults[name])


def refuse_unknown_settings(names: Iterable[str], *, source: Path | None = None) -> None:
    """Raise when a name is not a `TrainConfig` setting; the message lists the valid ones.

    Args:
        names: the setting names given.
        source: the settings file they came from, named in the message with the fix.

    Raises:
        ConfigError: a name is unknown.
    """
    valid = sorted(f.name for f in dataclasses.fields(TrainConfig))
    unknown = ", ".join(sorted(set(names) - set(valid)))
    if not unknown:
        return
    if source is None:
        raise ConfigError(f"unknown setting(s) {unknown}; valid settings: {', '.join(valid)}.")
    raise ConfigError(
        f"{source}: unknown setting(s) {unknown}; fix or remove them there "
        f"(valid settings: {', '.join(valid)})."
    )


def normalise_settings(data: Mapping[str, Any]) -> dict[str, Any]:
    """Return settings with user-friendly forms made canonical (``"a, b"`` roi_names → a tuple)."""
    settings = dict(data)
    if isinstance(settings.get("roi_names"), str):
        settings["roi_names"] = parse_roi_names(settings["roi_names"])
    return settings
