"""Prediction on a folder: native-grid label maps, overlays, animation, areas, report."""

from __future__ import annotations

import shutil

import imageio.v3 as iio
import numpy as np
import pandas as pd
import pytest

from conftest import write_test_dicom
from sliceseg.inference.folder import predict_folder
from sliceseg.inference.predict import predict_slices
from sliceseg.io.dicom_folder import read_series
from sliceseg.io.identity import series_name_key
from sliceseg.io.labels import read_label_file
from sliceseg.io.series_plan import plan_cohort
from sliceseg.models.bundle import load_bundle

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def segmented(tiny_model, tiny_phantom, tmp_path_factory):
    out = tmp_path_factory.mktemp("seg") / "results"
    return predict_folder(tiny_model, tiny_phantom / "test" / "dicoms", out)


def test_label_maps_are_on_each_slices_native_grid(segmented):
    for prediction in segmented.predictions:
        path = segmented.out_dir / "labels" / f"{prediction.key}.png"
        stored = read_label_file(path).values
        assert stored.shape == prediction.image.shape
        np.testing.assert_array_equal(stored, prediction.label)
        assert set(np.unique(stored)) <= set(range(7))


def test_overlays_animation_tables_and_report_exist(segmented):
    n = len(segmented.predictions)
    assert len(list((segmented.out_dir / "overlays").rglob("*.jpg"))) == n
    frames = iio.imread(segmented.animations[0], index=None)
    assert frames.shape[0] == n
    wide = pd.read_csv(segmented.out_dir / "csa.csv", index_col="slice")
    assert list(wide.index) == [str(i) for i in range(1, n + 1)] + ["mean", "std", "n"]
    long = pd.read_csv(segmented.out_dir / "csa_long.csv")
    assert len(long) == n * 6
    html = segmented.report.read_text(encoding="utf-8")
    assert "vertebral body" in html


def test_no_output_names_the_patient_by_default(segmented):
    assert segmented.predictions[0].image.patient_id.startswith("PHANTOM-")
    texts = [p.read_text(encoding="utf-8") for p in segmented.out_dir.rglob("*.csv")]
    texts.append(segmented.report.read_text(encoding="utf-8"))
    for text in texts:
        assert "PHANTOM-" not in text and "Phantom^" not in text
    assert "patient_id" not in pd.read_csv(segmented.out_dir / "csa_long.csv").columns


def test_areas_equal_pixel_count_times_spacing(segmented):
    prediction = segmented.predictions[0]
    row, col = prediction.image.spacing_mm
    expected = np.count_nonzero(prediction.label == 1) * row * col
    assert segmented.areas.wide.loc["1", "vertebral body"] == pytest.approx(expected)


def test_predict_restores_model_mode(tiny_model, tiny_phantom):
    bundle = load_bundle(tiny_model)
    bundle.model.train()
    images = read_series(tiny_phantom / "test" / "dicoms")[:2]
    labels = predict_slices(bundle, images, tta=True)
    assert bundle.model.training
    assert [label.shape for label in labels] == [image.shape for image in images]


def test_the_tables_name_each_series_as_its_exports(tiny_model, tiny_phantom, tmp_path):
    """A folder of three series: csa_long.csv's ``series`` held 1..3 and csa.csv's rows
    ``mean series 2``, while the exports (and a cohort's series.csv) name them sub01..."""
    dicoms = tiny_phantom / "train" / "dicoms"
    run = predict_folder(tiny_model, dicoms, tmp_path / "out", report=False, exports=("nifti",))
    names = [export.name for export in run.exports]
    assert sorted(names) == sorted(p.name for p in dicoms.iterdir()) and len(names) == 3
    long = pd.read_csv(run.out_dir / "csa_long.csv", dtype={"series": str})
    assert list(dict.fromkeys(long["series"])) == names
    wide = pd.read_csv(run.out_dir / "csa.csv", index_col="slice", dtype={"slice": str})
    assert [f"mean series {name}" for name in names] == [
        i for i in wide.index if i.startswith("mean series")
    ]
    assert run.areas.long["series"].tolist() == long["series"].tolist()  # in memory too
    assert run.areas.series[0] == 1  # a number still groups the slices


def test_each_series_plot_and_gif_take_the_tables_name(tiny_model, tiny_phantom, tmp_path):
    """Two series: ``areas_1.png`` and ``segmentation_1.gif`` were numbered while csa_long.csv
    named the series sub01...; now the files and the report's captions take those names."""
    dicoms = tmp_path / "two"
    for subject in sorted((tiny_phantom / "train" / "dicoms").iterdir())[:2]:
        shutil.copytree(subject, dicoms / subject.name)
    run = predict_folder(tiny_model, dicoms, tmp_path / "out")
    names = list(dict.fromkeys(pd.read_csv(run.out_dir / "csa_long.csv", dtype=str)["series"]))
    assert len(names) == 2 and all(name.startswith("sub") for name in names)
    assert sorted(p.name for p in run.out_dir.glob("areas*.png")) == [
        f"areas_{name}.png" for name in sorted(names)
    ]
    assert sorted(p.name for p in run.out_dir.glob("segmentation*.gif")) == [
        f"segmentation_{name}.gif" for name in sorted(names)
    ]
    assert [p.name for p in run.animations] == [f"segmentation_{name}.gif" for name in names]
    html = run.report.read_text(encoding="utf-8")
    assert all(f"series {name} (" in html for name in names)


def test_series_of_one_folder_are_named_once_as_the_cohort_names_them(tiny_model, tmp_path):
    """Eleven series in one folder, their files' order against their UIDs' order: the folder
    run named them by UID order to sort them, then again in the sorted order, where
    ``p01_10`` comes before ``p01_2``: a series' name hung on the order of the others. Now
    each is named once, as ``sliceseg predict`` (`plan_cohort`) names it."""
    root = tmp_path / "scans"
    for k in range(11):
        pixels = np.full((16, 16), 100 + k, np.uint16)
        write_test_dicom(root / "p01" / f"s{k:02d}.dcm", pixels, series_uid=f"1.2.826.0.1.{20 - k}")
    run = predict_folder(tiny_model, root, tmp_path / "out", report=False, exports=("nifti",))
    cohort = {series.key: series.name for series in plan_cohort(root).series}
    assert {export.series_uid: export.name for export in run.exports} == cohort
    long = pd.read_csv(run.out_dir / "csa_long.csv", dtype={"series": str})
    order = sorted(cohort.values(), key=series_name_key)  # as the cohort: p01_2 before p01_10
    assert list(dict.fromkeys(long["series"])) == order
    assert order.index("p01_2") < order.index("p01_10")
    assert cohort["1.2.826.0.1.18"] == "p01_3"  # the third file


@pytest.mark.parametrize(
    ("modality", "said"),
    [
        (
            None,
            "3 series have no (0008,0060) Modality in their files (sub01, sub02, sub03), so "
            "their muscle ROIs get no CT columns (imat_fraction, imat_mm2, "
            "muscle_radiodensity_hu); if they are CT, set Modality to CT in the files.",
        ),
        (
            "CT",
            "3 CT series have values that are not Hounsfield units (sub01, sub02, sub03); the "
            "first, sub01: CT whose lowest value after (0028,1052) RescaleIntercept / "
            "(0028,1053) RescaleSlope is ",
        ),
    ],
    ids=["no Modality", "not in HU"],
)
def test_series_lacking_tissue_columns_are_said_once(
    tiny_model, tiny_phantom, tmp_path, modality, said
):
    """A folder of several series without Modality, or CT without their rescale, printed that
    note once per series; a run says it once, naming how many series and the first few."""
    import warnings

    import pydicom

    dicoms = tmp_path / "dicoms"
    shutil.copytree(tiny_phantom / "train" / "dicoms", dicoms)
    for path in dicoms.rglob("*.dcm"):
        ds = pydicom.dcmread(path)
        if modality is None:
            del ds.Modality
        else:
            ds.Modality = modality
        ds.save_as(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        predict_folder(tiny_model, dicoms, tmp_path / "out", report=False, exports=())
    lines = [str(w.message) for w in caught]
    found = [line for line in lines if "Modality in" in line or "Hounsfield" in line]
    assert len(found) == 1 and found[0].startswith(said)
