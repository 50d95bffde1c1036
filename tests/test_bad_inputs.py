"""The bad-input corpus: damaged files and settings through the real CLI, in a subprocess.

Every case asserts: no traceback, the exit code (0 ok, 1 data unfit, 2 bad input), that the
message names the culprit file or setting, and that outputs written before are intact. The inputs
are built once per module and the commands run two at a time; a command shared by several cases
(e.g. ``predict`` over a folder of good and damaged DICOMs) runs once, and each case reads its own
line of the output.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pandas as pd
import pydicom
import pytest
import torch
from pydicom.data import get_testdata_file

import sliceseg
from conftest import write_test_dicom

pytestmark = pytest.mark.slow

SRC = Path(sliceseg.__file__).resolve().parents[1]
PREVIOUS = "results of an earlier run\n"


@dataclass(frozen=True)
class Ran:
    """What one CLI run printed and returned."""

    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


def sliceseg_cli(*argv: object, timeout: float = 300) -> Ran:
    """Run ``python -m sliceseg ARGV`` on this source tree and return what it did."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    }
    env["RUST_BACKTRACE"] = "0"  # a decoder panic prints one note, not a Rust stack
    proc = subprocess.run(
        [sys.executable, "-m", "sliceseg", *map(str, argv)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )
    return Ran(proc.returncode, proc.stdout, proc.stderr)


def tree_digest(path: Path) -> dict[str, str] | None:
    """Relative path -> SHA-256 of every file under ``path`` (None when it does not exist)."""
    if not path.exists():
        return None
    if path.is_file():
        return {"": hashlib.sha256(path.read_bytes()).hexdigest()}
    return {
        p.relative_to(path).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


def seeded(folder: Path) -> Path:
    """A folder holding the result of an earlier run; commands get it with ``--overwrite``."""
    folder.mkdir(parents=True)
    (folder / "csa.csv").write_text(PREVIOUS)
    return folder


# ---------------------------------------------------------------------------------- inputs


def label_file(labels: Path, key: str) -> Path:
    (path,) = [p for p in labels.glob(f"{key}.*") if p.suffix in (".png", ".npy")]
    return path


def read_label(path: Path) -> np.ndarray:
    return np.load(path) if path.suffix == ".npy" else iio.imread(path)


def replace_label(labels: Path, key: str, write: Callable[[Path, np.ndarray], None]) -> Path:
    old = label_file(labels, key)
    values = read_label(old)
    old.unlink()
    target = labels / key
    write(target, values)
    return next(p for p in target.parent.iterdir() if p.name.startswith(target.name + "."))


def float_dicom(path: Path, values: np.ndarray) -> Path:
    write_test_dicom(path, np.zeros(values.shape, np.uint16), series_uid="1.2.826.0.1.99.2")
    ds = pydicom.dcmread(path)
    del ds.PixelData, ds.PixelRepresentation
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 32, 32, 31
    ds.FloatPixelData = values.astype(np.float32).tobytes()
    ds.save_as(path)
    return path


def edited_dicom(path: Path, source: Path, **elements: object) -> Path:
    ds = pydicom.dcmread(source)
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    ds.save_as(path)
    return path


def corrupt_rle(path: Path) -> Path:
    """An RLE file whose segment bytes make the Rust RLE decoder panic (a BaseException)."""
    data = bytearray(Path(get_testdata_file("emri_small_RLE.dcm")).read_bytes())
    for offset, value in ((19332, 248), (28901, 155), (29926, 20), (33598, 183)):
        data[offset] = value
    path.write_bytes(bytes(data))
    return path


def unknown_vr(path: Path, good: Path) -> Path:
    """A DICOM whose PixelSpacing element carries the value representation 'Q!'."""
    data = good.read_bytes()
    tag = b"\x28\x00\x30\x00DS"
    assert data.count(tag) == 1
    path.write_bytes(data.replace(tag, b"\x28\x00\x30\x00Q!"))
    return path


def bad_dicoms(folder: Path, good: Path) -> dict[str, Path]:
    """Damaged DICOMs (all with a .dcm suffix), one per case, written into ``folder``."""
    cut = good.read_bytes()
    rows = np.ones((32, 32))
    files = {
        "zero_bytes": folder / "zero_bytes.dcm",
        "text": folder / "text.dcm",
        "cut_in_header": folder / "cut_in_header.dcm",
        "cut_in_pixels": folder / "cut_in_pixels.dcm",
    }
    files["zero_bytes"].write_bytes(b"")
    files["text"].write_text("patient list\nthis is not an image\n" * 20)
    files["cut_in_header"].write_bytes(cut[:700])
    files["cut_in_pixels"].write_bytes(cut[:-500])
    no_pixels = write_test_dicom(folder / "no_pixels.dcm", rows, series_uid="1.2.826.0.1.99.1")
    ds = pydicom.dcmread(no_pixels)
    del ds.PixelData
    ds.save_as(no_pixels)
    files["no_pixels"] = no_pixels
    files["nan_slope"] = write_test_dicom(
        folder / "nan_slope.dcm", rows, slope=float("nan"), intercept=0.0, series_uid="1.2.9.1"
    )
    files["float_nan"] = float_dicom(folder / "float_nan.dcm", np.full((32, 32), np.nan))
    files["float_inf"] = float_dicom(
        folder / "float_inf.dcm", np.where(np.eye(32) > 0, np.inf, 100.0)
    )
    files["huge_header"] = edited_dicom(
        folder / "huge_header.dcm",
        write_test_dicom(folder / "huge_header.dcm", np.zeros((8, 8)), series_uid="1.2.9.2"),
        Rows=65535,
        Columns=65535,
        NumberOfFrames=1000,
    )
    files["corrupt_rle"] = corrupt_rle(folder / "corrupt_rle.dcm")
    files["unknown_vr"] = unknown_vr(folder / "unknown_vr.dcm", good)
    return files


def fine_dicoms(folder: Path) -> dict[str, Path]:
    """Unusual but readable DICOMs: colour, palette, 1×1 and very large."""
    rng = np.random.default_rng(3)
    return {
        "rgb": edited_dicom(
            folder / "rgb.dcm", Path(get_testdata_file("SC_rgb.dcm")), PixelSpacing=[0.5, 0.5]
        ),
        "palette": edited_dicom(
            folder / "palette.dcm",
            Path(get_testdata_file("OBXXXX1A.dcm")),
            PixelSpacing=[0.3, 0.3],
        ),
        "one_pixel": write_test_dicom(
            folder / "one_pixel.dcm", np.ones((1, 1)), series_uid="1.2.9.3"
        ),
        "large": write_test_dicom(
            folder / "large.dcm", rng.integers(0, 1000, (2048, 2048)), series_uid="1.2.9.4"
        ),
    }


@dataclass(frozen=True)
class Corpus:
    root: Path
    model: Path
    phantom: Path
    dicom_data: Path  # dicoms/ with good and damaged DICOMs, labels/ for all of them
    bad: dict[str, Path]  # case -> damaged DICOM
    fine: dict[str, Path]  # case -> unusual but readable DICOM
    label_data: Path  # phantom slices, some label maps damaged
    damaged_labels: dict[str, Path]  # case -> damaged label map
    no_k_labels: Path  # label_data's labels without the one holding a value above K
    background: Path  # every label map all background
    no_spacing: Path  # test data whose DICOMs lack PixelSpacing
    models: dict[str, Path]  # case -> damaged model file
    marker: Path  # a malicious pickle would create this
    a_file: Path


def build_dicom_data(root: Path, phantom: Path) -> tuple[Path, dict[str, Path], dict[str, Path]]:
    data = root / "dicom_data"
    shutil.copytree(phantom / "test", data)
    folder = data / "dicoms" / "sub04"
    bad = bad_dicoms(folder, folder / "sub04_s00.dcm")
    fine = fine_dicoms(folder)
    from sliceseg.io.dicom import read_slices

    for name, path in {**bad, **fine}.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # colour images: the CLI runs must warn, not this
            shape = read_slices(path)[0].shape if name in fine else (8, 8)
        label = np.zeros(shape, np.uint8)
        label[: max(1, shape[0] // 2), : max(1, shape[1] // 2)] = 1
        np.save(data / "labels" / "sub04" / f"{path.stem}.npy", label)
    return data, bad, fine


def build_label_data(root: Path, phantom: Path) -> tuple[Path, dict[str, Path], Path]:
    data = root / "label_data"
    shutil.copytree(phantom / "train", data)
    for sub in ("dicoms", "labels"):
        shutil.copytree(phantom / "test" / sub / "sub04", data / sub / "sub04")
    labels = data / "labels"

    def png(path: Path, values: np.ndarray) -> None:
        iio.imwrite(path.with_suffix(".png"), values.astype(np.uint8))

    def npy(values: np.ndarray) -> Callable[[Path, np.ndarray], None]:
        return lambda path, _old: np.save(path.with_suffix(".npy"), values)

    def rgb(path: Path, values: np.ndarray) -> None:
        colour = np.stack([values] * 3, axis=-1).astype(np.uint8)
        colour[5, 7] = (1, 2, 3)
        iio.imwrite(path.with_suffix(".png"), colour)

    def above_k(path: Path, values: np.ndarray) -> None:
        values = values.copy()
        values[:4, :4] = 9
        np.save(path.with_suffix(".npy"), values)

    damaged = {
        "label_zero_bytes": replace_label(
            labels, "sub01/sub01_s00", lambda p, _v: p.with_suffix(".png").write_bytes(b"")
        ),
        "label_truncated": replace_label(
            labels, "sub01/sub01_s01", lambda p, v: png(p, v) or _halve(p.with_suffix(".png"))
        ),
        "label_rgb_channels_differ": replace_label(labels, "sub02/sub02_s00", rgb),
        "label_value_above_k": replace_label(labels, "sub02/sub02_s01", above_k),
        "label_wrong_shape": replace_label(labels, "sub02/sub02_s02", npy(np.zeros((10, 10)))),
        "label_nan": replace_label(labels, "sub03/sub03_s00", npy(np.full((96, 96), np.nan))),
        "label_empty_array": replace_label(
            labels, "sub04/sub04_s00", npy(np.zeros((0, 0), np.uint8))
        ),
    }
    folder = label_file(labels, "sub01/sub01_s02")
    folder.unlink()
    folder.mkdir()
    damaged["label_is_a_folder"] = folder
    no_k = root / "labels_without_value_above_k"
    shutil.copytree(labels, no_k)
    (no_k / damaged["label_value_above_k"].relative_to(labels)).unlink()
    return data, damaged, no_k


def _halve(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def build_background(root: Path, phantom: Path) -> Path:
    data = root / "background"
    shutil.copytree(phantom / "train", data)
    for path in [p for p in (data / "labels").rglob("*") if p.suffix in (".png", ".npy")]:
        values = read_label(path)
        path.unlink()
        np.save(path.with_suffix(".npy"), np.zeros_like(values))
    return data


def build_no_spacing(root: Path, phantom: Path) -> Path:
    data = root / "no_spacing"
    shutil.copytree(phantom / "test", data)
    for path in (data / "dicoms").rglob("*.dcm"):
        ds = pydicom.dcmread(path)
        del ds.PixelSpacing
        ds.save_as(path)
    return data


class _Evil:
    """Unpickling this runs ``touch MARKER``; ``weights_only=True`` must refuse it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def build_models(root: Path, model: Path, marker: Path) -> dict[str, Path]:
    folder = root / "models"
    folder.mkdir()
    good = torch.load(model, weights_only=True)
    data = model.read_bytes()
    paths = {name: folder / f"{name}.pt" for name in ("text", "truncated", "pickle", "zip")}
    paths["text"].write_text("this is a note about the model, not the model\n")
    paths["truncated"].write_bytes(data[: len(data) // 2])
    with open(paths["pickle"], "wb") as handle:
        pickle.dump({"format": "sliceseg-model", "metadata": _Evil(marker)}, handle)
    torch.save({**good, "metadata": _Evil(marker)}, paths["zip"])

    def variant(name: str, **changes: object) -> None:
        paths[name] = folder / f"{name}.pt"
        torch.save({**good, **changes}, paths[name])

    newer = {**good["metadata"], "sliceseg_version": "99.0.0"}
    variant("newer_sliceseg", metadata=newer)
    variant("newer_format", format_version=99)
    state = dict(good["state_dict"])
    name = next(k for k, v in state.items() if v.ndim == 4)
    state[name] = torch.zeros(3, *state[name].shape[1:])
    variant("weights_misfit", state_dict=state)
    incomplete = {k: v for k, v in good["metadata"].items() if k != "hyperparameters"}
    variant("metadata_incomplete", metadata=incomplete)
    return {f"model_{k}": v for k, v in paths.items()}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, tiny_phantom: Path, tiny_model: Path) -> Corpus:
    root = tmp_path_factory.mktemp("corpus")
    dicom_data, bad, fine = build_dicom_data(root, tiny_phantom)
    label_data, damaged, no_k = build_label_data(root, tiny_phantom)
    a_file = root / "a_file"
    a_file.write_text("not a folder\n")
    marker = root / "PWNED"
    return Corpus(
        root=root,
        model=tiny_model,
        phantom=tiny_phantom,
        dicom_data=dicom_data,
        bad=bad,
        fine=fine,
        label_data=label_data,
        damaged_labels=damaged,
        no_k_labels=no_k,
        background=build_background(root, tiny_phantom),
        no_spacing=build_no_spacing(root, tiny_phantom),
        models=build_models(root, tiny_model, marker),
        marker=marker,
        a_file=a_file,
    )


# ---------------------------------------------------------------------------------- runs


@dataclass(frozen=True)
class Run:
    """One command line; the path after ``--out`` (if any) holds what must survive a failure."""

    argv: list[object]

    @property
    def out(self) -> Path | None:
        if "--out" not in self.argv:
            return None
        return Path(str(self.argv[self.argv.index("--out") + 1]))


def toml(corpus: Corpus, name: str, text: str) -> Path:
    path = corpus.root / "settings" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return path


def define_runs(c: Corpus) -> dict[str, Run]:
    """Every command line of the corpus, by name (built before any of them runs)."""
    r, train, test = c.root, c.phantom / "train", c.phantom / "test"
    dicoms = test / "dicoms"
    runs = {
        "predict_mixed": Run(
            ["predict", c.model, c.dicom_data / "dicoms", "--out", r / "p_mix", "--no-report"]
        ),
        "check_mixed": Run(["check", c.dicom_data]),
        "train_mixed": Run(["train", c.dicom_data, "--out", seeded(r / "t_mix"), "--overwrite"]),
        "check_labels": Run(["check", c.label_data]),
        "measure_labels": Run(
            [
                "measure",
                c.label_data / "labels",
                "--dicoms",
                c.label_data / "dicoms",
                "--out",
                r / "m_lab",
            ]
        ),
        "train_labels": Run(["train", c.label_data, "--out", seeded(r / "t_lab"), "--overwrite"]),
        "preview_labels": Run(["preview", c.label_data, "--out", r / "prev_lab" / "p.png"]),
        "evaluate_above_k": Run(
            ["evaluate", c.model, c.label_data, "--out", seeded(r / "e_k"), "--overwrite"]
        ),
        "evaluate_damaged": Run(
            [
                "evaluate",
                c.model,
                "--images",
                c.label_data / "dicoms",
                "--labels",
                c.no_k_labels,
                "--out",
                r / "e_dmg",
            ]
        ),
        "check_background": Run(["check", c.background]),
        "train_background": Run(
            ["train", c.background, "--out", seeded(r / "t_bg"), "--overwrite"]
        ),
        "predict_no_spacing": Run(
            [
                "predict",
                c.model,
                c.no_spacing / "dicoms",
                "--out",
                seeded(r / "p_nosp"),
                "--overwrite",
            ]
        ),
        "evaluate_no_spacing": Run(
            ["evaluate", c.model, c.no_spacing, "--out", seeded(r / "e_nosp"), "--overwrite"]
        ),
        "evaluate_pixels": Run(
            ["evaluate", c.model, c.no_spacing, "--out", r / "e_px", "--pixels"]
        ),
        "toml_malformed": Run(
            ["train", train, "--config", toml(c, "bad.toml", "epochs = [\n"), "--out", r / "t1"]
        ),
        "toml_unknown_key": Run(
            ["train", train, "--config", toml(c, "key.toml", "epochz = 3\n"), "--out", r / "t2"]
        ),
        "toml_wrong_type": Run(
            [
                "train",
                train,
                "--config",
                toml(c, "type.toml", 'epochs = "ten"\n'),
                "--out",
                r / "t3",
            ]
        ),
        "toml_is_a_folder": Run(["train", train, "--config", r / "settings", "--out", r / "t4"]),
        "negative_epochs": Run(["train", train, "--epochs", "-3", "--out", r / "t5"]),
        "zero_batch": Run(["train", train, "--batch-size", "0", "--out", r / "t6"]),
        "nan_learning_rate": Run(["train", train, "--learning-rate", "nan", "--out", r / "t7"]),
        "predict_zero_batch": Run(
            [
                "predict",
                c.model,
                dicoms,
                "--out",
                seeded(r / "p_b0"),
                "--overwrite",
                "--batch-size",
                "0",
            ]
        ),
        "predict_negative_fov": Run(
            ["predict", c.model, dicoms, "--out", r / "p_fov", "--fov", "-5"]
        ),
        "phantom_negative_slices": Run(["phantom", r / "ph", "--slices", "-1"]),
        "info_unknown_option": Run(["info", "--bogus"]),
        "predict_out_is_a_file": Run(["predict", c.model, dicoms, "--out", c.a_file]),
        "measure_out_is_a_file": Run(
            ["measure", test / "labels", "--dicoms", dicoms, "--out", c.a_file]
        ),
        "measure_too_few_names": Run(
            [
                *("measure", test / "labels", "--dicoms", dicoms),
                *("--out", r / "m_few", "--roi-names", "a,b"),
            ]
        ),
        "evaluate_out_is_a_file": Run(["evaluate", c.model, test, "--out", c.a_file]),
        "train_out_is_a_file": Run(["train", train, "--out", c.a_file]),
        "preview_out_under_a_file": Run(["preview", train, "--out", c.a_file / "p.png"]),
        "phantom_out_under_a_file": Run(["phantom", c.a_file / "ph"]),
        "predict_out_not_empty": Run(["predict", c.model, dicoms, "--out", seeded(r / "p_full")]),
    }
    for name, path in c.models.items():
        runs[name] = Run(["predict", path, dicoms, "--out", seeded(r / f"o_{name}"), "--overwrite"])
    runs["evaluate_model_text"] = Run(
        ["evaluate", c.models["model_text"], test, "--out", seeded(r / "e_mt"), "--overwrite"]
    )
    return runs


@dataclass(frozen=True)
class Outcome:
    ran: Ran
    out_before: dict[str, str] | None
    out_after: dict[str, str] | None
    seconds: float


@pytest.fixture(scope="module")
def outcomes(corpus: Corpus) -> dict[str, Outcome]:
    runs = define_runs(corpus)
    inputs = [corpus.phantom, corpus.dicom_data, corpus.label_data, corpus.model]
    before_inputs = [tree_digest(p) for p in inputs]

    def execute(run: Run) -> Outcome:
        before = tree_digest(run.out) if run.out is not None else None
        started = time.perf_counter()
        ran = sliceseg_cli(*run.argv)
        seconds = time.perf_counter() - started
        return Outcome(ran, before, tree_digest(run.out) if run.out is not None else None, seconds)

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = dict(zip(runs, pool.map(execute, runs.values()), strict=True))
    assert [tree_digest(p) for p in inputs] == before_inputs, "a command changed its inputs"
    if os.environ.get("SLICESEG_CORPUS_TIMES"):
        for name, outcome in sorted(results.items(), key=lambda item: -item[1].seconds):
            print(f"{outcome.seconds:6.1f} s  exit {outcome.ran.code}  {name}")
    return results


# ---------------------------------------------------------------------------------- cases


@dataclass(frozen=True)
class Case:
    """One damaged input: the run that meets it, the exit code, and the message on its line.

    ``culprit`` names the file or setting; the test finds the output line that holds it and
    matches ``message`` (a regex) against that line.
    """

    name: str
    run: str
    code: int
    culprit: str | Callable[[Corpus], object]
    message: str


def _bad(name: str) -> Callable[[Corpus], object]:
    return lambda c: c.bad[name]


def _fine(name: str) -> Callable[[Corpus], object]:
    return lambda c: c.fine[name]


def _label(name: str) -> Callable[[Corpus], object]:
    """The damaged label map's path below labels/ (check names files by relative path)."""
    return lambda c: c.damaged_labels[name].relative_to(c.label_data / "labels").as_posix()


def _model(name: str) -> Callable[[Corpus], object]:
    return lambda c: c.models[name]


BAD_DICOM_REASONS = {
    "zero_bytes": "not a DICOM file",
    "text": "not a DICOM file",
    "cut_in_header": "truncated",
    "cut_in_pixels": "truncated",
    "no_pixels": "ends before its pixel data",
    "nan_slope": r"1024 of 1024 pixels are NaN or infinite .*RescaleSlope nan",
    "float_nan": "1024 of 1024 pixels are NaN or infinite",
    "float_inf": "32 of 1024 pixels are NaN or infinite",
    "huge_header": r"1000 frame\(s\) of 65535×65535 pixels.*header is probably damaged",
    "corrupt_rle": r"RLE Lossless.*pixel data is corrupt",
    "unknown_vr": r"cannot read the DICOM header \(Unknown Value Representation",
}

CASES = [
    *(Case(f"{n}.dcm", "predict_mixed", 0, _bad(n), r) for n, r in BAD_DICOM_REASONS.items()),
    *(
        Case(f"{n}.dcm", "check_mixed", 1, f"dicoms/sub04/{n}.dcm", r"\[unreadable_image\]")
        for n in BAD_DICOM_REASONS
        if n not in ("zero_bytes", "text")
    ),
    *(
        Case(f"{n}.dcm", "check_mixed", 1, f"sub04/{n}.dcm", r"\[unreadable_image\] .*not a DICOM")
        for n in ("zero_bytes", "text")
    ),
    Case("rgb.dcm", "predict_mixed", 0, _fine("rgb"), r"warning: .*colour image \(RGB\)"),
    Case("palette.dcm", "predict_mixed", 0, _fine("palette"), r"colour image \(PALETTE COLOR\)"),
    Case("one_pixel.dcm", "predict_mixed", 0, "sub04/one_pixel ", r"^\d+ +sub04/one_pixel "),
    Case("large.dcm", "predict_mixed", 0, "sub04/large ", r"^\d+ +sub04/large "),
    Case("damaged DICOMs among good", "train_mixed", 2, "corrupt_rle.dcm", "not fit for training"),
    *(
        Case(name, "check_labels", 1, _label(name), message)
        for name, message in {
            "label_zero_bytes": "cannot read the label map",
            "label_truncated": r"cannot read the label map \(.*truncated",
            "label_rgb_channels_differ": r"R, G, B channels differ in 1 pixels",
            "label_value_above_k": r"values \[9\] in 16 pixels are not in the dataset's label",
            "label_wrong_shape": r"image is 96×96 but the label is 10×10",
            "label_nan": "9216 values are NaN or infinite",
            "label_empty_array": r"label array of shape \(0, 0\)",
        }.items()
    ),
    Case("label_is_a_folder", "check_labels", 1, "sub01/sub01_s02.dcm", "without a label map"),
    *(
        Case(name, "measure_labels", 3, _label(name), "^not measured: ")
        for name in (
            "label_zero_bytes",
            "label_truncated",
            "label_rgb_channels_differ",
            "label_value_above_k",
            "label_wrong_shape",
            "label_nan",
            "label_empty_array",
        )
    ),
    Case("damaged labels", "train_labels", 2, "labels/sub01/sub01_s00.png", "not fit for training"),
    Case("damaged labels", "preview_labels", 2, "sub01_s00.png", "not fit for training"),
    Case(
        "label_value_above_k",
        "evaluate_above_k",
        3,
        _label("label_value_above_k"),
        r"^not evaluated: .*values \[9\] in 16 pixels are not in the label scheme of the model .* "
        r"\(0\.\.6",
    ),
    *(
        Case(name, "evaluate_damaged", 3, _label(name), "^not evaluated: ")
        for name in ("label_zero_bytes", "label_rgb_channels_differ", "label_nan")
    ),
    Case("all background", "check_background", 1, "no label map contains", r"\[label_scheme\]"),
    Case("all background", "train_background", 2, "no label map contains any ROI", "^error: "),
    Case("no PixelSpacing", "predict_no_spacing", 2, "sub04_s00.dcm", r"no PixelSpacing.*--fov"),
    Case(
        "no PixelSpacing", "evaluate_no_spacing", 2, "sub04_s00.dcm", r"no PixelSpacing.*--pixels"
    ),
    Case("malformed TOML", "toml_malformed", 2, "bad.toml", "not valid TOML"),
    Case("unknown TOML key", "toml_unknown_key", 2, "epochz", "unknown setting"),
    Case("TOML value of the wrong type", "toml_wrong_type", 2, "epochs", "'ten'"),
    Case("TOML path is a folder", "toml_is_a_folder", 2, "settings", "is a folder; give the TOML"),
    Case("negative epochs", "negative_epochs", 2, "epochs", "got -3"),
    Case("zero batch", "zero_batch", 2, "batch_size", "got 0"),
    Case("NaN learning rate", "nan_learning_rate", 2, "learning_rate", "got nan"),
    Case("zero batch", "predict_zero_batch", 2, "--batch-size", "got 0"),
    Case("negative field of view", "predict_negative_fov", 2, "--fov", "positive millimetres"),
    Case("negative slices", "phantom_negative_slices", 2, "slices_per_subject=-1", ">= 1"),
    Case("unknown option", "info_unknown_option", 2, "--bogus", "unrecognized arguments"),
    Case("--out is a file", "predict_out_is_a_file", 2, lambda c: c.a_file, "not a folder"),
    Case("--out is a file", "measure_out_is_a_file", 2, lambda c: c.a_file, "not a folder"),
    Case(
        "fewer --roi-names names than ROIs",
        "measure_too_few_names",
        2,
        "above num_labels=2",
        r"raise num_labels \(check / train: --num-labels; measure: one name per ROI in --roi-names",
    ),
    Case("--out is a file", "evaluate_out_is_a_file", 2, lambda c: c.a_file, "not a folder"),
    Case("--out is a file", "train_out_is_a_file", 2, lambda c: c.a_file, "not a folder"),
    Case("--out under a file", "preview_out_under_a_file", 2, "a_file is a file", "p.png"),
    Case("out_dir under a file", "phantom_out_under_a_file", 2, "a_file is a file", "ph:"),
    Case("--out not empty", "predict_out_not_empty", 2, "p_full", "pass --overwrite"),
    Case("model is text", "model_text", 2, _model("model_text"), "not a sliceseg model file"),
    Case("model is text", "evaluate_model_text", 2, _model("model_text"), "not a sliceseg model"),
    Case("model truncated", "model_truncated", 2, _model("model_truncated"), "truncated"),
    Case("malicious pickle", "model_pickle", 2, _model("model_pickle"), "could run code"),
    Case("malicious torch.save", "model_zip", 2, _model("model_zip"), "could run code"),
    Case(
        "model from a newer sliceseg",
        "model_newer_sliceseg",
        2,
        _model("model_newer_sliceseg"),
        "written by sliceseg 99.0.0, newer than this",
    ),
    Case("newer file format", "model_newer_format", 2, _model("model_newer_format"), "format 99"),
    Case(
        "weights do not fit the metadata",
        "model_weights_misfit",
        2,
        _model("model_weights_misfit"),
        "weights do not fit the 'unet' architecture",
    ),
    Case(
        "metadata incomplete",
        "model_metadata_incomplete",
        2,
        _model("model_metadata_incomplete"),
        "metadata is incomplete or malformed .*hyperparameters",
    ),
]


def _culprit(case: Case, corpus: Corpus) -> str:
    return str(case.culprit(corpus)) if callable(case.culprit) else case.culprit


@pytest.mark.parametrize("case", CASES, ids=[f"{c.run}:{c.name}" for c in CASES])
def test_case(case: Case, corpus: Corpus, outcomes: dict[str, Outcome]):
    outcome = outcomes[case.run]
    ran = outcome.ran
    assert "Traceback" not in ran.text, ran.text[-3000:]
    assert ran.code == case.code, ran.text[-3000:]
    culprit = _culprit(case, corpus)
    lines = [line for line in ran.text.splitlines() if culprit in line]
    assert lines, f"no line names {culprit!r}:\n{ran.text[-3000:]}"
    assert any(re.search(case.message, line) for line in lines), "\n".join(lines)
    # Nothing but one-line messages on stderr: errors, warnings, skipped / left-out files.
    prefixes = ("error: ", "warning: ", "skipped ", "not measured: ", "not evaluated: ",
                "finished with failures: ")  # fmt: skip
    argparse = ("usage: ", "sliceseg: error: ")
    odd = [line for line in ran.err.splitlines() if not line.startswith(prefixes + argparse)]
    assert odd == [], odd
    if ran.code == 2:
        errors = [line for line in ran.err.splitlines() if "error: " in line]
        assert len(errors) == 1, ran.err
        assert outcome.out_after == outcome.out_before, "outputs of an earlier run were changed"


def test_corpus_is_large(corpus: Corpus):
    assert len(CASES) >= 30
    assert len({c.run.split("_")[0] for c in CASES}) >= 8  # every command meets bad input


def test_good_slices_are_segmented_beside_damaged_ones(corpus: Corpus, outcomes):
    ran = outcomes["predict_mixed"].ran
    wide = pd.read_csv(corpus.root / "p_mix" / "csa.csv", index_col="slice")
    files = set(wide["file"].dropna())
    good = {f"sub04/sub04_s0{i}" for i in range(3)} | {
        f"sub04/{p.stem}" for p in corpus.fine.values()
    }
    assert good <= files
    assert not any(f"sub04/{p.stem}" in files for p in corpus.bad.values())
    assert f"Segmented {len(good)} slices" in ran.out
    labels = list((corpus.root / "p_mix" / "series").glob("*/labels/sub04/*.png"))  # per series
    assert len(labels) == len(good)
    (large,) = [p for p in labels if p.name == "large.png"]
    assert iio.imread(large).shape == (2048, 2048)


def test_good_labels_are_measured_beside_damaged_ones(corpus: Corpus, outcomes):
    assert outcomes["measure_labels"].ran.code == 3  # some label maps left out, named
    wide = pd.read_csv(corpus.root / "m_lab" / "csa.csv", index_col="slice")
    measured = set(wide["file"].dropna())
    assert {"sub03/sub03_s01", "sub03/sub03_s02", "sub04/sub04_s01", "sub04/sub04_s02"} <= measured
    damaged = {
        p.relative_to(corpus.label_data / "labels").with_suffix("").as_posix()
        for p in corpus.damaged_labels.values()
    }
    assert not damaged & measured


def test_evaluation_keeps_the_good_slices(corpus: Corpus, outcomes):
    ran = outcomes["evaluate_damaged"].ran
    assert ran.code == 3, ran.text[-2000:]  # some test files left out, named
    per_slice = pd.read_csv(corpus.root / "e_dmg" / "evaluation_per_slice.csv")
    assert "sub03/sub03_s01" in set(per_slice["key"])
    assert "sub01/sub01_s00" not in set(per_slice["key"])


def test_evaluation_in_pixels_says_so(corpus: Corpus, outcomes):
    ran = outcomes["evaluate_pixels"].ran
    assert ran.code == 0, ran.text[-2000:]
    per_slice = pd.read_csv(corpus.root / "e_px" / "evaluation_per_slice.csv")
    assert "area_manual_px2" in per_slice.columns and "hd95_px" in per_slice.columns
    assert not any(column.endswith("_mm2") for column in per_slice.columns)


def test_malicious_pickle_runs_no_code(corpus: Corpus, outcomes):
    assert outcomes["model_pickle"].ran.code == 2 and outcomes["model_zip"].ran.code == 2
    assert not corpus.marker.exists()


def test_killed_predict_reruns_to_completion(corpus: Corpus, tmp_path: Path):
    """SIGKILL while predict writes; the same command again completes; nothing is half-written."""
    scans = tmp_path / "scans"
    scans.mkdir()
    source = sorted((corpus.phantom / "train" / "dicoms").rglob("*.dcm"))
    for i in range(60):  # 60 slices of their own: one pixel and a UID each tell them from a copy
        ds = pydicom.dcmread(source[i % len(source)])
        pixels = ds.pixel_array.copy()
        pixels[0, 0] = i
        ds.PixelData = pixels.tobytes()
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
        ds.save_as(scans / f"s{i:02d}.dcm")
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "sliceseg", "predict", str(corpus.model), str(scans), "--out"]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.Popen(
        [*argv, str(out)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 120
    while not list((out / "series").glob("*/record.json")) and time.monotonic() < deadline:
        assert proc.poll() is None, "predict ended before it was killed"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert "cohort.json" in written and "report.html" not in written  # not merged yet
    for path in out.glob("series/*/labels/*.png"):  # every final label map is whole
        if not path.name.startswith("."):
            assert iio.imread(path).ndim == 2
    rerun = sliceseg_cli("predict", corpus.model, scans, "--out", out)
    assert rerun.code == 0, rerun.text[-2000:]
    assert "Traceback" not in rerun.text
    leftovers = [p.name for p in out.rglob(".*")]
    assert leftovers == [], leftovers
    wide = pd.read_csv(out / "csa.csv", index_col="slice")
    slices = wide[wide.index.str.isdigit()]
    assert len(slices) == 60 and not slices.isna().any().any()
    assert len(list((out / "series").glob("*/labels/*.png"))) == 60


# ------------------------------------------------------------ the last resort, in-process


class TestLastResort:
    """An unexpected exception: one line naming the log that holds the traceback, exit 4."""

    def test_bug_prints_one_line_and_writes_the_traceback(self, monkeypatch, tmp_path, capsys):
        from sliceseg.cli import main

        def broken() -> None:
            raise RuntimeError("boom in system_info")

        monkeypatch.setattr("sliceseg.system.system_info", broken)
        monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
        assert main(["info"]) == 4
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err
        assert re.match(
            r"internal error: `info` failed with RuntimeError: boom in system_info\.", err
        )
        assert "This is a bug in sliceseg" in err and "please report it" in err
        (log,) = tmp_path.glob("sliceseg-error-*.log")
        assert str(log) in err
        text = log.read_text()
        assert text.startswith("command: sliceseg info\n")
        assert "Traceback (most recent call last)" in text and "boom in system_info" in text

    def test_traceback_goes_to_the_output_folder_when_there_is_one(
        self, monkeypatch, tmp_path, capsys
    ):
        from sliceseg.cli import main

        def broken(*_args, **_kwargs) -> None:
            raise RuntimeError("boom in measure")

        monkeypatch.setattr("sliceseg.label_areas.measure_label_folder", broken)
        (tmp_path / "out").mkdir()
        argv = ["measure", str(tmp_path), "--dicoms", str(tmp_path), "--out", str(tmp_path / "out")]
        assert main(argv) == 4
        (log,) = (tmp_path / "out").glob("sliceseg-error-*.log")
        assert str(log) in capsys.readouterr().err

    def test_user_error_stays_exit_2(self, monkeypatch, capsys):
        from sliceseg.cli import main
        from sliceseg.errors import ConfigError

        def refuses() -> None:
            raise ConfigError("settings.toml: epochs must be ≥ 1, got 0.")

        monkeypatch.setattr("sliceseg.system.system_info", refuses)
        assert main(["info"]) == 2
        assert capsys.readouterr().err == "error: settings.toml: epochs must be ≥ 1, got 0.\n"

    def test_warnings_are_one_line(self, monkeypatch, capsys):
        import warnings

        from sliceseg.cli import main

        def warns():
            warnings.warn("x.dcm: colour image\n converted", UserWarning, stacklevel=1)
            raise RuntimeError("after the warning")

        monkeypatch.setattr("sliceseg.system.system_info", warns)
        main(["info"])
        first = capsys.readouterr().err.splitlines()[0]
        assert first == "warning: x.dcm: colour image converted"


# ------------------------------------------------ readers catch only what they mean


def _raise_type_error(*_args, **_kwargs):
    raise TypeError("a bug of ours")


class TestBugsAreNotBadFiles:
    """A TypeError inside the readers is a bug and propagates; it never reads "not DICOM"."""

    def test_is_dicom_file_lets_a_bug_through(self, monkeypatch, tmp_path):
        from sliceseg.io import dicom_files

        bare = write_test_dicom(tmp_path / "bare", np.ones((4, 4)), preamble=False)
        assert dicom_files.is_dicom_file(bare)
        monkeypatch.setattr(dicom_files.pydicom, "dcmread", _raise_type_error)
        with pytest.raises(TypeError, match="a bug of ours"):
            dicom_files.is_dicom_file(bare)

    def test_read_slices_and_scan_let_a_bug_through(self, monkeypatch, tmp_path):
        from sliceseg.io import dicom, dicom_folder, dicom_pixels

        write_test_dicom(tmp_path / "scans" / "a.dcm", np.ones((4, 4)))
        monkeypatch.setattr(dicom_pixels, "to_modality_units", _raise_type_error)
        with pytest.raises(TypeError, match="a bug of ours"):
            dicom.read_slices(tmp_path / "scans" / "a.dcm")
        with pytest.raises(TypeError, match="a bug of ours"):
            dicom_folder.scan_dicom_folder(tmp_path / "scans")

    def test_decoder_bug_is_not_reported_as_corrupt_pixels(self, monkeypatch, tmp_path):
        from sliceseg.io import dicom, dicom_pixels

        path = write_test_dicom(tmp_path / "a.dcm", np.ones((4, 4)))
        monkeypatch.setattr(dicom_pixels.pydicom.pixels, "pixel_array", _raise_type_error)
        with pytest.raises(TypeError, match="a bug of ours"):
            dicom.read_slices(path)

    def test_label_reader_lets_a_bug_through(self, monkeypatch, tmp_path):
        from sliceseg.io import labels

        np.save(tmp_path / "a.npy", np.zeros((4, 4), np.uint8))
        iio.imwrite(tmp_path / "a.png", np.zeros((4, 4), np.uint8))
        monkeypatch.setattr(labels.np, "load", _raise_type_error)
        monkeypatch.setattr(labels.iio, "imread", _raise_type_error)
        for name in ("a.npy", "a.png"):
            with pytest.raises(TypeError, match="a bug of ours"):
                labels.read_label_file(tmp_path / name)

    def test_cli_reports_the_bug_not_a_bad_file(self, monkeypatch, tmp_path, capsys):
        from sliceseg.cli import main
        from sliceseg.io import dicom_pixels

        write_test_dicom(tmp_path / "scans" / "a.dcm", np.ones((4, 4)))
        (tmp_path / "labels").mkdir()
        np.save(tmp_path / "labels" / "a.npy", np.ones((4, 4), np.uint8))
        monkeypatch.setattr(dicom_pixels, "to_modality_units", _raise_type_error)
        monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
        images, labels = str(tmp_path / "scans"), str(tmp_path / "labels")
        code = main(["check", "--images", images, "--labels", labels])
        err = capsys.readouterr().err
        assert code == 4 and "TypeError: a bug of ours" in err and "not a DICOM" not in err
