"""Shared test helpers: tiny DICOM files written with pydicom."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

TEST_SERIES_UID = "1.2.826.0.1.3680043.8.498.1"


def write_test_dicom(
    path: Path,
    pixels: np.ndarray,
    *,
    spacing: tuple[float, float] | None = (0.5, 0.8),
    series_uid: str = TEST_SERIES_UID,
    instance: int = 1,
    slope: float | None = None,
    intercept: float | None = None,
    photometric: str = "MONOCHROME2",
    preamble: bool = True,
) -> Path:
    """Write a small uncompressed MR DICOM and return its path.

    Args:
        path: where to write (parents are created); any suffix or none.
        pixels: (rows, cols) integer stored values, or (frames, rows, cols) for a multi-frame file;
            int16 data is written signed (PixelRepresentation 1), anything else as uint16.
        spacing: (row, col) PixelSpacing in mm, or None to leave it out.
        series_uid: SeriesInstanceUID.
        instance: InstanceNumber.
        slope: RescaleSlope (with ``intercept``), or None to leave both out.
        intercept: RescaleIntercept.
        photometric: PhotometricInterpretation.
        preamble: write the 128-byte preamble and 'DICM'; False writes a bare dataset.
    """
    array = np.asarray(pixels)
    is_signed = array.dtype == np.int16
    array = array.astype(np.int16 if is_signed else np.uint16)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "MR"
    ds.SeriesInstanceUID = series_uid
    ds.InstanceNumber = instance
    ds.ImagePositionPatient = [0.0, 0.0, float(instance)]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    if spacing is not None:
        ds.PixelSpacing = list(spacing)
    if slope is not None:
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept or 0.0
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = array.shape[-2:]
    if array.ndim == 3:
        ds.NumberOfFrames = array.shape[0]
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelRepresentation = int(is_signed)
    ds.PixelData = array.tobytes()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if preamble:
        ds.save_as(path, enforce_file_format=True)
    else:
        pydicom.dcmwrite(path, ds, enforce_file_format=False)
    return path


@pytest.fixture(scope="session")
def tiny_phantom(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small phantom: 3 training subjects × 3 slices, 1 test subject × 3 slices, small grids."""
    from sliceseg.phantom.generate import generate_phantom

    out = tmp_path_factory.mktemp("phantom") / "phantom"
    generate_phantom(
        out,
        train_subjects=3,
        test_subjects=1,
        slices_per_subject=3,
        seed=7,
        matrix_sizes=[(112, 96), (96, 96)],
    )
    return out


def tiny_config(data: Path, out: Path, **changes):
    """Settings that train in seconds: 2 epochs on a 64-pixel grid, checkpoint every epoch."""
    from sliceseg.training.config import TrainConfig

    settings = dict(
        data_dir=str(data),
        out_dir=str(out),
        epochs=2,
        input_shape=64,
        batch_size=4,
        print_checkpoint=1,
        save_checkpoint=1,
    )
    settings.update(changes)
    return TrainConfig(**settings)


@pytest.fixture(scope="session")
def tiny_model(tiny_phantom: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model trained for two epochs on the tiny phantom (for prediction plumbing, not quality)."""
    from sliceseg.training.loop import train

    out = tmp_path_factory.mktemp("model")
    config = tiny_config(tiny_phantom / "train", out, save_checkpoint=2, overwrite=True)
    return train(config, log=lambda _line: None).best_model
