"""Tests for sliceseg.measure.tissue: intensity statistics and CT muscle composition."""

from __future__ import annotations

import dataclasses
import functools
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest

from conftest import write_ct_dicom, write_test_dicom
from sliceseg.errors import ConfigError
from sliceseg.io.dicom import Slice, read_slice
from sliceseg.measure.areas import measure_areas
from sliceseg.measure.tissue import CT_COLUMNS, TissueSettings, hu_problem, tissue_statistics

NAMES = ["vertebral body", "left psoas major"]


def _ct_slice(pixels: np.ndarray, *, modality: str = "CT") -> Slice:
    return Slice(
        pixels=pixels.astype(np.float32),
        spacing_mm=(0.5, 0.8),
        spacing_source="PixelSpacing",
        source=Path("ct/s01.dcm"),
        modality=modality,
    )


def _series_of_one_slice(slices: list[Slice]) -> tuple[list[Slice], list[str]]:
    """Slice i as the one slice of series ``p{i}`` (its folder, its own SeriesInstanceUID), and
    the slices' keys, which name the series as the tables do."""
    images = [
        dataclasses.replace(image, source=Path(f"p{i}/s01.dcm"), series_uid=f"1.2.{i}")
        for i, image in enumerate(slices)
    ]
    return images, [f"p{i}/s01" for i in range(len(slices))]


def _known_hu() -> tuple[np.ndarray, np.ndarray]:
    """A psoas of 100 pixels: 20 at −100 HU (fat), 80 at +50 HU; a vertebra of 12 at 300 HU.

    Psoas: mean (20·−100 + 80·50) / 100 = 20 HU, median 50, deviations −120 / +30 →
    variance (20·14400 + 80·900) / 100 = 3600, SD 60; IMAT 20 / 100 = 0.2, 20 × 0.4 = 8 mm²;
    radiodensity over −29..150 HU = 50.
    """
    hu = np.full((20, 24), -1000.0)  # air around
    label = np.zeros((20, 24), np.uint8)
    label[2:12, 3:13] = 2
    hu[2:12, 3:13] = 50.0
    hu[2:4, 3:13] = -100.0  # 2 rows × 10 = 20 fat pixels
    label[14:17, 14:18] = 1
    hu[14:17, 14:18] = 300.0
    return hu, label


class TestTissueStatistics:
    def test_known_hu_values(self):
        hu, label = _known_hu()
        stats = tissue_statistics(
            hu[label == 2], roi_name="left psoas major", modality="CT", pixel_mm2=0.4
        )
        assert stats == pytest.approx(
            {
                "mean_intensity": 20.0,
                "std_intensity": 60.0,
                "median_intensity": 50.0,
                "imat_fraction": 0.2,
                "imat_mm2": 8.0,
                "muscle_radiodensity_hu": 50.0,
            },
            abs=1e-9,
        )

    def test_thresholds_are_inclusive_and_configurable(self):
        values = np.array([-190.0, -30.0, -29.0, 150.0, 151.0, -191.0])
        stats = tissue_statistics(values, roi_name="psoas", modality="CT", pixel_mm2=1.0)
        assert stats["imat_fraction"] == pytest.approx(2 / 6)
        assert stats["muscle_radiodensity_hu"] == pytest.approx((-29.0 + 150.0) / 2)
        wider = TissueSettings(adipose_hu=(-200.0, -29.0), muscle_hu=(-28.0, 160.0))
        stats = tissue_statistics(values, roi_name="psoas", modality="CT", pixel_mm2=1.0,
                                  settings=wider)  # fmt: skip
        assert stats["imat_fraction"] == pytest.approx(4 / 6)
        assert stats["muscle_radiodensity_hu"] == pytest.approx((150.0 + 151.0) / 2)

    def test_not_a_muscle_or_not_ct_has_no_composition(self):
        values = np.array([-100.0, 50.0])
        assert not set(CT_COLUMNS) & set(
            tissue_statistics(values, roi_name="vertebral body", modality="CT", pixel_mm2=1.0)
        )
        assert not set(CT_COLUMNS) & set(
            tissue_statistics(values, roi_name="psoas", modality="MR", pixel_mm2=1.0)
        )

    def test_named_muscles_override_the_words(self):
        settings = TissueSettings(muscle_rois=("ROI 3",))
        assert settings.is_muscle("ROI 3") and not settings.is_muscle("left psoas major")

    def test_empty_roi_is_nan_with_no_fat_area(self):
        stats = tissue_statistics(np.array([]), roi_name="psoas", modality="CT", pixel_mm2=1.0)
        assert stats.pop("imat_mm2") == 0.0
        assert all(np.isnan(v) for v in stats.values())


class TestTissueSettings:
    def test_one_name_as_a_string_is_one_roi(self):
        """``muscle_rois="psoas"`` from a notebook was split into 'p', 's', 'o', ...: no ROI
        was a muscle, and `check_muscle_rois` refused 'p' as an unknown ROI."""
        settings = TissueSettings(muscle_rois="left psoas major")
        assert settings.muscle_rois == ("left psoas major",)
        assert settings.is_muscle("left psoas major") and not settings.is_muscle("l")

    def test_low_above_high_names_the_flag(self):
        match = r"^--adipose-hu \(adipose_hu\) must be LOW HIGH with LOW < HIGH, got -30 -190; "
        with pytest.raises(ConfigError, match=match):
            TissueSettings(adipose_hu=(-30.0, -190.0))

    @pytest.mark.parametrize(
        ("adipose", "muscle", "shared"),
        [((-90.0, -30.0), (-120.0, 100.0), "-90 to -30"), ((-190.0, -30.0), (-30.0, 150.0), "-30")],
    )
    def test_overlapping_ranges_are_refused(self, adipose, muscle, shared):
        """Both ranges include their ends, so even -30 in both made a pixel fat and muscle."""
        with pytest.raises(ConfigError) as refused:
            TissueSettings(adipose_hu=adipose, muscle_hu=muscle)
        message = str(refused.value)
        assert message.startswith(
            f"--adipose-hu (adipose_hu) {adipose[0]:g} {adipose[1]:g} and --muscle-hu "
            f"(muscle_hu) {muscle[0]:g} {muscle[1]:g} overlap ({shared} HU), so a pixel there "
            "would count as both fat and muscle; "
        )
        assert "\n" not in message

    def test_cli_refuses_overlapping_ranges_in_one_line(self, tmp_path, capsys):
        from sliceseg.cli import main

        code = main(["measure", str(tmp_path / "labels"), "--dicoms", str(tmp_path / "d"),
                     "--out", str(tmp_path / "o"), "--adipose-hu", "-90", "-30",
                     "--muscle-hu", "-120", "100"])  # fmt: skip
        err = capsys.readouterr().err
        assert code == 2
        assert err.startswith("error: --adipose-hu (adipose_hu) -90 -30 and --muscle-hu ")
        assert err.count("\n") == 1 and "Traceback" not in err
        assert not (tmp_path / "o").exists()


class TestMeasureAreasTissueColumns:
    def test_long_table_has_the_known_numbers(self):
        hu, label = _known_hu()
        table = measure_areas([label], [_ct_slice(hu)], NAMES)
        rows = table.long.set_index("roi_name")
        psoas, vertebra = rows.loc["left psoas major"], rows.loc["vertebral body"]
        assert psoas["area_mm2"] == pytest.approx(100 * 0.4)
        assert (psoas["mean_intensity"], psoas["std_intensity"], psoas["median_intensity"]) == (
            pytest.approx(20.0),
            pytest.approx(60.0),
            pytest.approx(50.0),
        )
        assert psoas["imat_fraction"] == pytest.approx(0.2)
        assert psoas["imat_mm2"] == pytest.approx(8.0)
        assert psoas["muscle_radiodensity_hu"] == pytest.approx(50.0)
        assert vertebra["mean_intensity"] == pytest.approx(300.0)
        assert vertebra["std_intensity"] == pytest.approx(0.0)
        assert np.isnan(vertebra["imat_fraction"])

    def test_mr_has_statistics_but_no_ct_columns(self):
        hu, label = _known_hu()
        table = measure_areas([label], [_ct_slice(hu, modality="MR")], NAMES)
        assert not set(CT_COLUMNS) & set(table.long.columns)
        assert table.long["median_intensity"].tolist() == pytest.approx([300.0, 50.0])

    def test_hu_from_a_ct_file_rescale(self, tmp_path):
        """Stored values + (0028,1052) RescaleIntercept −1024 give the HU the numbers use."""
        hu, label = _known_hu()
        path = write_test_dicom(tmp_path / "ct.dcm", (hu + 1024).astype(np.uint16),
                                slope=1.0, intercept=-1024.0)  # fmt: skip
        ds = pydicom.dcmread(path)
        ds.Modality = "CT"
        ds.save_as(path)
        table = measure_areas([label], [read_slice(path)], NAMES)
        psoas = table.long.set_index("roi_name").loc["left psoas major"]
        assert psoas["mean_intensity"] == pytest.approx(20.0)
        assert psoas["imat_fraction"] == pytest.approx(0.2)
        assert psoas["muscle_radiodensity_hu"] == pytest.approx(50.0)

    def test_muscle_rois_naming_no_roi_is_refused(self):
        """``--muscle-rois "Left Psoas"`` for an ROI named "left psoas major" matched nothing,
        and the CT columns were silently missing; the message lists the ROI names."""
        hu, label = _known_hu()
        settings = TissueSettings(muscle_rois=("Left Psoas",))
        match = (
            r"--muscle-rois \(muscle_rois\): 'Left Psoas' is not an ROI"
            r".*'vertebral body', 'left psoas major'"
        )
        with pytest.raises(ConfigError, match=match):
            measure_areas([label], [_ct_slice(hu)], NAMES, tissue=settings)


class TestTissueOptionsThatMeasureNothing:
    def test_ct_options_on_an_mr_series_are_said(self):
        """``--adipose-hu`` on an MR series measured nothing, unsaid: a reader of the tables
        could not tell a run that ignored the option from one that never had it. A series at
        the top of the DICOM folder (``ct/s01.dcm``, key ``s01``) is named as the tables name
        it, ``ct``, not "series"."""
        hu, label = _known_hu()
        settings = TissueSettings(adipose_hu=(-200.0, -40.0), muscle_rois=("left psoas major",))
        with pytest.warns(UserWarning) as caught:
            table = measure_areas(
                [label], [_ct_slice(hu, modality="MR")], NAMES, names=["s01"], tissue=settings
            )
        (warning,) = [str(w.message) for w in caught]
        assert warning == (
            "1 series is not CT (ct; Modality MR), so --adipose-hu (adipose_hu) -200 -40 "
            "and --muscle-rois (muscle_rois) measure nothing on it: the CT columns "
            "(imat_fraction, imat_mm2, muscle_radiodensity_hu) are for CT slices only."
        )
        assert not set(CT_COLUMNS) & set(table.long.columns)
        with warnings.catch_warnings():  # the defaults: nothing asked, nothing to say
            warnings.simplefilter("error")
            measure_areas([label], [_ct_slice(hu, modality="MR")], NAMES)
            measure_areas([label], [_ct_slice(hu)], NAMES, tissue=settings)  # CT: measured

    def test_ct_options_on_many_mr_series_are_said_once(self):
        """A mixed cohort of hundreds of MR series printed the CT-options line once per
        series; it is one line for the run, naming how many and the first few."""
        hu, label = _known_hu()
        settings = TissueSettings(adipose_hu=(-200.0, -40.0))
        images, keys = _series_of_one_slice(
            [_ct_slice(hu, modality="MR" if i else "CT") for i in range(12)]
        )
        with pytest.warns(UserWarning) as caught:
            measure_areas([label] * 12, images, NAMES, names=keys, tissue=settings)
        lines = [str(w.message) for w in caught if "not CT" in str(w.message)]
        assert lines == [
            "11 series are not CT (p1, p2, p3 and 8 more; Modality MR), so --adipose-hu "
            "(adipose_hu) -200 -40 measures nothing on them: the CT columns (imat_fraction, "
            "imat_mm2, muscle_radiodensity_hu) are for CT slices only."
        ]

    def test_modality_values_are_named_once_whatever_their_case(self):
        """The CT-options line kept its own reading of the Modality values (case kept), beside
        `modality_values` (upper-cased): a series of "mr" and "MR" slices read "Modality MR
        and mr"."""
        hu, label = _known_hu()
        settings = TissueSettings(adipose_hu=(-200.0, -40.0))
        images = [
            dataclasses.replace(_ct_slice(hu, modality=m), source=Path(f"p1/s{i}.dcm"))
            for i, m in enumerate(["mr", "MR "])
        ]
        with pytest.warns(UserWarning) as caught:
            measure_areas([label] * 2, images, NAMES, names=["p1/s0", "p1/s1"], tissue=settings)
        (line,) = [str(w.message) for w in caught if "not CT" in str(w.message)]
        assert line.startswith("1 series is not CT (p1; Modality MR), so --adipose-hu")

    def test_the_default_ranges_given_as_lists_are_not_a_change(self):
        """A notebook's ``TissueSettings(adipose_hu=[-190, -30])``, the defaults as a list, was
        taken for a changed range (a list is never equal to the default tuple): refused where no
        ROI is a muscle, and said to measure nothing on an MR series."""
        hu, label = _known_hu()
        settings = TissueSettings(adipose_hu=[-190, -30], muscle_hu=[-29, 150])  # type: ignore[arg-type]
        assert (settings.adipose_hu, settings.muscle_hu) == ((-190.0, -30.0), (-29.0, 150.0))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            measure_areas([label], [_ct_slice(hu)], ["vertebral body", "SMA"], tissue=settings)
            measure_areas([label], [_ct_slice(hu, modality="MR")], NAMES, tissue=settings)

    def test_hu_ranges_without_a_muscle_roi_are_refused(self):
        """``--muscle-hu`` when no ROI is a muscle by name changed nothing, unsaid; refused
        like ``--matrix`` without ``--fov``, naming the ROIs and the flag that would help."""
        hu, label = _known_hu()
        settings = TissueSettings(muscle_hu=(-20.0, 140.0))
        with pytest.raises(ConfigError) as caught:
            measure_areas([label], [_ct_slice(hu)], ["vertebral body", "SMA"], tissue=settings)
        assert str(caught.value) == (
            "--muscle-hu (muscle_hu) -20 140: no ROI of this run is a muscle by its name "
            "('vertebral body', 'SMA'), so it would measure nothing; name the muscles with "
            "--muscle-rois (muscle_rois), or leave it out."
        )


def test_cli_measure_takes_the_thresholds(tmp_path):
    """``sliceseg measure --adipose-hu -300 -150 --muscle-hu -120 100``: the −100 HU pixels
    are no longer fat (IMAT 0) and count as muscle (radiodensity (20·−100 + 80·50) / 100 = 20)."""
    import imageio.v3 as iio
    import pandas as pd

    from sliceseg.cli import main

    hu, label = _known_hu()
    dicoms, labels = tmp_path / "d" / "dicoms", tmp_path / "d" / "labels"
    path = write_test_dicom(dicoms / "s01.dcm", (hu + 1024).astype(np.uint16), slope=1.0,
                            intercept=-1024.0)  # fmt: skip
    ds = pydicom.dcmread(path)
    ds.Modality = "CT"
    ds.save_as(path)
    labels.mkdir(parents=True)
    iio.imwrite(labels / "s01.png", label)
    code = main(["measure", str(labels), "--dicoms", str(dicoms), "--out", str(tmp_path / "o"),
                 "--labels", ",".join(NAMES), "--adipose-hu", "-300", "-150",
                 "--muscle-hu", "-120", "100"])  # fmt: skip
    assert code == 0
    long = pd.read_csv(tmp_path / "o" / "csa_long.csv").set_index("roi_name")
    assert long.loc["left psoas major", "imat_fraction"] == pytest.approx(0.0)
    assert long.loc["left psoas major", "muscle_radiodensity_hu"] == pytest.approx(20.0)
    assert long.loc["left psoas major", "std_intensity"] == pytest.approx(60.0)


_ct_file = functools.partial(write_ct_dicom, series_uid="1.2.3.17")


def _psoas(table) -> pd.Series:
    return table.long.set_index("roi_name").loc["left psoas major"]


class TestHounsfieldUnits:
    """Issue 17, item 4: the numbers of `_known_hu` from files that used to read wrong."""

    def test_intercept_without_slope(self, tmp_path):
        """Before: stored 924 / 1074 read as they are: mean 1044, IMAT 0.0, radiodensity NaN."""
        hu, label = _known_hu()
        path = _ct_file(tmp_path / "ct.dcm", (hu + 1024).astype(np.uint16), intercept=-1024.0)
        psoas = _psoas(measure_areas([label], [read_slice(path)], NAMES))
        assert psoas["mean_intensity"] == pytest.approx(20.0)
        assert psoas["imat_fraction"] == pytest.approx(0.2)
        assert psoas["muscle_radiodensity_hu"] == pytest.approx(50.0)

    def test_monochrome1_ct(self, tmp_path):
        """Before: mirrored in the 16-bit range first, the psoas read 63 467 "HU", IMAT 0."""
        hu, label = _known_hu()
        path = _ct_file(tmp_path / "ct.dcm", (hu + 1024).astype(np.uint16), slope=1.0,
                        intercept=-1024.0, photometric="MONOCHROME1")  # fmt: skip
        psoas = _psoas(measure_areas([label], [read_slice(path)], NAMES))
        assert psoas["mean_intensity"] == pytest.approx(20.0)
        assert psoas["imat_fraction"] == pytest.approx(0.2)
        assert psoas["muscle_radiodensity_hu"] == pytest.approx(50.0)

    def test_values_that_cannot_be_hu_leave_the_ct_columns_empty(self, tmp_path):
        """No rescale and a lowest value of 24 (air stored as 24): a warning naming the
        series, the area kept, the CT columns NaN rather than IMAT 0 / radiodensity NaN."""
        hu, label = _known_hu()
        stored = (hu + 1024).astype(np.uint16)
        images = [read_slice(_ct_file(tmp_path / f"s{i}.dcm", stored)) for i in (1, 2)]
        with pytest.warns(UserWarning) as caught:
            table = measure_areas([label, label], images, NAMES)
        (warning,) = [str(w.message) for w in caught]  # once for the series, not per slice
        assert warning.startswith(  # the series named as the tables name it: its folder
            f"1 CT series has values that are not Hounsfield units ({tmp_path.name}): CT without"
        )
        assert "lowest value is 24 (air is -1000 HU)" in warning
        assert "not Hounsfield units" in warning
        assert "intensity columns hold stored values" in warning
        psoas = table.long[table.long["roi_name"] == "left psoas major"]
        assert psoas["area_mm2"].tolist() == pytest.approx([40.0, 40.0])
        assert psoas[list(CT_COLUMNS)].isna().all().all()
        with pytest.warns(UserWarning, match="not Hounsfield units"):  # said without muscles too
            measure_areas([label], images[:1], ["vertebral body", "disc"])

    @pytest.mark.parametrize(
        "rescale",
        [{"slope": 1.0, "intercept": 0.0}, {"intercept": 0.0}, {"slope": 1.0, "intercept": ""}],
        ids=["intercept 0 and slope 1", "intercept 0 alone", "empty intercept"],
    )
    def test_a_rescale_that_leaves_stored_values_is_not_hu(self, tmp_path, rescale):
        """Stored values (air 24, fat 924) with an intercept of 0 or an empty one: before, the
        psoas got IMAT 0 and radiodensity NaN without a word, as its fat read 924 "HU"."""
        hu, label = _known_hu()
        path = _ct_file(tmp_path / "ct.dcm", (hu + 1024).astype(np.uint16), **rescale)
        with pytest.warns(UserWarning) as caught:
            psoas = _psoas(measure_areas([label], [read_slice(path)], NAMES))
        (warning,) = [str(w.message) for w in caught]
        assert warning == (
            f"1 CT series has values that are not Hounsfield units ({tmp_path.name}): "
            "CT whose lowest value after (0028,1052) "
            "RescaleIntercept / (0028,1053) RescaleSlope is 24 (air is -1000 HU, fat about -100 "
            "HU), so its values are not Hounsfield units: its intensity columns hold these "
            "values and its CT columns (imat_fraction, imat_mm2, muscle_radiodensity_hu) are "
            "left empty; export the series again with its scanner's rescale (stored values "
            "from 0 usually take RescaleIntercept -1024)."
        )
        assert psoas["mean_intensity"] == pytest.approx(1044.0)
        assert psoas[list(CT_COLUMNS)].isna().all()

    @pytest.mark.parametrize("modality_lut", ["rescale", "none", "lut", ""])
    def test_a_crop_inside_the_body_is_hu(self, modality_lut):
        """No air in the field of view, but fat (-100 HU) below the ceiling: HU however they
        came; the old ceiling of -500 took such a crop without a rescale for stored values."""
        hu, _ = _known_hu()
        crop = dataclasses.replace(_ct_slice(hu[2:12, 3:13]), modality_lut=modality_lut)
        assert float(crop.pixels.min()) == -100.0
        assert hu_problem([crop]) is None
        not_hu = dataclasses.replace(crop, pixels=crop.pixels + 1024)  # fat at 924
        problem = hu_problem([not_hu])
        assert problem is not None and "lowest value" in problem.note and problem.slices == (0,)
        assert hu_problem([dataclasses.replace(not_hu, modality="MR")]) is None

    def test_one_slice_without_its_rescale_among_rescaled_ones(self, tmp_path):
        """Slice 2 lost its rescale (stored 24..1324 beside -1000..300 HU): the series' lowest
        value is -1000, so it passed and that slice got IMAT 0 and radiodensity NaN from stored
        values. Now its CT columns are empty and the note names it; the others keep theirs."""
        hu, label = _known_hu()
        stored = (hu + 1024).astype(np.uint16)
        paths = [
            _ct_file(tmp_path / "s1.dcm", stored, slope=1.0, intercept=-1024.0),
            _ct_file(tmp_path / "s2.dcm", stored),
            _ct_file(tmp_path / "s3.dcm", stored, slope=1.0, intercept=-1024.0),
        ]
        with pytest.warns(UserWarning) as caught:
            table = measure_areas([label] * 3, [read_slice(p) for p in paths], NAMES)
        (warning,) = [str(w.message) for w in caught]
        assert warning == (
            f"1 CT series has values that are not Hounsfield units ({tmp_path.name}): "
            "1 of its 3 CT slices (s2.dcm) has no "
            "(0028,1052) RescaleIntercept / (0028,1053) RescaleSlope and a lowest value of 24 "
            "(air is -1000 HU, fat about -100 HU) while the others reach air or fat, so its "
            "values are not Hounsfield units: its intensity columns hold these values and its "
            "CT columns (imat_fraction, imat_mm2, muscle_radiodensity_hu) are left empty; "
            "export that file again with the rescale of the other slices."
        )
        psoas = table.long[table.long["roi_name"] == "left psoas major"].set_index("slice")
        assert psoas.loc[2, list(CT_COLUMNS)].isna().all()
        assert psoas.loc[2, "mean_intensity"] == pytest.approx(1044.0)
        for number in (1, 3):
            assert psoas.loc[number, "imat_fraction"] == pytest.approx(0.2)
            assert psoas.loc[number, "imat_mm2"] == pytest.approx(8.0)
            assert psoas.loc[number, "muscle_radiodensity_hu"] == pytest.approx(50.0)
        assert psoas["area_mm2"].tolist() == pytest.approx([40.0] * 3)

    def test_slices_not_in_hu_are_named_up_to_five(self):
        hu, _ = _known_hu()
        good = _ct_slice(hu)
        bad = [
            dataclasses.replace(good, pixels=good.pixels + 1024, source=Path(f"ct/b{i}.dcm"),
                                modality_lut="rescale")
            for i in range(7)
        ]  # fmt: skip
        problem = hu_problem([good, *bad])
        assert problem is not None and problem.slices == tuple(range(1, 8))
        assert problem.note.startswith(
            "7 of its 8 CT slices (b0.dcm, b1.dcm, b2.dcm, b3.dcm, b4.dcm and 2 more) have a "
            "lowest value of 24 after (0028,1052) RescaleIntercept / (0028,1053) RescaleSlope "
            "(air is -1000 HU"
        )
        assert problem.note.endswith(
            "their CT columns (imat_fraction, imat_mm2, muscle_radiodensity_hu) are left empty; "
            "export those files again with the rescale of the other slices."
        )

    def test_many_series_not_in_hu_are_said_in_one_line(self):
        """A cohort of hundreds of CT series that lost their rescale printed its HU note once
        per series; it is one line for the run: how many, the first few, the first's note."""
        hu, label = _known_hu()
        images, keys = _series_of_one_slice(
            [
                dataclasses.replace(_ct_slice(hu + (1024 if i else 0)), modality_lut="none")
                for i in range(6)
            ]
        )
        with pytest.warns(UserWarning) as caught:
            table = measure_areas([label] * 6, images, NAMES, names=keys)
        assert [str(w.message) for w in caught] == [
            "5 CT series have values that are not Hounsfield units (p1, p2, p3 and 2 more); "
            "the first, p1: CT without (0028,1052) RescaleIntercept / (0028,1053) RescaleSlope "
            "whose lowest value is 24 (air is -1000 HU), so its values are not Hounsfield "
            "units: its intensity columns hold stored values and its CT columns (imat_fraction, "
            "imat_mm2, muscle_radiodensity_hu) are left empty; export the series again with "
            "its rescale."
        ]
        psoas = table.long[table.long["roi_name"] == "left psoas major"].set_index("slice")
        assert psoas.loc[1, "imat_fraction"] == pytest.approx(0.2)  # p0 is in HU: measured
        assert psoas.loc[2:, list(CT_COLUMNS)].isna().all().all()

    def test_many_series_without_modality_are_said_in_one_line(self):
        hu, label = _known_hu()
        images, keys = _series_of_one_slice(
            [_ct_slice(hu, modality="" if i else "CT") for i in range(5)]
        )
        with pytest.warns(UserWarning) as caught:
            measure_areas([label] * 5, images, NAMES, names=keys)
        assert [str(w.message) for w in caught] == [
            "4 series have no (0008,0060) Modality in their files (p1, p2, p3 and 1 more), so "
            "their muscle ROIs get no CT columns (imat_fraction, imat_mm2, "
            "muscle_radiodensity_hu); if they are CT, set Modality to CT in the files."
        ]

    def test_signed_hu_stored_without_a_rescale_are_hu(self, tmp_path):
        hu, label = _known_hu()  # air at −1000: below −500, so these are HU as stored
        path = _ct_file(tmp_path / "ct.dcm", hu.astype(np.int16))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            psoas = _psoas(measure_areas([label], [read_slice(path)], NAMES))
        assert psoas["imat_fraction"] == pytest.approx(0.2)

    def test_missing_modality_is_said(self, tmp_path):
        hu, label = _known_hu()
        stored = (hu + 1024).astype(np.uint16)
        images = [
            read_slice(_ct_file(tmp_path / f"s{i}.dcm", stored, slope=1.0, intercept=-1024.0,
                                modality=None))
            for i in (1, 2)
        ]  # fmt: skip
        with pytest.warns(UserWarning) as caught:
            table = measure_areas([label, label], images, NAMES)
        (warning,) = [str(w.message) for w in caught]
        assert warning == (
            f"1 series has no (0008,0060) Modality in its files ({tmp_path.name}), so its "
            "muscle ROIs get no CT columns (imat_fraction, imat_mm2, "
            "muscle_radiodensity_hu); if it is CT, set Modality to CT in the files."
        )
        assert not set(CT_COLUMNS) & set(table.long.columns)
        with warnings.catch_warnings():  # no muscle ROI: no CT columns to miss, no warning
            warnings.simplefilter("error")
            measure_areas([label, label], images, ["vertebral body", "disc"])
