"""Training settings: defaults, TOML, overrides and validation messages."""

import copy
import dataclasses
import json
import pickle

import numpy as np
import pytest
import torch

from sliceseg.augment.params import AugmentParams
from sliceseg.cli import main
from sliceseg.errors import ConfigError
from sliceseg.models.registry import PyramidHyperparameters, UNetHyperparameters, build_model
from sliceseg.training.config import TrainConfig
from sliceseg.training.settings_file import load_config


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
    with pytest.raises(
        ConfigError,
        match=r"train\.toml: unknown setting\(s\) epoch; fix or remove them there "
        r"\(valid settings: .*epochs",
    ):
        load_config(path)


def test_a_folder_or_binary_file_as_settings_names_it_and_the_fix(tmp_path):
    with pytest.raises(ConfigError, match=r"is a folder; give the TOML settings file in it"):
        load_config(tmp_path)
    binary = tmp_path / "model.pt"
    binary.write_bytes(b"\x80\x02\xff\xfe")
    with pytest.raises(ConfigError, match=r"model\.pt: not a UTF-8 text file"):
        load_config(binary)


def test_invalid_toml_names_the_file(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("epochs = = 5\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad\.toml: not valid TOML"):
        load_config(path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"epochs": 0}, r"^--epochs \(epochs\) must be a whole number ≥ 1, got 0\.$"),
        ({"learning_rate": -1.0}, r"^--learning-rate \(learning_rate\) must be > 0"),
        ({"validation_fraction": 1.5}, r"\(validation_fraction\) must be in \[0, 1\)"),
        ({"model_filename": "a/b"}, r"\(model_filename\) must be a plain file stem"),
        ({"foreground_fraction": 2.0}, r"^foreground_fraction must be in \[0, 1\]"),  # no flag
    ],
)
def test_bad_values_name_the_flag_and_the_setting(change, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**change)


@pytest.mark.parametrize(
    ("flags", "said"),
    [
        (["--max-minutes", "0"], "--max-minutes (max_minutes) must be > 0, got 0.0."),
        (["--epochs", "0"], "--epochs (epochs) must be a whole number ≥ 1, got 0."),
        (["--ema-decay", "1"], "--ema-decay (ema_decay) must be in [0, 1)"),
        (["--target-spacing", "-1"], "--target-spacing (target_spacing_mm) must be a spacing"),
    ],
)
def test_cli_train_names_the_flag_the_user_typed(tmp_path, capsys, flags, said):
    code = main(["train", str(tmp_path), "--out", str(tmp_path / "model"), *flags])
    err = capsys.readouterr().err
    assert code == 2 and said in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "model").exists()


def test_every_flag_named_in_messages_is_an_option_of_train():
    from sliceseg.cli.command import build_parser
    from sliceseg.training.setting_kinds import FLAGS

    parser = build_parser()
    train = next(a for a in parser._subparsers._actions if a.choices).choices["train"]
    options = {o for action in train._actions for o in action.option_strings}
    assert set(FLAGS.values()) <= options
    assert set(FLAGS) <= set(TrainConfig().to_dict())


class TestGivenNames:
    """Which settings were given, not left at their defaults: a setting given at its default
    value counted as not given, so a model file's value replaced it (`plan_new_run`)."""

    def test_the_names_given_to_the_constructor_even_at_their_defaults(self):
        config = TrainConfig(arch="unet", input_shape=160, epochs=None)  # None: not given
        assert config.given_names() == {"arch", "input_shape"}
        assert TrainConfig().given_names() == set()

    def test_invisible_to_eq_repr_and_plain_data(self):
        config = TrainConfig(arch="unet")
        assert config == TrainConfig() and repr(config) == repr(TrainConfig())
        assert "_given" not in config.to_dict() and "_given" not in repr(config)
        assert "_given" not in {f.name for f in dataclasses.fields(TrainConfig)}

    def test_replace_and_with_settings_add_what_they_set(self):
        config = TrainConfig(arch="unet", dropout_rate=0.1).replace(seed=3, epochs=None)
        assert config.given_names() == {"arch", "dropout_rate", "seed"}
        config = config.with_settings({"dropout_rate": None})  # None: unset, not given
        assert config.given_names() == {"arch", "seed"}
        assert config.with_settings({"context_slices": 0}).given_names() == {
            "arch",
            "seed",
            "context_slices",
        }

    @pytest.mark.parametrize(
        "copied", [pickle.loads, copy.copy, copy.deepcopy], ids=["pickle", "copy", "deepcopy"]
    )
    def test_copies_keep_them(self, copied):
        config = TrainConfig(arch="unet", input_shape=96)
        again = copied(pickle.dumps(config) if copied is pickle.loads else config)
        assert again == config and again.given_names() == {"arch", "input_shape"}

    def test_a_copy_of_every_setting_judges_by_the_defaults(self):
        """dataclasses.replace and a whole saved settings file name every setting: not all of
        them were typed."""
        config = TrainConfig(arch="unet", input_shape=96)
        assert dataclasses.replace(config, seed=3).given_names() == {"input_shape", "seed"}
        assert TrainConfig.from_dict(config.to_dict()).given_names() == {"input_shape"}
        assert TrainConfig.from_dict({"arch": "unet"}).given_names() == {"arch"}


def test_round_trip_through_plain_data():
    config = TrainConfig(epochs=3, roi_names=("a",), augment_params={"rot_range": 5.0})
    assert TrainConfig.from_dict(config.to_dict()) == config


class TestTypedSettings:
    def test_toml_tables_become_typed_augment_params_and_hyperparameters(self, tmp_path):
        path = tmp_path / "train.toml"
        path.write_text(
            '[train]\narch = "unet"\n'
            "[train.hyperparameters]\ndepth = 4\nbase_channels = 16\n"
            '[train.augment_params]\n"Rot range" = 5\nflip_pairs = [[2, 3]]\n',
            encoding="utf-8",
        )
        config = load_config(path)
        assert config.hyperparameters == UNetHyperparameters(depth=4, base_channels=16)
        assert config.augment_params.rot_range == 5.0
        assert config.augment_params.flip_pairs == ((2, 3),)
        assert config.augment_params.aug_prob == AugmentParams().aug_prob
        hyper = config.model_hyperparameters()
        assert (hyper["depth"], hyper["base_channels"], hyper["max_channels"]) == (4, 16, 256)

    def test_numpy_hyperparameters_are_their_plain_values(self, tmp_path):
        """A notebook's np.int64(8) is 8: accepted, and stored as a plain int in the model file."""
        given = {
            "base_channels": np.int64(8),
            "dropout_rate": np.float64(0.25),
            "deep_supervision": np.bool_(True),
            "norm": np.str_("instance"),
        }
        config = TrainConfig(hyperparameters=given)
        stored = config.to_dict()["hyperparameters"]
        assert stored == {
            "base_channels": 8,
            "dropout_rate": 0.25,
            "deep_supervision": True,
            "norm": "instance",
        }
        assert [type(stored[name]) for name in given] == [int, float, bool, str]
        hyper = config.model_hyperparameters()
        assert not any(isinstance(v, np.generic) for v in hyper.values())
        torch.save({"hyper": hyper, "settings": config.to_dict()}, tmp_path / "m.pt")
        assert torch.load(tmp_path / "m.pt", weights_only=True)["hyper"] == hyper

    def test_to_dict_is_plain_data_that_round_trips(self):
        config = TrainConfig(
            arch="pyramid", hyperparameters={"base_channels": 4}, augment_params={"aug_prob": 0.2}
        )
        data = json.loads(json.dumps(config.to_dict()))
        assert data["hyperparameters"] == {"base_channels": 4}
        assert TrainConfig.from_dict(data) == config
        assert isinstance(config.hyperparameters, PyramidHyperparameters)

    @pytest.mark.parametrize(
        ("arch", "hyper", "message"),
        [
            (
                "unet",
                {"depth": 9},
                r"hyperparameters\.depth of 'unet' must be an integer in 2\.\.7, got 9",
            ),
            ("unet", {"base_channels": 4}, r"hyperparameters\.base_channels .* >= 8, got 4"),
            ("unet", {"norm": "layer"}, r"hyperparameters\.norm .* one of 'instance', 'batch'"),
            ("unet", {"deep_supervision": 1}, r"deep_supervision .* true or false, got 1"),
            ("pyramid", {"kernel_size": 4}, r"hyperparameters\.kernel_size .* one of 3, 5, got 4"),
            (
                "pyramid",
                {"dropout_rate": 1.5},
                r"dropout_rate of 'pyramid' must be a number in \[0, 1\)",
            ),
            ("pyramid", {"depth": 3}, r"depth unknown for 'pyramid'; valid ones: base_channels, "),
        ],
    )
    def test_a_bad_hyperparameter_names_the_key_and_the_allowed_range(self, arch, hyper, message):
        with pytest.raises(ConfigError, match=message):
            TrainConfig(arch=arch, hyperparameters=hyper)

    def test_input_shape_is_checked_against_the_given_depth(self):
        with pytest.raises(
            ConfigError, match=r"--input-shape \(input_shape\) 72 is not divisible by 16"
        ):
            TrainConfig(input_shape=72)
        assert TrainConfig(input_shape=72, hyperparameters={"depth": 4}).input_shape == 72

    def test_bad_augment_param_is_refused_at_construction(self):
        with pytest.raises(ConfigError, match=r"aug_prob must be a number in \[0, 1\], got 2"):
            TrainConfig(augment_params={"aug_prob": 2})

    def test_bad_value_reported_before_any_data_is_read(self, tmp_path, capsys):
        path = tmp_path / "train.toml"
        path.write_text("[train.hyperparameters]\ndepth = 12\n", encoding="utf-8")
        missing = tmp_path / "no-such-data"
        code = main(["train", str(missing), "--config", str(path), "--out", str(tmp_path / "m")])
        err = capsys.readouterr().err
        assert code == 2
        assert "hyperparameters.depth of 'unet' must be an integer in 2..7, got 12" in err
        assert not (tmp_path / "m").exists()

    def test_dropout_rate_given_as_a_hyperparameter_wins_over_the_run_setting(self):
        assert TrainConfig(dropout_rate=0.1).model_hyperparameters()["dropout_rate"] == 0.1
        config = TrainConfig(dropout_rate=0.1, hyperparameters={"dropout_rate": 0.3})
        assert config.model_hyperparameters()["dropout_rate"] == 0.3

    def test_without_a_dropout_rate_each_architecture_keeps_its_own(self):
        """The pyramid trains with its published channel dropout, the U-Net without."""
        assert TrainConfig(arch="pyramid").model_hyperparameters()["dropout_rate"] == 0.2
        assert TrainConfig(arch="unet").model_hyperparameters()["dropout_rate"] == 0.0
        assert (
            TrainConfig(arch="pyramid", dropout_rate=0.0).model_hyperparameters()["dropout_rate"]
            == 0.0
        )
        recorded = TrainConfig(arch="pyramid", dropout_rate=0.0).to_dict()  # an older run
        assert TrainConfig.from_dict(recorded).model_hyperparameters()["dropout_rate"] == 0.0
        config = TrainConfig(arch="pyramid", input_shape=64)
        network = build_model(
            "pyramid", num_classes=3, input_size=64, **config.model_hyperparameters()
        )
        assert any(isinstance(m, torch.nn.Dropout2d) and m.p == 0.2 for m in network.modules())


@pytest.mark.parametrize(
    ("given", "names"), [("muscle", ("muscle",)), ("psoas, disc", ("psoas", "disc"))]
)
def test_roi_names_as_a_string_are_names_not_letters(given, names):
    """`TrainConfig(roi_names="muscle")` in a notebook named six ROIs 'm', 'u', 's', ...; a
    string is read as in a settings file: comma-separated names."""
    assert TrainConfig(data_dir="d", roi_names=given).roi_names == names
    assert load_config(None, data_dir="d", roi_names=given).roi_names == names


def test_folders_given_as_paths_are_kept_as_text(tmp_path):
    import json

    from sliceseg.training.config import TrainConfig

    config = TrainConfig(data_dir=tmp_path / "data", out_dir=tmp_path / "model")
    assert config.data_dir == str(tmp_path / "data")
    assert json.loads(json.dumps(config.to_dict()))["out_dir"] == str(tmp_path / "model")


class TestTargetSpacing:
    def test_a_number_or_a_pair_in_toml_and_on_the_command_line(self, tmp_path):
        path = tmp_path / "train.toml"
        path.write_text("target_spacing_mm = [0.7, 0.9]\nforeground_fraction = 0.5\n")
        config = load_config(path)
        assert config.target_spacing_pair() == (0.7, 0.9)
        assert config.to_dict()["target_spacing_mm"] == [0.7, 0.9]
        assert TrainConfig.from_dict(config.to_dict()) == config
        assert load_config(path, target_spacing_mm=0.8).target_spacing_pair() == (0.8, 0.8)
        assert TrainConfig().target_spacing_pair() is None  # the training slices' median

    @pytest.mark.parametrize(
        ("change", "message"),
        [
            (
                {"target_spacing_mm": -1.0},
                r"^--target-spacing \(target_spacing_mm\) must be a spacing in mm",
            ),
            (
                {"target_spacing_mm": [1.0, 0.0]},
                r"^--target-spacing \(target_spacing_mm\) must be a spacing in mm",
            ),
            ({"foreground_fraction": 1.5}, r"foreground_fraction must be in \[0, 1\]"),
        ],
    )
    def test_bad_values_name_the_flag_and_the_setting(self, change, message):
        with pytest.raises(ConfigError, match=message):
            TrainConfig(**change)


def test_a_misspelt_setting_in_python_lists_the_valid_ones():
    """`TrainConfig(epoch=50)` in a notebook raised dataclass's TypeError, no valid names."""
    with pytest.raises(ConfigError, match=r"^unknown setting\(s\) epoch; valid settings: .*epochs"):
        TrainConfig(data_dir="d", epoch=50)


class TestSettingKinds:
    def test_numpy_numbers_become_plain_values_that_a_model_file_can_hold(self, tmp_path):
        """A notebook's np.float64 learning rate (np.logspace) was kept as a numpy scalar: the
        whole run trained, and then no model file of it opened (weights_only refused it)."""
        from sliceseg.models.bundle import load_bundle, save_bundle
        from test_model_info import small_unet
        from test_predict import metadata

        config = TrainConfig(
            learning_rate=np.float64(0.01),
            seed=np.int64(3),
            epochs=np.int64(5),
            validation_fraction=np.float32(0.25),
            augment=np.bool_(False),
        )
        settings = config.to_dict()
        assert [type(settings[n]) for n in ("learning_rate", "seed", "epochs", "augment")] == [
            float,
            int,
            int,
            bool,
        ]
        assert (settings["epochs"], settings["validation_fraction"]) == (5, 0.25)
        meta = metadata(hyperparameters={"depth": 3}, input_size=32, settings=settings)
        path = save_bundle(tmp_path / "m.pt", small_unet(), meta)
        assert load_bundle(path).metadata.settings["learning_rate"] == 0.01

    @pytest.mark.parametrize(
        ("line", "said"),
        [
            ('learning_rate = "0.01"', "--learning-rate (learning_rate) must be a number, got "
             "'0.01'; in a settings file, write it without quotes."),
            ('max_minutes = "30"', "--max-minutes (max_minutes) must be a number, got '30'"),
            ('seed = "a"', "--seed (seed) must be a whole number, got 'a'"),
            ('num_workers = "2"', "--num-workers (num_workers) must be a whole number, got '2'"),
            ("seed = 1.5", "--seed (seed) must be a whole number, got 1.5."),
            ('overwrite = "false"', "overwrite must be true or false, got 'false'; in a settings"),
            ('augment = "no"', "augment must be true or false, got 'no'"),
            ("max_minutes = inf", "--max-minutes (max_minutes) must be a finite number, got inf."),
            ("learning_rate = inf", "--learning-rate (learning_rate) must be a finite number"),
            ("seed = -1", "--seed (seed) must be a whole number ≥ 0, got -1."),
            ('loss = "dice-ce"', "--loss (loss) 'dice-ce' is unknown; use one of dice, dice_ce"),
        ],
    )  # fmt: skip
    def test_a_value_of_the_wrong_kind_in_toml_is_one_line_exit_2(
        self, tmp_path, capsys, line, said
    ):
        """Text for a number was a TypeError ('internal error ... a bug in sliceseg', exit 4);
        text for true/false was taken as true: overwrite = "false" overwrote; an infinite
        budget trained for ever, an infinite learning rate and a negative seed were internal
        errors, and a bad loss was refused only once the data had been read."""
        path = tmp_path / "train.toml"
        path.write_text(f"[train]\n{line}\n", encoding="utf-8")
        code = main(["train", str(tmp_path), "--config", str(path), "--out", str(tmp_path / "m")])
        err = capsys.readouterr().err
        assert code == 2 and said in err and len(err.strip().splitlines()) == 1
        assert not (tmp_path / "m").exists()
