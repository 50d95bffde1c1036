"""Areas in mm² on the native grid, with row and column spacing, and the fallbacks."""

from __future__ import annotations

import math
import re
from decimal import Decimal
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pandas as pd
import pytest

from csv_text import numeric_cells, significant_digits
from sliceseg.errors import ConfigError, LabelError
from sliceseg.io.dicom import Slice
from sliceseg.measure.areas import (
    CONFIDENCE_COLUMN,
    FAMILIARITY_COLUMN,
    area_mm2,
    is_summary_row,
    measure_areas,
    with_whole_counts,
)
from sliceseg.measure.spacing import SpacingFallback, resolve_spacing, with_fallback_spacing
from sliceseg.measure.summary_rows import PRESENT, leave_out_flagged
from sliceseg.model_space.resample import spacing_geometry


def make_slice(shape, spacing, name="s1"):
    return Slice(
        pixels=np.zeros(shape, np.float32) + 100,
        spacing_mm=spacing,
        spacing_source="PixelSpacing" if spacing else "none",
        source=Path(f"/data/{name}.dcm"),
    )


def ellipse_label(shape, spacing, centre_mm, axes_mm, value):
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]]
    y, x = (rows + 0.5) * spacing[0], (cols + 0.5) * spacing[1]
    inside = ((y - centre_mm[0]) / axes_mm[0]) ** 2 + ((x - centre_mm[1]) / axes_mm[1]) ** 2 <= 1
    label = np.zeros(shape, np.uint8)
    label[inside] = value
    return label


class TestAreaMm2:
    def test_square_uses_row_and_column_spacing(self):
        mask = np.zeros((30, 20), bool)
        mask[5:15, 5:15] = True
        assert area_mm2(mask, (0.5, 0.8)) == pytest.approx(40.0)

    def test_empty_mask_is_zero(self):
        assert area_mm2(np.zeros((4, 4), bool), (1.0, 1.0)) == 0.0


class TestMeasureAreas:
    def test_ellipses_on_non_square_anisotropic_grid_within_one_percent(self):
        shape, spacing = (240, 160), (0.55, 0.9)  # 132 mm × 144 mm field
        label = ellipse_label(shape, spacing, (60, 50), (30, 20), 1)
        label2 = ellipse_label(shape, spacing, (70, 110), (12, 25), 2)
        label[label2 == 2] = 2
        table = measure_areas([label], [make_slice(shape, spacing)], ["a", "b"])
        assert table.wide.loc["1", "a"] == pytest.approx(math.pi * 30 * 20, rel=0.01)
        assert table.wide.loc["1", "b"] == pytest.approx(math.pi * 12 * 25, rel=0.01)

    def test_each_slice_measured_with_its_own_spacing(self):
        label = np.zeros((10, 10), np.uint8)
        label[:4, :5] = 1  # 20 pixels
        images = [make_slice((10, 10), (1.0, 1.0), "a"), make_slice((10, 10), (0.5, 0.5), "b")]
        table = measure_areas([label, label], images, ["roi"])
        assert table.per_slice["roi"].tolist() == pytest.approx([20.0, 5.0])
        assert table.wide.loc["mean", "roi"] == pytest.approx(12.5)
        assert table.wide.loc["std", "roi"] == pytest.approx(np.std([20.0, 5.0], ddof=1))

    def test_long_table_has_pixels_intensity_and_spacing_source(self):
        label = np.zeros((8, 8), np.uint8)
        label[2:4, 2:4] = 1
        table = measure_areas([label], [make_slice((8, 8), (0.5, 0.5))], ["roi", "absent"])
        row = table.long.iloc[0]
        assert (row["pixels"], row["area_mm2"], row["mean_intensity"]) == (4, 1.0, 100.0)
        assert row["spacing_source"] == "PixelSpacing"
        assert table.long.iloc[1]["pixels"] == 0

    def test_shape_mismatch_names_the_slice(self):
        with pytest.raises(ConfigError, match="s1: label map is 4×4 but the image is 8×8"):
            measure_areas([np.zeros((4, 4), np.uint8)], [make_slice((8, 8), (1.0, 1.0))], ["r"])

    @pytest.mark.parametrize(
        ("values", "names", "found"),
        [
            ((0, 255), ["muscle"], "[255]"),
            ((0, 1, 2, 3), ["a", "b"], "[3]"),
            ((0, -1), ["a"], "[-1]"),
        ],
    )
    def test_label_values_outside_the_roi_names_are_refused(self, values, names, found):
        """A 0/255 mask, or a map with more ROIs than names, measured 0 mm² without a word."""
        label = np.array([values * 4] * 8)
        expected = f"s1: label values {found} are not ROIs 0..{len(names)} ({len(names)} ROI names"
        with pytest.raises(LabelError, match=re.escape(expected)):
            measure_areas([label], [make_slice(label.shape, (1.0, 1.0))], names)

    def test_fractional_label_values_are_refused(self):
        label = np.full((4, 4), 0.5)
        with pytest.raises(LabelError, match="s1: float values that are not whole numbers"):
            measure_areas([label], [make_slice((4, 4), (1.0, 1.0))], ["a"])

    def test_one_roi_name_as_a_string_is_one_column(self):
        """``roi_names="muscle"`` gave the columns m, u, s, c, l, e (label 1 measured as "m")."""
        label = np.ones((4, 4), np.uint8)
        table = measure_areas([label], [make_slice((4, 4), (0.5, 0.5))], "muscle")
        assert list(table.wide.columns) == ["file", "muscle"]
        assert table.wide.loc["1", "muscle"] == pytest.approx(4.0)

    def test_whole_float_and_bool_label_maps_are_measured(self):
        images = [make_slice((4, 4), (0.5, 0.5))] * 2
        table = measure_areas([np.ones((4, 4)), np.ones((4, 4), bool)], images, ["a"])
        assert table.per_slice["a"].tolist() == [4.0, 4.0]

    def test_save_writes_wide_and_long_csv(self, tmp_path):
        label = np.ones((4, 4), np.uint8)
        table = measure_areas([label], [make_slice((4, 4), (0.5, 0.5))], ["roi"])
        wide_path, long_path = table.save(tmp_path)
        wide = pd.read_csv(wide_path, index_col="slice")
        assert wide.loc["1", "roi"] == pytest.approx(4.0)
        assert list(wide.index) == ["1", "mean", "std", "n"]
        assert wide.loc["n", "roi"] == 1
        assert pd.read_csv(long_path)["area_mm2"].tolist() == [4.0]


class TestResolveSpacing:
    def test_missing_spacing_without_fallback_says_what_to_do(self):
        with pytest.raises(ConfigError, match="give --fov MM"):
            resolve_spacing(make_slice((4, 4), None))

    def test_fov_and_matrix_give_spacing(self):
        spacing, source = resolve_spacing(
            make_slice((256, 192), None), SpacingFallback(fov_mm=(256.0, 240.0), matrix=(256, 192))
        )
        assert spacing == pytest.approx((1.0, 1.25))
        assert source == "fov/matrix"

    def test_fov_becomes_the_slices_own_spacing(self):
        """200 × 200 pixels over a 90 mm FOV: 90 / 200 = 0.45 mm, for the slice itself."""
        image = with_fallback_spacing(
            make_slice((200, 200), None), SpacingFallback.from_flags([90.0])
        )
        assert image.spacing_mm == pytest.approx((0.45, 0.45))
        assert image.spacing_source == "fov/matrix"
        # resampled to a 0.9 mm model: 200 · 0.45 / 0.9 = 100 pixels a side
        assert spacing_geometry(image.shape, image.spacing_mm, (0.9, 0.9)).resampled_shape == (
            100,
            100,
        )
        own = make_slice((200, 200), (0.3, 0.3))
        assert with_fallback_spacing(own, SpacingFallback(fov_mm=(90.0, 90.0))) is own
        pixels = SpacingFallback(pixels_only=True)
        assert with_fallback_spacing(make_slice((4, 4), None), pixels).spacing_mm is None

    def test_fov_flags_take_one_or_two_numbers(self):
        assert SpacingFallback.from_flags([240.0, 180.0], [256, 192]) == SpacingFallback(
            fov_mm=(240.0, 180.0), matrix=(256, 192)
        )
        with pytest.raises(ConfigError, match=r"--fov takes one or two numbers .* got 3: 90 90 80"):
            SpacingFallback.from_flags([90.0, 90.0, 80.0])

    def test_a_matrix_without_a_fov_is_refused_not_ignored(self, tiny_phantom, tmp_path, capsys):
        """`measure ... --matrix 10 10` on files with PixelSpacing exited 0: the matrix alone
        changes nothing, and the user's intent (a spacing from it) was dropped without a word."""
        from sliceseg.cli import main

        train = tiny_phantom / "train"
        out = tmp_path / "areas"
        code = main(
            ["measure", str(train / "labels"), "--dicoms", str(train / "dicoms"), "--out",
             str(out), "--matrix", "10", "10"]
        )  # fmt: skip
        assert code == 2 and not out.exists()
        said = capsys.readouterr().err.strip()
        assert said == (
            "error: --matrix 10 10 without --fov changes nothing; give --fov MM [MM] with it, "
            "or leave --matrix out."
        )

    @pytest.mark.parametrize("fov", [240, 240.0, (240,), [240.0]])
    def test_one_fov_number_in_python_is_a_square_fov(self, fov):
        """The test notebook's ``fov_mm = 240`` (documented: one number, a square FOV) gave a
        TypeError traceback, and ``(240,)`` an IndexError; 240 mm over 64 × 48 pixels is 3.75 ×
        5 mm."""
        fallback = SpacingFallback(fov_mm=fov)
        assert fallback.fov_mm == (240.0, 240.0)
        spacing, source = resolve_spacing(make_slice((64, 48), None), fallback)
        assert spacing == pytest.approx((3.75, 5.0)) and source == "fov/matrix"
        with pytest.raises(
            ConfigError, match=r"^--fov \(fov_mm\) takes one or two numbers .* got 3"
        ):
            SpacingFallback(fov_mm=(240.0, 240.0, 80.0))  # type: ignore[arg-type]

    @pytest.mark.parametrize("matrix", [256, (256,), (256, 256, 3)])
    def test_a_matrix_not_of_two_numbers_is_refused_naming_it(self, matrix):
        """``matrix=256`` beside a one-number ``fov_mm`` gave a TypeError traceback, and
        ``(256,)`` an IndexError while the mismatch message was written."""
        with pytest.raises(
            ConfigError, match=r"^--matrix \(matrix\) takes two whole numbers \(rows, cols\)"
        ):
            fallback = SpacingFallback(fov_mm=240, matrix=matrix)  # type: ignore[arg-type]
            resolve_spacing(make_slice((256, 256), None), fallback)

    def test_matrix_that_disagrees_with_image_is_refused(self):
        with pytest.raises(ConfigError, match="--matrix says 512×512"):
            resolve_spacing(
                make_slice((256, 256), None),
                SpacingFallback(fov_mm=(200.0, 200.0), matrix=(512, 512)),
            )

    def test_pixels_with_some_slices_spaced_names_a_file_without_spacing(self):
        # it said "some slices have a pixel spacing and others do not", naming none of them
        label = np.ones((3, 3), np.uint8)
        images = [make_slice((3, 3), (0.5, 0.5), "a"), make_slice((3, 3), None, "b")]
        with pytest.raises(
            ConfigError,
            match=r"^/data/b\.dcm: no PixelSpacing .* \(e\.g\. /data/a\.dcm\); give --fov",
        ):
            measure_areas([label, label], images, ["r"], fallback=SpacingFallback(pixels_only=True))

    def test_pixels_only_reports_pixel_counts(self):
        label = np.ones((3, 3), np.uint8)
        table = measure_areas(
            [label], [make_slice((3, 3), None)], ["r"], fallback=SpacingFallback(pixels_only=True)
        )
        assert table.unit == "pixels"
        assert table.wide.loc["1", "r"] == 9.0
        assert "Area (pixels)" in table.to_text()


def test_a_scanned_film_s_spacing_is_named_and_not_used(tmp_path, capsys):
    """A digitised film with (0018,2010) NominalScannedPixelSpacing and no PixelSpacing was
    refused as having no spacing at all; the line now names the film's spacing, says why it is
    not used (it measures the film, not the patient) and what to give instead."""
    import pydicom

    from conftest import write_test_dicom
    from sliceseg.cli import main

    path = write_test_dicom(tmp_path / "dicoms" / "film.dcm", np.zeros((4, 4)), spacing=None)
    ds = pydicom.dcmread(path)
    ds.NominalScannedPixelSpacing = [0.1, 0.1]
    ds.save_as(path)
    label = np.zeros((4, 4), np.uint8)
    label[:2, :2] = 1
    (tmp_path / "labels").mkdir()
    np.save(tmp_path / "labels" / "film.npy", label)
    argv = ["measure", str(tmp_path / "labels"), "--dicoms", str(tmp_path / "dicoms"),
            "--out", str(tmp_path / "out")]  # fmt: skip
    assert main(argv) == 2  # its only slice left out: nothing to measure
    assert capsys.readouterr().err.strip().splitlines()[0] == (
        "not measured: dicoms/film.dcm: no PixelSpacing (0028,0030), only (0018,2010) "
        "NominalScannedPixelSpacing"
        ", a scanned film's spacing, which is not used: it measures the film, not the patient (a "
        "film shows the anatomy at a print scale the file does not record), so areas in mm² are "
        "unknown; "
        "give --fov MM (the anatomy's extent across the image, e.g. from the film's scale bar), "
        "or --pixels to report pixel counts."
    )


def malformed_spacing_dicom(path: Path, stored: bytes, *, instance: int = 1) -> Path:
    """A 4 × 4 DICOM whose (0028,0030) PixelSpacing holds ``stored`` (8 bytes, as written)."""
    from conftest import write_test_dicom

    write_test_dicom(path, np.zeros((4, 4)), spacing=(0.5, 0.5), instance=instance)
    data = path.read_bytes()
    assert data.count(b"DS\x08\x000.5\\0.5 ") == 1 and len(stored) == 8
    path.write_bytes(data.replace(b"DS\x08\x000.5\\0.5 ", b"DS\x08\x00" + stored))
    return path


@pytest.mark.parametrize(
    ("stored", "shown"), [(b"0.5     ", "0.5"), (b"0.7\\abc ", "0.7\\abc")], ids=["one", "abc"]
)
def test_a_malformed_spacing_is_refused_naming_its_value(tmp_path, capsys, stored, shown):
    """A file whose PixelSpacing is there but malformed was refused as having "no PixelSpacing
    (0028,0030) in the file"; then as malformed, saying "the warning before names the value":
    ``measure`` prints its warnings only once it has measured, so on this refusal none came.
    The refusal now names the value itself."""
    from sliceseg.cli import main

    malformed_spacing_dicom(tmp_path / "dicoms" / "one.dcm", stored)
    (tmp_path / "labels").mkdir()
    np.save(tmp_path / "labels" / "one.npy", np.ones((4, 4), np.uint8))
    argv = ["measure", str(tmp_path / "labels"), "--dicoms", str(tmp_path / "dicoms"),
            "--out", str(tmp_path / "out")]  # fmt: skip
    assert main(argv) == 2  # its only slice left out: nothing to measure
    assert (
        f'not measured: dicoms/one.dcm: its PixelSpacing (0028,0030) "{shown}" is malformed or '
        "not > 0 "
        "(expected two positive numbers, row mm and column mm), so areas in mm² are unknown; "
        "give --fov MM (and --matrix ROWS COLS), or --pixels to report pixel counts."
    ) in capsys.readouterr().err.strip().splitlines()


def test_pixels_beside_a_malformed_spacing_is_not_called_absent(tmp_path, capsys):
    """``measure --pixels`` with one file measured in mm² and one whose PixelSpacing is
    malformed said the latter had "no PixelSpacing (0028,0030)"."""
    from conftest import write_test_dicom
    from sliceseg.cli import main

    bad = malformed_spacing_dicom(tmp_path / "dicoms" / "a.dcm", b"0.7\\abc ")
    good = write_test_dicom(tmp_path / "dicoms" / "b.dcm", np.zeros((4, 4)), instance=2)
    (tmp_path / "labels").mkdir()
    for name in ("a", "b"):
        np.save(tmp_path / "labels" / f"{name}.npy", np.ones((4, 4), np.uint8))
    argv = ["measure", str(tmp_path / "labels"), "--dicoms", str(tmp_path / "dicoms"),
            "--out", str(tmp_path / "out"), "--pixels"]  # fmt: skip
    assert main(argv) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1:] == [
        f'error: {bad}: its PixelSpacing (0028,0030) "0.7\\abc" is malformed or not > 0 '
        "(expected two positive numbers, row mm and column mm), while other slices have a "
        f"spacing in mm (e.g. {good}); give --fov MM (and --matrix ROWS COLS) so every slice is "
        "measured in mm²."
    ]


def test_the_users_fov_over_a_malformed_spacing_says_it_is_malformed(tmp_path, capsys):
    """Issue 20 (inputs): with --fov, a malformed PixelSpacing was told as "no pixel spacing"
    and its areas' spacing_source as plain "fov/matrix"."""
    import pandas as pd
    import pydicom

    from conftest import write_test_dicom
    from sliceseg.cli import main

    path = write_test_dicom(tmp_path / "dicoms" / "one.dcm", np.zeros((4, 4)), spacing=None)
    ds = pydicom.dcmread(path)
    ds.PixelSpacing = "0.5"
    ds.save_as(path)
    (tmp_path / "labels").mkdir()
    np.save(tmp_path / "labels" / "one.npy", np.ones((4, 4), np.uint8))
    argv = ["measure", str(tmp_path / "labels"), "--dicoms", str(tmp_path / "dicoms"),
            "--out", str(tmp_path / "out"), "--fov", "2"]  # fmt: skip
    assert main(argv) == 0
    assert (
        "warning: 1 of 1 slices have a malformed pixel spacing ((0028,0030) PixelSpacing not two "
        "positive numbers); their spacing is field of view / matrix (--fov, --matrix): their "
        "areas are in mm². -- dicoms/one.dcm"
    ) in capsys.readouterr().err.splitlines()
    (row,) = pd.read_csv(tmp_path / "out" / "csa_long.csv").to_dict("records")
    assert (row["area_mm2"], row["spacing_source"]) == (
        pytest.approx(4.0),  # 16 pixels of 0.5 × 0.5 mm
        "fov/matrix (PixelSpacing malformed)",
    )


def test_patient_info_only_on_request(tiny_phantom, tmp_path):
    from sliceseg.label_areas import measure_label_folder

    test = tiny_phantom / "test"
    plain, _, _ = measure_label_folder(test / "labels", test / "dicoms", tmp_path / "a")
    _, (_, long_csv, _), _ = measure_label_folder(
        test / "labels", test / "dicoms", tmp_path / "b", keep_patient_info=True
    )
    assert "patient_id" not in plain.long.columns
    long = pd.read_csv(long_csv)
    subjects = long["file"].str.split("/").str[0]
    assert (long["patient_id"] == "PHANTOM-7-" + subjects).all()
    assert (long["patient_name"] == "Phantom^" + subjects).all()


def test_measure_in_pixels_says_so_in_the_wide_table(tmp_path, capsys):
    """``measure --pixels`` wrote csa.csv exactly as in mm² (``slice,file,r``): a reader of
    the file could not tell 9 pixels from 9 mm². Its ROI columns now name the unit; the
    tidy table has the counts in ``pixels`` and ``area_mm2`` empty, as before."""
    from conftest import write_test_dicom
    from sliceseg.cli import main

    write_test_dicom(tmp_path / "dicoms" / "a.dcm", np.zeros((4, 4)), spacing=None)
    (tmp_path / "labels").mkdir()
    label = np.zeros((4, 4), np.uint8)
    label[:3, :3] = 1
    np.save(tmp_path / "labels" / "a.npy", label)
    argv = ["measure", str(tmp_path / "labels"), "--dicoms", str(tmp_path / "dicoms"),
            "--labels", "r,s", "--pixels"]  # fmt: skip
    assert main([*argv, "--out", str(tmp_path / "px")]) == 0
    wide = pd.read_csv(tmp_path / "px" / "csa.csv", index_col="slice", dtype={"slice": str})
    assert list(wide.columns) == ["file", "r (pixels)", "s (pixels)"]
    assert wide.loc["1", "r (pixels)"] == 9 and wide.loc["1", "s (pixels)"] == 0
    long = pd.read_csv(tmp_path / "px" / "csa_long.csv")
    assert list(long["pixels"]) == [9, 0] and long["area_mm2"].isna().all()
    assert "Area (pixels)" in capsys.readouterr().out


def test_measure_in_mm2_keeps_the_roi_names_as_columns(tiny_phantom, tmp_path):
    from sliceseg.label_areas import measure_label_folder

    test = tiny_phantom / "test"
    table, (wide_csv, _, _), _ = measure_label_folder(test / "labels", test / "dicoms", tmp_path)
    assert list(pd.read_csv(wide_csv).columns) == ["slice", "file", *table.per_slice.columns]


def test_measure_names_each_series_as_predict_does(tiny_phantom, tmp_path):
    from sliceseg.label_areas import measure_label_folder

    train = tiny_phantom / "train"
    table, (wide_csv, long_csv, _), _ = measure_label_folder(
        train / "labels", train / "dicoms", tmp_path / "m"
    )
    names = sorted(p.name for p in (train / "dicoms").iterdir())
    assert sorted(set(pd.read_csv(long_csv, dtype=str)["series"])) == names
    wide = pd.read_csv(wide_csv, index_col="slice", dtype={"slice": str})
    assert {f"n series {name}" for name in names} <= set(wide.index)
    assert "mean series sub01" in table.to_text()


def test_measure_and_predict_name_eleven_series_of_one_folder_alike(tiny_model, tmp_path):
    """Eleven series in p01/ (their UIDs in the reverse order of their files), the first one
    without label maps: measure named the series it measured, the first of them p01, while
    `sliceseg predict` names every series of the folder in the order of their files' paths
    (`plan_cohort`), so one slice was series p01 in one table and p01_2 in the other."""
    from conftest import add_pair
    from sliceseg.inference.folder import predict_folder
    from sliceseg.label_areas import measure_label_folder

    label = np.zeros((20, 24), np.uint8)
    label[5:10, 5:10] = 1
    for i in range(11):
        add_pair(tmp_path, f"p01/s{i}", label if i else None, series_uid=f"1.2.9.{20 - i}")
    measured = measure_label_folder(tmp_path / "labels", tmp_path / "dicoms", tmp_path / "m")
    predicted = predict_folder(
        tiny_model, tmp_path / "dicoms", tmp_path / "p", report=False, exports=(), progress=False
    )
    named = [
        pd.read_csv(table, dtype=str).drop_duplicates("file").set_index("file")["series"]
        for table in (measured[1][1], predicted.out_dir / "csa_long.csv")
    ]
    expected = {f"p01/s{i}": "p01" if i == 0 else f"p01_{i + 1}" for i in range(11)}
    assert named[1].to_dict() == expected
    assert named[0].to_dict() == {k: v for k, v in expected.items() if k != "p01/s0"}


def test_measure_orders_slices_and_series_as_predict_does(tmp_path):
    """A series whose file names run against its InstanceNumbers and positions (a: 3, b: 2,
    c: 1), beside p10/: measure listed the slices by file name and the series naturally (p9
    before p10), while `predict`'s tables list the series by name and each series' slices by
    InstanceNumber, then position (`order_slices`), so slice 1 of one table was slice 3 of the
    other. Both now list c, b, a, then p10's (p9 before p10: `series_name_key`, as both order
    series since session 20); each row's area stays its own slice's."""
    from conftest import write_test_dicom
    from sliceseg.inference.folder import _scan_inputs
    from sliceseg.io.identity import slice_key
    from sliceseg.label_areas import measure_label_folder

    for series, uid, files in (("p9", "1.2.9", "abc"), ("p10", "1.2.10", "de")):
        for i, name in enumerate(files):
            key = f"{series}/{name}"
            write_test_dicom(
                tmp_path / "dicoms" / f"{key}.dcm",
                np.full((20, 24), 100),
                series_uid=uid,
                instance=len(files) - i,  # against the file names; the position follows it
            )
            label = np.zeros((20, 24), np.uint8)
            label[: i + 1, :10] = 1  # 10 (i + 1) pixels of 0.5 × 0.8 mm: 4 (i + 1) mm²
            (tmp_path / "labels" / series).mkdir(parents=True, exist_ok=True)
            iio.imwrite(tmp_path / "labels" / f"{key}.png", label)
    _, (wide_csv, _, _), _ = measure_label_folder(
        tmp_path / "labels", tmp_path / "dicoms", tmp_path / "m", roi_names=["disc"]
    )
    wide = pd.read_csv(wide_csv, index_col="slice", dtype={"slice": str})
    rows = wide.loc[[str(i) for i in range(1, 6)]]
    scan, _names = _scan_inputs(tmp_path / "dicoms", SpacingFallback(), progress=False)
    predicted = [slice_key(image, tmp_path / "dicoms") for image in scan.slices]
    assert rows["file"].tolist() == predicted == ["p9/c", "p9/b", "p9/a", "p10/e", "p10/d"]
    assert rows["disc"].tolist() == [12.0, 8.0, 4.0, 8.0, 4.0]
    assert wide.index[5:8].tolist() == ["mean series p9", "std series p9", "n series p9"]


def test_measure_with_fov_says_the_slices_without_spacing_are_in_mm2(tiny_phantom, tmp_path):
    """`measure --fov` measured the files without PixelSpacing in mm² but said "their areas
    are in pixels"; the note now says where their spacing came from, and the areas agree."""
    import shutil

    import pydicom

    from sliceseg.label_areas import measure_label_folder

    test = tmp_path / "test"
    shutil.copytree(tiny_phantom / "test", test)
    fov: dict[str, tuple[float, float]] = {}
    for path in sorted((test / "dicoms").rglob("*.dcm")):
        ds = pydicom.dcmread(path)
        row_mm, col_mm = (float(v) for v in ds.PixelSpacing)
        fov[path.stem] = (ds.Rows * row_mm, ds.Columns * col_mm)
        del ds.PixelSpacing
        ds.save_as(path)
    (given,) = set(fov.values())  # one test subject: one FOV
    table, _, notes = measure_label_folder(
        test / "labels",
        test / "dicoms",
        tmp_path / "m",
        fallback=SpacingFallback.from_flags(list(given)),
    )
    assert not any("in pixels" in note for note in notes), notes
    assert any("--fov" in note and "mm²" in note for note in notes), notes
    truth = pd.read_csv(tiny_phantom / "truth.csv")
    truth = truth[truth["split"] == "test"].set_index(["key", "roi"])["area_mm2"]
    measured = table.long.set_index(["file", "roi"])["area_mm2"]
    assert measured.to_numpy() == pytest.approx(truth.loc[measured.index].to_numpy(), rel=0.05)


def test_measure_says_dicoms_without_a_label_map_are_not_measured(tmp_path):
    """`measure` warned with the training wording ("not trained on; a --context-slices run
    reads them as neighbours"); it says what it means for measuring, `check` keeps its own."""
    from conftest import add_pair, square_label
    from sliceseg.dataset.samples import check_dataset
    from sliceseg.label_areas import measure_label_folder

    add_pair(tmp_path, "p01/s1", square_label())
    add_pair(tmp_path, "p01/lonely")
    _, _, notes = measure_label_folder(tmp_path / "labels", tmp_path / "dicoms", tmp_path / "m")
    assert notes == [
        "warning: 1 DICOM file(s) without a label map of the same relative name (not measured)"
        " -- dicoms/p01/lonely.dcm"
    ]
    assert "(not trained on; a --context-slices run reads them as neighbours)" in (
        check_dataset(tmp_path).to_text()
    )


def series_slice(name: str, series: str, spacing=(1.0, 1.0)) -> Slice:
    return Slice(
        pixels=np.zeros((10, 10), np.float32),
        spacing_mm=spacing,
        spacing_source="PixelSpacing",
        source=Path(f"/data/{series}/{name}.dcm"),
        series_uid=series,
    )


def square(pixels: int) -> np.ndarray:
    label = np.zeros((10, 10), np.uint8)
    label.flat[:pixels] = 1
    return label


class TestSummaryRows:
    def test_mean_and_std_per_series_and_overall(self):
        images = [series_slice("a1", "A"), series_slice("a2", "A"), series_slice("b1", "B")]
        table = measure_areas([square(20), square(5), square(8)], images, ["roi"])
        assert list(table.wide.index) == [
            *("1", "2", "3"),
            *("mean series 1", "std series 1", "n series 1"),
            *("mean series 2", "std series 2", "n series 2"),
            *("mean", "std", "n"),
        ]
        roi = table.wide["roi"]
        assert roi["mean series 1"] == pytest.approx(12.5)
        assert roi["std series 1"] == pytest.approx(np.std([20.0, 5.0], ddof=1))
        assert roi["mean series 2"] == pytest.approx(8.0)
        assert np.isnan(roi["std series 2"])  # one slice: no spread, and not 0
        assert roi["mean"] == pytest.approx(11.0)
        assert roi["std"] == pytest.approx(np.std([20.0, 5.0, 8.0], ddof=1))
        assert (roi["n series 1"], roi["n series 2"], roi["n"]) == (2, 1, 3)
        assert table.wide.loc["mean series 2", "file"] == "b1 (1 slice)"
        assert table.wide.loc["mean series 1", "file"] == "a1 … a2 (2 slices)"
        assert table.series == (1, 1, 2)
        assert table.long["series"].tolist() == [1, 1, 2]
        assert table.per_slice["roi"].tolist() == [20.0, 5.0, 8.0]

    def test_named_tables_show_each_series_name_and_keep_the_numbers(self, tmp_path):
        """The written tables name series k ``names[k - 1]`` (spaces and digits allowed);
        the rows stay summary rows and ``series`` still groups by number."""
        images = [series_slice("a1", "A"), series_slice("a2", "A"), series_slice("b1", "B")]
        table = measure_areas([square(20), square(5), square(8)], images, ["roi"])
        named = table.named(["site 01", "p2"])
        assert list(named.wide.index)[3:9] == [
            *("mean series site 01", "std series site 01", "n series site 01"),
            *("mean series p2", "std series p2", "n series p2"),
        ]
        assert all(is_summary_row(label) for label in list(named.wide.index)[3:])
        assert named.long["series"].tolist() == ["site 01", "site 01", "p2"]
        assert named.series == (1, 1, 2) and table.long["series"].tolist() == [1, 1, 2]
        assert named.named(["site 01", "p2"]).wide.index.equals(named.wide.index)
        lines = named.save(tmp_path)[0].read_text().splitlines()
        assert lines[6] == "n series site 01,a1 … a2 (2 slices),2"
        assert lines[9] == "n series p2,b1 (1 slice),1"

    def test_the_std_rows_say_they_are_the_sample_std_in_every_written_table(self, tmp_path):
        """csa.csv's std rows said only "slices with the ROI (area > 0)": a reader could not
        tell the sample std (n − 1) from the population one. Every std row, a single run's and
        a cohort's merged table's, per series and overall, now says which; the numbers are
        numpy's ddof=1 of the slices with the ROI."""
        from sliceseg.inference.merge_tables import write_area_tables
        from sliceseg.inference.records import series_dir

        images = [series_slice("a1", "A"), series_slice("a2", "A"), series_slice("b1", "B")]
        labels = [square(20), square(5), np.zeros((10, 10), np.uint8)]
        wide_csv, _ = measure_areas(labels, images, ["roi"]).named(["A", "B"]).save(tmp_path)
        for name, members in (("A", [0, 1]), ("B", [2])):
            folder = series_dir(tmp_path / "cohort", name)
            folder.mkdir(parents=True)
            chosen = [labels[i] for i in members], [images[i] for i in members]
            measure_areas(*chosen, ["roi"]).named([name]).save(folder)
        write_area_tables(tmp_path / "cohort", ["A", "B"], None)
        std = np.std([20.0, 5.0], ddof=1)
        for table in (wide_csv, tmp_path / "cohort" / "csa.csv"):
            wide = pd.read_csv(table, index_col="slice", dtype={"slice": str})
            assert wide.loc["std", "file"] == f"{PRESENT}; sample std (n − 1)"
            assert wide.loc["std series A", "file"] == "a1 … a2 (2 slices); sample std (n − 1)"
            assert wide.loc["mean", "file"] == PRESENT  # the rule is said once, on its row
            assert (wide.loc["std", "roi"], wide.loc["std series A", "roi"]) == (
                pytest.approx(std),
                pytest.approx(std),
            )
            assert np.isnan(wide.loc["std series B", "roi"])  # B has no slice with the ROI

    def test_single_slice_std_is_an_empty_cell(self, tmp_path):
        table = measure_areas([square(4)], [series_slice("a1", "A", (0.5, 0.5))], ["roi"])
        assert list(table.wide.index) == ["1", "mean", "std", "n"]
        assert table.wide.loc["mean", "roi"] == pytest.approx(1.0)
        assert np.isnan(table.wide.loc["std", "roi"])
        wide_csv, _ = table.save(tmp_path)
        assert wide_csv.read_text().splitlines()[-2] == (
            "std,slices with the ROI (area > 0); sample std (n − 1),"
        )
        assert "–" in table.to_text().splitlines()[-3]

    def test_mean_and_std_are_over_the_slices_where_the_roi_is_present(self, tmp_path):
        """Areas 20, 0 (absent), 8, 0 mm²: mean (20 + 8) / 2 = 14, std √((6² + 6²) / 1) =
        8.485, n 2 (with the zeros: mean 7, n 4); an ROI on no slice: mean NaN, n 0."""
        images = [series_slice(f"a{i}", "A") for i in range(4)]
        none = np.zeros((10, 10), np.uint8)
        labels = [square(20), none, square(8), none]
        table = measure_areas(labels, images, ["roi", "absent"])
        roi, absent = table.wide["roi"], table.wide["absent"]
        assert roi["mean"] == pytest.approx(14.0)
        assert roi["std"] == pytest.approx(math.sqrt(72.0))
        assert roi["n"] == 2
        assert np.isnan(absent["mean"]) and np.isnan(absent["std"]) and absent["n"] == 0
        text = table.to_text().splitlines()
        assert text[-2].split() == ["n", "2", "0"]
        assert text[-1] == (  # which std a paper reports: the sample one, stated
            "mean, sample std (n − 1): over the slices with the ROI (area > 0); n: how many"
        )
        wide = pd.read_csv(table.save(tmp_path)[0], index_col="slice")
        assert wide.loc["mean", "file"] == "slices with the ROI (area > 0)"
        assert wide.loc["n", "roi"] == 2 and wide.loc["mean", "roi"] == pytest.approx(14.0)

    def test_counts_are_whole_numbers_in_the_csv(self, tmp_path):
        """Areas 20, 5 (series 1) and 8 mm² (series 2): the n rows read 2, 1 and 3, not 2.0;
        the areas stay as they are (20.0)."""
        images = [series_slice("a1", "A"), series_slice("a2", "A"), series_slice("b1", "B")]
        table = measure_areas([square(20), square(5), square(8)], images, ["roi"])
        lines = table.save(tmp_path)[0].read_text().splitlines()
        assert lines[1] == "1,a1,20.0"
        assert lines[6] == "n series 1,a1 … a2 (2 slices),2"
        assert lines[9] == "n series 2,b1 (1 slice),1"
        assert lines[-1] == "n,slices with the ROI (area > 0),3"

    def test_unlike_training_marks_are_whole_numbers(self):
        wide = pd.DataFrame(
            {
                "file": ["a", "b", PRESENT],
                "roi": [2.5, 1.0, 2.0],
                CONFIDENCE_COLUMN: [0.5, 1.0, np.nan],
                FAMILIARITY_COLUMN: [0.0, 1.0, np.nan],
            },
            index=["1", "2", "n"],
        )
        text = with_whole_counts(wide).to_csv(index_label="slice").splitlines()
        assert text[1:] == ["1,a,2.5,0.5,0", "2,b,1.0,1.0,1", f"n,{PRESENT},2,,"]

    def test_the_tables_write_areas_without_binary_noise(self, tmp_path):
        """401 pixels of 0.8203 × 0.8203 mm are 269.82972809 mm², computed as the float
        269.82972809000006, which csa.csv and csa_long.csv wrote as is (repr's noise)."""
        labels = [np.zeros((20, 21), np.uint8) for _ in range(2)]
        labels[0].flat[:401], labels[1].flat[:377] = 1, 1
        images = [make_slice((20, 21), (0.8203, 0.8203), f"s{i}") for i in range(2)]
        table = measure_areas(labels, images, ["roi"])
        assert table.wide.loc["1", "roi"] == 401 * 0.8203 * 0.8203  # in memory: unrounded
        wide_csv, long_csv = table.save(tmp_path)
        for path in (wide_csv, long_csv):
            text = path.read_text()
            assert "269.82972809000006" not in text and "269.82972809" in numeric_cells(text)
            assert max(map(significant_digits, numeric_cells(text))) <= 12, text
        exact = [float(Decimal(n) * Decimal("0.8203") ** 2) for n in (401, 377)]
        assert pd.read_csv(long_csv)["area_mm2"].tolist() == pytest.approx(exact, rel=1e-9)
        wide = pd.read_csv(wide_csv, index_col="slice")
        assert wide.loc[["1", "2"], "roi"].tolist() == pytest.approx(exact, rel=1e-9)
        assert wide.loc["mean", "roi"] == pytest.approx(np.mean(exact), rel=1e-9)
        assert wide.loc["std", "roi"] == pytest.approx(np.std(exact, ddof=1), rel=1e-9)

    def test_slices_without_series_uid_group_by_folder(self):
        images = [make_slice((10, 10), (1.0, 1.0), f"p{i // 2}/s{i}") for i in range(3)]
        table = measure_areas([square(1), square(2), square(3)], images, ["roi"])
        assert table.series == (1, 1, 2)  # /data/p0/ and /data/p1/


class TestLeaveOutFlagged:
    """One rule for the overall rows without the series unlike the training data: a series'
    table (`with_familiarity`) and the cohort's merge (`merge_tables`) both call it."""

    @staticmethod
    def overall() -> pd.DataFrame:
        return pd.DataFrame({"file": [PRESENT] * 3, "roi": [0.0] * 3}, index=["mean", "std", "n"])

    def test_the_marked_slices_are_left_out_and_the_file_cells_say_so(self):
        rows = self.overall()
        values = pd.DataFrame({"roi": [2.0, 4.0, 0.0, 100.0]})  # 0: no ROI, not averaged
        leave_out_flagged(rows, values, [False, False, False, True], 1)
        assert rows["roi"].tolist() == [3.0, pytest.approx(math.sqrt(2)), 2.0]
        assert rows.loc["mean", "file"] == (
            f"{PRESENT}; without 1 series unlike the training data (1 slice)"
        )

    def test_every_slice_marked_keeps_the_rows_over_all_of_them(self):
        rows = self.overall()
        leave_out_flagged(rows, pd.DataFrame({"roi": [2.0, 4.0]}), [True, True], 2)
        assert rows["roi"].tolist() == [0.0, 0.0, 0.0]  # as they were
        assert rows.loc["n", "file"].endswith(
            "; every series is unlike the training data (2 slices): over all of them"
        )


class TestPlausibility:
    """Gap and left/right warnings compare slices of one series, never across patients."""

    def test_gap_between_series_is_not_a_missing_roi(self):
        from sliceseg.measure.plausibility import area_warnings

        wide = pd.DataFrame(
            {"file": ["a1", "a2", "b1", "b2"], "roi": [10.0, 10.0, 0.0, 10.0]},
            index=["1", "2", "3", "4"],
        )
        assert area_warnings(wide, roi_names=["roi"], series=[1, 1, 2, 2]) == []
        (pooled,) = area_warnings(wide, roi_names=["roi"])  # one series: b1 sits between two
        assert pooled.startswith("b1: roi is missing (area 0)")

    def test_gap_inside_a_series_is_found(self):
        from sliceseg.measure.plausibility import area_warnings

        wide = pd.DataFrame(
            {"file": ["a1", "a2", "a3", "b1"], "roi": [10.0, 0.0, 12.0, 0.0]},
            index=["1", "2", "3", "4"],
        )
        (warning,) = area_warnings(wide, roi_names=["roi"], series=["A", "A", "A", "B"])
        assert warning.startswith("a2: roi is missing (area 0) although both neighbouring slices")
        assert "(a1, a3)" in warning

    def test_left_right_ratio_against_its_own_series_median(self):
        from sliceseg.measure.plausibility import area_warnings

        # Patient A: left ≈ right. Patient B: left ≈ 2 × right, except b4 (ratio 6).
        left = [10.0, 11.0, 10.0, 20.0, 22.0, 20.0, 60.0]
        right = [10.0, 10.0, 10.0, 10.0, 11.0, 10.0, 10.0]
        wide = pd.DataFrame(
            {"file": ["a1", "a2", "a3", "b1", "b2", "b3", "b4"], "left x": left, "right x": right},
            index=[str(i) for i in range(1, 8)],
        )
        pair = [("left x", "right x")]
        found = area_warnings(wide, roi_names=[], sided_pairs=pair, series=[1, 1, 1, 2, 2, 2, 2])
        assert len(found) == 1
        assert found[0].startswith("b4: left x / right x area ratio is 6.00, far from the series")
        assert "median 2.00" in found[0]
        pooled = area_warnings(wide, roi_names=[], sided_pairs=pair)
        assert len(pooled) > 1  # one pooled median flags a whole patient

    def test_series_must_match_the_slices(self):
        from sliceseg.measure.plausibility import area_warnings

        wide = pd.DataFrame({"file": ["a"], "roi": [1.0]}, index=["1"])
        with pytest.raises(ConfigError, match="series gives 2 entries for 1 slices"):
            area_warnings(wide, roi_names=["roi"], series=[1, 2])

    def test_summary_rows_of_every_series_are_ignored(self):
        from sliceseg.measure.plausibility import area_warnings

        images = [series_slice(f"a{i}", "A") for i in range(3)] + [series_slice("b", "B")]
        table = measure_areas([square(5), square(0), square(5), square(0)], images, ["roi"])
        (warning,) = area_warnings(table.wide, roi_names=["roi"], series=table.series)
        assert warning.startswith("a1: roi is missing")


def test_measure_missing_label_folder_gets_no_flag_it_lacks(tmp_path):
    """`measure nope --dicoms ...` was told to "pass ... (--images / --labels)": measure's
    --labels is the ROI names, and it has no --images."""
    from sliceseg.errors import PairingError
    from sliceseg.label_areas import measure_label_folder

    (tmp_path / "dicoms").mkdir()
    with pytest.raises(PairingError) as raised:
        measure_label_folder(tmp_path / "nope", tmp_path / "dicoms", tmp_path / "m")
    message = str(raised.value)
    assert message.startswith(f"{tmp_path / 'nope'}: label folder does not exist (folders in")
    assert message.endswith("; check the path.") and "--labels" not in message


def test_nothing_to_measure_names_the_check_command_that_reports_it(tmp_path, capsys):
    """``measure`` pairing nothing said "Run `sliceseg check` for details": without its
    folders that command only refuses (no data folder). It now names the folders, and the
    command it names runs and reports on them."""
    from conftest import write_test_dicom
    from sliceseg.cli import main

    write_test_dicom(tmp_path / "dicoms" / "a.dcm", np.zeros((4, 4)))
    (tmp_path / "labels").mkdir()
    np.save(tmp_path / "labels" / "b.npy", np.ones((4, 4), np.uint8))
    dicoms, labels = tmp_path / "dicoms", tmp_path / "labels"
    argv = ["measure", str(labels), "--dicoms", str(dicoms), "--out", str(tmp_path / "out")]
    assert main(argv) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]  # after the notes on a.dcm, b.npy
    named = f"sliceseg check --images {dicoms} --labels {labels}"
    assert line.endswith(f"; run `{named}` for the full report.")
    assert main(named.split()[1:]) == 1  # a verdict on the data, not a refused command
    assert "no DICOM file in" in capsys.readouterr().out
