"""The one path from a network to label maps, shared by validation and ``predict``.

Probabilities come from the network's inference form (batch norms folded, channels-last) as
`sliceseg.engine.probabilities` computes them (windows, optional test-time augmentation); on
each slice's own grid (orientation undone, resampled back) the model's area calibration picks
the label (`calibrated_argmax`) and its post-processing cleans it (`finish_label`). Validation
calls `spaced_window_probabilities` and `finish_label` at the target spacing; ``predict`` calls
`Engine.labels` on native slices. The same passes give each slice's deepest features
(`sliceseg.models.features`) for the familiarity check, at no extra cost. Nothing here reads
or writes files.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np
import torch

from sliceseg.engine.probabilities import (
    autocasts,
    feature_windows,
    network_probabilities,
    network_window,
    shape_groups,
    slice_features,
)
from sliceseg.io.dicom import Slice
from sliceseg.measure.feature_pooling import feature_pooling_of
from sliceseg.model_space.batches import SpacedTensors, slices_to_grid, slices_to_spacing
from sliceseg.model_space.grid import probabilities_from_grid
from sliceseg.model_space.intensity import IntensityNormalisation
from sliceseg.model_space.orientation import (
    IDENTITY,
    Reorientation,
    is_canonicalising,
    reorientations_for,
)
from sliceseg.model_space.resample import probabilities_to_native
from sliceseg.model_space.windows import spaced_probabilities
from sliceseg.models import required_divisor
from sliceseg.models.bundle import Bundle
from sliceseg.models.features import FeatureTap, deepest_module
from sliceseg.models.folding import inference_network
from sliceseg.postprocess.calibration import AreaCalibration, foreground_margin
from sliceseg.postprocess.cleanup import PostProcessing

__all__ = [
    "Engine",
    "PredictOptions",
    "Preparation",
    "ProbabilitySink",
    "calibrated_argmax",
    "finish_label",
    "model_preparation",
    "spaced_subset",
]

ProbabilitySink = Callable[[torch.Tensor, np.ndarray], None]
"""Called once per slice, in order, with its (C, rows, cols) probabilities on its own grid and
its label map (e.g. to score the confidence without keeping every probability map)."""


@dataclass(frozen=True)
class PredictOptions:
    """How the network runs: where, how many slices per pass, with or without TTA.

    Attributes:
        device: "auto" (CUDA when present), "cpu", "cuda" or "cuda:N".
        batch_size: slices (or windows) per forward pass, ≥ 1.
        tta: average over small rotations and zooms (4× slower).
        progress: show a progress bar.
    """

    device: str = "auto"
    batch_size: int = 8
    tta: bool = False
    progress: bool = False

    def __post_init__(self) -> None:
        check_batch_size(self.batch_size)


def check_batch_size(size: object) -> None:
    """Refuse a batch size that is not a whole number ≥ 1 (a `ConfigError`)."""
    from sliceseg.errors import ConfigError, option_name

    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        batch_size = option_name("--batch-size", "batch_size")
        raise ConfigError(f"{batch_size} must be a whole number ≥ 1, got {size!r}.")


def calibrated_argmax(probs: torch.Tensor, calibration: AreaCalibration) -> np.ndarray:
    """Label map ``(H, W)`` uint8 of ``(C, H, W)`` probabilities with the model's area calibration.

    Each ROI's background weight applies where that ROI is the most likely one
    (`AreaCalibration.labels`); without a calibration (older model files, or none chosen)
    this is the plain argmax. On the CPU numpy's argmax over the classes, the same labels
    (the first most likely class, a NaN taken as the most likely) ~9× faster than torch's
    over a leading dimension (24 ms for 7 classes at 512²).
    """
    if calibration.is_plain and probs.device.type == "cpu":
        return np.argmax(probs.numpy(), axis=0).astype(np.uint8)
    if calibration.is_plain:
        return probs.argmax(dim=0).to(torch.uint8).cpu().numpy()
    return calibration.labels(*foreground_margin(probs.cpu().numpy()))


def finish_label(probs: torch.Tensor, post: PostProcessing) -> np.ndarray:
    """The label map of one slice's probabilities: calibrated argmax, then post-processing."""
    label = calibrated_argmax(probs, post.calibration)
    return label if post.is_empty else post.apply(label)


@dataclass(frozen=True)
class Preparation:
    """What turns native slices into the network's input, without the weights (picklable).

    Worker processes call `prepare` (flip/transpose to the model's orientation, resampling to
    its spacing, its intensity normalisation) so that the main process only runs the network.

    Attributes:
        target_spacing_mm: the model's ``(row, col)`` spacing.
        normalisation: the model's intensity normalisation.
        is_canonicalising: whether slices are brought to the canonical orientation.
        context_slices: neighbours on each side a 2.5D model sees (0: the slice alone).
    """

    target_spacing_mm: tuple[float, float]
    normalisation: IntensityNormalisation
    is_canonicalising: bool
    context_slices: int = 0

    def prepare(
        self,
        images: Sequence[Slice],
        changes: Sequence[Reorientation] | None = None,
        *,
        pool: Sequence[Slice] = (),
        notes: list[str] | None = None,
    ) -> SpacedTensors:
        """The slices at the model's spacing, oriented and normalised (see `slices_to_spacing`);
        a 2.5D model's neighbours are found among ``images`` (give it whole series) and
        ``pool`` (slices only read as neighbours). ``notes``: when given, gets the orientation
        warnings' messages instead of their being warned (`reorientations_for`)."""
        if changes is None:
            canonical = self.is_canonicalising
            changes = (
                reorientations_for(images, notes=notes) if canonical else [IDENTITY] * len(images)
            )
        return slices_to_spacing(
            images,
            self.target_spacing_mm,
            reorientations=changes,
            normalisation=self.normalisation,
            context_slices=self.context_slices,
            context_pool=pool,
        )


def model_preparation(bundle: Bundle) -> Preparation | None:
    """A model's `Preparation`, from its file's metadata (None: an older square-grid file)."""
    meta = bundle.metadata
    if meta.target_spacing_mm is None:
        return None
    source = bundle.source or "the model"
    return Preparation(
        meta.target_spacing_mm,
        IntensityNormalisation.from_metadata(meta.normalisation, meta.intensity, source=source),
        is_canonicalising(meta.orientation, source=source),
        meta.context_slices,
    )


def spaced_subset(parts: Sequence[tuple[SpacedTensors, int]]) -> SpacedTensors:
    """One `SpacedTensors` of slices picked from several (each ``(tensors, index)``)."""
    first = parts[0][0]
    return SpacedTensors(
        images=tuple(t.images[i] for t, i in parts),
        labels=None,
        geometries=tuple(t.geometries[i] for t, i in parts),
        keys=tuple(t.keys[i] for t, i in parts),
        reorientations=tuple(t.reorientations[i] for t, i in parts),
        target_spacing_mm=first.target_spacing_mm,
    )


class Engine:
    """A model ready to predict slices on their own grids: network, device, options.

    Build it once per run (the network is folded once) and call `labels` per batch of slices.

    Example:
        >>> engine = Engine(load_bundle("model/sliceseg_best.pt"), torch.device("cpu"))
        >>> labels = engine.labels(read_series(Path("scans/p01")))
    """

    def __init__(self, bundle: Bundle, device: torch.device, *, tta: bool = False) -> None:
        self.bundle = bundle
        self.device = device
        self.tta = tta
        meta = bundle.metadata
        self.is_spaced = meta.target_spacing_mm is not None
        model = bundle.model.to(device).eval()
        self.network = inference_network(model) if self.is_spaced else model
        self.post = PostProcessing.from_dict(meta.postprocessing or {})
        self.divisor = required_divisor(meta.arch, meta.hyperparameters)
        self.feature_pooling = feature_pooling_of(meta.familiarity)  # as its profile's
        self._feature_layer: torch.nn.Module | None = None

    @property
    def feature_layer(self) -> torch.nn.Module:
        """The network's deepest module (`deepest_module`, found once by a probe pass)."""
        if self._feature_layer is None:
            self._feature_layer = deepest_module(self.network, side=4 * self.divisor)
        return self._feature_layer

    @property
    def preparation(self) -> Preparation | None:
        """The model's input preparation for worker processes (None: an older square-grid file)."""
        return model_preparation(self.bundle)

    def prepare(
        self,
        images: Sequence[Slice],
        changes: Sequence[Reorientation] | None = None,
        *,
        pool: Sequence[Slice] = (),
    ) -> SpacedTensors:
        """The slices as a model with a target spacing takes them (`Preparation.prepare`)."""
        preparation = self.preparation
        if preparation is None:
            raise ValueError("prepare: an older square-grid model file has no target spacing.")
        return preparation.prepare(images, changes, pool=pool)

    def reorientations(self, images: Sequence[Slice]) -> list[Reorientation]:
        """Per slice, the flip/transpose to the model's orientation (none for older files)."""
        meta = self.bundle.metadata
        if is_canonicalising(meta.orientation, source=self.bundle.source or "the model"):
            return reorientations_for(images)
        return [IDENTITY] * len(images)

    @torch.inference_mode()
    def labels(
        self,
        images: Sequence[Slice],
        *,
        changes: Sequence[Reorientation] | None = None,
        sink: ProbabilitySink | None = None,
        batch_size: int = 8,
        spaced: SpacedTensors | None = None,
        features: list[np.ndarray | None] | None = None,
        feature_slices: Collection[int] | None = None,
    ) -> list[np.ndarray]:
        """Label maps of a few slices, each on its own grid (uint8, values 0..K).

        ``spaced``: the slices already prepared (`Preparation.prepare`, e.g. in a worker).
        ``features``: when given, gets per slice its deepest features from the same passes
        (`slice_features`; None where they would differ from a separate look: several
        windows, a window larger than the slice needs, autocast on CUDA, older model files).
        ``feature_slices``: the slices (indices into ``images``) whose features are pooled
        (None: all); the others get None (e.g. those the familiarity check never reads).
        """
        meta = self.bundle.metadata
        if meta.target_spacing_mm is None:  # older files: the square grid they trained on
            changes = list(changes) if changes is not None else self.reorientations(images)
            if features is not None:
                features.extend([None] * len(images))
            return self._grid_labels(images, changes, sink)
        if spaced is None:
            spaced = self.prepare(images, changes)
        chosen = range(len(images)) if feature_slices is None else set(feature_slices)
        wanted = [i in chosen for i in range(len(images))] if features is not None else None
        probs = self._probabilities(spaced.images, batch_size, features, wanted)
        labels = []
        for prob, geometry, change in zip(
            probs, spaced.geometries, spaced.reorientations, strict=True
        ):
            native = change.undo(probabilities_to_native(prob, geometry))
            labels.append(self._emit(native, finish_label(native, self.post), sink))
        return labels

    def _probabilities(
        self,
        images: Sequence[torch.Tensor],
        batch_size: int,
        features: list[np.ndarray | None] | None,
        wanted: Sequence[bool] | None,
    ) -> list[torch.Tensor]:
        """Probabilities at the target spacing, left on the device (native grid, argmax and
        confidence are taken there); per slice its deepest features into ``features`` (those
        ``wanted``). Slices of one shape share passes (`shape_groups`), whatever else the call
        holds."""
        probs: list[torch.Tensor | None] = [None] * len(images)
        found: list[np.ndarray | None] = [None] * len(images)
        for members in shape_groups(images):
            group = [images[i] for i in members]
            wants = [wanted[i] for i in members] if wanted is not None else None
            answers = self._group_probabilities(group, batch_size, wants)
            for i, each, feature in zip(members, *answers, strict=True):
                probs[i], found[i] = each, feature
        if features is not None:
            features.extend(found)
        return [cast(torch.Tensor, p) for p in probs]

    def _group_probabilities(
        self, images: Sequence[torch.Tensor], batch_size: int, wanted: Sequence[bool] | None
    ) -> tuple[list[torch.Tensor], list[np.ndarray | None]]:
        """`_probabilities` of slices of one shape, in one window, and the features of those
        ``wanted`` (None where they are not the separate look's, or not asked for)."""
        meta = self.bundle.metadata
        window = network_window(
            self.network, images, input_size=meta.input_size, divisor=self.divisor
        )
        # per window run, whether to pool its features (none asked for: none)
        tapped = (
            [] if wanted is None else feature_windows(images, window, self.divisor, wanted=wanted)
        )
        tapping = any(tapped) and not autocasts(self.device)
        tap = FeatureTap(self.feature_layer, pooling=self.feature_pooling) if tapping else None
        passes: list[torch.Tensor] = []
        ran = 0  # windows run so far, in `spaced_probabilities`' order

        def predictor(batch: torch.Tensor) -> torch.Tensor:
            nonlocal ran
            rows = [k for k, is_tapped in enumerate(tapped[ran : ran + len(batch)]) if is_tapped]
            ran += len(batch)
            if tap is None or not rows:
                return network_probabilities(self.network, batch, tta=self.tta)
            # The untransformed pass runs first (TTA_TRANSFORMS): the tap takes that one.
            with tap, tap.watching(batch, rows=rows):
                probs = network_probabilities(self.network, batch, tta=self.tta)
            passes.append(tap.taken.pop())
            return probs

        probs = spaced_probabilities(
            predictor,
            images,
            window=window,
            device=self.device,
            batch_size=batch_size,
            keep_on_device=True,
        )
        found = slice_features(images, window, passes, self.divisor, wanted=wanted) if tap else None
        return probs, found or [None] * len(images)

    def _grid_labels(
        self,
        images: Sequence[Slice],
        changes: Sequence[Reorientation],
        sink: ProbabilitySink | None,
    ) -> list[np.ndarray]:
        """Plain argmax of older model files on the square grid they were trained with."""
        grid = slices_to_grid(images, self.bundle.metadata.input_size, reorientations=changes)
        probs = network_probabilities(self.network, grid.images.to(self.device), tta=self.tta)
        places = zip(probs.cpu(), grid.geometries, grid.reorientations, strict=True)
        natives = [
            change.undo(probabilities_from_grid(p, geometry)) for p, geometry, change in places
        ]
        return [self._emit(p, p.argmax(dim=0).to(torch.uint8).numpy(), sink) for p in natives]

    @staticmethod
    def _emit(probs: torch.Tensor, label: np.ndarray, sink: ProbabilitySink | None) -> np.ndarray:
        if sink is not None:
            sink(probs, label)
        return label
