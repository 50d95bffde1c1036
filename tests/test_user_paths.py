"""A path the user gave: ``~`` is their home folder in every public function and CLI option."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from sliceseg.cli.command import main
from sliceseg.io.dicom_folder import read_series
from sliceseg.label_areas import measure_label_folder
from sliceseg.training.config import TrainConfig


@pytest.fixture
def home(tiny_phantom: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home folder holding the phantom's test data, and a separate working folder."""
    home = tmp_path / "home"
    shutil.copytree(tiny_phantom / "test", home / "data")
    monkeypatch.setenv("HOME", str(home))
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    return home


def test_user_path_expands_the_home_folder(home):
    from sliceseg.user_paths import user_path

    assert user_path("~/results") == home / "results"
    assert user_path(Path("~")) == home
    assert user_path("results") == Path("results")


def test_read_series_finds_the_dicoms_under_home(home):
    subject = sorted((home / "data" / "dicoms").iterdir())[0].name
    slices = read_series(f"~/data/dicoms/{subject}")
    assert len(slices) == 3 and all(s.source.is_relative_to(home) for s in slices)


def test_measure_label_folder_writes_under_home_not_into_a_folder_named_tilde(home):
    _, paths, _ = measure_label_folder("~/data/labels", "~/data/dicoms", "~/areas")
    assert [p.name for p in paths] == ["csa.csv", "csa_long.csv", "failed.csv"]
    assert all(p.parent == home / "areas" and p.is_file() for p in paths)
    assert not Path("~").exists()


def test_predict_folder_writes_under_home(home, tiny_model):
    from sliceseg.inference.folder import predict_folder

    run = predict_folder(tiny_model, "~/data/dicoms", "~/results", device="cpu", report=False)
    assert run.out_dir == home / "results" and (home / "results" / "csa.csv").is_file()
    assert not Path("~").exists()


def test_train_config_folders_are_expanded(home):
    config = TrainConfig(data_dir="~/data", out_dir="~/model", init_from="~/m.pt")
    assert (config.data_dir, config.out_dir) == (str(home / "data"), str(home / "model"))
    assert config.init_from == str(home / "m.pt")
    assert TrainConfig(images_dir="").images_dir == ""  # "" stays "not set"


def test_cli_quoted_tilde_paths_write_under_home(home):
    code = main(["measure", "~/data/labels", "--dicoms", "~/data/dicoms", "--out", "~/areas"])
    assert code == 0
    assert (home / "areas" / "csa.csv").is_file() and not Path("~").exists()
