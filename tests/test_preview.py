"""The first augmented batch, drawn in fixed ROI colours with the dataset's own ROI names."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import tiny_config
from sliceseg.errors import ConfigError
from sliceseg.phantom.generate import ROI_NAMES
from sliceseg.report.visualize import roi_colour
from sliceseg.training.loop import train
from sliceseg.training.preview import preview_batch


def test_preview_names_rois_from_labels_txt_and_draws_their_colours(tiny_phantom, tmp_path):
    config = tiny_config(tiny_phantom / "train", tmp_path / "model")
    figure = preview_batch(config, path=tmp_path / "preview.png")
    legend_texts = [t.get_text() for legend in figure.legends for t in legend.get_texts()]
    assert set(ROI_NAMES) <= set(legend_texts)
    pixels = np.asarray(Image.open(tmp_path / "preview.png").convert("RGB")).reshape(-1, 3)
    colours = {tuple(int(c) for c in p) for p in pixels[:: max(1, len(pixels) // 200_000)]}
    # Overlays blend, but the legend patches are drawn in each ROI's exact colour.
    assert all(tuple(roi_colour(k)) in colours for k in range(1, len(ROI_NAMES) + 1))


QUIET = {"log": lambda _line: None}


def _drawn_batches(monkeypatch) -> list[tuple[np.ndarray, np.ndarray]]:
    """Every (images, labels) batch drawn from now on, by training or by the preview."""
    from sliceseg.training import preview

    drawn = []
    real = preview.plot_batch

    def spy(images, labels, roi_names, *, path=None):
        drawn.append((np.array(images), np.array(labels)))
        return real(images, labels, roi_names, path=path)

    monkeypatch.setattr(preview, "plot_batch", spy)
    return drawn


class TestPreviewIsTrainingsFirstBatch:
    """``sliceseg preview`` draws exactly the batch training saves as <name>_first_batch.png."""

    @pytest.mark.parametrize("split", ["patient", "levels"])
    def test_with_a_validation_split(self, tiny_phantom, tmp_path, monkeypatch, split):
        drawn = _drawn_batches(monkeypatch)
        config = tiny_config(tiny_phantom / "train", tmp_path / "m", epochs=1,
                             validation_fraction=0.34, validation_split=split)  # fmt: skip
        train(config, **QUIET)
        preview_batch(config)
        (trained_images, trained_labels), (images, labels) = drawn
        assert (tmp_path / "m" / "sliceseg_first_batch.png").is_file()
        assert images.shape == (4, 1, 64, 64) and labels.shape == (4, 64, 64)
        np.testing.assert_array_equal(images, trained_images)
        np.testing.assert_array_equal(labels, trained_labels)

    def test_with_init_from_at_the_model_s_spacing(self, tiny_phantom, tmp_path, monkeypatch):
        data = tiny_phantom / "train"
        start = train(tiny_config(data, tmp_path / "m0", epochs=1, target_spacing_mm=1.5),
                      **QUIET).best_model  # fmt: skip
        drawn = _drawn_batches(monkeypatch)
        config = tiny_config(data, tmp_path / "m1", epochs=1, init_from=str(start))
        train(config, **QUIET)
        preview_batch(config)
        preview_batch(tiny_config(data, tmp_path / "m2"))  # a new model: the median spacing
        (trained_images, trained_labels), (images, labels), (_, at_median) = drawn
        np.testing.assert_array_equal(images, trained_images)
        np.testing.assert_array_equal(labels, trained_labels)
        # 1.5 mm pixels, not the median's: the same crops hold more of each ROI
        assert np.count_nonzero(labels) != np.count_nonzero(at_median)


@pytest.mark.parametrize(
    ("name", "said"),
    [("preview", "no picture format"), ("preview.txt", "'.txt' is not a picture format")],
)
def test_cli_preview_out_without_a_picture_suffix_is_one_line(
    tiny_phantom, tmp_path, capsys, name, said
):
    """``--out preview`` (no suffix) or ``.txt``: exit 2 naming the file, before any work."""
    from sliceseg.cli import main

    out = tmp_path / name
    code = main(["preview", str(tiny_phantom / "train"), "--input-shape", "64", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and f"{out}: {said}" in err and ".png" in err
    assert list(tmp_path.iterdir()) == []


def test_cli_preview_out_that_is_a_folder_is_one_line(tiny_phantom, tmp_path, capsys):
    """An existing folder as ``--out``: exit 2 naming it, nothing written into it."""
    from sliceseg.cli import main

    folder = tmp_path / "pictures.png"
    folder.mkdir()
    data = str(tiny_phantom / "train")
    code = main(["preview", data, "--input-shape", "64", "--out", str(folder)])
    err = capsys.readouterr().err
    assert code == 2 and f"{folder}: a folder" in err
    assert list(folder.iterdir()) == []


@pytest.mark.parametrize("name", ["labels.txt", "sub01_s00.png"])
def test_cli_preview_never_replaces_an_existing_file_without_overwrite(
    tiny_phantom, tmp_path, capsys, name
):
    """A mistyped ``--out`` (the ROI names, a label map): exit 2 naming it, the file kept."""
    from sliceseg.cli import main

    train = tiny_phantom / "train"
    labels = train / "labels"
    source = train / "labels.txt" if name == "labels.txt" else next(labels.rglob("*.png"))
    out = tmp_path / name
    out.write_bytes(source.read_bytes())
    code = main(["preview", str(train), "--input-shape", "64", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and str(out) in err and len(err.strip().splitlines()) == 1
    if name.endswith(".png"):
        expected = f"{out} already exists; pass --overwrite (overwrite=True) or give another --out."
        assert expected in err
    assert out.read_bytes() == source.read_bytes()


def test_cli_preview_overwrite_replaces_an_earlier_preview(tiny_phantom, tmp_path, capsys):
    from sliceseg.cli import main

    out = tmp_path / "preview.png"
    out.write_bytes(b"an earlier preview")
    args = ["preview", str(tiny_phantom / "train"), "--input-shape", "64", "--out", str(out)]
    assert main([*args, "--overwrite"]) == 0
    assert f"First augmented batch drawn in {out}" in capsys.readouterr().out
    assert Image.open(out).size[0] > 0


def test_cli_preview_names_the_files_the_check_left_out(tiny_phantom, tmp_path, capsys):
    """A file that is no DICOM among the training slices (no label map: a warning, the data
    stays fit): `preview` drew the batch without a word, where `train` names it before its
    first epoch; both now say it in the same lines."""
    from sliceseg.cli import main

    data = tmp_path / "data"
    shutil.copytree(tiny_phantom / "train", data)
    damaged = data / "dicoms" / "sub01" / "zz_extra.dcm"
    damaged.write_bytes(b"not a DICOM file")
    args = ["preview", str(data), "--input-shape", "64", "--out", str(tmp_path / "p.png")]
    assert main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    heading = "Data check: 1 warning(s); training goes on with the data as it is:"
    skipped = next(line for line in lines if "[skipped]" in line)
    assert lines[lines.index(heading) + 1] == skipped and skipped.endswith(
        f"-- dicoms/sub01/{damaged.name}"
    )
    assert lines[-1] == f"First augmented batch drawn in {tmp_path / 'p.png'}"


def test_a_flip_pair_beyond_the_datasets_rois_is_refused_before_a_batch(tiny_phantom, tmp_path):
    # a flip would turn ROI k into k + 1, a label the network has no output for
    k = len(ROI_NAMES)
    config = tiny_config(
        tiny_phantom / "train",
        tmp_path / "model",
        augment_params={"flip_pairs": [[k, k + 1]]},
    )
    with pytest.raises(ConfigError, match=rf"flip_pairs names ROI {k + 1}.* {k} ROIs"):
        preview_batch(config, path=tmp_path / "preview.png")
    assert not (tmp_path / "preview.png").exists()


class TestCliPreviewTakesTrainsBatchFlags:
    """docs/usage.md: `sliceseg preview` draws, with train's flags, the batch training saves."""

    BATCH_FLAGS = (
        *("--view", "native", "--context-slices", "1", "--validation-split", "levels"),
        *("--validation-fraction", "0.3", "--normalisation", "slice", "--no-augment"),
        *("--init-from", "model/sliceseg_best.pt"),
    )

    def test_each_flag_gives_the_setting_train_gets(self):
        from sliceseg.cli.command import build_parser
        from sliceseg.cli.training import user_settings

        parse = build_parser().parse_args
        previewed = user_settings(parse(["preview", "data", *self.BATCH_FLAGS]))
        previewed.pop("out_dir")  # preview's --out is its picture
        trained = user_settings(parse(["train", "data", *self.BATCH_FLAGS]))
        expected = {
            "data_dir": Path("data"),
            "view": "native",
            "context_slices": 1,
            "validation_split": "levels",
            "validation_fraction": 0.3,
            "normalisation": "slice",
            "augment": False,
            "init_from": Path("model/sliceseg_best.pt"),
        }
        assert previewed == expected
        assert trained == expected

    def test_out_and_overwrite_are_the_picture_s_not_training_settings(self, tmp_path, monkeypatch):
        """preview's --out is a picture, not a training run's out_dir (nor --overwrite its)."""
        import sliceseg.training.preview as preview
        from sliceseg.cli import main

        given: dict = {}
        monkeypatch.setattr(
            preview, "preview_batch", lambda *, overrides, path, overwrite: given.update(overrides)
        )
        picture = tmp_path / "p.png"
        assert main(["preview", "data", "--out", str(picture), "--overwrite"]) == 0
        assert given == {"data_dir": Path("data")}

    def test_the_drawn_batch_follows_them(self, tiny_phantom, tmp_path, monkeypatch, capsys):
        from sliceseg.cli import main

        drawn = _drawn_batches(monkeypatch)
        data = tiny_phantom / "train"
        args = ["preview", str(data), "--input-shape", "64", "--view", "native", "--no-augment"]
        assert main([*args, "--out", str(tmp_path / "p.png")]) == 0
        preview_batch(tiny_config(data, tmp_path / "m", view="native", augment=False))
        (images, labels), (expected_images, expected_labels) = drawn
        np.testing.assert_array_equal(images, expected_images)
        np.testing.assert_array_equal(labels, expected_labels)
