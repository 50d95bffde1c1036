"""Tests for sliceseg.inference.suggest and ``sliceseg suggest``: what to label next."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from sliceseg.cli import main
from sliceseg.inference import suggest
from sliceseg.inference.familiarity import SeriesVerdict
from sliceseg.inference.suggest import suggest_slices
from sliceseg.io.identity import series_key, slice_key
from sliceseg.measure.series_verdict import Verdict
from sliceseg.models.bundle import load_bundle

# p(ROI 1) inside its predicted 2×2 block, per slice: its confidence is 2a / (1 + a), the
# slice's too (the other five ROIs are absent and unbelieved: 1 each; the least counts).
INSIDE = {
    "sub01/sub01_s00": 0.9, "sub01/sub01_s01": 0.2, "sub01/sub01_s02": 0.5,
    "sub02/sub02_s00": 0.8, "sub02/sub02_s01": 0.7, "sub02/sub02_s02": 0.95,
    "sub03/sub03_s00": 0.3, "sub03/sub03_s01": 0.1, "sub03/sub03_s02": 0.6,
}  # fmt: skip


def _labelled(root: Path, *names: str) -> Path:
    """A label folder holding (empty) label files of sub03's slices ``names``: those slices
    count as labelled; returns the folder to give as ``labels_dir``."""
    folder = root / "labels" / "sub03"
    folder.mkdir(parents=True)
    for name in names:
        (folder / name).write_bytes(b"")
    return folder.parent


def _confidence(a: float) -> float:
    return 2 * a / (1 + a)


@pytest.fixture
def known_probabilities(monkeypatch: pytest.MonkeyPatch, tiny_phantom: Path):
    """Replace the network: each slice gets the probabilities that give it INSIDE's score."""
    root = tiny_phantom / "train" / "dicoms"

    def fake_predict(bundle, images, *, on_probabilities, **_options):
        labels = []
        for image in images:
            label = np.zeros(image.shape, np.uint8)
            label[:2, :2] = 1
            probs = torch.zeros((7, *image.shape))
            probs[0] = 1.0
            probs[1, :2, :2] = INSIDE[slice_key(image, root)]
            probs[0, :2, :2] -= probs[1, :2, :2]
            on_probabilities(probs, label)
            labels.append(label)
        return labels

    monkeypatch.setattr(suggest, "predict_slices", fake_predict)
    return root


class TestSuggestSlices:
    def test_lowest_confidence_with_series_in_turns(self, known_probabilities, tiny_model):
        found = suggest_slices(tiny_model, known_probabilities, n=4)
        # turn 1: sub03 0.1, sub01 0.2, sub02 0.7 (each series' least sure); turn 2: sub03 0.3
        expected = ["sub03/sub03_s01", "sub01/sub01_s01", "sub02/sub02_s01", "sub03/sub03_s00"]
        assert [s.key for s in found] == expected
        assert [s.rank for s in found] == [1, 2, 3, 4]
        assert [s.series for s in found] == ["sub03", "sub01", "sub02", "sub03"]
        assert [s.confidence for s in found] == pytest.approx(
            [_confidence(INSIDE[k]) for k in expected]
        )
        assert {s.weakest_roi for s in found} == {"vertebral body"}
        assert found[0].weakest_confidence == pytest.approx(2 * 0.1 / 1.1)

    def test_without_spread_the_global_order(self, known_probabilities, tiny_model):
        found = suggest_slices(tiny_model, known_probabilities, n=4, spread=False)
        assert [s.key for s in found] == [
            "sub03/sub03_s01", "sub01/sub01_s01", "sub03/sub03_s00", "sub01/sub01_s02",
        ]  # fmt: skip

    def test_labelled_slices_are_left_out(self, known_probabilities, tiny_model, tmp_path):
        labels = _labelled(tmp_path, "sub03_s01.png", "sub03_s00.npy")  # not suggested
        found = suggest_slices(tiny_model, known_probabilities, n=3, labels_dir=labels)
        assert [s.key for s in found] == ["sub01/sub01_s01", "sub03/sub03_s02", "sub02/sub02_s01"]

    def test_labels_with_upper_case_suffixes_count(self, known_probabilities, tiny_model, tmp_path):
        """Training pairs `S1.PNG` (its suffix in any case); suggest did not see it as labelled
        and suggested the slice again."""
        labels = _labelled(tmp_path, "sub03_s01.PNG", "sub03_s00.Npy")
        found = suggest_slices(tiny_model, known_probabilities, n=3, labels_dir=labels)
        assert [s.key for s in found] == ["sub01/sub01_s01", "sub03/sub03_s02", "sub02/sub02_s01"]

    def test_series_named_as_predict_names_them(self, known_probabilities, tiny_model):
        """``series`` is the series' name, predict's folder name (its folder here), not a
        number nor its SeriesInstanceUID."""
        found = suggest_slices(tiny_model, known_probabilities, n=9)
        assert {s.key.split("/")[0]: s.series for s in found} == {
            "sub01": "sub01", "sub02": "sub02", "sub03": "sub03",
        }  # fmt: skip

    def test_a_series_that_does_not_decode_keeps_its_name(
        self, monkeypatch, tiny_phantom, tiny_model, tmp_path
    ):
        """Two series in one folder, the first's files all truncated (headers readable): predict
        plans both (``p01``, ``p01_2``) and writes the second as ``p01_2``; suggest read the
        pixels first, lost the first series and called the second ``p01``."""
        from sliceseg.io.series_plan import plan_cohort

        train, dicoms = tiny_phantom / "train" / "dicoms", tmp_path / "scans"
        (dicoms / "p01").mkdir(parents=True)
        for subject, prefix in (("sub01", "a"), ("sub02", "b")):
            for path in sorted((train / subject).glob("*.dcm")):
                shutil.copy(path, dicoms / "p01" / f"{prefix}_{path.name}")
        for path in (dicoms / "p01").glob("a_*.dcm"):
            path.write_bytes(path.read_bytes()[:-500])  # the pixels cut short
        planned = {s.name: [f.source.name[0] for f in s.files] for s in plan_cohort(dicoms).series}
        assert planned == {"p01": ["a"] * 3, "p01_2": ["b"] * 3}

        def unsure(bundle, images, *, on_probabilities, **_options):
            labels = [np.zeros(image.shape, np.uint8) for image in images]
            for label in labels:
                on_probabilities(torch.full((7, *label.shape), 1 / 7), label)
            return labels

        monkeypatch.setattr(suggest, "predict_slices", unsure)
        found = suggest_slices(tiny_model, dicoms, n=9)
        assert sorted(s.key for s in found) == [f"p01/b_sub02_s0{i}" for i in range(3)]
        assert {s.series for s in found} == {"p01_2"}

    def test_labelled_neighbours_still_seen(self, monkeypatch, tiny_phantom, tiny_model, tmp_path):
        """A slice's confidence is predict's, whose (2.5D) network sees each series whole: the
        labelled slices beside it are still its neighbours, though they are not suggested."""
        root = tiny_phantom / "train" / "dicoms"

        def fake_predict(bundle, images, *, on_probabilities, context_pool=(), **_options):
            seen = [series_key(image) for image in [*images, *context_pool]]
            labels = []
            for image in images:  # p(ROI 1) = a tenth of the slices the network sees there
                label = np.zeros(image.shape, np.uint8)
                label[:2, :2] = 1
                probs = torch.zeros((7, *image.shape))
                probs[0] = 1.0
                probs[1, :2, :2] = seen.count(series_key(image)) / 10
                probs[0, :2, :2] -= probs[1, :2, :2]
                on_probabilities(probs, label)
                labels.append(label)
            return labels

        monkeypatch.setattr(suggest, "predict_slices", fake_predict)
        labels = _labelled(tmp_path, "sub03_s00.png", "sub03_s01.png")
        found = suggest_slices(tiny_model, root, n=9, labels_dir=labels)
        lone = [s for s in found if s.key == "sub03/sub03_s02"]
        assert [s.confidence for s in lone] == pytest.approx([_confidence(0.3)])  # 3 slices

    def test_unlike_training_judged_on_whole_series(
        self, monkeypatch, known_probabilities, tiny_model, tmp_path
    ):
        """predict flags sub03 (2 of its 3 slices odd: more than half); its third slice,
        the one left to label, is flagged in ``suggest`` too."""
        odd = {"sub03/sub03_s00", "sub03/sub03_s01"}

        def fake_check(bundle, images, labels, names, series):
            verdicts = []
            for number in dict.fromkeys(series):
                members = [i for i, k in enumerate(series) if k == number]
                share = sum(slice_key(images[i], known_probabilities) in odd for i in members)
                is_odd = share / len(members) > 0.5
                verdict = Verdict(is_odd, ("ROI areas outside the trained range",) * is_odd)
                verdicts.append(SeriesVerdict(number, "", "", len(members), verdict))
            return verdicts

        monkeypatch.setattr(suggest, "check_run", fake_check)
        labels = _labelled(tmp_path, "sub03_s00.png", "sub03_s01.png")
        found = suggest_slices(tiny_model, known_probabilities, n=1, labels_dir=labels)
        assert [(s.key, s.unlike_training) for s in found] == [("sub03/sub03_s02", True)]

    def test_slices_a_label_volume_labels_are_left_out(
        self, known_probabilities, tiny_model, tiny_phantom, tmp_path
    ):
        """A series labelled in 3D Slicer (``labels/sub03.seg.nrrd``) was suggested again: only
        per-slice label files counted. The volume pairs as ``check`` pairs it, and a plane it
        leaves empty (sub03_s02) is a slice still to label, as training skips it."""
        import slicer_files

        names = (tiny_phantom / "labels.txt").read_text().split("\n")[:-1]
        voxels, affine, files = slicer_files.phantom_volume(
            known_probabilities / "sub03", tiny_phantom / "train" / "labels" / "sub03"
        )
        voxels[..., [f.stem for f in files].index("sub03_s02")] = 0
        labels = tmp_path / "labels"
        segments = slicer_files.named_segments(names)
        volume = labels / "sub03.seg.nrrd"
        slicer_files.write_slicer_seg(volume, voxels, segments, ijk_to_lps=affine)
        found = suggest_slices(tiny_model, known_probabilities, n=9, labels_dir=labels)
        assert sorted(s.key for s in found) == [
            *(f"sub0{k}/sub0{k}_s0{i}" for k in (1, 2) for i in range(3)), "sub03/sub03_s02",
        ]  # fmt: skip

    def test_everything_labelled_is_nothing_to_suggest(self, tiny_model, tiny_phantom, monkeypatch):
        """It was an error (exit 2); nothing to suggest is one line, and nothing is predicted."""
        monkeypatch.setattr(suggest, "predict_slices", None)  # not called
        said: list[str] = []
        dicoms, labels = tiny_phantom / "train" / "dicoms", tiny_phantom / "train" / "labels"
        assert suggest_slices(tiny_model, dicoms, labels_dir=labels, log=said.append) == []
        assert said == [
            f"Nothing to suggest: every one of the 9 slices in {dicoms} has a label in {labels}."
        ]


@pytest.mark.slow
def test_cli_suggest_lists_and_saves(tiny_model, tiny_phantom, tmp_path, capsys):
    """The real network: 3 series, --n 3 gives one slice of each, the least sure of its series."""
    dicoms = tmp_path / "dicoms"
    shutil.copytree(tiny_phantom / "train" / "dicoms", dicoms)
    out = tmp_path / "s.csv"
    code = main(["suggest", str(tiny_model), str(dicoms), "--n", "3", "--out", str(out)])
    assert code == 0
    table = pd.read_csv(out)
    assert sorted(table["series"]) == ["sub01", "sub02", "sub03"]
    assert table["confidence"].is_monotonic_increasing
    printed = capsys.readouterr().out
    assert all(key in printed for key in table["key"])
    # each listed slice is its series' least confident: compare with a plain prediction
    from sliceseg.inference.folder import predict_folder

    run = predict_folder(load_bundle(tiny_model), dicoms, tmp_path / "pred", device="cpu",
                         report=False)  # fmt: skip
    wide = run.areas.wide.loc[[str(i) for i in range(1, 10)]]
    least = wide.groupby(wide["file"].str.split("/").str[0])["confidence"].min()
    assert sorted(table["confidence"]) == pytest.approx(sorted(least), abs=1e-9)


def test_cli_suggest_fov_scales_the_network_input_as_predict_does(tiny_model, tmp_path, capsys):
    """``suggest --fov`` gives a slice without PixelSpacing predict's spacing.

    A 200 × 200 slice over a field of view of 64 model pixels reaches the network at
    200 · (64 t / 200) / t = 64 pixels a side (as in ``predict --fov``); without ``--fov`` it
    is taken to be at the model's spacing: 200 pixels, padded to 208 (a multiple of 16).
    """
    from conftest import write_test_dicom

    row_mm, col_mm = load_bundle(tiny_model).metadata.target_spacing_mm
    rows, cols = np.mgrid[0:200, 0:200]
    pixels = np.where((rows - 100) ** 2 + (cols - 90) ** 2 <= 50**2, 300, 100)
    write_test_dicom(tmp_path / "in" / "a.dcm", pixels, spacing=None)
    fov = ["--fov", str(64 * row_mm), str(64 * col_mm)]
    seen: dict[str, set[tuple[int, ...]]] = {"with": set(), "without": set()}
    for case, extra in (("with", fov), ("without", [])):

        def record(module, args, into=seen[case]):
            first = args[0] if args else None
            if isinstance(first, torch.Tensor) and first.ndim == 4 and first.shape[1] == 1:
                into.add(tuple(first.shape[2:]))  # the network's input: one channel

        hook = torch.nn.modules.module.register_module_forward_pre_hook(record)
        try:
            argv = ["suggest", str(tiny_model), str(tmp_path / "in"), "--n", "1", *extra]
            assert main(argv) == 0, capsys.readouterr().err
        finally:
            hook.remove()
    # (the familiarity check also probes the network once with a 64 × 64 input)
    assert seen["with"] == {(64, 64)}
    assert max(seen["without"]) == (208, 208)


def test_cli_suggest_with_every_slice_labelled_says_so_and_exits_0(
    tiny_model, tiny_phantom, tmp_path, capsys
):
    """Exit 2 ("error: every one of the 9 slices ... has a label"): nothing to suggest is not
    a failure. One line, and ``--out`` holds the list's header, so a script finds no rows."""
    dicoms, labels = tiny_phantom / "train" / "dicoms", tiny_phantom / "train" / "labels"
    out = tmp_path / "to_label.csv"
    argv = ["suggest", str(tiny_model), str(dicoms), "--labels", str(labels), "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr()
    assert printed.out.splitlines() == [
        f"Nothing to suggest: every one of the 9 slices in {dicoms} has a label in {labels}.",
        f"Saved {out}",
    ]
    assert printed.err == ""
    assert out.read_text().splitlines() == [
        "rank,key,path,series,confidence,weakest_roi,weakest_confidence,unlike_training"
    ]


@pytest.mark.parametrize("size", ["0", "-2"])
def test_cli_suggest_batch_size_below_one_is_one_line(tiny_model, tiny_phantom, size, capsys):
    """As for ``predict``: exit 2 naming the flag, not a bug report (exit 4)."""
    dicoms = tiny_phantom / "test" / "dicoms"
    code = main(["suggest", str(tiny_model), str(dicoms), "--batch-size", size])
    err = capsys.readouterr().err
    assert code == 2 and f"--batch-size (batch_size) must be a whole number ≥ 1, got {size}" in err


def test_cli_suggest_out_that_is_a_folder_names_it(tiny_model, tiny_phantom, tmp_path, capsys):
    """``--out`` an existing folder: one line naming that folder (not a temporary file)."""
    folder = tmp_path / "lists"
    folder.mkdir()
    dicoms = tiny_phantom / "test" / "dicoms"
    code = main(["suggest", str(tiny_model), str(dicoms), "--n", "1", "--out", str(folder)])
    err = capsys.readouterr().err
    assert code == 2 and f"error: {folder}: a folder" in err and ".sliceseg-tmp" not in err
    assert list(folder.iterdir()) == []


def test_cli_suggest_out_that_is_a_folder_is_refused_before_predicting(
    tmp_path, monkeypatch, capsys
):
    """``--out`` a folder was refused only once every slice of the input was predicted (hours
    on a cohort), and the list was lost: it is refused before."""

    def predicted(*args, **kwargs):
        raise AssertionError("predicted before --out was checked")

    monkeypatch.setattr(suggest, "suggest_slices", predicted)
    code = main(["suggest", "model.pt", str(tmp_path), "--out", str(tmp_path)])
    assert code == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {tmp_path}: a folder, not a file; give the path of the file to write."
    )


def test_cli_suggest_out_that_exists_is_kept_without_overwrite(tmp_path, monkeypatch, capsys):
    """``--out labels.txt`` (a slip for ``--labels``) replaced the ROI names with the list, and a
    second run an earlier list: an existing file is refused, before predicting, as by
    ``preview``; ``--overwrite`` replaces it."""

    def predicted(*args, **kwargs):
        raise AssertionError("predicted before --out was checked")

    names = tmp_path / "labels.txt"
    names.write_text("psoas\n", encoding="utf-8")
    monkeypatch.setattr(suggest, "suggest_slices", predicted)
    code = main(["suggest", "model.pt", str(tmp_path), "--out", str(names)])
    assert code == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {names} already exists; pass --overwrite (overwrite=True) or give another --out."
    )
    assert names.read_text(encoding="utf-8") == "psoas\n"
    monkeypatch.setattr(suggest, "suggest_slices", lambda *args, **kwargs: [])
    assert main(["suggest", "model.pt", str(tmp_path), "--out", str(names), "--overwrite"]) == 0
    assert names.read_text(encoding="utf-8").startswith("rank,key,path,series,")


@pytest.mark.slow
def test_suggest_names_each_series_as_predict_s_folder_of_it(tiny_model, tiny_phantom, tmp_path):
    """One identity for a series: suggest's ``series`` is the folder ``predict`` writes the
    slice's series into (OUT/series/<name>/), here for a nested folder (``site_p01``), two
    series in one folder (``mixed``, ``mixed_2``) and a series at the top (the folder's name)."""
    from sliceseg.inference.cohort import CohortOptions, predict_cohort
    from sliceseg.inference.records import RunSettings
    from sliceseg.measure.areas import is_summary_row

    train, dicoms = tiny_phantom / "train" / "dicoms", tmp_path / "scans"
    shutil.copytree(train / "sub01", dicoms / "site" / "p01")
    shutil.copytree(train / "sub02", dicoms / "mixed")
    for path in (train / "sub03").glob("*.dcm"):
        shutil.copy(path, dicoms / "mixed" / path.name)
    for path in (tiny_phantom / "test" / "dicoms" / "sub04").glob("*.dcm"):
        shutil.copy(path, dicoms / path.name)
    out = tmp_path / "out"
    lean = RunSettings(roi_names=(), visuals="none", exports=(), report=False)
    predict_cohort(tiny_model, dicoms, out, settings=lean, options=CohortOptions(workers=0))
    written = {}  # slice key -> the folder predict wrote its series into
    for folder in (out / "series").iterdir():
        table = pd.read_csv(folder / "csa.csv", dtype=str)
        rows = [not is_summary_row(index) for index in table["slice"]]
        written |= dict.fromkeys(table.loc[rows, "file"], folder.name)
    found = suggest_slices(tiny_model, dicoms, n=12, device="cpu")
    assert len(found) == len(written) == 12
    assert {s.key: s.series for s in found} == written
    assert set(written.values()) == {"site_p01", "mixed", "mixed_2", "scans"}


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"n": 0}, "--n (n) must be at least 1, got 0."),
        ({"batch_size": 0}, "--batch-size (batch_size) must be a whole number ≥ 1, got 0."),
    ],
)
def test_a_bad_count_from_python_names_the_argument_too(tiny_model, tiny_phantom, given, message):
    """A notebook user passed ``n=``, not ``--n``: the message names both."""
    from sliceseg.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        suggest_slices(tiny_model, tiny_phantom / "test" / "dicoms", **given)
    assert str(caught.value) == message


def test_the_suggestions_table_sizes_the_weakest_roi_column_to_the_names():
    """The column was 32 characters wide: a longer ROI name pushed its row's slice out of line."""
    long_name = "left psoas major at the level of the third lumbar vertebra"
    rows = [
        suggest.Suggestion(1, "p01/a", Path("p01/a.dcm"), "p01", 0.25, long_name, 0.25),
        suggest.Suggestion(2, "p01/b", Path("p01/b.dcm"), "p01", 0.5, "fat", 0.5),
    ]
    lines = suggest.suggestions_text(rows).splitlines()
    column = lines[0].index("slice")
    assert [line[column:] for line in lines] == ["slice", "p01/a", "p01/b"]
    assert lines[1][column - 2 - len(f"{long_name} (0.250)") : column] == f"{long_name} (0.250)  "
