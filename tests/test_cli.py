"""The command line: exit codes, one-line errors without traceback, and what each command writes."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pandas as pd
import pytest

from sliceseg.cli import main


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def broken_copy(phantom: Path, tmp_path: Path) -> Path:
    data = tmp_path / "broken"
    shutil.copytree(phantom / "train", data)
    dicoms = sorted((data / "dicoms").rglob("*.dcm"))
    labels = {
        p.relative_to(data / "labels").with_suffix("").as_posix(): p
        for p in (data / "labels").rglob("*.*")
        if p.suffix in {".png", ".npy"}
    }
    # an unmatched image
    orphan_key = dicoms[0].relative_to(data / "dicoms").with_suffix("").as_posix()
    labels[orphan_key].unlink()
    # a JPEG label
    jpeg_key = dicoms[1].relative_to(data / "dicoms").with_suffix("").as_posix()
    label = (
        np.load(labels[jpeg_key])
        if labels[jpeg_key].suffix == ".npy"
        else iio.imread(labels[jpeg_key])
    )
    labels[jpeg_key].unlink()
    iio.imwrite(
        labels[jpeg_key].with_suffix(".jpg"), (label * 30).astype(np.uint8) // 30 * 1, quality=90
    )
    # a label with an extra value
    extra_key = dicoms[2].relative_to(data / "dicoms").with_suffix("").as_posix()
    path = labels[extra_key]
    label = np.load(path) if path.suffix == ".npy" else iio.imread(path)
    label[:3, :3] = 9
    np.save(path.with_suffix(".npy"), label) if path.suffix == ".npy" else iio.imwrite(path, label)
    # a truncated DICOM
    truncated = dicoms[3]
    truncated.write_bytes(truncated.read_bytes()[:600])
    return data


class TestCheck:
    def test_phantom_is_trainable(self, tiny_phantom, capsys):
        code, out, _ = run(capsys, "check", str(tiny_phantom / "train"))
        assert code == 0
        assert "vertebral body" in out

    def test_json_report(self, tiny_phantom, capsys):
        code, out, _ = run(capsys, "check", str(tiny_phantom / "train"), "--json")
        assert code == 0
        assert json.loads(out)["is_trainable"] is True

    def test_broken_data_is_reported_and_unfit(self, tiny_phantom, tmp_path, capsys):
        data = broken_copy(tiny_phantom, tmp_path)
        code, out, err = run(capsys, "check", str(data))
        assert code == 1
        assert "Traceback" not in out + err
        lines = out.splitlines()

        def line_naming(name: str) -> str:
            (line,) = [line for line in lines if name in line and line.lstrip().startswith("- ")]
            return line

        assert "without a label map" in line_naming("sub01/sub01_s00.dcm")
        assert "JPEG" in line_naming("sub01_s01.jpg") and "PNG or NPY" in line_naming(".jpg")
        assert "values [9] in 9 pixels" in line_naming("sub01_s02.")
        assert "truncated" in line_naming("sub02_s00.dcm")
        assert "NOT FIT" in out

    def test_empty_folder_is_unfit_with_a_message(self, tmp_path, capsys):
        (tmp_path / "dicoms").mkdir()
        (tmp_path / "labels").mkdir()
        code, out, err = run(capsys, "check", str(tmp_path))
        assert code == 1
        assert "NOT FIT" in out and "Traceback" not in out + err
        assert f"no DICOM file in {tmp_path / 'dicoms'} pairs with a label map" in out

    def test_missing_folder_is_a_one_line_error(self, tmp_path, capsys):
        code, _out, err = run(capsys, "check", str(tmp_path / "nowhere"))
        assert code == 2
        assert err.startswith("error: ") and err.count("\n") == 1


def test_info_prints_system_characteristics(capsys):
    code, out, _ = run(capsys, "info")
    assert code == 0 and "Available RAM" in out and "GPU enabled" in out


class TestPredictErrors:
    def test_model_file_that_is_not_a_model(self, tiny_phantom, tmp_path, capsys):
        fake = tmp_path / "model.pt"
        fake.write_bytes(b"not a model")
        code, _, err = run(
            capsys,
            "predict",
            str(fake),
            str(tiny_phantom / "test" / "dicoms"),
            "--out",
            str(tmp_path / "o"),
        )
        assert code == 2 and "not a sliceseg model file" in err and err.count("\n") == 1

    def test_empty_folder(self, tiny_model, tmp_path, capsys):
        (tmp_path / "empty").mkdir()
        code, _, err = run(
            capsys,
            "predict",
            str(tiny_model),
            str(tmp_path / "empty"),
            "--out",
            str(tmp_path / "o"),
        )
        assert code == 2 and "no readable DICOM files found" in err

    def test_folder_without_dicom(self, tiny_model, tmp_path, capsys):
        (tmp_path / "txt").mkdir()
        (tmp_path / "txt" / "notes.txt").write_text("hello")
        code, _, err = run(
            capsys, "predict", str(tiny_model), str(tmp_path / "txt"), "--out", str(tmp_path / "o")
        )
        assert code == 2 and "1 other files skipped" in err

    def test_label_count_mismatch(self, tiny_model, tiny_phantom, tmp_path, capsys):
        code, _, err = run(
            capsys,
            "predict",
            str(tiny_model),
            str(tiny_phantom / "test" / "dicoms"),
            "--out",
            str(tmp_path / "o"),
            "--roi-names",
            "a,b",
        )
        assert (
            code == 2
            and "--roi-names (roi_names) gives 2 names but the model segments 6 ROIs" in err
        )

    def test_a_label_name_given_twice(self, tiny_model, tiny_phantom, tmp_path, capsys):
        """Two ROIs of one name would share one column of csa.csv: refused before predicting."""
        dicoms, out = str(tiny_phantom / "test" / "dicoms"), tmp_path / "o"
        names = "a,b,c,d,e,a"
        code, _, err = run(
            capsys, "predict", str(tiny_model), dicoms, "--out", str(out), "--labels", names
        )
        assert code == 2 and err.count("\n") == 1
        assert "--roi-names (roi_names): ROI name 'a' (ROIs 1, 6) given more than once" in err
        assert not (out / "csa.csv").exists()

    def test_corrupt_file_among_good_ones_is_skipped(
        self, tiny_model, tiny_phantom, tmp_path, capsys
    ):
        dicoms = tmp_path / "dicoms"
        shutil.copytree(tiny_phantom / "test" / "dicoms", dicoms)
        good = sorted(dicoms.rglob("*.dcm"))
        (dicoms / "corrupt.dcm").write_bytes(good[0].read_bytes()[:400])
        code, _out, err = run(
            capsys, "predict", str(tiny_model), str(dicoms), "--out", str(tmp_path / "o")
        )
        assert code == 0, err
        assert "corrupt.dcm" in err
        areas = pd.read_csv(tmp_path / "o" / "csa.csv", index_col="slice")
        assert len(areas) == len(good) + 3  # the slices, mean, std, n

    def test_existing_outputs_are_kept_without_overwrite(
        self, tiny_model, tiny_phantom, tmp_path, capsys
    ):
        out = tmp_path / "o"
        out.mkdir()
        (out / "csa.csv").write_text("precious")
        code, _, err = run(
            capsys,
            "predict",
            str(tiny_model),
            str(tiny_phantom / "test" / "dicoms"),
            "--out",
            str(out),
        )
        assert code == 2 and "--overwrite" in err
        assert (out / "csa.csv").read_text() == "precious"


def test_measure_existing_labels_equals_hand_count(tiny_phantom, tmp_path, capsys):
    data = tiny_phantom / "test"
    code, _out, err = run(
        capsys,
        "measure",
        str(data / "labels"),
        "--dicoms",
        str(data / "dicoms"),
        "--out",
        str(tmp_path / "m"),
    )
    assert code == 0, err
    wide = pd.read_csv(tmp_path / "m" / "csa.csv", index_col="slice")
    truth = pd.read_csv(tiny_phantom / "truth.csv")
    truth = truth[truth["split"] == "test"]
    first = wide.iloc[0]
    expected = truth[(truth["key"] == first["file"]) & (truth["roi"] == 1)]["area_mm2"].iloc[0]
    assert first["vertebral body"] == pytest.approx(expected, rel=0.03)


def test_measure_keeps_patient_info_only_when_asked(tiny_phantom, tmp_path, capsys):
    data = tiny_phantom / "test"
    args = ["measure", str(data / "labels"), "--dicoms", str(data / "dicoms")]
    assert run(capsys, *args, "--out", str(tmp_path / "plain"))[0] == 0
    assert run(capsys, *args, "--out", str(tmp_path / "kept"), "--keep-patient-info")[0] == 0
    assert "PHANTOM-" not in (tmp_path / "plain" / "csa_long.csv").read_text()
    assert (
        pd.read_csv(tmp_path / "kept" / "csa_long.csv")["patient_id"]
        .str.startswith("PHANTOM-")
        .all()
    )


def _options_without_help(parser, path: str) -> list[str]:
    """Every argument of ``parser`` and its subcommands that has no help string."""
    import argparse

    missing = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                missing += _options_without_help(sub, f"{path} {name}")
        elif not isinstance(action, argparse._HelpAction) and not action.help:
            missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")
    return missing


def test_every_option_of_every_command_has_a_help_line():
    from sliceseg.cli import build_parser

    assert _options_without_help(build_parser(), "sliceseg") == []


def test_help_walk_finds_an_option_without_help():
    """The walk itself can fail: an option added without help is named with its command."""
    from sliceseg.cli import build_parser

    parser = build_parser()
    predict = next(
        a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"
    ).choices["predict"]
    predict.add_argument("--undocumented")
    assert _options_without_help(parser, "sliceseg") == ["sliceseg predict --undocumented"]


def test_fov_with_three_numbers_is_a_one_line_error(tmp_path, capsys):
    """Before, ``--fov 90 90 80`` silently took the first and the last number."""
    code, _out, err = run(
        capsys, "measure", str(tmp_path), "--dicoms", str(tmp_path), "--out",
        str(tmp_path / "o"), "--fov", "90", "90", "80",
    )  # fmt: skip
    assert code == 2
    assert err == (
        "error: --fov takes one or two numbers (rows mm [cols mm]), got 3: 90 90 80; give e.g. "
        "--fov 240 or --fov 240 180.\n"
    )


def test_predict_resamples_a_slice_without_spacing_at_the_fov_spacing(tiny_model, tmp_path, capsys):
    """``sliceseg predict --fov``: the user's spacing is the slice's for the network too.

    A 200 × 200 slice over a field of view of 64 model pixels (64 × the model's spacing)
    reaches the network at 200 · (64 t / 200) / t = 64 pixels a side (a multiple of 16: no
    padding); taken to be at the model's spacing already, it reached it at 208.
    """
    import torch

    from conftest import write_test_dicom
    from sliceseg.models.bundle import load_bundle

    row_mm, col_mm = load_bundle(tiny_model).metadata.target_spacing_mm
    rows, cols = np.mgrid[0:200, 0:200]
    pixels = np.where((rows - 100) ** 2 + (cols - 90) ** 2 <= 50**2, 300, 100)
    write_test_dicom(tmp_path / "in" / "a.dcm", pixels, spacing=None)
    seen: set[tuple[int, ...]] = set()

    def record(module, args):
        first = args[0] if args else None
        if isinstance(first, torch.Tensor) and first.ndim == 4 and first.shape[1] == 1:
            seen.add(tuple(first.shape[2:]))  # the network's input: one channel of intensities

    hook = torch.nn.modules.module.register_module_forward_pre_hook(record)
    try:
        code, _out, err = run(
            capsys, "predict", str(tiny_model), str(tmp_path / "in"), "--out",
            str(tmp_path / "o"), "--fov", str(64 * row_mm), str(64 * col_mm),
        )  # fmt: skip
    finally:
        hook.remove()
    assert code == 0, err
    assert seen == {(64, 64)}
    long = pd.read_csv(next((tmp_path / "o").rglob("csa_long.csv")))
    assert set(long["spacing_source"]) == {"fov/matrix"}
    assert long["row_spacing_mm"].iloc[0] == pytest.approx(64 * row_mm / 200)


def _options(parser, command: str = "") -> dict[tuple[str, str], object]:
    """Every option of ``parser`` and its subcommands, by (command, flag)."""
    import argparse

    found: dict[tuple[str, str], object] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found |= _options(sub, f"{command} {name}".strip())
        elif action.option_strings:
            found[(command, action.option_strings[-1])] = action
    return found


def _library_choices() -> dict[str, tuple[str, ...]]:
    """The library's own lists, which the CLI copies so that ``--help`` stays free of torch."""
    from sliceseg.dataset.source import UNLABELLED_CHOICES
    from sliceseg.dataset.split import SPLIT_CHOICES
    from sliceseg.inference.cohort_series import VISUALS
    from sliceseg.model_space.intensity import NORMALISATION_CHOICES
    from sliceseg.training.config import VIEW_CHOICES

    return {
        "--view": VIEW_CHOICES,
        "--validation-split": SPLIT_CHOICES,
        "--normalisation": NORMALISATION_CHOICES,
        "--unlabelled-slices": UNLABELLED_CHOICES,
        "--visuals": VISUALS,
    }


def test_cli_choices_equal_the_library_constants():
    """A choice list copied into the CLI cannot drift from the library's (nor one be added
    to the CLI without a library constant to compare it with)."""
    from sliceseg.cli import build_parser

    library = _library_choices()
    with_choices = {k: a for k, a in _options(build_parser()).items() if a.choices is not None}
    assert {flag for _command, flag in with_choices} == set(library)
    for (command, flag), action in with_choices.items():
        assert tuple(action.choices) == library[flag], f"sliceseg {command} {flag}"


def test_help_texts_name_every_library_choice():
    """Options without ``choices`` list the valid names in their help: every name is there."""
    from sliceseg.cli import build_parser
    from sliceseg.models.registry import MODELS
    from sliceseg.report.exports import EXPORT_FORMATS
    from sliceseg.system import DEVICE_CHOICES
    from sliceseg.training.losses import LOSSES

    names_by_flag = {
        "--arch": tuple(MODELS),
        "--loss": tuple(LOSSES),
        "--export": (*EXPORT_FORMATS, "all", "none"),
        "--device": DEVICE_CHOICES,
    }
    options = _options(build_parser())
    assert {flag for _command, flag in options if flag in names_by_flag} == set(names_by_flag)
    for (command, flag), action in options.items():
        for name in names_by_flag.get(flag, ()):
            assert re.search(rf"(?<![\w:]){re.escape(name)}(?![\w:])", action.help), (
                f"sliceseg {command} {flag}: {name!r} missing from {action.help!r}"
            )


def test_predict_help_and_manual_name_the_folder_it_writes_per_series_files_into():
    """`sliceseg predict` writes each series' label maps and exports into its own folder
    (`series_dir`); the help and the manual's walk-throughs sent users to OUT/exports/ and
    results/labels/, folders it never writes."""
    from sliceseg.cli import build_parser
    from sliceseg.inference.records import series_dir

    folder = series_dir(Path("OUT"), "<series>").as_posix()
    help_text = _options(build_parser())[("predict", "--export")].help
    assert f"{folder}/exports/" in help_text
    usage = (Path(__file__).parents[1] / "docs" / "usage.md").read_text(encoding="utf-8")
    named = re.findall(r"\bresults/[\w<>/.-]*?(?:labels|exports|overlays|thumbnails)/", usage)
    assert named, "the manual names no per-series output folder"
    assert {path for path in named if not path.startswith("results/series/<series>/")} == set()


@pytest.mark.parametrize(
    ("dice", "said"),
    [
        (0.9234, "(epoch 3 of 5, validation Dice 0.923)"),
        (float("nan"), "(epoch 5 of 5: no validation Dice to choose by, the last epoch's)"),
    ],
)
def test_train_says_how_its_best_model_was_chosen(
    tiny_phantom, tmp_path, capsys, monkeypatch, dice, said
):
    """The line named no epoch: which of the run's epochs the best model holds was in no
    output but the model file's metadata."""
    import pandas as pd

    from sliceseg.training import loop

    out = tmp_path / "m"

    def trained(config=None, **_kwargs):
        return loop.TrainResult(
            out, out / "final.pt", out / "best.pt", out / "h.csv", out / "h.png", out / "s.json",
            5, dice, pd.DataFrame(), best_epoch=3 if dice == dice else 5,
        )  # fmt: skip

    monkeypatch.setattr(loop, "train", trained)
    assert main(["train", str(tiny_phantom / "train"), "--out", str(out)]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith(f"Best model: {out / 'best.pt'} {said}; history: ")
    assert "Dice nan" not in line


def test_output_cut_off_by_a_closed_pipe_is_not_reported_as_a_bug(tiny_phantom):
    """`sliceseg check DATA --json | head` closed the pipe early; that is the reader's choice,
    not a bug of ours: no 'internal error' line, no log file, the shell's SIGPIPE status."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    argv = [sys.executable, "-m", "sliceseg", "check", str(tiny_phantom / "train"), "--json"]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # before the check writes a byte: its first write meets no reader
    err = process.stderr.read().decode()
    assert (process.wait(timeout=120), err) == (141, "")


def test_measure_and_evaluate_help_say_what_they_do_with_empty_slices():
    """Their --unlabelled-slices help said "train on them as background"; evaluate's
    --num-labels is checked against the model, not the data."""
    from sliceseg.cli import build_parser

    commands = next(
        a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction"
    ).choices
    helps = {
        name: " ".join(commands[name].format_help().split())
        for name in ("measure", "evaluate", "train")
    }
    assert "or measure them as background (0 mm² for every ROI)" in helps["measure"]
    assert "or score them as background (every ROI absent)" in helps["evaluate"]
    assert "(checked against the model)" in helps["evaluate"]
    assert "or train on them as background" in helps["train"]
    assert "train on them" not in helps["measure"] + helps["evaluate"]


def test_train_help_says_how_long_training_runs_by_default(capsys):
    """``train --help`` said the default epochs only under --epochs: not under --max-minutes,
    whose budget without --epochs is how long training runs, nor the checkpoints' defaults."""
    from sliceseg.cli import main
    from sliceseg.training.config import DEFAULT_EPOCHS, TrainConfig

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert (
        "How long: --epochs N epochs; with --max-minutes and no --epochs, until the budget (the "
        f"learning rate decaying over it); with neither, {DEFAULT_EPOCHS} epochs."
    ) in shown
    assert (
        "wall-clock budget in minutes: training stops cleanly within it and, without --epochs, "
        f"runs until it (default: no budget, {DEFAULT_EPOCHS} epochs)"
    ) in shown
    assert f"without a budget {DEFAULT_EPOCHS})" in shown  # --epochs
    defaults = TrainConfig(data_dir="d")
    assert f"every N epochs (default {defaults.print_checkpoint})" in shown
    assert f"every M epochs (default {defaults.save_checkpoint})" in shown


def test_train_stopped_before_its_first_checkpoint_promises_no_checkpoint(
    tmp_path, capsys, monkeypatch
):
    """Ctrl-C before the first checkpoint (or while the data is read) ended on "`sliceseg
    train --resume` with the checkpoint named above goes on from it": none was named (the line
    above, if any, says there is nothing to resume from)."""
    from sliceseg.training import loop

    def stopped(**_kwargs):
        print("Interrupted before the first checkpoint ...: there is nothing to resume from.")
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "train", stopped)
    assert main(["train", str(tmp_path / "data"), "--out", str(tmp_path / "m")]) == 130
    assert capsys.readouterr().err.strip().splitlines() == [
        "interrupted; files already written are kept; where a checkpoint is named above, "
        "`sliceseg train --resume` with it goes on."
    ]


@pytest.mark.parametrize("given", [[], ["--images", "dicoms"]], ids=["none", "images only"])
def test_no_data_folder_names_the_options_of_the_command(tmp_path, capsys, given):
    """`sliceseg check` without a data folder said "give DATA_DIR ..., or both images_dir and
    labels_dir": no option of the command has those names (they are --images and --labels)."""
    assert main(["check", *given]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: no data folder: give DATA_DIR (holding dicoms/ and labels/), or both --images "
        "and --labels (data_dir, or images_dir and labels_dir, in Python or a settings file)."
    ]


def test_a_shards_warnings_are_not_sent_to_tables_it_did_not_write(tmp_path, capsys):
    """A shard (no merge) with warnings said "see series.csv and report.html in OUT/": the
    shard writes neither, `sliceseg merge` does; nor is there a report.html after
    ``--no-report``."""
    import dataclasses
    from types import SimpleNamespace

    from sliceseg.cli.prediction import _print_run, _where_warnings_are
    from sliceseg.inference.cohort import CohortRun
    from sliceseg.inference.shards import Shard

    out = tmp_path / "out"
    run = CohortRun(out, Shard(1, 2, "--shard"), 1, 0, ["p1"], warnings=["p1: odd area"])
    _print_run(run)
    assert f"1 warnings: series.csv lists them once `sliceseg merge {out}` has run." in (
        capsys.readouterr().out.splitlines()
    )
    merged = dataclasses.replace(run, merged=SimpleNamespace(report=None))
    assert _where_warnings_are(merged) == f"1 warnings: see series.csv in {out}/"
    merged = dataclasses.replace(run, merged=SimpleNamespace(report=out / "report.html"))
    assert _where_warnings_are(merged) == f"1 warnings: see series.csv and report.html in {out}/"


def test_area_calibration_on_and_off_together_are_refused(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["train", "data", "--area-calibration", "--no-area-calibration"])
    assert stop.value.code == 2
    assert (
        "argument --no-area-calibration: not allowed with argument --area-calibration"
        in capsys.readouterr().err
    )


@pytest.mark.parametrize("command", ["evaluate", "train"])
def test_out_in_the_label_folder_is_refused(command, tiny_model, tiny_phantom, tmp_path, capsys):
    """An --out in the labels: the next run read its pictures (bland_altman.png, the history
    plot) as label maps without a DICOM and exited 3; it is refused, and nothing written."""
    data = tmp_path / "data"
    shutil.copytree(tiny_phantom / "test", data)
    out = data / "labels" / "results"
    start = [str(tiny_model)] if command == "evaluate" else []
    short = [] if command == "evaluate" else ["--epochs", "1", "--input-shape", "64"]
    code, _, err = run(capsys, command, *start, str(data), "--out", str(out), *short)
    assert code == 2
    assert err.splitlines()[-1] == (
        f"error: {out}: --out lies in the label folder {data / 'labels'}, where the next run "
        "would read the files written there as its own; choose a folder outside it "
        f"(e.g. beside it: {data / 'results'})."
    )
    assert not out.exists()


@pytest.mark.parametrize(
    ("command", "folder", "written"),
    [
        ("preview", "labels", "p.png"),
        ("measure", "labels", "areas"),
        ("measure", "dicoms", "areas"),
    ],
)
def test_preview_or_measure_out_in_the_data_is_refused(
    command, folder, written, tiny_phantom, tmp_path, capsys
):
    """As train's and evaluate's: preview's picture in the labels was read back as a label map
    without a DICOM, measure's tables as files that are no label map (or no DICOM)."""
    data = tmp_path / "data"
    shutil.copytree(tiny_phantom / "test", data)
    out = data / folder / written
    if command == "preview":
        given = [str(data), "--input-shape", "64"]
    else:
        given = [str(data / "labels"), "--dicoms", str(data / "dicoms")]
    code, _, err = run(capsys, command, *given, "--out", str(out))
    assert code == 2
    role = "label" if folder == "labels" else "DICOM"
    assert err.splitlines()[-1] == (
        f"error: {out}: --out lies in the {role} folder {data / folder}, where the next run "
        "would read the files written there as its own; choose a folder outside it "
        f"(e.g. beside it: {data / written})."
    )
    assert not out.exists()


def test_train_without_its_data_folder_makes_no_out_folder(tmp_path, capsys):
    out = tmp_path / "model"
    code, _, err = run(capsys, "train", str(tmp_path / "missing"), "--out", str(out))
    assert code == 2 and "missing/dicoms: DICOM folder does not exist" in err
    assert not out.exists()


def test_train_refusing_its_data_leaves_no_out_folder(tiny_phantom, tmp_path, capsys):
    """--out was made before the data was read: data without one usable pair left it empty."""
    data = tmp_path / "data"
    shutil.copytree(tiny_phantom / "test" / "dicoms", data / "dicoms")
    shutil.copytree(tiny_phantom / "test" / "labels", data / "labels" / "elsewhere")
    out = tmp_path / "model"
    code, _, err = run(capsys, "train", str(data), "--out", str(out), "--epochs", "1")
    assert code == 2
    assert err.splitlines()[-1].startswith(
        f"error: nothing to train on: no DICOM file in {data / 'dicoms'} pairs with a label map "
        f"in {data / 'labels'}; "
    )
    assert not out.exists()


@pytest.mark.parametrize("count", ["0", "-2"])
def test_check_num_labels_below_one_names_the_flag(tiny_phantom, count, capsys):
    """As train's: the flag and the Python name, not only ``num_labels=0``."""
    code, _, err = run(capsys, "check", str(tiny_phantom / "test"), "--num-labels", count)
    assert code == 2
    assert err == (
        f"error: --num-labels (num_labels) must be ≥ 1 (ROIs, background excluded), got {count}.\n"
    )


def _options_with_hidden_defaults(parser, path: str) -> list[str]:
    """Every option of ``parser`` and its subcommands whose default value (not None / off)
    its help does not state."""
    import argparse

    hidden = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                hidden += _options_with_hidden_defaults(sub, f"{path} {name}")
        elif action.default not in (None, False, argparse.SUPPRESS) and "default" not in (
            action.help or ""
        ):
            hidden.append(f"{path} {'/'.join(action.option_strings) or action.dest}")
    return hidden


def test_every_option_with_a_default_says_it():
    from sliceseg.cli import build_parser

    assert _options_with_hidden_defaults(build_parser(), "sliceseg") == []


def test_train_overwrite_help_says_what_it_removes(capsys):
    """``--overwrite`` was "write into a folder that already holds outputs"; a new run there
    removes the earlier run's checkpoints (`remove_earlier_checkpoints`), which it now says."""
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert (
        "--overwrite start over in a folder that holds outputs: an earlier run's checkpoints, "
        "best model, settings and history of the same --model-filename there are removed"
    ) in help_text


def test_resume_into_another_out_names_the_flag(tiny_model, tmp_path, capsys):
    """A resume with ``--out`` elsewhere named the setting ``out_dir`` alone, a name the
    command line never shows; it names ``--out (out_dir)`` as every flag's message does."""
    checkpoint = next(tiny_model.parent.glob("sliceseg_[0-9]*.pt"))
    code, _, err = run(capsys, "train", "--resume", str(checkpoint), "--out", str(tmp_path))
    assert code == 2
    assert err.startswith(
        f"error: --out (out_dir) cannot change when resuming {checkpoint} (checkpoint: "
    )
    assert err.endswith(f"given: '{tmp_path}'); start a new run in another --out folder instead.\n")


@pytest.mark.parametrize("command", ["predict", "measure"])
def test_roi_names_option_and_its_older_name_give_the_same_names(command):
    """predict's and measure's ``--labels`` was the ROI names, where check / train / evaluate /
    suggest take the label folder: ``--roi-names`` says what it is, and ``--labels`` still works
    (existing command lines), to the same names."""
    from sliceseg.cli import build_parser
    from sliceseg.cli.options import names

    inputs = ["m.pt", "dicoms"] if command == "predict" else ["labels", "--dicoms", "d"]
    argv = [command, *inputs, "--out", "o"]
    parser = build_parser()
    new = parser.parse_args([*argv, "--roi-names", "psoas, disc"])
    old = parser.parse_args([*argv, "--labels", "psoas, disc"])
    assert names(new.roi_labels) == names(old.roi_labels) == ["psoas", "disc"]


@pytest.mark.parametrize("command", ["predict", "measure"])
def test_roi_names_help_shows_the_new_name_and_the_old_one_once(command, monkeypatch):
    from sliceseg.cli import build_parser

    monkeypatch.setenv("COLUMNS", "200")  # argparse would wrap "--roi-names" at its hyphen

    commands = next(
        a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction"
    ).choices
    shown = " ".join(commands[command].format_help().split())
    assert "--roi-names NAMES, --labels NAMES" in shown
    assert shown.count("--labels: the older name of --roi-names") == 1
