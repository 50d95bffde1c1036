"""Tests for sliceseg.inference.predict: the target-spacing path, post-processing, older files."""

from __future__ import annotations

import dataclasses
import io
import re
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import write_test_dicom
from recording_network import Recorder
from sliceseg.inference.predict import predict_slices
from sliceseg.io.dicom import Slice, read_slice
from sliceseg.model_space.intensity import normalise_intensity
from sliceseg.models import build_model, default_hyperparameters
from sliceseg.models.bundle import Bundle, ModelMetadata, bundle_payload, load_bundle

SPACING = (0.7, 1.1)  # non-square pixels: 112 × 96 pixels are 78.4 mm × 105.6 mm


SEEN: list[tuple[int, ...]] = []  # the batch shapes a Threshold network was called with


class Threshold(torch.nn.Module):
    """A pixel-wise 'network': ROI 1 where the normalised intensity is above 0.

    It records the shape of every batch in ``SEEN`` (prediction runs a copy of it). With
    ``spatial_norm`` it holds an (unused) instance norm, so it is not size-free.
    """

    def __init__(self, *, spatial_norm: bool = False) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 2, 1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([0.0, 4.0]).view(2, 1, 1, 1))
            self.conv.bias.zero_()
        self.norm = torch.nn.InstanceNorm2d(1) if spatial_norm else torch.nn.Identity()
        SEEN.clear()

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        SEEN.append(tuple(x.shape))
        return [self.conv(x)]


def ellipse_slice(folder: Path, *, blob: bool = False) -> Slice:
    """A 112 × 96 slice: a bright ellipse (300) on 100, a gentle ramp, optionally a bright blob."""
    rows, cols = np.mgrid[0:112, 0:96]
    pixels = np.where(((rows - 50) / 38.0) ** 2 + ((cols - 45) / 30.0) ** 2 <= 1, 300, 100)
    pixels = pixels + rows // 8
    if blob:
        pixels[100:106, 85:91] = 300  # 36 pixels, apart from the ellipse
    return read_slice(write_test_dicom(folder / "a.dcm", pixels, spacing=SPACING))


def metadata(**changes: object) -> ModelMetadata:
    fields: dict = dict(
        arch="unet", hyperparameters={}, num_classes=2, input_size=64, roi_names=("a",)
    )
    fields.update(changes)
    return ModelMetadata(**fields)


class TestTargetSpacing:
    def test_at_the_slices_own_spacing_the_labels_are_the_pixelwise_truth(self, tmp_path):
        image = ellipse_slice(tmp_path)
        bundle = Bundle(Threshold(), metadata(input_size=32, target_spacing_mm=SPACING))
        label = predict_slices(bundle, [image], device="cpu")[0]
        expected = (normalise_intensity(image.pixels) > 0).astype(np.uint8)
        assert np.array_equal(label, expected)
        # size-free: the whole slice in one pass, padded to what depth 5 divides (16)
        assert SEEN == [(1, 1, 112, 96)]

    def test_a_coarser_spacing_keeps_the_area(self, tmp_path):
        image = ellipse_slice(tmp_path)
        bundle = Bundle(Threshold(), metadata(input_size=32, target_spacing_mm=(0.5, 0.5)))
        label = predict_slices(bundle, [image], device="cpu")[0]
        # 78.4 × 105.6 mm at 0.5 mm: 157 × 211 pixels, in one 160 × 224 window
        assert SEEN == [(1, 1, 160, 224)]
        assert label.shape == (112, 96)
        expected = int((normalise_intensity(image.pixels) > 0).sum())
        assert int(label.sum()) == pytest.approx(expected, rel=0.01)

    def test_a_network_with_instance_norms_sees_windows_of_input_size(self, tmp_path):
        image = ellipse_slice(tmp_path)
        model = Threshold(spatial_norm=True)
        bundle = Bundle(model, metadata(input_size=32, target_spacing_mm=(0.5, 0.5)))
        label = predict_slices(bundle, [image], device="cpu")[0]
        # 157 × 211 pixels: windows of 32 at a stride of 24, 7 × 9 of them, 8 per call
        assert {s[1:] for s in SEEN} == {(1, 32, 32)} and sum(s[0] for s in SEEN) == 63
        expected = int((normalise_intensity(image.pixels) > 0).sum())
        assert int(label.sum()) == pytest.approx(expected, rel=0.01)

    def test_the_post_processing_in_the_model_file_is_applied(self, tmp_path):
        image = ellipse_slice(tmp_path, blob=True)
        plain = Bundle(Threshold(), metadata(input_size=128, target_spacing_mm=SPACING))
        steps = {"steps": {"1": ["largest_component"]}}
        cleaned = Bundle(
            Threshold(), metadata(input_size=128, target_spacing_mm=SPACING, postprocessing=steps)
        )
        with_blob = predict_slices(plain, [image], device="cpu")[0]
        without = predict_slices(cleaned, [image], device="cpu")[0]
        assert with_blob[100:106, 85:91].all() and not without[100:106, 85:91].any()
        assert int(with_blob.sum()) - int(without.sum()) == 36


class Blocks(torch.nn.Module):
    """A size-free 'network' with the stride of a depth-5 U-Net: ROI 1 where the mean of the
    normalised intensities over a 16 × 16 block of its input is above 0."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 2, 1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([0.0, 4.0]).view(2, 1, 1, 1))
            self.conv.bias.zero_()

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        logits = self.conv(torch.nn.functional.avg_pool2d(x, 16))
        return [torch.nn.functional.interpolate(logits, scale_factor=16.0, mode="nearest")]


class TestPasses:
    def test_a_slices_labels_do_not_depend_on_the_slices_predicted_with_it(self, tmp_path):
        """112 × 96 at the model's spacing is its own window: blocks start at its first pixel.
        Beside a 130 × 130 slice, the pass's window was 144 × 144 and the slice sat 24 columns
        from its left edge: the network saw it shifted by half a block, and its labels
        (and areas) changed with the other slices of its batch."""
        image = ellipse_slice(tmp_path)
        bigger = dataclasses.replace(image, pixels=np.full((130, 130), 100.0, np.float32))
        bundle = Bundle(Blocks(), metadata(input_size=32, target_spacing_mm=SPACING))
        blocks = normalise_intensity(image.pixels).reshape(7, 16, 6, 16).mean(axis=(1, 3))
        expected = np.repeat(np.repeat(blocks > 0, 16, axis=0), 16, axis=1).astype(np.uint8)
        alone = predict_slices(bundle, [image], device="cpu")[0]
        beside = predict_slices(bundle, [image, bigger], device="cpu")[0]
        after = predict_slices(bundle, [bigger, image], device="cpu", batch_size=2)[1]
        assert np.array_equal(alone, expected)
        assert np.array_equal(beside, expected)
        assert np.array_equal(after, expected)

    def test_validation_sees_a_slice_as_predict_does_whatever_slices_are_beside_it(self):
        """Validation and the training profile run every validation slice in one call of the
        engine's `spaced_window_probabilities`: a slice there must get the probabilities it
        gets alone (as predict's passes of one shape give it), not those of a window padded
        to the largest slice of the set."""
        from sliceseg.engine.probabilities import spaced_window_probabilities

        generator = torch.Generator().manual_seed(0)
        small = torch.randn((1, 112, 96), generator=generator)
        big = torch.randn((1, 130, 130), generator=generator)
        network, cpu = Blocks(), torch.device("cpu")

        def run(images: list[torch.Tensor]) -> list[torch.Tensor]:
            return spaced_window_probabilities(
                network, images, input_size=32, divisor=16, device=cpu
            )

        alone = run([small])[0]
        together = run([small, big, small])
        assert torch.equal(together[0], alone) and torch.equal(together[2], alone)
        assert torch.equal(together[1], run([big])[0])
        labels = alone.argmax(dim=0).numpy()  # the block pattern from the slice's own corner
        blocks = small[0].numpy().reshape(7, 16, 6, 16).mean(axis=(1, 3)) > 0
        assert np.array_equal(labels, np.repeat(np.repeat(blocks, 16, 0), 16, 1))


def second_moments(mask: torch.Tensor) -> tuple[float, float]:
    """The (larger, smaller) principal second moments of a mask's pixels."""
    rows, cols = torch.nonzero(mask, as_tuple=True)
    covariance = np.cov(np.stack([rows.numpy(), cols.numpy()]).astype(np.float64))
    larger, smaller = sorted(np.linalg.eigvalsh(covariance), reverse=True)
    return float(larger), float(smaller)


class TestTestTimeAugmentation:
    """The TTA views are views training's augmentation could have made: rotations that turn
    pixels on a window of any shape, padded with the image's minimum (its background)."""

    def views(self, rows: int, cols: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
        from sliceseg.engine.probabilities import network_probabilities

        centre_r, centre_c = (
            torch.arange(n, dtype=torch.float32) - (n - 1) / 2 for n in (rows, cols)
        )
        disc = centre_r[:, None] ** 2 + centre_c[None, :] ** 2 <= 20.0**2
        image = torch.where(disc, 1.0, -1.0)[None, None]  # background -1: the minimum
        network = Recorder()
        network_probabilities(network, image, tta=True)
        return image, network.inputs

    def test_a_rotated_view_of_a_wide_window_keeps_a_disc_round(self):
        """On a 64 × 160 window (a size-free network's whole slice) the 6° views turned the
        normalised square: a 20-pixel disc became an ellipse of axes 1.25 : 1."""
        _, views = self.views(64, 160)
        for view in views[1:3]:  # ±6°
            larger, smaller = second_moments(view[0, 0] > 0)
            assert larger / smaller == pytest.approx(1.0, abs=0.03)

    def test_views_are_padded_with_the_images_minimum(self):
        """What comes in at the corners of a rotated or zoomed-out view was 0, the slice's
        mean intensity (a CT model's foreground mean): training pads with the minimum."""
        image, views = self.views(64, 64)
        for view in views[1:]:
            assert float(view[0, 0, 0, 0]) == pytest.approx(-1.0)
            assert float(view.min()) == pytest.approx(-1.0) and float(view.max()) <= 1.0
        assert torch.equal(views[0], image)


class TestPredictSlicesArguments:
    """``predict_slices`` takes a model file as the other workflows do, and refuses a batch
    size that predicts nothing, in sliceseg's own one-line errors."""

    @pytest.mark.parametrize("as_text", [True, False])
    def test_a_model_file_path_or_str_is_loaded(self, tmp_path, as_text):
        torch.manual_seed(0)
        model = build_model("unet", num_classes=2, input_size=32, depth=3)
        torch.save(bundle_payload(model, metadata(input_size=32, hyperparameters={"depth": 3})),
                   tmp_path / "m.pt")  # fmt: skip
        image = ellipse_slice(tmp_path)
        path = tmp_path / "m.pt"
        (label,) = predict_slices(str(path) if as_text else path, [image], device="cpu")
        expected = predict_slices(load_bundle(path), [image], device="cpu")[0]
        assert label.shape == (112, 96) and np.array_equal(label, expected)

    def test_a_missing_model_file_is_named(self, tmp_path):
        from sliceseg.errors import BundleError

        with pytest.raises(BundleError, match=r"missing\.pt: model file not found"):
            predict_slices(str(tmp_path / "missing.pt"), [ellipse_slice(tmp_path)])

    @pytest.mark.parametrize("size", [0, -1, 2.0])
    def test_a_batch_size_below_one_is_refused(self, tmp_path, size):
        from sliceseg.errors import ConfigError

        bundle = Bundle(Threshold(), metadata())
        with pytest.raises(
            ConfigError,
            match=re.escape(f"--batch-size (batch_size) must be a whole number ≥ 1, got {size}"),
        ):
            predict_slices(bundle, [ellipse_slice(tmp_path)], device="cpu", batch_size=size)


class TestOlderModelFiles:
    """A file written before target spacings predicts on its square grid, exactly as before."""

    def test_no_target_spacing_squeezes_onto_the_grid_as_before(self, tmp_path):
        image = ellipse_slice(tmp_path)
        label = predict_slices(Bundle(Threshold(), metadata()), [image], device="cpu")[0]
        assert SEEN == [(1, 1, 64, 64)]
        # pinned with the code before this change (commit eb0ce0f): same pixels, bit for bit
        assert (int(label.sum()), zlib.crc32(label.tobytes())) == (3642, 660705761)

    def test_loads_without_the_new_entries(self, tmp_path):
        torch.manual_seed(0)
        model = build_model("unet", num_classes=2, input_size=32, depth=3)
        payload = bundle_payload(model, metadata(input_size=32, hyperparameters={"depth": 3}))
        for key in ("target_spacing_mm", "postprocessing"):
            del payload["metadata"][key]  # as files from before this change were written
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        (tmp_path / "old.pt").write_bytes(buffer.getvalue())
        bundle = load_bundle(tmp_path / "old.pt")
        assert bundle.metadata.target_spacing_mm is None
        assert bundle.metadata.postprocessing is None
        label = predict_slices(bundle, [ellipse_slice(tmp_path)], device="cpu")[0]
        assert label.shape == (112, 96)

    @staticmethod
    def _pyramid_file(path: Path, dropout_rate: float, *, recorded: bool) -> Path:
        """A tiny pyramid's file; ``recorded=False`` leaves its rate out, as an old file."""
        torch.manual_seed(0)
        hyper = default_hyperparameters("pyramid", input_size=32) | {"dropout_rate": dropout_rate}
        model = build_model("pyramid", num_classes=2, input_size=32, **hyper)
        if not recorded:
            del hyper["dropout_rate"]
        payload = bundle_payload(model, metadata(arch="pyramid", input_size=32,
                                                 hyperparameters=hyper))  # fmt: skip
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        path.write_bytes(buffer.getvalue())
        return path

    def test_a_pyramid_without_a_recorded_dropout_rate_predicts_as_built_without(self, tmp_path):
        """Its missing rate means what it meant when it was written (no dropout), not today's
        default of 0.2, whose dropout layers its weights do not fit."""
        path = self._pyramid_file(tmp_path / "old.pt", 0.0, recorded=False)
        bundle = load_bundle(path)
        assert bundle.metadata.hyperparameters["dropout_rate"] == 0.0
        assert not any(isinstance(m, torch.nn.Dropout2d) for m in bundle.model.modules())
        torch.manual_seed(0)
        hyper = default_hyperparameters("pyramid", input_size=32) | {"dropout_rate": 0.0}
        built = build_model("pyramid", num_classes=2, input_size=32, **hyper).eval()
        image = ellipse_slice(tmp_path)
        label = predict_slices(bundle, [image], device="cpu")[0]
        same = predict_slices(Bundle(built, bundle.metadata), [image], device="cpu")[0]
        assert label.shape == (112, 96) and np.array_equal(label, same)

    def test_a_recorded_dropout_rate_is_kept(self, tmp_path):
        bundle = load_bundle(self._pyramid_file(tmp_path / "new.pt", 0.2, recorded=True))
        assert bundle.metadata.hyperparameters["dropout_rate"] == 0.2
        rates = {m.p for m in bundle.model.modules() if isinstance(m, torch.nn.Dropout2d)}
        assert rates == {0.2}


class TestFieldOfViewSpacing:
    """``--fov`` for a file without PixelSpacing is the slice's spacing everywhere (issue 17)."""

    def test_network_input_is_at_the_models_spacing(self, tmp_path):
        """200 × 200 pixels, --fov 90: 0.45 mm pixels; at the model's 0.9 mm that is
        200 · 0.45 / 0.9 = 100 pixels a side, padded to what depth 5 divides (16): 112.
        Before, the slice was taken to be at 0.9 mm already and reached the network at 208."""
        from sliceseg.inference.folder import predict_folder
        from sliceseg.measure.spacing import SpacingFallback

        rows, cols = np.mgrid[0:200, 0:200]
        pixels = np.where((rows - 100) ** 2 + (cols - 100) ** 2 <= 60**2, 300, 100)
        write_test_dicom(tmp_path / "in" / "a.dcm", pixels, spacing=None)
        bundle = Bundle(Threshold(), metadata(input_size=32, target_spacing_mm=(0.9, 0.9)))
        run = predict_folder(
            bundle,
            tmp_path / "in",
            tmp_path / "out",
            device="cpu",
            fallback=SpacingFallback(fov_mm=(90.0, 90.0)),
            report=False,
            exports=(),
        )
        assert SEEN == [(1, 1, 112, 112)]
        (prediction,) = run.predictions
        assert prediction.image.spacing_mm == pytest.approx((0.45, 0.45))
        assert prediction.image.spacing_source == "fov/matrix"
        row = run.areas.long.iloc[0]
        assert row["spacing_source"] == "fov/matrix"
        assert row["area_mm2"] == pytest.approx(row["pixels"] * 0.45 * 0.45)


class TestPredictFolderArguments:
    """``predict_folder`` reads its options as the CLI does and checks them before it predicts."""

    def _run(self, tmp_path: Path, exports: object):
        from sliceseg.inference.folder import predict_folder

        ellipse_slice(tmp_path / "in")
        bundle = Bundle(Threshold(), metadata(input_size=32, target_spacing_mm=SPACING))
        return predict_folder(
            bundle, tmp_path / "in", tmp_path / "out", device="cpu", report=False, exports=exports
        )

    def test_one_format_as_a_string_is_that_format(self, tmp_path):
        run = self._run(tmp_path, "nifti")
        (exported,) = run.exports
        assert [f.name for f in exported.files] == ["in.nii.gz"]

    def test_a_second_run_into_the_same_folder_names_the_python_argument(self, tmp_path):
        """A notebook cell run twice: refused as the CLI refuses, naming ``overwrite=True``."""
        from sliceseg.errors import ConfigError

        first = self._run(tmp_path, "none")
        label = (first.out_dir / "labels" / "a.png").read_bytes()
        expected = "not empty; choose another --out or pass --overwrite (overwrite=True)."
        with pytest.raises(ConfigError, match=re.escape(expected)):
            self._run(tmp_path, "none")
        assert (first.out_dir / "labels" / "a.png").read_bytes() == label

    def test_one_roi_name_as_a_string_names_the_one_roi(self, tmp_path):
        """``roi_names="psoas"`` for a one-ROI model was refused as five names."""
        from sliceseg.inference.folder import predict_folder

        ellipse_slice(tmp_path / "in")
        bundle = Bundle(Threshold(), metadata(input_size=32, target_spacing_mm=SPACING))
        run = predict_folder(bundle, tmp_path / "in", tmp_path / "out", device="cpu",
                             report=False, exports="none", roi_names="psoas")  # fmt: skip
        assert "psoas" in run.areas.wide.columns and "p" not in run.areas.wide.columns

    def test_the_run_lists_each_slice_s_overlay(self, tmp_path):
        """The test notebook found its overlay by globbing ``out_dir/overlays`` itself."""
        run = self._run(tmp_path, "none")
        assert run.overlays == [tmp_path / "out" / "overlays" / "a.jpg"]
        assert run.overlays[0].stat().st_size > 1_000

    def test_an_unknown_format_fails_before_any_output_is_written(self, tmp_path):
        from sliceseg.errors import ConfigError

        with pytest.raises(ConfigError, match=r"unknown format.*nii; expected"):
            self._run(tmp_path, ["nii"])
        assert not (tmp_path / "out").exists()

    def test_an_unknown_muscle_roi_fails_before_any_output_is_written(self, tmp_path):
        from sliceseg.errors import ConfigError
        from sliceseg.inference.folder import predict_folder
        from sliceseg.measure.tissue import TissueSettings

        ellipse_slice(tmp_path / "in")
        bundle = Bundle(Threshold(), metadata(input_size=32, target_spacing_mm=SPACING))
        expected = "'psoas' is not an ROI of this run; its ROIs are 'a'"
        with pytest.raises(ConfigError, match=expected):
            predict_folder(
                bundle,
                tmp_path / "in",
                tmp_path / "out",
                device="cpu",
                tissue=TissueSettings(muscle_rois=("psoas",)),
            )
        assert not (tmp_path / "out").exists()
        assert SEEN == []  # nothing was predicted
