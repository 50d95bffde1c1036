"""Shared test helpers: tiny DICOM files written with pydicom."""

from __future__ import annotations

import builtins
import contextlib
import errno
import io
import os
import shutil
import threading
import warnings
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

TEST_SERIES_UID = "1.2.826.0.1.3680043.8.498.1"
NOTEBOOK_KERNEL = ("sliceseg", "Python (sliceseg)")
"""The kernel the notebooks name and ``make lab`` registers: (name, display name)."""


def write_notebook_kernel(jupyter_dir: Path) -> Path:
    """Register the notebooks' kernel (`NOTEBOOK_KERNEL`) as ``make lab`` does, but in a
    Jupyter folder of the test's own (``jupyter_dir/kernels/sliceseg``; give ``jupyter_dir``
    as JUPYTER_PATH or JUPYTER_DATA_DIR): this interpreter, so the notebooks run the sliceseg
    under test."""
    from ipykernel.kernelspec import write_kernel_spec

    name, display_name = NOTEBOOK_KERNEL
    path = jupyter_dir / "kernels" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    return Path(write_kernel_spec(path, overrides={"display_name": display_name}))


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
    patient_id: str | None = None,
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
        patient_id: (0010,0020) PatientID, or None to leave it out.
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
    if patient_id is not None:
        ds.PatientID = patient_id
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


def copy_series(
    source: Path,
    target: Path,
    edit: Callable[[Dataset], None] | None = None,
    *,
    uid: str | None = None,
) -> Path:
    """Copy the DICOM series in ``source`` into ``target`` as another series: its own
    SeriesInstanceUID (``uid``, else a new one), new SOPInstanceUIDs, each file changed by
    ``edit`` first (pixels inverted, Modality relabelled, columns cut, ...)."""
    target.mkdir(parents=True)
    uid = uid or generate_uid()
    for path in sorted(source.glob("*.dcm")):
        ds = pydicom.dcmread(path)
        if edit is not None:
            edit(ds)
        ds.SeriesInstanceUID, ds.SOPInstanceUID = uid, generate_uid()
        ds.save_as(target / path.name)
    return target


def invert_pixels(ds: Dataset) -> None:
    """Invert a file's stored values (a contrast unlike any training slice's): for `copy_series`."""
    pixels = ds.pixel_array
    ds.PixelData = (int(pixels.max()) - pixels).astype(pixels.dtype).tobytes()


def write_ct_dicom(
    path: Path,
    stored: np.ndarray,
    *,
    slope: float | None = None,
    intercept: float | None = None,
    photometric: str = "MONOCHROME2",
    modality: str | None = "CT",
    series_uid: str = TEST_SERIES_UID,
    bits_stored: int | None = None,
) -> Path:
    """A CT file with only the rescale elements given (`write_test_dicom` writes both or
    neither); ``modality`` None leaves (0008,0060) out, ``bits_stored`` narrows the stored bits.
    """
    write_test_dicom(path, stored, photometric=photometric, series_uid=series_uid)
    ds = pydicom.dcmread(path)
    if modality is None:
        del ds.Modality
    else:
        ds.Modality = modality
    if bits_stored is not None:
        ds.BitsStored, ds.HighBit = bits_stored, bits_stored - 1
    if slope is not None:
        ds.RescaleSlope = slope
    if intercept is not None:
        ds.RescaleIntercept = intercept
    ds.save_as(path)
    return path


def small_phantom(
    tmp_path_factory: pytest.TempPathFactory,
    name: str,
    *,
    train_subjects: int,
    seed: int,
    matrix: tuple[int, int],
    slices_per_subject: int = 4,
) -> Path:
    """Generate a training-only phantom of one matrix size under a fresh temporary folder."""
    from sliceseg.phantom.generate import generate_phantom

    out = tmp_path_factory.mktemp(name) / "phantom"
    generate_phantom(
        out,
        train_subjects=train_subjects,
        test_subjects=0,
        slices_per_subject=slices_per_subject,
        seed=seed,
        matrix_sizes=[matrix],
    )
    return out


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


def one_slice_patients(phantom: Path, data: Path) -> Path:
    """Two patients of one L3-like slice each (``sub01``, ``sub02``: their ``_s01``), copied from
    a phantom's training data into ``data`` with its ``labels.txt``: one trains, one validates."""
    for subject in ("sub01", "sub02"):
        for kind in ("dicoms", "labels"):
            (source,) = (phantom / "train" / kind / subject).glob(f"{subject}_s01.*")
            (data / kind / subject).mkdir(parents=True)
            shutil.copyfile(source, data / kind / subject / source.name)
    shutil.copyfile(phantom / "train" / "labels.txt", data / "labels.txt")
    return data


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
        area_calibration=True,  # the tests of the calibration's plumbing need one chosen
    )
    settings.update(changes)
    return TrainConfig(**settings)


@pytest.fixture(scope="session")
def tiny_model(tiny_phantom: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model trained for two epochs on the tiny phantom (for prediction plumbing, not quality)."""
    from sliceseg.training.loop import train

    out = tmp_path_factory.mktemp("model")
    config = tiny_config(tiny_phantom / "train", out, save_checkpoint=2, overwrite=True)
    best = train(config, log=lambda _line: None).best_model
    # Whether two epochs' areas and features look "unlike the training data" depends on the
    # machine's float path: pin it, so no test depends on what this short training learnt.
    return with_network_checks_open(best, best)


def with_network_checks_open(model: Path, out: Path) -> Path:
    """The model with its profile's feature, area and position checks opened wide.

    A two-epoch network predicts areas and features no trained model would; opening those
    checks leaves the intensity check, which does not depend on the network, to decide.
    """
    from sliceseg.models.bundle import ModelMetadata, load_bundle, save_bundle

    bundle = load_bundle(model)
    data = dict(bundle.metadata.familiarity or {})
    k = bundle.metadata.num_labels
    data |= {
        "feature_threshold": 1e12,
        "area_low_mm2": [0.0] * k,
        "area_high_mm2": [1e12] * k,
        "presence": [0.0] * k,
        "distance_low_mm": [-1e12] * k,
        "distance_high_mm": [1e12] * k,
    }
    metadata = ModelMetadata.from_dict({**bundle.metadata.to_dict(), "familiarity": data})
    return save_bundle(out, bundle.model, metadata)


LABEL_ROWS, LABEL_COLS = 20, 24


def square_label(value: int = 1, *, second: int | None = 2) -> np.ndarray:
    """A 20×24 map: a 10×10 square of ``value`` (40 mm² at 0.5 × 0.8 mm), a 4×6 box of ``second``.

    The box is 9.6 mm² at that spacing; ``second=None`` leaves it out.
    """
    label = np.zeros((LABEL_ROWS, LABEL_COLS), np.uint8)
    label[2:12, 3:13] = value
    if second is not None:
        label[14:18, 14:20] = second
    return label


def add_pair(
    root: Path,
    key: str,
    label: np.ndarray | None = None,
    *,
    label_suffix: str = ".png",
    image_name: str | None = None,
    spacing: tuple[float, float] | None = (0.5, 0.8),
    series_uid: str | None = None,
    image_shape: tuple[int, int] = (LABEL_ROWS, LABEL_COLS),
    patient_id: str | None = None,
) -> None:
    """Write dicoms/<key>.dcm (or ``image_name``) and labels/<key><label_suffix> under ``root``.

    Each key gets an InstanceNumber (and position) of its own: two files of one series, number,
    position and pixels are one image copied (`sliceseg.io.dicom_folder.find_copies`).
    """
    import imageio.v3 as iio
    import tifffile

    subject = key.split("/")[0] if "/" in key else "flat"
    image_path = root / "dicoms" / (image_name or f"{key}.dcm")
    pixels = np.full(image_shape, 100)
    uid = series_uid or f"1.2.{zlib.crc32(subject.encode()) % 997}"
    instance = zlib.crc32(key.encode()) % 9973 + 1
    write_test_dicom(
        image_path,
        pixels,
        spacing=spacing,
        series_uid=uid,
        instance=instance,
        patient_id=patient_id,
    )
    if label is None:
        return
    label_path = root / "labels" / f"{key}{label_suffix}"
    label_path.parent.mkdir(parents=True, exist_ok=True)
    if label_suffix == ".npy":
        np.save(label_path, label)
    elif label_suffix in (".tif", ".tiff"):
        tifffile.imwrite(label_path, label)
    else:
        iio.imwrite(label_path, label, **({"quality": 75} if label_suffix == ".jpg" else {}))


def with_postprocessing(model: Path, out: Path, postprocessing: dict) -> Path:
    """Copy a model file with the post-processing and area calibration given (plain data of
    `PostProcessing`), so that a test does not depend on what a short training chose."""
    import dataclasses

    from sliceseg.models.bundle import load_bundle, save_bundle

    bundle = load_bundle(model)
    metadata = dataclasses.replace(bundle.metadata, postprocessing=postprocessing)
    return save_bundle(out, bundle.model, metadata)


@contextlib.contextmanager
def warning_from_another_thread(message: str) -> Iterator[Callable[[], None]]:
    """A thread that warns ``message`` (a UserWarning) when the block calls the ``pause`` it
    gets, which returns once it has: the warning then falls inside whatever the block is doing
    (as a cohort's writer threads warn while the main thread decodes), with no timing luck."""
    inside, said = threading.Event(), threading.Event()

    def warn() -> None:
        inside.wait(10)
        warnings.warn(message, UserWarning, stacklevel=1)
        said.set()

    def pause() -> None:
        if not inside.is_set():
            inside.set()
            assert said.wait(10), "the other thread did not warn"

    thread = threading.Thread(target=warn)
    thread.start()
    try:
        yield pause
    finally:
        inside.set()
        thread.join()


@contextlib.contextmanager
def warning_during(
    monkeypatch: pytest.MonkeyPatch, owner: object, attribute: str, message: str
) -> Iterator[None]:
    """Inside the block, ``owner.attribute`` first lets another thread warn ``message``
    (`warning_from_another_thread`), then does its work: the warning falls inside that call."""
    real = getattr(owner, attribute)
    with warning_from_another_thread(message) as pause:

        def paused(*args: Any, **kwargs: Any) -> Any:
            pause()
            return real(*args, **kwargs)

        monkeypatch.setattr(owner, attribute, paused)
        yield


class FullDiskFile(io.RawIOBase):
    """A file on a full disk: opened, but every write fails as the OS's does (no file named)."""

    def writable(self) -> bool:
        return True

    def write(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def full_disk_on_write(monkeypatch, written: str) -> None:
    """Make the writes (not the opening) of the files whose (temporary) name starts with
    ``written`` fail as on a full disk: text is buffered, so the first write to fail is often
    the flush when the file is closed."""
    real = io.open

    def full(file, mode="r", *args, **kwargs):
        named = isinstance(file, (str, os.PathLike))
        if not (named and "w" in mode and Path(file).name.startswith(written)):
            return real(file, mode, *args, **kwargs)
        given = dict(zip(("buffering", "encoding", "errors", "newline"), args, strict=False))
        given |= kwargs
        if "b" in mode and given.get("buffering") == 0:
            return FullDiskFile()
        buffered = io.BufferedWriter(FullDiskFile())
        if "b" in mode:
            return buffered
        text = {key: given.get(key) for key in ("encoding", "errors", "newline")}
        return io.TextIOWrapper(buffered, **text)

    monkeypatch.setattr(io, "open", full)
    monkeypatch.setattr(builtins, "open", full)
