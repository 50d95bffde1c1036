"""A synthetic cohort for ``bench/cohort.py``: one rendered phantom series copied into thousands.

Rendering a phantom slice costs tens of milliseconds; a cohort of 10,000 slices is instead made
from one rendered series (``LONG_SERIES`` slices) whose DICOM datasets are rewritten with new
Study/Series/SOP Instance UIDs, PatientID and InstanceNumber, and a small per-series intensity
offset and PixelSpacing (series ``s`` at ``1 + (s mod 97) / 10,000`` times the template's), so
that no two series are byte-identical and their areas differ as different patients' do. Two
shapes:

- ``l3``: one slice per series (opportunistic CT at L3: one slice per patient), slice ``i``
  taken from the template's slice ``i mod LONG_SERIES``;
- ``long``: series of ``LONG_SERIES`` slices (a biobank MRI study), each the whole template.

A quick model is trained on a separate small phantom (quality does not matter for speed).
``spacing_mm`` restamps the (0028,0030) PixelSpacing of both phantoms (column spacing set to it,
the row/column ratio kept), so that a 512² cohort has a CT's 0.7–0.9 mm pixels (the phantom's
body alone would give ~0.6 mm) and the model's target spacing is the cohort's: the network then
works on a grid of about the slices' own size, as a model trained on such scans does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

LONG_SERIES = 50  # slices per series of the "long" shape
SHAPES = ("l3", "long")
NAMESPACE = "sliceseg-bench-cohort"


def train_quick_model(
    work: Path,
    *,
    matrix: int,
    epochs: int,
    spacing_mm: float | None = None,
    input_shape: int | None = None,
) -> Path:
    """Train a U-Net for a few epochs on a small phantom at ``matrix``²; return the model file.

    Crops of ``input_shape`` pixels; by default 160 up to a 128² matrix (as the bench always
    trained), 256 above (a 512² CT at 0.8 mm: a 20 cm crop, where `view` auto keeps the native
    spacing). ``input_shape`` 160 at 512² trains as a user's defaults do: `view` auto coarsens
    to about 1.8 mm. The U-Net is size-free in eval: ``predict`` runs whole slices.
    """
    from sliceseg.phantom.generate import generate_phantom
    from sliceseg.training.config import TrainConfig
    from sliceseg.training.loop import train

    model = work / "model" / "sliceseg_best.pt"
    if model.is_file():
        return model
    phantom = generate_phantom(
        work / "train_phantom",
        train_subjects=4,
        test_subjects=0,
        slices_per_subject=4,
        matrix_sizes=[(matrix, matrix)],
        overwrite=True,
    )
    restamp_spacing(phantom.train_dir / "dicoms", spacing_mm)
    config = TrainConfig(
        data_dir=str(phantom.train_dir),
        out_dir=str(work / "model"),
        input_shape=input_shape or (160 if matrix <= 128 else 256),
        epochs=epochs,
        batch_size=4,
        print_checkpoint=epochs,
        save_checkpoint=epochs,
        overwrite=True,
    )
    best = train(config, log=lambda _line: None).best_model
    if best != model:
        best.replace(model)
    return model


def template_series(work: Path, *, matrix: int, spacing_mm: float | None = None) -> list[Dataset]:
    """Render one phantom series of ``LONG_SERIES`` slices at ``matrix``² and read it back."""
    from sliceseg.phantom.generate import generate_phantom

    done = work / "template_phantom" / ".complete"
    if done.is_file():  # rendered (and restamped) by an earlier run
        files = sorted((work / "template_phantom" / "test" / "dicoms").rglob("*.dcm"))
        return [pydicom.dcmread(path) for path in files]
    summary = generate_phantom(
        work / "template_phantom",
        train_subjects=1,
        test_subjects=1,
        slices_per_subject=LONG_SERIES,
        seed=11,
        matrix_sizes=[(matrix, matrix)],
        overwrite=True,
    )
    restamp_spacing(summary.test_dir / "dicoms", spacing_mm)
    done.write_text("ok\n")
    files = sorted((summary.test_dir / "dicoms").rglob("*.dcm"))
    return [pydicom.dcmread(path) for path in files]


def restamp_spacing(folder: Path, spacing_mm: float | None) -> None:
    """Give every DICOM under ``folder`` a column spacing of ``spacing_mm`` (row/col ratio kept).

    None leaves the phantom's own spacing (its body fills 80–92 % of the width).
    """
    if spacing_mm is None:
        return
    for path in sorted(folder.rglob("*.dcm")):
        ds = pydicom.dcmread(path)
        row, col = (float(v) for v in ds.PixelSpacing)
        ds.PixelSpacing = [f"{row * spacing_mm / col:.6f}", f"{spacing_mm:.6f}"]
        ds.save_as(path, enforce_file_format=True)


def write_cohort(folder: Path, templates: list[Dataset], *, shape: str, slices: int) -> int:
    """Write ``slices`` DICOM files of the given shape under ``folder``; return the series count.

    Layout: ``folder/<series index>/s<slice>.dcm``, one folder per series (patient).
    """
    per_series = 1 if shape == "l3" else len(templates)
    count = -(-slices // per_series)
    pixels = [ds.pixel_array.astype(np.uint16) for ds in templates]
    spacings = [[float(v) for v in ds.PixelSpacing] for ds in templates]
    written = 0
    for series in range(count):
        ds_uids = _series_uids(series)
        for index in range(min(per_series, slices - written)):
            source = (series + index) % len(templates) if per_series == 1 else index
            ds = templates[source]
            _restamp(ds, ds_uids, series=series, index=index)
            ds.PixelData = (pixels[source] + np.uint16(series % 7)).astype("<u2").tobytes()
            scale = 1 + (series % 97) / 10_000
            ds.PixelSpacing = [f"{v * scale:.6f}" for v in spacings[source]]
            path = folder / f"{series:06d}" / f"s{index:03d}.dcm"
            path.parent.mkdir(parents=True, exist_ok=True)
            ds.save_as(path, enforce_file_format=True)
            written += 1
    return count


def _series_uids(series: int) -> dict[str, str]:
    parts = [NAMESPACE, str(series)]
    return {
        "StudyInstanceUID": generate_uid(entropy_srcs=[*parts, "study"]),
        "SeriesInstanceUID": generate_uid(entropy_srcs=[*parts, "series"]),
        "FrameOfReferenceUID": generate_uid(entropy_srcs=[*parts, "frame"]),
    }


def _restamp(ds: Dataset, uids: dict[str, str], *, series: int, index: int) -> None:
    """Give ``ds`` (a template slice, reused in place) the identity of one cohort slice."""
    for keyword, uid in uids.items():
        setattr(ds, keyword, uid)
    sop = generate_uid(entropy_srcs=[NAMESPACE, str(series), str(index), "instance"])
    ds.SOPInstanceUID = sop
    ds.file_meta.MediaStorageSOPInstanceUID = sop
    ds.PatientID = f"COHORT-{series:06d}"
    ds.PatientName = f"Cohort^{series:06d}"
    ds.InstanceNumber = index + 1


def cohort_folder(work: Path, templates: list[Dataset], *, shape: str, slices: int) -> Path:
    """The cohort of this shape and size under ``work``, written once and reused."""
    folder = work / f"cohort_{shape}_{slices}"
    done = folder / ".complete"
    if not done.is_file():
        write_cohort(folder, templates, shape=shape, slices=slices)
        done.write_text("ok\n")
    return folder
