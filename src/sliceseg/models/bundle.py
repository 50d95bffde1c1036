"""Model files: one ``.pt`` of plain data (weights + everything prediction needs), safe to open.

A model file is a dict of plain Python data and tensors, so ``torch.load(weights_only=True)``
opens it: loading a model shared by a colleague cannot run code. Checkpoints written during
training add a ``training_state`` entry (optimiser, random state, history) used by ``--resume``.
"""

from __future__ import annotations

import io
import itertools
import pickle
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sliceseg._version import __version__
from sliceseg.dataset.source import refuse_repeated_names
from sliceseg.errors import BundleError, ConfigError
from sliceseg.io.files import atomic_write_bytes, finished_outputs
from sliceseg.io.roi_values import ROI_NAMES_OPTION, parse_roi_names
from sliceseg.io.volume_slices import ORIENTATION_CONVENTION
from sliceseg.models import MODELS, build_model, context_channels
from sliceseg.models.run_end import checked_run_end
from sliceseg.thread_warnings import silenced
from sliceseg.user_paths import user_path
from sliceseg.wording import few_of

_BUNDLE_FORMAT = "sliceseg-model"
_BUNDLE_FORMAT_VERSION = 1

UNRECORDED_HYPERPARAMETERS: dict[str, Any] = {"dropout_rate": 0.0}
"""What a hyper-parameter a model file does not record meant in the version that wrote it, for
the architectures that have it: no dropout. A pyramid without a recorded rate was built without
dropout layers; rebuilt at today's default (0.2, session 14) its weights would not fit."""


@dataclass(frozen=True)
class ModelMetadata:
    """Everything needed to rebuild a model and use it, as plain data.

    Attributes:
        arch: registry name of the architecture ("unet", "pyramid").
        hyperparameters: the architecture's hyper-parameters, as passed to ``build_model``.
        num_classes: output channels, ROIs plus background (K + 1).
        input_size: side in pixels of the square training crops and prediction windows, at
            ``target_spacing_mm`` (files without one: the grid every slice is squeezed onto).
        roi_names: names of ROIs 1..K, in label order.
        normalisation: name of the intensity normalisation applied before the model:
            "robust_zscore" (each slice z-scored on its own; every file before CT's) or
            "ct_dataset" (HU clipped and z-scored with ``intensity``'s numbers).
        intensity: the numbers of a dataset-level normalisation, chosen on the training
            slices (plain data of
            ``sliceseg.model_space.intensity.IntensityNormalisation``: ``clip``
            HU pair, ``mean``, ``std``); ``None`` for the per-slice z-score.
        label_values: label values as stored in the training files (0 first), so predictions
            can be written back in the user's own convention.
        settings: the training settings actually used (``TrainConfig.to_dict()``).
        epoch: the number of completed training epochs.
        sliceseg_version: the version that wrote the file.
        orientation: the canonical in-plane orientation the model was trained in
            (:data:`ORIENTATION_CONVENTION`); ``None`` for files written before sliceseg
            canonicalised orientation: those models saw slices as stored, so prediction keeps
            slices as stored for them and predicts exactly as before.
        target_spacing_mm: ``(row, col)`` in-plane spacing in mm the model works at (slices
            are resampled to it; ``input_size`` is then the side of the training crops and
            prediction windows); ``None`` for files written before sliceseg resampled to a
            target spacing: those squeeze every slice onto the square ``input_size`` grid, and
            prediction does the same for them, exactly as before.
        postprocessing: the area calibration and per-ROI clean-up chosen on validation
            (plain data of ``sliceseg.postprocess.cleanup.PostProcessing``); ``None``: none.
        familiarity: what the training data looked like to the model (plain data of
            ``sliceseg.measure.familiarity.TrainingProfile``), which ``predict`` compares each
            series with; ``None`` (files from before, or checkpoints): no familiarity check.
        context_slices: neighbours on each side of a slice that the network sees as extra
            input channels (2.5D, `sliceseg.io.neighbours`); 0 (and files from before): the
            slice alone.
        context_step_mm: the median distance between a training slice and its neighbours
            (`sliceseg.io.neighbours.neighbour_step_mm`); ``None`` when not 2.5D or unknown.
        modalities: the distinct (0008,0060) Modality values of the training slices (both
            sides of the split; `sliceseg.measure.tissue.modality_values`), which
            ``predict`` compares each series' with; ``None`` (files from before): unknown,
            no such check.
        started_from: the model file whose weights training started from (``--init-from``):
            its ``file`` (absolute path), ``sha256`` and ``epoch``; ``None``: random weights.
        validation_series: the series validation held out, each ``(name, slices)``
            (`sliceseg.dataset.split.held_out_series`); ``None`` (files from before): unknown.
        run_end: on a run's best model, how the run ended, written as it ended: the
            ``epochs_completed`` it trained, ``ended_by`` and ``best_val_dice`` (None: nothing
            validated, the last epoch's model), as in its settings file; ``None``: a
            checkpoint, a best model of a run that has not ended, or a file from before.
    """

    arch: str
    hyperparameters: dict[str, Any]
    num_classes: int
    input_size: int
    roi_names: tuple[str, ...]
    normalisation: str = "robust_zscore"
    label_values: tuple[int, ...] = ()
    settings: dict[str, Any] = field(default_factory=dict)
    epoch: int = 0
    sliceseg_version: str = __version__
    orientation: str | None = ORIENTATION_CONVENTION
    target_spacing_mm: tuple[float, float] | None = None
    postprocessing: dict[str, Any] | None = None
    familiarity: dict[str, Any] | None = field(default=None, repr=False)
    intensity: dict[str, Any] | None = None
    context_slices: int = 0
    context_step_mm: float | None = None
    modalities: tuple[str, ...] | None = None
    started_from: dict[str, Any] | None = None
    validation_series: tuple[tuple[str, int], ...] | None = None
    run_end: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the metadata as plain data (lists, dicts, numbers, strings)."""
        return {
            "arch": self.arch,
            "hyperparameters": dict(self.hyperparameters),
            "num_classes": int(self.num_classes),
            "input_size": int(self.input_size),
            "roi_names": list(self.roi_names),
            "normalisation": self.normalisation,
            "label_values": [int(v) for v in self.label_values],
            "settings": dict(self.settings),
            "epoch": int(self.epoch),
            "sliceseg_version": self.sliceseg_version,
            "orientation": self.orientation,
            "target_spacing_mm": _spacing_list(self.target_spacing_mm),
            "postprocessing": None if self.postprocessing is None else dict(self.postprocessing),
            "familiarity": None if self.familiarity is None else dict(self.familiarity),
            "intensity": None if self.intensity is None else dict(self.intensity),
            "context_slices": int(self.context_slices),
            "context_step_mm": self.context_step_mm,
            "modalities": None if self.modalities is None else list(self.modalities),
            "started_from": None if self.started_from is None else dict(self.started_from),
            "validation_series": _series_list(self.validation_series),
            "run_end": None if self.run_end is None else dict(self.run_end),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelMetadata:
        """Rebuild metadata from :meth:`to_dict` output."""
        return cls(
            arch=str(data["arch"]),
            hyperparameters=recorded_hyperparameters(str(data["arch"]), data["hyperparameters"]),
            num_classes=int(data["num_classes"]),
            input_size=int(data["input_size"]),
            roi_names=tuple(str(n) for n in data["roi_names"]),
            normalisation=str(data.get("normalisation", "robust_zscore")),
            label_values=tuple(int(v) for v in data.get("label_values", ())),
            settings=dict(data.get("settings", {})),
            epoch=int(data.get("epoch", 0)),
            sliceseg_version=str(data.get("sliceseg_version", "unknown")),
            orientation=None if data.get("orientation") is None else str(data["orientation"]),
            target_spacing_mm=_spacing_pair(data.get("target_spacing_mm")),
            postprocessing=None
            if data.get("postprocessing") is None
            else dict(data["postprocessing"]),
            familiarity=None if data.get("familiarity") is None else dict(data["familiarity"]),
            intensity=None if data.get("intensity") is None else dict(data["intensity"]),
            context_slices=int(data.get("context_slices", 0)),
            context_step_mm=None
            if data.get("context_step_mm") is None
            else float(data["context_step_mm"]),
            modalities=None
            if data.get("modalities") is None
            else tuple(str(m) for m in data["modalities"]),
            started_from=None if data.get("started_from") is None else dict(data["started_from"]),
            validation_series=_series_pairs(data.get("validation_series")),
            run_end=checked_run_end(data.get("run_end")),
        )

    @property
    def num_labels(self) -> int:
        """Number of ROIs, background excluded."""
        return self.num_classes - 1


def recorded_hyperparameters(arch: str, recorded: Mapping[str, Any]) -> dict[str, Any]:
    """Return a model file's hyper-parameters, each one it does not record at the value it had
    when the file was written (`UNRECORDED_HYPERPARAMETERS`), where ``arch`` has it.

    Example:
        >>> recorded_hyperparameters("pyramid", {"levels": 3})
        {'dropout_rate': 0.0, 'levels': 3}
    """
    rules = MODELS[arch].hyperparameters.rules if arch in MODELS else {}
    unrecorded = {k: v for k, v in UNRECORDED_HYPERPARAMETERS.items() if k in rules}
    return {**unrecorded, **recorded}


def _series_list(series: Sequence[tuple[str, int]] | None) -> list[dict[str, Any]] | None:
    return None if series is None else [{"series": n, "slices": int(k)} for n, k in series]


def _series_pairs(value: Any) -> tuple[tuple[str, int], ...] | None:
    if value is None:
        return None
    return tuple((str(item["series"]), int(item["slices"])) for item in value)


def _spacing_list(spacing: tuple[float, float] | None) -> list[float] | None:
    return None if spacing is None else [float(spacing[0]), float(spacing[1])]


def _spacing_pair(value: Any) -> tuple[float, float] | None:
    if value is None:
        return None
    row, col = value
    return float(row), float(col)


@dataclass(frozen=True)
class Bundle:
    """A loaded model in eval mode with its metadata.

    Attributes:
        model: the network, in eval mode, on the CPU.
        metadata: how it was built and trained.
        source: the file it was loaded from.
        training_state: optimiser / random state / history for resuming, or None.
    """

    # repr=False: a notebook's `bundle` shows the names and settings, not the network's layers,
    # the resume state or the training profile (hundreds of kilobytes of numbers)
    model: nn.Module = field(repr=False)
    metadata: ModelMetadata
    source: Path | None = None
    training_state: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def roi_names(self) -> tuple[str, ...]:
        """Names of ROIs 1..K."""
        return self.metadata.roi_names

    def with_roi_names(self, roi_names: str | Sequence[str]) -> Bundle:
        """Return a copy whose ROI names are replaced (e.g. from ``--roi-names``).

        Raises:
            ConfigError: the number of names differs from the model's number of ROIs, or a
                name is given twice.
        """
        names = tuple(n.strip() for n in parse_roi_names(roi_names))
        refuse_repeated_names(names, source=ROI_NAMES_OPTION)
        if len(names) != self.metadata.num_labels:
            raise ConfigError(
                f"{ROI_NAMES_OPTION} gives {len(names)} names but the model segments "
                f"{self.metadata.num_labels} ROIs ({', '.join(self.metadata.roi_names)}); "
                "give one name per ROI, in label order."
            )
        meta = ModelMetadata.from_dict({**self.metadata.to_dict(), "roi_names": list(names)})
        return Bundle(self.model, meta, self.source, self.training_state)


def _unwrap_model(model: nn.Module) -> nn.Module:
    """Return the plain module inside a DistributedDataParallel / DataParallel wrapper."""
    inner = getattr(model, "module", None)
    return inner if isinstance(inner, nn.Module) else model


def bundle_payload(
    model: nn.Module, metadata: ModelMetadata, *, training_state: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Return the plain-data dict that :func:`save_bundle` writes."""
    state = {k: v.detach().cpu() for k, v in _unwrap_model(model).state_dict().items()}
    payload: dict[str, Any] = {
        "format": _BUNDLE_FORMAT,
        "format_version": _BUNDLE_FORMAT_VERSION,
        "metadata": metadata.to_dict(),
        "state_dict": state,
    }
    if training_state is not None:
        payload["training_state"] = training_state
    return payload


def save_bundle(
    path: Path | str,
    model: nn.Module,
    metadata: ModelMetadata,
    *,
    training_state: dict[str, Any] | None = None,
) -> Path:
    """Write a model file atomically.

    Args:
        path: where to write, usually ``<out>/<model_filename>_<epoch>.pt``.
        model: the network (a DDP wrapper is unwrapped).
        metadata: how to rebuild and use it.
        training_state: optional optimiser / random state / history for ``--resume``.

    Returns:
        The path written.

    Example:
        >>> save_bundle(tmp_path / "m_1.pt", model, metadata)
    """
    buffer = io.BytesIO()
    torch.save(bundle_payload(model, metadata, training_state=training_state), buffer)
    return atomic_write_bytes(path, buffer.getvalue())


def saved_bundle(path: Path, model: nn.Module, metadata: ModelMetadata) -> Bundle:
    """Return the `Bundle` that ``load_bundle(path)`` gives once ``save_bundle(path, model,
    metadata)`` has written it, without writing (the network rebuilt on the CPU, in eval mode)."""
    payload = bundle_payload(model, metadata)
    rebuilt = ModelMetadata.from_dict(payload["metadata"])
    return Bundle(_rebuilt_model(path, rebuilt, payload["state_dict"]), rebuilt, path)


def load_bundle(path: Path | str, *, map_location: str | torch.device = "cpu") -> Bundle:
    """Load a model file safely (``weights_only=True``) and rebuild its network.

    Args:
        path: a file written by :func:`save_bundle`.
        map_location: where tensors are loaded; the model is returned on the CPU in eval mode.

    Returns:
        The model in eval mode with its metadata.

    Raises:
        BundleError: the file is missing, is not a sliceseg model, was written by an
            incompatible version, or its weights do not fit its architecture.

    Example:
        >>> bundle = load_bundle("model/sliceseg_best.pt")
        >>> bundle.roi_names
    """
    source = user_path(path)
    if source.is_dir():  # the training run's folder, given for its best model
        raise BundleError(f"{source}: a folder, not a model file; {_models_in(source)}")
    if not source.is_file():
        raise BundleError(f"{source}: model file not found; give the path of a .pt from training.")
    payload = _read_payload(source, map_location)
    metadata = _checked_metadata(source, payload)
    model = _rebuilt_model(source, metadata, payload["state_dict"])
    return Bundle(model, metadata, source, payload.get("training_state"))


def _models_in(folder: Path) -> str:
    """What to give instead of ``folder``: its best model, else its model files (never a
    killed write's temporary one, `finished_outputs`)."""
    found = [p.name for p in finished_outputs(folder, "*.pt")]
    best = [name for name in found if name.endswith("_best.pt")]
    if best:
        return f"give its model file, e.g. {folder / best[0]}."
    if found:
        return f"give one of its model files ({few_of(found, shown=5)})."
    return "it holds no .pt file; give the path of a .pt from training."


def as_bundle(model: Bundle | Path | str) -> Bundle:
    """Return ``model`` itself when loaded, else the model loaded from its file.

    Args:
        model: a loaded model, or the path of a model file from training.

    Returns:
        The loaded model.

    Raises:
        BundleError: as for `load_bundle`.

    Example:
        >>> as_bundle("model/sliceseg_best.pt").roi_names
    """
    return model if isinstance(model, Bundle) else load_bundle(model)


_NOT_A_MODEL = "give a .pt written by `sliceseg train`"


def _read_payload(source: Path, map_location: str | torch.device) -> dict[str, Any]:
    """Unpickle with ``weights_only=True``: plain data and tensors only, never code."""
    try:
        with silenced():  # torch's notes on odd pickle protocols
            payload = torch.load(source, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        raise BundleError(
            f"{source}: refused to open: the file holds Python objects other than plain data and "
            "tensors (opening it could run code), so it is not a sliceseg model file; "
            f"{_NOT_A_MODEL}."
        ) from error
    except Exception as error:  # torch.load's many ways to fail on a damaged or foreign file
        raise BundleError(
            f"{source}: not a sliceseg model file, or damaged / truncated ({type(error).__name__}:"
            f" {' '.join(str(error).split())[:120]}); {_NOT_A_MODEL}."
        ) from error
    if not isinstance(payload, dict) or payload.get("format") != _BUNDLE_FORMAT:
        raise BundleError(
            f"{source}: not a sliceseg model file (no '{_BUNDLE_FORMAT}' header); {_NOT_A_MODEL}."
        )
    version = payload.get("format_version", 0)
    if not isinstance(version, int):
        raise BundleError(f"{source}: format_version {version!r} is not a number; damaged file.")
    if version > _BUNDLE_FORMAT_VERSION:
        raise BundleError(
            f"{source}: written by a newer sliceseg (format {version}); "
            f"upgrade sliceseg (this is {__version__})."
        )
    state = payload.get("state_dict")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise BundleError(f"{source}: no weights (state_dict) in the file; the file is damaged.")
    return payload


def _checked_metadata(source: Path, payload: Mapping[str, Any]) -> ModelMetadata:
    """Rebuild the metadata and check that it is whole, consistent and not from the future."""
    data = payload.get("metadata")
    try:
        if not isinstance(data, Mapping):
            raise TypeError(f"metadata is {type(data).__name__}, not a table")
        metadata = ModelMetadata.from_dict(data)
    except (KeyError, TypeError, ValueError) as error:
        raise BundleError(
            f"{source}: the model's metadata is incomplete or malformed "
            f"({type(error).__name__}: {error}); the file is damaged or was edited."
        ) from error
    written, ours = _version_tuple(metadata.sliceseg_version), _version_tuple(__version__)
    if written is not None and ours is not None and written > ours:
        raise BundleError(
            f"{source}: written by sliceseg {metadata.sliceseg_version}, newer than this sliceseg "
            f"{__version__}; upgrade sliceseg (pip install -U sliceseg) to use it."
        )
    values = metadata.label_values
    problems = [
        f"num_classes {metadata.num_classes} < 2" * (metadata.num_classes < 2),
        f"{len(metadata.roi_names)} ROI names for {metadata.num_labels} ROIs"
        * (len(metadata.roi_names) != metadata.num_labels),
        f"label_values {list(values)} for {metadata.num_classes} classes"
        * bool(values and (len(values) != metadata.num_classes or not _is_scheme(values))),
        f"input_size {metadata.input_size} < 1" * (metadata.input_size < 1),
        f"context_slices {metadata.context_slices} < 0" * (metadata.context_slices < 0),
    ]
    found = "; ".join(problem for problem in problems if problem)
    if found:
        raise BundleError(f"{source}: inconsistent model metadata ({found}); the file was edited.")
    return metadata


def _rebuilt_model(source: Path, metadata: ModelMetadata, state: dict[str, Any]) -> nn.Module:
    try:
        model = build_model(
            metadata.arch,
            num_classes=metadata.num_classes,
            input_size=metadata.input_size,
            in_channels=context_channels(metadata.context_slices),
            **metadata.hyperparameters,
        )
    except (ConfigError, TypeError, ValueError) as error:
        raise BundleError(
            f"{source}: the architecture recorded in the file cannot be built ({error}); the "
            "file was edited, or needs another sliceseg version."
        ) from error
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise BundleError(
            f"{source}: weights do not fit the '{metadata.arch}' architecture recorded in the "
            "file; the file is damaged or was edited."
        ) from error
    model.eval()
    return model


def _version_tuple(text: str) -> tuple[int, ...] | None:
    """(major, minor, patch) of a version string; None when it is not one ("unknown")."""
    match = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", text.strip())
    return tuple(int(part or 0) for part in match.groups()) if match else None


def _is_scheme(values: tuple[int, ...]) -> bool:
    return values[0] == 0 and all(a < b for a, b in itertools.pairwise(values))
