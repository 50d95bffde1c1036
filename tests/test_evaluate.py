"""Evaluation: per-slice metrics at native resolution, agreement statistics, files."""

import numpy as np
import pandas as pd
import pytest

from sliceseg.inference.evaluate import _slice_rows, evaluate_model

pytestmark = pytest.mark.slow


def test_identical_maps_score_perfectly():
    truth = np.zeros((20, 30), np.uint8)
    truth[2:8, 3:9] = 1
    rows = _slice_rows("k", truth.copy(), truth, (0.5, 0.8), ["a", "b"])
    assert rows[0]["dice"] == 1.0 and rows[0]["hd95_mm"] == 0.0 and rows[0]["area_error_mm2"] == 0.0
    assert rows[0]["area_manual_mm2"] == pytest.approx(36 * 0.4)
    assert np.isnan(rows[1]["dice"]) and not rows[1]["missed"]


def test_missed_roi_is_counted_not_dropped():
    truth = np.zeros((10, 10), np.uint8)
    truth[2:5, 2:5] = 1
    rows = _slice_rows("k", np.zeros_like(truth), truth, (1.0, 1.0), ["a"])
    assert rows[0]["missed"] and rows[0]["dice"] == 0.0 and np.isinf(rows[0]["hd95_mm"])
    assert rows[0]["area_error_pct"] == -100.0


def test_evaluate_model_writes_consistent_tables(tiny_model, tiny_phantom, tmp_path):
    result = evaluate_model(tiny_model, tiny_phantom / "test", tmp_path / "ev")
    per_slice = pd.read_csv(tmp_path / "ev" / "evaluation_per_slice.csv")
    summary = pd.read_csv(tmp_path / "ev" / "evaluation_summary.csv", index_col="roi_name")
    assert len(summary) == 6 and (tmp_path / "ev" / "bland_altman.png").stat().st_size > 5000
    part = per_slice[per_slice["roi"] == 1]
    diff = part["area_auto_mm2"] - part["area_manual_mm2"]
    assert summary.loc["vertebral body", "ba_bias_mm2"] == pytest.approx(diff.mean())
    assert summary.loc["vertebral body", "dice_mean"] == pytest.approx(part["dice"].mean())
    assert "Evaluation per ROI" in result.to_text()


def model_with_values(path, label_values, roi_names=("a", "b")):
    """An untrained U-Net whose file says its training labels were stored as ``label_values``."""
    from sliceseg.models import build_model
    from sliceseg.models.bundle import ModelMetadata, save_bundle

    hyper = {"base_channels": 8, "depth": 2}
    model = build_model("unet", num_classes=len(roi_names) + 1, input_size=32, **hyper)
    meta = ModelMetadata(
        arch="unet",
        hyperparameters=hyper,
        num_classes=len(roi_names) + 1,
        input_size=32,
        roi_names=tuple(roi_names),
        label_values=tuple(label_values),
    )
    return save_bundle(path, model, meta)


def labelled_slices(root, labels, *, spacing=(0.5, 0.8)):
    """Write one 20×20 DICOM per label map under root/dicoms and the maps under root/labels
    (each its own InstanceNumber: files of one number and pixels are one image copied)."""
    from conftest import write_test_dicom

    for i, label in enumerate(labels):
        path = root / "dicoms" / f"s{i}.dcm"
        write_test_dicom(path, np.full((20, 20), 100), spacing=spacing, instance=i + 1)
        (root / "labels").mkdir(parents=True, exist_ok=True)
        np.save(root / "labels" / f"s{i}.npy", label.astype(np.uint8))
    return root


def stored(values_at: dict[int, tuple[slice, slice]]) -> np.ndarray:
    label = np.zeros((20, 20), np.uint8)
    for value, (rows, cols) in values_at.items():
        label[rows, cols] = value
    return label


class TestModelLabelScheme:
    """Test labels are read with the model's own label values, never re-guessed."""

    def test_values_0_2_4_are_rois_1_and_2(self, tmp_path):
        model = model_with_values(tmp_path / "m.pt", (0, 2, 4))
        label = stored({2: (slice(0, 5), slice(0, 4)), 4: (slice(10, 20), slice(0, 10))})
        data = labelled_slices(tmp_path / "d", [label])
        result = evaluate_model(model, data, tmp_path / "ev")
        manual = result.per_slice.set_index("roi_name")["area_manual_mm2"]
        assert manual["a"] == pytest.approx(20 * 0.4) and manual["b"] == pytest.approx(100 * 0.4)

    def test_a_test_set_without_roi_1_is_not_renumbered(self, tmp_path):
        # Guessing from these labels alone ({0, 4}) would make 4 the first ROI.
        model = model_with_values(tmp_path / "m.pt", (0, 2, 4))
        label = stored({4: (slice(0, 10), slice(0, 3))})
        data = labelled_slices(tmp_path / "d", [label, label])
        result = evaluate_model(model, data, tmp_path / "ev")
        manual = result.per_slice.groupby("roi_name")["area_manual_mm2"].sum()
        assert manual["a"] == 0.0 and manual["b"] == pytest.approx(2 * 30 * 0.4)

    def test_value_outside_the_scheme_names_the_file(self, tmp_path):
        """The file is left out on its own line (`TestLeftOut`), in the model's terms."""
        model = model_with_values(tmp_path / "m.pt", (0, 2, 4))
        labels = [stored({2: (slice(0, 2), slice(0, 2))}), stored({3: (slice(0, 2), slice(0, 2))})]
        data = labelled_slices(tmp_path / "d", labels)
        result = evaluate_model(model, data, tmp_path / "ev")
        assert result.left_out == 1 and set(result.per_slice["key"]) == {"s0"}
        (note,) = [n for n in result.notes if n.startswith("not evaluated: ")]
        assert note == (
            "not evaluated: labels/s1.npy: values [3] in 4 pixels are not in the "
            f"label scheme of the model {tmp_path / 'm.pt'} (0, 2, 4 (display-scaled), the "
            "values of its training data); label the test set the same way as the training set."
        )

    def test_no_file_in_the_model_s_scheme_refuses_the_run_naming_the_first(self, tmp_path):
        """Every file left out (a test set labelled another way): nothing to evaluate."""
        from sliceseg.errors import PairingError

        model = model_with_values(tmp_path / "m.pt", (0, 2, 4))
        data = labelled_slices(tmp_path / "d", [stored({3: (slice(0, 2), slice(0, 2))})] * 2)
        with pytest.raises(
            PairingError,
            match=r"^nothing to evaluate in \S+labels: 2 problem\(s\) left out every labelled "
            r"slice \(among the `not evaluated:` lines\); the first: labels/s0\.npy: values "
            r"\[3\] in 4 pixels are not in the label scheme of the model",
        ):
            evaluate_model(model, data, tmp_path / "ev")
        assert not (tmp_path / "ev").exists()

    def test_model_without_label_values_means_0_to_k(self, tmp_path):
        from sliceseg.inference.evaluate import model_label_scheme
        from sliceseg.models.bundle import load_bundle

        bundle = load_bundle(model_with_values(tmp_path / "m.pt", ()))
        assert model_label_scheme(bundle).stored_values == (0, 1, 2)


class TestSpacing:
    """Spacing is resolved as by predict and measure: never a silent 1 mm."""

    def test_missing_spacing_is_an_error_naming_the_file(self, tmp_path):
        """Its only slice left out (not evaluated, naming the file): nothing to evaluate."""
        from sliceseg.errors import PairingError

        model = model_with_values(tmp_path / "m.pt", (0, 1, 2))
        data = labelled_slices(
            tmp_path / "d", [stored({1: (slice(0, 4), slice(0, 4))})], spacing=None
        )
        with pytest.raises(
            PairingError, match=r"left out every labelled slice .*; the first: dicoms/s0\.dcm: no "
        ):
            evaluate_model(model, data, tmp_path / "ev")

    def test_field_of_view_fallback_gives_mm(self, tmp_path):
        from sliceseg.measure.spacing import SpacingFallback

        model = model_with_values(tmp_path / "m.pt", (0, 1, 2))
        data = labelled_slices(
            tmp_path / "d", [stored({1: (slice(0, 4), slice(0, 5))})], spacing=None
        )
        fallback = SpacingFallback(fov_mm=(40.0, 30.0))  # 2.0 × 1.5 mm pixels on 20×20
        result = evaluate_model(model, data, tmp_path / "ev", fallback=fallback)
        manual = result.per_slice.set_index("roi_name")["area_manual_mm2"]
        assert manual["a"] == pytest.approx(20 * 2.0 * 1.5)
        # the note on the files without PixelSpacing said "their areas are in pixels"
        (note,) = [n for n in result.notes if "no pixel spacing" in n]
        assert "in pixels" not in note and "(--fov, --matrix): their areas are in mm²" in note

    def test_pixels_fallback_names_the_unit(self, tmp_path):
        from sliceseg.measure.spacing import SpacingFallback

        model = model_with_values(tmp_path / "m.pt", (0, 1, 2))
        data = labelled_slices(
            tmp_path / "d", [stored({1: (slice(0, 4), slice(0, 5))})], spacing=None
        )
        result = evaluate_model(
            model, data, tmp_path / "ev", fallback=SpacingFallback(pixels_only=True)
        )
        assert result.unit == "pixels"
        assert result.per_slice.set_index("roi_name")["area_manual_px2"]["a"] == 20.0
        assert any("their areas are in pixels" in note for note in result.notes)
        assert "hd95_px_median" in result.to_text()
        written = pd.read_csv(tmp_path / "ev" / "evaluation_summary.csv")
        assert "ba_bias_px2" in written.columns and "ba_bias_mm2" not in written.columns

    def test_pixels_with_mixed_spacing_names_a_file_of_each(self, tmp_path):
        from conftest import write_test_dicom
        from sliceseg.errors import ConfigError
        from sliceseg.measure.spacing import SpacingFallback

        model = model_with_values(tmp_path / "m.pt", (0, 1, 2))
        label = stored({1: (slice(0, 4), slice(0, 5))})
        data = labelled_slices(tmp_path / "d", [label, label])
        s1 = data / "dicoms" / "s1.dcm"
        write_test_dicom(s1, np.full((20, 20), 100), spacing=None, instance=2)
        with pytest.raises(
            ConfigError,
            match=r"dicoms/s1\.dcm: no PixelSpacing .*\(e\.g\. .*dicoms/s0\.dcm\); give --fov",
        ):
            evaluate_model(model, data, tmp_path / "ev", fallback=SpacingFallback(pixels_only=True))

    def test_pixels_beside_a_malformed_spacing_is_not_called_absent(self, tmp_path, capsys):
        """``evaluate --pixels`` said a file whose PixelSpacing is there but malformed had "no
        PixelSpacing (0028,0030)"; the refusal now says malformed and names the value."""
        from conftest import write_test_dicom
        from sliceseg.cli import main
        from test_measure import malformed_spacing_dicom

        model = model_with_values(tmp_path / "m.pt", (0, 1, 2))
        data = tmp_path / "d"
        good = write_test_dicom(data / "dicoms" / "a.dcm", np.zeros((4, 4)), instance=1)
        bad = malformed_spacing_dicom(data / "dicoms" / "b.dcm", b"0.7\\abc ", instance=2)
        (data / "labels").mkdir()
        for name in ("a", "b"):
            np.save(data / "labels" / f"{name}.npy", np.ones((4, 4), np.uint8))
        argv = ["evaluate", str(model), str(data), "--out", str(tmp_path / "ev"), "--pixels"]
        assert main(argv) == 2
        assert capsys.readouterr().err.strip().splitlines()[-1] == (
            f'error: {bad}: its PixelSpacing (0028,0030) "0.7\\abc" is malformed or not > 0 '
            "(expected two positive numbers, row mm and column mm), while other test slices have "
            f"a spacing in mm (e.g. {good}); give --fov MM (and --matrix ROWS COLS) so every "
            "slice is measured in mm²."
        )

    def test_spacing_is_the_files_own(self, tmp_path):
        model = model_with_values(tmp_path / "m.pt", (0, 1, 2))
        label = stored({1: (slice(0, 4), slice(0, 5))})
        data = labelled_slices(tmp_path / "d", [label], spacing=(0.25, 2.0))
        result = evaluate_model(model, data, tmp_path / "ev")
        assert result.per_slice.set_index("roi_name")["area_manual_mm2"]["a"] == pytest.approx(10.0)


class TestBlandAltmanPlot:
    """bland_altman.png draws the pairs the summary's bias and limits are computed on."""

    def _run(self, tmp_path, monkeypatch, manual, auto, roi_names=("a", "b"), **options):
        from sliceseg.inference import evaluate

        drawn = []

        def keep(*args, **kwargs):
            drawn.append(real(*args, **kwargs))
            return drawn[-1]

        real = evaluate.plot_bland_altman
        monkeypatch.setattr(evaluate, "plot_bland_altman", keep)
        monkeypatch.setattr(evaluate, "predict_slices", lambda bundle, images, **_: list(auto))
        values = tuple(range(len(roi_names) + 1))
        model = model_with_values(tmp_path / "m.pt", values, roi_names=roi_names)
        data = labelled_slices(tmp_path / "d", manual)
        return evaluate_model(model, data, tmp_path / "ev", **options), drawn

    def test_an_roi_absent_from_both_maps_is_not_a_pair(self, tmp_path, monkeypatch):
        """ROI a: 10×10, 8×8, 6×6 pixels of 0.4 mm², the model one column wider: differences
        4.0, 3.2, 2.4 mm², bias 3.2, SD 0.8, limits 3.2 ∓ 1.568. ROI b is on no slice."""
        manual = [stored({1: (slice(0, s), slice(0, s))}) for s in (10, 8, 6)]
        auto = [stored({1: (slice(0, s), slice(0, s + 1))}) for s in (10, 8, 6)]
        result, drawn = self._run(tmp_path, monkeypatch, manual, auto)
        row = result.summary.loc["a"]
        assert row["ba_bias_mm2"] == pytest.approx(3.2)
        assert (row["ba_loa_low_mm2"], row["ba_loa_high_mm2"]) == pytest.approx((1.632, 4.768))
        texts = {t.get_text() for t in drawn[0].axes[0].texts}
        assert {"bias 3.20", "+1.96 SD 4.77", "−1.96 SD 1.63"} <= texts

    def test_a_single_pair_writes_the_tables_without_the_plot(self, tmp_path, monkeypatch):
        """One slice of a one-ROI model: no Bland–Altman spread, but the evaluation stands;
        an earlier run's plot in the folder (``--overwrite``) is not left as if it were this."""
        manual = [stored({1: (slice(0, 10), slice(0, 10))})]
        auto = [stored({1: (slice(0, 10), slice(0, 11))})]
        (tmp_path / "ev").mkdir()
        (tmp_path / "ev" / "bland_altman.png").write_bytes(b"an earlier run's plot")
        result, drawn = self._run(
            tmp_path, monkeypatch, manual, auto, roi_names=("a",), overwrite=True
        )
        written = sorted(p.name for p in (tmp_path / "ev").iterdir())
        assert written == ["evaluation_per_slice.csv", "evaluation_summary.csv", "failed.csv"]
        assert result.summary.loc["a", "ba_bias_mm2"] == pytest.approx(4.0) and not drawn
        assert any("bland_altman.png" in note and "2 slices" in note for note in result.notes)


class TestFalsePositives:
    """An ROI drawn on a slice whose manual labels have none is counted, as `missed` is."""

    def test_an_roi_predicted_where_the_labels_have_none_is_counted(self, tmp_path, monkeypatch):
        """Three slices with ROI a (4×4) in both maps; on slices 2 and 3 the model also draws
        ROI b, which the manual labels lack: HD95 inf there, so the median drops them, and the
        summary says 2 false positives for b, none for a, and no miss."""
        manual = [stored({1: (slice(0, 4), slice(0, 4))}) for _ in range(3)]
        extra = {2: (slice(10, 13), slice(10, 13))}
        auto = [
            stored({1: (slice(0, 4), slice(0, 4))}),
            stored({1: (slice(0, 4), slice(0, 4)), **extra}),
            stored({1: (slice(0, 4), slice(0, 4)), **extra}),
        ]
        monkeypatch.setattr(
            "sliceseg.inference.evaluate.predict_slices", lambda bundle, images, **_: list(auto)
        )
        model = model_with_values(tmp_path / "m.pt", (0, 1, 2))
        result = evaluate_model(model, labelled_slices(tmp_path / "d", manual), tmp_path / "ev")
        written = pd.read_csv(tmp_path / "ev" / "evaluation_summary.csv", index_col="roi_name")
        assert written.loc["b", "false_positive"] == 2 and written.loc["a", "false_positive"] == 0
        assert written.loc["b", "missed"] == 0
        per_slice = pd.read_csv(tmp_path / "ev" / "evaluation_per_slice.csv")
        flags = per_slice[per_slice["roi_name"] == "b"]["false_positive"].tolist()
        assert flags == [False, True, True]
        assert "false_positive" in result.to_text()


class TestSummaryCounts:
    """The summary says over which slices each mean is taken."""

    def test_dice_mean_counts_the_false_positive_slices(self, tmp_path, monkeypatch):
        """ROI a: manual and automatic alike (4×4) on slices 1 and 2; on slice 3 only the model
        draws it (Dice 0). Two slices have a manual area (`slices` 2, area error over them),
        three a Dice (`dice_slices` 3, Dice mean (1 + 1 + 0) / 3). ROI b is on no slice."""
        a = {1: (slice(0, 4), slice(0, 4))}
        manual = [stored(a), stored(a), stored({})]
        auto = [stored(a), stored(a), stored(a)]
        monkeypatch.setattr(
            "sliceseg.inference.evaluate.predict_slices", lambda bundle, images, **_: list(auto)
        )
        model = model_with_values(tmp_path / "m.pt", (0, 1, 2))
        result = evaluate_model(model, labelled_slices(tmp_path / "d", manual), tmp_path / "ev")
        written = pd.read_csv(tmp_path / "ev" / "evaluation_summary.csv", index_col="roi_name")
        assert written.loc["a", ["slices", "dice_slices"]].tolist() == [2, 3]
        assert written.loc["a", "dice_mean"] == pytest.approx(2 / 3)
        assert written.loc["a", "iou_mean"] == pytest.approx(2 / 3)
        assert written.loc["a", "false_positive"] == 1
        assert written.loc["b", ["slices", "dice_slices"]].tolist() == [0, 0]
        assert np.isnan(written.loc["b", "dice_mean"])
        header = result.to_text().splitlines()[1].split()
        assert header[:3] == ["slices", "dice_slices", "dice_mean"]


def test_dicoms_without_a_label_map_are_said_not_evaluated(tmp_path, monkeypatch):
    """The note on a test DICOM without a label map said "not trained on", training's wording."""
    from conftest import write_test_dicom

    a = {1: (slice(0, 4), slice(0, 4))}
    monkeypatch.setattr(
        "sliceseg.inference.evaluate.predict_slices", lambda bundle, images, **_: [stored(a)] * 2
    )
    data = labelled_slices(tmp_path / "d", [stored(a), stored(a)])
    write_test_dicom(data / "dicoms" / "lonely.dcm", np.full((20, 20), 100), spacing=(0.5, 0.8))
    model = model_with_values(tmp_path / "m.pt", (0, 1), roi_names=("a",))
    result = evaluate_model(model, data, tmp_path / "ev")
    assert result.notes[0] == (
        "warning: 1 DICOM file(s) without a label map of the same relative name (not evaluated; "
        "a model trained with --context-slices reads them as neighbours) -- dicoms/lonely.dcm"
    )
    assert result.left_out == 0


def test_num_labels_the_model_contradicts_is_refused(tmp_path, capsys):
    """`--num-labels` was accepted and ignored: the help said it was checked."""
    from sliceseg.cli.command import main

    model = model_with_values(tmp_path / "m.pt", (0, 1, 2))
    data = labelled_slices(tmp_path / "d", [stored({1: (slice(0, 4), slice(0, 5))})])
    argv = ["evaluate", str(model), str(data), "--num-labels", "3", "--out", str(tmp_path / "ev")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--num-labels 3: the model" in err
    assert "has 2 ROIs (a, b)" in err and "give 2" in err
    assert not (tmp_path / "ev").exists()


class TestLeftOut:
    """One test slice that cannot be evaluated stopped the run: it is now left out and named."""

    def _evaluate(self, model, data, out):
        from sliceseg.cli import main

        return main(["evaluate", str(model), str(data), "--out", str(out), "--device", "cpu"])

    def test_a_slice_without_spacing_is_left_out_and_the_others_evaluated(self, tmp_path, capsys):
        from conftest import write_test_dicom

        model = model_with_values(tmp_path / "m.pt", (0, 1, 2))
        labels = [stored({1: (slice(0, 4), slice(0, 5 + i))}) for i in range(3)]
        clean = labelled_slices(tmp_path / "clean", labels)
        assert self._evaluate(model, clean, tmp_path / "clean_ev") == 0
        data = labelled_slices(tmp_path / "d", labels)
        write_test_dicom(data / "dicoms" / "z.dcm", np.full((20, 20), 100), spacing=None,
                         instance=9)  # fmt: skip
        np.save(data / "labels" / "z.npy", labels[0])
        capsys.readouterr()
        assert self._evaluate(model, data, tmp_path / "ev") == 3
        err = capsys.readouterr().err
        assert "Traceback" not in err
        (line,) = [ln for ln in err.splitlines() if ln.startswith("not evaluated: ")]
        assert line.startswith("not evaluated: dicoms/z.dcm: no PixelSpacing (0028,0030) in the")
        assert line.count("z.dcm") == 1  # not again after " -- "
        for name in ("evaluation_per_slice.csv", "evaluation_summary.csv"):
            pd.testing.assert_frame_equal(
                pd.read_csv(tmp_path / "ev" / name), pd.read_csv(tmp_path / "clean_ev" / name)
            )
        (failed,) = pd.read_csv(tmp_path / "ev" / "failed.csv").to_dict("records")
        assert f"not evaluated: {failed['reason']}" == line and failed["slices"] == 1

    def test_a_value_the_model_does_not_know_leaves_that_file_out(self, tmp_path, capsys):
        """One label map holding 7 (the model has ROIs 1..2) refused the whole run (exit 2, no
        table): it is left out on one line naming it and the fix, listed in failed.csv, and the
        others are evaluated exactly as without it (exit 3), as measure does."""
        model = model_with_values(tmp_path / "m.pt", (0, 1, 2))
        labels = [stored({1: (slice(0, 4), slice(0, 5 + i))}) for i in range(3)]
        assert (
            self._evaluate(model, labelled_slices(tmp_path / "clean", labels), tmp_path / "c") == 0
        )
        bad = stored({1: (slice(0, 4), slice(0, 5)), 7: (slice(10, 12), slice(10, 12))})
        data = labelled_slices(tmp_path / "d", [*labels, bad])
        capsys.readouterr()
        assert self._evaluate(model, data, tmp_path / "ev") == 3
        err = capsys.readouterr().err
        reason = (
            "labels/s3.npy: values [7] in 4 pixels are not in the label scheme of "
            f"the model {tmp_path / 'm.pt'} (0..2, the values of its training data); label the "
            "test set the same way as the training set."
        )
        assert [ln for ln in err.splitlines() if ln.startswith("not evaluated: ")] == [
            f"not evaluated: {reason}"
        ]
        assert err.splitlines()[-1].startswith("finished with failures: 1 problem(s) left files")
        for name in ("evaluation_per_slice.csv", "evaluation_summary.csv"):
            pd.testing.assert_frame_equal(
                pd.read_csv(tmp_path / "ev" / name), pd.read_csv(tmp_path / "c" / name)
            )
        (failed,) = pd.read_csv(tmp_path / "ev" / "failed.csv").to_dict("records")
        assert (failed["reason"], failed["slices"]) == (reason, 1)

    def test_no_pairs_at_all_is_said_once_by_the_refusal(self, tmp_path, capsys):
        """evaluate printed "not evaluated: no DICOM file ... pairs with a label map ..." just
        before its refusal said it again: that concerns the run, not a file left out."""
        model = model_with_values(tmp_path / "m.pt", (0, 1, 2))
        data = labelled_slices(tmp_path / "d", [stored({1: (slice(0, 4), slice(0, 4))})])
        (data / "labels" / "s0.npy").unlink()
        assert self._evaluate(model, data, tmp_path / "ev") == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert not [ln for ln in lines if ln.startswith("not evaluated: ")]
        assert [ln for ln in lines if "pairs with a label map" in ln] == [lines[-1]]
        assert lines[-1] == (
            f"error: nothing to evaluate: no DICOM file in {data / 'dicoms'} pairs with a label "
            f"map in {data / 'labels'}; expected {data / 'dicoms'}/<name>.dcm beside "
            f"{data / 'labels'}/<name>.png (same relative path); run `sliceseg check {data}` for "
            "the full report."
        )

    def test_measure_and_evaluate_refuse_in_one_wording(self, tmp_path, capsys):
        """measure refused with its counts and first two messages ("0 pairs, 0 slices, 2
        error(s) ...: a | b"), evaluate with "no labelled test slice to evaluate (...); first
        problem: ..." (and, with no pairs, said it twice): one line now, in each one's verb."""
        from sliceseg.cli import main

        model = model_with_values(tmp_path / "m.pt", (0, 1, 2))
        label = stored({1: (slice(0, 4), slice(0, 4))})
        data = labelled_slices(tmp_path / "d", [label, label], spacing=None)
        dicoms, labels = data / "dicoms", data / "labels"
        measure = ["measure", str(labels), "--dicoms", str(dicoms), "--out", str(tmp_path / "me")]
        check = f"--images {dicoms} --labels {labels}"
        capsys.readouterr()
        for run, verb, left_out, command in (
            (lambda: self._evaluate(model, data, tmp_path / "ev"), "evaluate", "not evaluated",
             str(data)),
            (lambda: main(measure), "measure", "not measured", check),
        ):  # fmt: skip
            assert run() == 2
            assert capsys.readouterr().err.strip().splitlines()[-1] == (
                f"error: nothing to {verb} in {labels}: 2 problem(s) left out every labelled "
                f"slice (among the `{left_out}:` lines); the first: dicoms/s0.dcm: no PixelSpacing "
                "(0028,0030) in the file, so areas in mm² are unknown; give --fov MM (and "
                "--matrix ROWS COLS), or --pixels to report pixel counts; run `sliceseg check "
                f"{command}` for the full report."
            )

    def test_the_warnings_come_before_a_refusal_after_reading(self, tmp_path, capsys):
        model = model_with_values(tmp_path / "m.pt", (0, 1, 2))
        data = labelled_slices(tmp_path / "d", [stored({1: (slice(0, 4), slice(0, 4))})])
        (tmp_path / "ev").mkdir()
        (tmp_path / "ev" / "mine.txt").write_text("in use")
        assert self._evaluate(model, data, tmp_path / "ev") == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert lines[0] == "warning: ROI 2 (value 2) appears in no label file."
        assert lines[-1].startswith(f"error: {tmp_path / 'ev'}")
