"""`sliceseg reprofile`: an older model file gets today's training profile, rebuilt from its
training folder with its own split, weights untouched, the original kept."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import one_slice_patients, tiny_config
from sliceseg.cli import main
from sliceseg.engine.model_info import model_summary
from sliceseg.errors import ConfigError, LabelError
from sliceseg.inference.familiarity import NO_PROFILE_NOTE
from sliceseg.measure.familiarity import PROFILE_VERSION
from sliceseg.models.bundle import ModelMetadata, load_bundle, save_bundle
from sliceseg.training.loop import train
from sliceseg.training.reprofile import reprofile, reprofiled_path

OPENED = {  # what conftest.with_network_checks_open set on the tiny model's profile
    "feature_threshold",
    "area_low_mm2",
    "area_high_mm2",
    "presence",
    "distance_low_mm",
    "distance_high_mm",
}


def _without(model: Path, out: Path, **changes) -> Path:
    bundle = load_bundle(model)
    metadata = ModelMetadata.from_dict({**bundle.metadata.to_dict(), **changes})
    return save_bundle(out, bundle.model, metadata)


def test_rebuilds_the_profile_training_wrote_and_keeps_the_original(tiny_model, tiny_phantom):
    before = tiny_model.read_bytes()
    done = reprofile(tiny_model, tiny_phantom / "train", reprofiled_path(tiny_model))
    assert tiny_model.read_bytes() == before
    assert done.path == tiny_model.with_name(f"{tiny_model.stem}_reprofiled.pt")
    old, new = load_bundle(tiny_model), load_bundle(done.path)
    written, rebuilt = old.metadata.familiarity, new.metadata.familiarity
    assert rebuilt is not None and written is not None
    assert rebuilt["version"] == PROFILE_VERSION
    for key in set(written) - OPENED:  # same split, spacing, normalisation and network
        if written[key] is None or isinstance(written[key], str):
            assert rebuilt[key] == written[key], key
        else:
            assert np.allclose(np.asarray(rebuilt[key]), np.asarray(written[key])), key
    assert rebuilt["feature_threshold"] < 1e12  # the opened check is learnt again
    for name, tensor in old.model.state_dict().items():
        assert torch.equal(tensor, new.model.state_dict()[name]), name
    assert new.metadata.postprocessing == old.metadata.postprocessing


def test_a_model_without_a_profile_gets_one(tiny_model, tiny_phantom, tmp_path):
    old = _without(tiny_model, tmp_path / "old.pt", familiarity=None)
    done = reprofile(old, tiny_phantom / "train")
    assert load_bundle(old).metadata.familiarity is None
    assert load_bundle(done.path).metadata.familiarity["version"] == PROFILE_VERSION
    assert done.profile.num_slices + done.validation_slices == 9  # 3 subjects × 3 slices


def test_a_version_2_profile_gets_the_field_of_view_check_back(tiny_model, tiny_phantom, tmp_path):
    written = dict(load_bundle(tiny_model).metadata.familiarity or {})
    older = {k: v for k, v in written.items() if not k.startswith("edge_")} | {"version": 2}
    old = _without(tiny_model, tmp_path / "v2.pt", familiarity=older)
    rebuilt = load_bundle(reprofile(old, tiny_phantom / "train").path).metadata.familiarity
    assert rebuilt is not None and rebuilt["version"] == PROFILE_VERSION
    for key in (k for k in written if k.startswith("edge_")):
        assert rebuilt[key] == pytest.approx(written[key]), key


def test_refusals_name_the_problem(tiny_model, tiny_phantom, tmp_path):
    train = tiny_phantom / "train"
    with pytest.raises(ConfigError, match="written to a new file and the original is kept"):
        reprofile(tiny_model, train, tiny_model)
    (tmp_path / "taken.pt").write_bytes(b"x")
    with pytest.raises(ConfigError, match=r"taken.pt already exists; pass --overwrite"):
        reprofile(tiny_model, train, tmp_path / "taken.pt")
    unsaid = _without(tiny_model, tmp_path / "unsaid.pt", settings={})
    with pytest.raises(ConfigError, match="does not store the settings it was trained with"):
        reprofile(unsaid, train, tmp_path / "a.pt")
    renamed = tmp_path / "renamed"
    shutil.copytree(train, renamed)
    names = (renamed / "labels.txt").read_text().splitlines()
    (renamed / "labels.txt").write_text("\n".join([*names[:-1], "something else"]) + "\n")
    with pytest.raises(LabelError, match=r"something else\) are not the model's"):
        reprofile(tiny_model, renamed, tmp_path / "b.pt")
    assert not (tmp_path / "b.pt").exists() and not list(tmp_path.glob(".*partial"))


def test_a_failed_profile_leaves_no_file(tiny_model, tiny_phantom, tmp_path, monkeypatch):
    import sliceseg.training.reprofile as module

    def refuse(*_args, **_kwargs):
        raise ValueError("the training set has no labels")

    monkeypatch.setattr(module, "add_profile", refuse)
    with pytest.raises(ValueError, match="no labels"):
        reprofile(tiny_model, tiny_phantom / "train", tmp_path / "c.pt")
    assert list(tmp_path.iterdir()) == []


def test_cli_says_what_it_wrote_and_refuses_in_one_line(tiny_model, tiny_phantom, tmp_path, capsys):
    out = tmp_path / "new.pt"
    assert main(["reprofile", str(tiny_model), str(tiny_phantom / "train"), "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert f"(version {PROFILE_VERSION}, " in said and f"in {out}; " in said
    assert main(["reprofile", str(tiny_model), str(tiny_phantom / "train"), "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and "already exists" in error and error.count("\n") == 1


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_cli_out_that_is_a_folder_is_refused_before_reading(
    tiny_model, tmp_path, capsys, overwrite
):
    """``--out FOLDER`` was told "already exists; pass --overwrite", and with it failed only
    after reading the training data, naming a temporary file: one line naming the folder now,
    before any data is read (the data folder here does not exist)."""
    folder = tmp_path / "models"
    folder.mkdir()
    argv = ["reprofile", str(tiny_model), str(tmp_path / "nodata"), "--out", str(folder)]
    assert main([*argv, *overwrite]) == 2
    assert capsys.readouterr().err == (
        f"error: {folder}: a folder, not a file; give the path of the file to write.\n"
    )
    assert list(folder.iterdir()) == []


def test_a_model_trained_on_one_slice_is_not_sent_to_reprofile(tiny_phantom, tmp_path, capsys):
    """Two patients of one slice each: the model has no profile, and predict and info told the
    user to run reprofile, which then ended in an internal error (a profile needs 2 slices)."""
    data = one_slice_patients(tiny_phantom, tmp_path / "l3")
    model = train(tiny_config(data, tmp_path / "m", epochs=1), log=lambda _line: None).best_model
    assert main(["reprofile", str(model), str(data)]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"error: {data}: its split leaves 1 training slice; a training data ")
    assert "profile needs at least 2" in error and error.count("\n") == 1
    assert not reprofiled_path(model).exists()
    assert "or trained on a single slice, which gives none" in NO_PROFILE_NOTE
    assert "for an older file, 'sliceseg reprofile MODEL TRAIN_DIR' adds it" in NO_PROFILE_NOTE
    assert model_summary(model)["training data profile"] == (
        "none: series are not checked against the training data (an older model file: "
        "'sliceseg reprofile MODEL TRAIN_DIR' adds it; or one trained on a single slice, "
        "which gives none)"
    )
