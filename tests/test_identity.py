"""Tests for sliceseg.io.identity: one slice key and one series identity everywhere."""

from __future__ import annotations

import shutil
from pathlib import Path

import pydicom
import pytest

from sliceseg.io.identity import (
    MAX_NAME_BYTES,
    relative_to_input,
    series_key,
    series_name,
    series_names,
    slice_key,
    slices_series_names,
)


class _Planned:
    """A header-only slice: what naming needs, nothing else."""

    def __init__(self, source: Path, series_uid: str = "", name: str | None = None) -> None:
        self.source = source
        self.series_uid = series_uid
        self.name = name or source.stem


def test_slice_key_is_the_path_under_the_root_without_suffix(tmp_path: Path):
    image = _Planned(tmp_path / "scans" / "p01" / "slice_1.dcm", name="slice_1")
    assert slice_key(image, tmp_path / "scans") == "p01/slice_1"
    with pytest.raises(ValueError, match="not inside"):
        slice_key(image, tmp_path / "elsewhere")


class TestRelativeToInput:
    @pytest.mark.parametrize(
        ("text", "root", "expected"),
        [
            ("/d/scans/p01/a.dcm", "/d/scans", "p01/a.dcm"),
            (
                "/d/scans/p01/b.dcm: the same image as /d/scans/p01/a.dcm (same",
                "/d/scans/",
                "p01/b.dcm: the same image as p01/a.dcm (same",
            ),
            ("scans/p01/a.dcm: cannot decode", "scans", "p01/a.dcm: cannot decode"),
            ("../x/scans/a.dcm: cut", "../x/scans", "a.dcm: cut"),  # ".." as given
            ("p01/a.dcm: cut", ".", "p01/a.dcm: cut"),
            (
                "/d/scans2/a.dcm and /e/d/scans/a.dcm",
                "/d/scans",
                "/d/scans2/a.dcm and /e/d/scans/a.dcm",
            ),
            ("/d/out/scans/a.dcm: x", "scans", "/d/out/scans/a.dcm: x"),  # inside another path
        ],
    )
    def test_paths_under_the_root_lose_it_and_others_stay(self, text, root, expected):
        assert relative_to_input(text, Path(root)) == expected

    def test_a_relative_root_also_names_its_absolute_paths(self, tmp_path, monkeypatch):
        monkeypatch.chdir(tmp_path)
        assert relative_to_input(f"{tmp_path}/scans/p01/a.dcm: cut", "scans") == "p01/a.dcm: cut"


def test_series_key_is_the_uid_else_the_folder(tmp_path: Path):
    assert series_key(_Planned(tmp_path / "a" / "x.dcm", "1.2.3")) == "1.2.3"
    assert series_key(_Planned(tmp_path / "a" / "x.dcm")) == str(tmp_path / "a")
    assert series_key(_Planned(tmp_path / "a" / "x.dcm")) != series_key(
        _Planned(tmp_path / "b" / "x.dcm")
    )


def test_series_names_are_folders_made_unique_in_order():
    assert series_name(["p01/a", "p01/b"]) == "p01"
    assert series_name(["a", "b"], root_name="scans") == "scans"
    assert series_name(["site/p01/a"]) == "site_p01"
    names = series_names({"u1": ["p01/a"], "u2": ["p01/b"], "u3": ["p02/a"], "u4": ["p01/c"]})
    assert names == {"u1": "p01", "u2": "p01_2", "u3": "p02", "u4": "p01_3"}


def test_series_names_never_give_a_folder_s_name_to_another_series():
    """Two series in p01/ beside a folder p01_2/: the second of p01/ was also named p01_2, so a
    cohort wrote both into OUT/series/p01_2 (one lost, both redone on every resume)."""
    groups = {"u1": ["p01/a"], "u2": ["p01/b"], "u3": ["p01_2/a"], "u4": ["p01/c"]}
    names = series_names(groups)
    assert names == {"u1": "p01", "u2": "p01_3", "u3": "p01_2", "u4": "p01_4"}
    twice = series_names({"u1": ["p01_2/a"], "u2": ["p01_2/b"], "u3": ["p01/a"], "u4": ["p01/b"]})
    assert len(set(twice.values())) == 4 and twice["u1"] == "p01_2" and twice["u3"] == "p01"


def uidless_folder(tiny_phantom: Path, out: Path) -> Path:
    """Two patients' files without (0020,000E) SeriesInstanceUID, one folder each."""
    source = sorted((tiny_phantom / "train" / "dicoms").iterdir())[:2]
    for folder in source:
        (out / folder.name).mkdir(parents=True)
        for path in sorted(folder.glob("*.dcm")):
            ds = pydicom.dcmread(path)
            del ds.SeriesInstanceUID
            ds.save_as(out / folder.name / path.name)
    return out


def test_a_name_of_nested_long_folders_is_shortened_to_a_valid_file_name():
    """Each folder ≤ 255 bytes, but joined with "_" a series' name was longer than a file name
    may be (241 bytes here, before OUT's temporary prefixes), and its series could not be
    written nor recorded as failed."""
    first, second = "ä" * 60 + "/" + "b" * 120, "ä" * 60 + "/" + "c" * 120
    names = series_names({"1": [f"{first}/s1"], "2": [f"{second}/s1"], "3": ["p01/s1"]})
    assert names["3"] == "p01" and len(set(names.values())) == 3
    for key in ("1", "2"):
        assert len(names[key].encode()) <= MAX_NAME_BYTES == 200
        assert names[key].startswith("ä" * 60 + "_" + "b" * 20 if key == "1" else "ä" * 60)
    assert series_name([f"{first}/s2"]) == names["1"]  # the same folder, the same name


def test_a_series_name_never_looks_like_a_temporary_folder():
    """Issue found by review: a DICOM folder ``.scans`` holding its files gave a series named
    ``.scans``, a hidden folder in OUT/series/ the merge passed over as a temporary one: "not
    finished" for ever, while every predict run skipped it as done."""
    assert series_name(["a", "b"], root_name=".scans") == "scans"
    assert series_name(["...", "b"], root_name="...") == "series"
    names = series_names({"1": ["a"], "2": ["scans/a"]}, root_name=".scans")
    assert names == {"1": "scans", "2": "scans_2"}


def test_a_dot_named_dicom_folder_is_merged(tiny_model, tiny_phantom, tmp_path):
    from sliceseg.inference.cohort import CohortOptions, predict_cohort
    from sliceseg.inference.merge import merge_cohort
    from sliceseg.inference.records import RunSettings

    scans = tmp_path / ".scans"
    shutil.copytree(sorted((tiny_phantom / "train" / "dicoms").iterdir())[0], scans)
    settings = RunSettings(roi_names=(), visuals="none", exports=(), report=False)
    run = predict_cohort(
        tiny_model, scans, tmp_path / "out", settings=settings, options=CohortOptions(workers=0)
    )
    assert run.finished == ["scans"]
    merged = merge_cohort(tmp_path / "out")
    assert merged.is_complete and list(merged.series["series"]) == ["scans"]


@pytest.mark.slow
def test_a_uidless_folder_has_one_series_identity_everywhere(tiny_model, tiny_phantom, tmp_path):
    """Two UID-less patient folders: two series in the areas, the GIFs, the exports, suggest."""
    from sliceseg.inference.folder import predict_folder
    from sliceseg.inference.suggest import suggest_slices

    dicoms = uidless_folder(tiny_phantom, tmp_path / "in")
    folders = sorted(p.name for p in dicoms.iterdir())
    run = predict_folder(tiny_model, dicoms, tmp_path / "out", device="cpu", report=False)
    assert all(p.image.series_uid == "" for p in run.predictions)
    assert sorted(set(run.areas.series)) == [1, 2]
    assert sorted(p.name for p in run.animations) == [f"segmentation_{f}.gif" for f in folders]
    assert sorted(e.name for e in run.exports) == folders
    found = suggest_slices(tiny_model, dicoms, n=6, device="cpu")
    by_folder = {s.key.split("/")[0]: s.series for s in found}
    assert by_folder == {folder: folder for folder in folders}  # the series' names


def test_slices_series_names_number_a_folder_s_series_in_the_order_of_their_files(tmp_path):
    """Eleven series in p01/, given in another order than their files' (a table's, the UIDs'):
    the names followed the given order, so a caller could name s1's series p01_10 where
    `sliceseg predict` (`plan_cohort`) names it p01_2; the order given is kept in the result."""
    images = [_Planned(tmp_path / "p01" / f"s{i}.dcm", f"1.2.9.{i}") for i in range(11)]
    shuffled = images[::-1]
    names = slices_series_names(shuffled, [f"p01/{image.name}" for image in shuffled])
    assert list(names) == [image.series_uid for image in shuffled]
    assert names == {f"1.2.9.{i}": "p01" if i == 0 else f"p01_{i + 1}" for i in range(11)}


PATIENTS_IN_ORDER = ["p9", "p10", "patient2", "patient10"]  # as a person reads them


def _patients_with_labels(root: Path) -> None:
    """Four one-slice series, p10 and patient10 written first (file order is no help)."""
    from conftest import add_pair, square_label

    for i, name in enumerate(["p10", "patient10", "patient2", "p9"]):
        add_pair(root, f"{name}/s1", square_label(), series_uid=f"1.2.77.{i}")


def test_series_order_compares_digit_runs_as_numbers():
    """``p10`` came before ``p9`` and ``patient2`` after ``patient10`` (plain string order)."""
    from sliceseg.io.identity import series_name_key

    assert sorted(["patient10", "p10", "patient2", "p9"], key=series_name_key) == PATIENTS_IN_ORDER
    assert sorted(["p01", "p1", "p2"], key=series_name_key) == ["p01", "p1", "p2"]  # one order


def test_plan_records_failures_and_measure_list_series_in_natural_order(tmp_path):
    """The cohort's plan (hence its shards), the merge's reading of the finished series and of
    the failed ones, and ``sliceseg measure``'s tables all sorted plain strings: p10 before p9."""
    from sliceseg.inference.attempts import read_failures
    from sliceseg.inference.records import finished_records
    from sliceseg.io.series_plan import plan_cohort
    from sliceseg.label_areas import measure_label_folder

    _patients_with_labels(tmp_path)
    plan = plan_cohort(tmp_path / "dicoms")
    assert [s.name for s in plan.series] == PATIENTS_IN_ORDER
    out = tmp_path / "out"
    for name in reversed(PATIENTS_IN_ORDER):
        (out / "series" / name).mkdir(parents=True)
        (out / "series" / name / "record.json").write_text("{}")
        (out / "failed").mkdir(exist_ok=True)
        (out / "failed" / f"{name}.json").write_text(f'{{"series": "{name}"}}')
    assert [name for name, _ in finished_records(out)] == PATIENTS_IN_ORDER
    assert [f["series"] for f in read_failures(out)] == PATIENTS_IN_ORDER
    table, _, _ = measure_label_folder(tmp_path / "labels", tmp_path / "dicoms", tmp_path / "m")
    assert list(dict.fromkeys(table.long["series"])) == PATIENTS_IN_ORDER
    rows = [label for label in table.wide.index if str(label).startswith("mean series")]
    assert rows == [f"mean series {name}" for name in PATIENTS_IN_ORDER]


@pytest.mark.slow
def test_predict_a_cohort_and_its_shards_list_series_in_natural_order(
    tiny_model, tiny_phantom, tmp_path
):
    """predict_folder, one cohort run and two shards merged: one series order, p9
    before p10, and the sharded tables equal the single run's."""
    import pandas as pd

    from sliceseg.inference.cohort import CohortOptions, predict_cohort
    from sliceseg.inference.folder import predict_folder
    from sliceseg.inference.merge import merge_cohort
    from sliceseg.inference.records import RunSettings
    from sliceseg.inference.shards import Shard

    scans = tmp_path / "scans"
    subjects = sorted((tiny_phantom / "train" / "dicoms").iterdir())
    subjects.append(next((tiny_phantom / "test" / "dicoms").iterdir()))
    for subject, name in zip(subjects, ["patient10", "p10", "patient2", "p9"], strict=True):
        shutil.copytree(subject, scans / name)
    run = predict_folder(tiny_model, scans, tmp_path / "study", device="cpu", report=False)
    assert list(dict.fromkeys(run.areas.long["series"])) == PATIENTS_IN_ORDER
    lean = RunSettings(roi_names=(), visuals="none", exports=(), report=False)
    predict_cohort(
        tiny_model, scans, tmp_path / "one", settings=lean, options=CohortOptions(workers=0)
    )
    for k in (1, 2):
        options = CohortOptions(workers=0, shard=Shard(k, 2))
        predict_cohort(tiny_model, scans, tmp_path / "two", settings=lean, options=options)
    merge_cohort(tmp_path / "two")
    for name in ("csa.csv", "csa_long.csv", "series.csv"):
        one, two = (pd.read_csv(tmp_path / d / name) for d in ("one", "two"))
        pd.testing.assert_frame_equal(one, two, check_exact=True, obj=name)
    series = pd.read_csv(tmp_path / "one" / "series.csv")
    assert list(series["series"]) == PATIENTS_IN_ORDER
    long = pd.read_csv(tmp_path / "one" / "csa_long.csv")
    assert list(dict.fromkeys(long["series"])) == PATIENTS_IN_ORDER


def test_series_order_takes_superscript_digits_as_text():
    """``str.isdigit`` is True for "²" (not a decimal digit, so ``\\d`` does not split it off)
    and ``int("²")`` failed: a folder named ``T1²`` ended predict with a traceback."""
    from sliceseg.io.identity import series_name_key

    names = ["T2", "T1²", "²", "T1", "T10"]
    assert sorted(names, key=series_name_key) == ["T1", "T1²", "T2", "T10", "²"]
