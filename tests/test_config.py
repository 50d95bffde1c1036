"""Training settings: defaults, TOML, overrides and validation messages."""

import pytest

from sliceseg.errors import ConfigError
from sliceseg.training.config import TrainConfig, load_config


def test_toml_with_train_table_and_overrides(tmp_path):
    path = tmp_path / "train.toml"
    path.write_text('[train]\nepochs = 7\narch = "pyramid"\nroi_names = "a, b"\n', encoding="utf-8")
    config = load_config(path, epochs=3, batch_size=None)
    assert (config.epochs, config.arch, config.batch_size) == (
        3,
        "pyramid",
        TrainConfig().batch_size,
    )
    assert config.roi_names == ("a", "b")


def test_unknown_setting_lists_valid_names(tmp_path):
    path = tmp_path / "train.toml"
    path.write_text("epoch = 5\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"unknown setting\(s\) epoch; valid settings: .*epochs"):
        load_config(path)


def test_invalid_toml_names_the_file(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("epochs = = 5\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad\.toml: not valid TOML"):
        load_config(path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"epochs": 0}, "epochs must be a whole number ≥ 1, got 0"),
        ({"learning_rate": -1.0}, "learning_rate must be > 0"),
        ({"validation_fraction": 1.5}, r"validation_fraction must be in \[0, 1\)"),
        ({"model_filename": "a/b"}, "model_filename must be a plain file stem"),
    ],
)
def test_bad_values_name_the_setting(change, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**change)


def test_round_trip_through_plain_data():
    config = TrainConfig(epochs=3, roi_names=("a",), augment_params={"rot_range": 5.0})
    assert TrainConfig.from_dict(config.to_dict()) == config
