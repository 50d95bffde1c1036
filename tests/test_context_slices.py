"""2.5D input: each slice with its neighbours in its series, the same in training and predict."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import small_phantom, tiny_config
from sliceseg.errors import ConfigError
from sliceseg.io.dicom import Slice, read_slices
from sliceseg.io.dicom_folder import read_series
from sliceseg.io.neighbours import slice_neighbours
from sliceseg.model_space.batches import centre_channel, slices_to_spacing


def _slice(
    name: str,
    position: float | None,
    *,
    uid: str = "1.2.3",
    instance: int = 1,
    shape: tuple[int, int] = (6, 5),
    value: float | None = None,
) -> Slice:
    fill = float(position or 0.0) if value is None else value
    pixels = np.random.default_rng(round(10 * fill) + 1).random(shape).astype(np.float32)
    return Slice(
        pixels=pixels,
        spacing_mm=(1.0, 1.0),
        spacing_source="PixelSpacing",
        source=Path(f"/scans/{uid}/{name}.dcm"),
        series_uid=uid,
        instance_number=instance,
        position_mm=position,
    )


def _names(near: tuple[Slice, ...]) -> list[str]:
    return [s.name for s in near]


def test_neighbours_follow_the_position_not_the_file_or_instance_order():
    # instance numbers run against the positions, and the files come shuffled
    series = [_slice(f"s{p}", p, instance=10 - i) for i, p in enumerate([3.0, 1.0, 4.0, 2.0, 0.0])]
    found = dict(zip([s.name for s in series], slice_neighbours(series, 1), strict=True))
    assert _names(found["s2.0"]) == ["s1.0", "s3.0"]
    assert _names(found["s0.0"]) == ["s0.0", "s1.0"]  # the series' end: the slice itself
    assert _names(found["s4.0"]) == ["s3.0", "s4.0"]
    two = dict(zip([s.name for s in series], slice_neighbours(series, 2), strict=True))
    assert _names(two["s1.0"]) == ["s0.0", "s0.0", "s2.0", "s3.0"]  # the nearest that exists


def test_a_lone_slice_is_its_own_neighbour_and_series_do_not_mix():
    lone = _slice("l3", 10.0, uid="9.9")
    a = [_slice(f"a{p}", p, uid="1.1") for p in (0.0, 2.0, 4.0)]
    b = [_slice(f"b{p}", p + 1.0, uid="2.2") for p in (0.0, 2.0, 4.0)]
    found = slice_neighbours([a[0], b[0], a[1], b[1], lone, a[2], b[2]], 1)
    assert _names(found[4]) == ["l3", "l3"]
    assert _names(found[2]) == ["a0.0", "a4.0"]
    assert _names(found[3]) == ["b0.0", "b4.0"]
    assert slice_neighbours(a, 0) == [(), (), ()]


def test_the_pool_fills_in_the_unlabelled_slices_between():
    labelled = [_slice("s0", 0.0), _slice("s3", 3.0)]
    pool = [_slice("s1", 1.0), _slice("s2", 2.0), _slice("s9", 9.0, uid="other")]
    found = slice_neighbours(labelled, 1, pool=pool)
    assert _names(found[0]) == ["s0", "s1"]
    assert _names(found[1]) == ["s2", "s3"]


def test_the_input_stacks_the_neighbours_around_the_slice_as_each_is_seen_alone():
    series = [_slice(f"s{p}", float(p), shape=(20, 16), value=float(7 * p)) for p in range(4)]
    flat = slices_to_spacing(series, (0.7, 0.8))
    stacked = slices_to_spacing(series, (0.7, 0.8), context_slices=1)
    assert [tuple(t.shape) for t in flat.images] == [(1, 29, 20)] * 4
    assert [tuple(t.shape) for t in stacked.images] == [(3, 29, 20)] * 4
    for i, image in enumerate(stacked.images):
        assert torch.equal(centre_channel(image), flat.images[i][0])
    assert torch.equal(stacked.images[1][0], flat.images[0][0])
    assert torch.equal(stacked.images[1][2], flat.images[2][0])
    assert torch.equal(stacked.images[3][2], flat.images[3][0])  # the end: itself


def test_a_neighbour_on_another_grid_is_replaced_by_the_slice():
    series = [
        _slice("s0", 0.0, shape=(20, 16)),
        _slice("s1", 1.0, shape=(20, 16), value=3.0),
        _slice("s2", 2.0, shape=(18, 16)),
    ]
    stacked = slices_to_spacing(series, (1.0, 1.0), context_slices=1)
    middle = stacked.images[1]
    assert torch.equal(middle[2], middle[1])
    assert not torch.equal(middle[0], middle[1])


@pytest.mark.parametrize(
    ("value", "said"),
    [(4, "a whole number from 0 to 3, got 4"), (True, "a whole number, got True")],
)
def test_context_slices_out_of_range_is_refused_with_the_setting_named(
    tmp_path: Path, value: object, said: str
):
    with pytest.raises(ConfigError, match=rf"--context-slices \(context_slices\) must be {said}"):
        tiny_config(tmp_path, tmp_path / "m", context_slices=value)


def _metadata(context_slices: int):
    from sliceseg.models.bundle import ModelMetadata

    return ModelMetadata(
        arch="unet",
        hyperparameters={},
        num_classes=3,
        input_size=64,
        roi_names=("a", "b"),
        context_slices=context_slices,
    )


def test_fine_tuning_across_neighbour_counts_is_refused():
    from sliceseg.training.init_from import check_same_model

    with pytest.raises(ConfigError, match=r"neighbouring slices .* is 0 but this run's is 1"):
        check_same_model(_metadata(0), _metadata(1), source="old.pt")


def test_an_older_model_file_has_no_neighbours():
    from sliceseg.models.bundle import ModelMetadata

    data = _metadata(2).to_dict()
    del data["context_slices"]
    assert ModelMetadata.from_dict(data).context_slices == 0


@pytest.fixture(scope="module")
def sparse_phantom(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A phantom whose every other slice has no label map: the unlabelled neighbours."""
    data = small_phantom(
        tmp_path_factory, "sparse", train_subjects=3, seed=3, matrix=(80, 72), slices_per_subject=5
    )
    for label in sorted((data / "train" / "labels").rglob("*_s0[13].*")):
        label.unlink()
    return data / "train"


def test_training_reads_the_unlabelled_neighbours_of_the_labelled_slices(
    sparse_phantom, tmp_path, monkeypatch
):
    """A 2.5D run planned the DICOM folder twice from its headers, once to name the series
    (the validation series) and once to find the neighbours: once now, the names and the
    neighbours as before."""
    import sliceseg.io.series_plan as series_plan
    from sliceseg.training.run_data import load_training_data

    headers_read: list[Path] = []
    plan_file = series_plan._plan_file
    monkeypatch.setattr(
        series_plan, "_plan_file", lambda path: headers_read.append(path) or plan_file(path)
    )
    flat = load_training_data(tiny_config(sparse_phantom, tmp_path / "a"), None)
    dicoms = sorted((sparse_phantom / "dicoms").rglob("*.dcm"))
    assert sorted(headers_read) == dicoms and len(dicoms) == 15  # one pass: 3 subjects × 5
    headers_read.clear()
    data = load_training_data(tiny_config(sparse_phantom, tmp_path / "b", context_slices=1), None)
    assert sorted(headers_read) == dicoms  # was each file twice
    assert data.validation_series == flat.validation_series
    (name, count), *_ = data.validation_series
    assert [key.split("/")[0] for key in data.validation.keys] == [name] * count == [name] * 3
    assert len(data.train) + len(data.validation) == 9  # 3 labelled of 5 per subject
    assert {tuple(t.shape[:1]) for t in data.train.images} == {(3,)}
    assert {tuple(t.shape[:1]) for t in flat.train.images} == {(1,)}
    index = next(i for i, key in enumerate(data.train.keys) if key.endswith("_s02"))
    key = data.train.keys[index]  # e.g. sub01/sub01_s02, between the unlabelled s01 and s03
    files = [sparse_phantom / "dicoms" / f"{key[:-1]}{n}.dcm" for n in (1, 3)]
    alone = slices_to_spacing([read_slices(p)[0] for p in files], data.train.target_spacing_mm)
    channels = data.train.images[index]
    assert torch.equal(centre_channel(channels), flat.train.images[flat.train.keys.index(key)][0])
    outer = {channels[0].numpy().tobytes(), channels[2].numpy().tobytes()}
    assert outer == {t[0].numpy().tobytes() for t in alone.images}


@pytest.fixture(scope="module")
def context_model(sparse_phantom: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sliceseg.cli import main

    out = tmp_path_factory.mktemp("context_model")
    code = main(
        [
            "train",
            str(sparse_phantom),
            "--out",
            str(out),
            "--context-slices",
            "1",
            "--epochs",
            "1",
            "--input-shape",
            "64",
            "--overwrite",
        ]
    )
    assert code == 0
    return out / "sliceseg_best.pt"


def test_a_2_5d_model_records_its_neighbours_and_takes_three_channels(context_model: Path):
    from sliceseg.engine.model_info import model_summary
    from sliceseg.models.bundle import load_bundle
    from sliceseg.models.features import input_channels

    bundle = load_bundle(context_model)
    assert bundle.metadata.context_slices == 1
    assert input_channels(bundle.model) == 3
    summary = model_summary(bundle)["neighbouring slices"]
    assert summary.startswith("1 on either side of each slice in its series")


def test_prediction_finds_the_neighbours_whatever_the_batch(context_model, sparse_phantom):
    from sliceseg.inference.predict import predict_slices
    from sliceseg.models.bundle import load_bundle

    bundle = load_bundle(context_model)
    series = read_series(sparse_phantom / "dicoms" / "sub01")
    runs = []
    for batch_size in (1, 2, 8):
        probs: list[np.ndarray] = []
        predict_slices(
            bundle,
            series,
            batch_size=batch_size,
            device="cpu",
            on_probabilities=lambda p, _label, into=probs: into.append(p.numpy().copy()),
        )
        runs.append(probs)
    for probs in runs[1:]:
        assert all(np.allclose(a, b, atol=1e-5) for a, b in zip(runs[0], probs, strict=True))
    alone: list[np.ndarray] = []  # the middle slice without its neighbours is seen otherwise
    predict_slices(
        bundle,
        [series[2]],
        device="cpu",
        on_probabilities=lambda p, _label: alone.append(p.numpy().copy()),
    )
    assert not np.allclose(alone[0], runs[0][2], atol=1e-4)


def test_the_cohort_engine_and_the_folder_path_agree_for_a_2_5d_model(
    context_model, sparse_phantom
):
    from sliceseg.engine.predictor import Engine
    from sliceseg.inference.predict import predict_slices
    from sliceseg.models.bundle import load_bundle

    bundle = load_bundle(context_model)
    series = read_series(sparse_phantom / "dicoms" / "sub02")
    engine = Engine(bundle, torch.device("cpu"))
    assert engine.preparation is not None and engine.preparation.context_slices == 1
    prepared = engine.preparation.prepare(series)  # what a cohort worker does, per series
    by_engine = engine.labels(series, spaced=prepared)
    by_folder = predict_slices(bundle, series, device="cpu", batch_size=2)
    assert all(np.array_equal(a, b) for a, b in zip(by_engine, by_folder, strict=True))


def test_the_neighbour_step_is_the_distance_to_the_slices_beside():
    from sliceseg.io.neighbours import neighbour_step_mm

    series = [_slice(f"s{p}", float(p)) for p in (0, 3, 6, 9)]
    assert neighbour_step_mm(series) == 3.0
    labelled = [series[0], series[2]]
    assert neighbour_step_mm(labelled, pool=series[1::2]) == 3.0  # not the 6 mm between them
    assert neighbour_step_mm([series[0]]) is None
    assert neighbour_step_mm([_slice("x", None)]) is None


def test_a_series_at_another_spacing_or_alone_is_told():
    from sliceseg.inference.familiarity import neighbour_spacing_line

    meta = dataclasses.replace(_metadata(1), context_step_mm=3.0)
    at_1mm = [_slice(f"s{p}", float(p)) for p in range(4)]
    line = neighbour_spacing_line("p01/t2", at_1mm, meta)
    assert line is not None and line.startswith(
        "series p01/t2: slices 1 mm apart, but this 2.5D model saw its neighbours 3 mm apart"
    )
    at_4mm = [_slice(f"s{p}", 4.0 * p) for p in range(4)]
    assert neighbour_spacing_line("p01/t1", at_4mm, meta) is None  # within 1.5×
    lone = neighbour_spacing_line("l3", at_1mm[:1], meta)
    assert lone is not None and "one slice, so this 2.5D model (context_slices 1)" in lone
    assert neighbour_spacing_line("l3", at_1mm[:1], _metadata(0)) is None


def test_the_model_records_its_neighbours_distance(context_model, sparse_phantom):
    from sliceseg.models.bundle import load_bundle

    distances = []  # each subject's slices are evenly spaced: every labelled slice (s00, s02,
    for folder in sorted((sparse_phantom / "dicoms").iterdir()):  # s04) sees them 4 times
        first, second = (read_slices(folder / f"{folder.name}_s0{n}.dcm")[0] for n in (0, 1))
        distances += [abs(float(first.position_mm or 0) - float(second.position_mm or 0))] * 4
    recorded = load_bundle(context_model).metadata.context_step_mm
    assert recorded == pytest.approx(float(np.median(distances)))


def test_predict_says_a_lone_slice_has_no_neighbours(
    context_model, sparse_phantom, tmp_path, capsys
):
    import shutil

    from sliceseg.cli import main
    from sliceseg.inference.folder import predict_folder

    lone = tmp_path / "l3" / "p01"
    lone.mkdir(parents=True)
    shutil.copy(sparse_phantom / "dicoms" / "sub02" / "sub02_s02.dcm", lone / "slice.dcm")
    assert (
        main(["predict", str(context_model), str(lone.parent), "--out", str(tmp_path / "o")]) == 0
    )
    said = capsys.readouterr()
    assert "series p01: one slice, so this 2.5D model (context_slices 1)" in said.out + said.err
    run = predict_folder(context_model, lone.parent, tmp_path / "f", report=False)
    # named as the command (and the tables) name it: it was "series 1 (p01/slice … p01/slice)"
    assert any(line.startswith("series p01: one slice, so this 2.5D") for line in run.warnings)


def test_evaluate_reads_the_unlabelled_neighbours_and_predicts_the_labelled_slices(
    context_model, sparse_phantom, tmp_path, monkeypatch
):
    """evaluate reads a 2.5D model's neighbours from the one header pass of the DICOM folder
    that also names failed.csv's series (it planned the folder twice)."""
    import sliceseg.io.series_plan as series_plan
    from sliceseg.inference.evaluate import evaluate_model
    from sliceseg.inference.predict import predict_slices
    from sliceseg.models.bundle import load_bundle

    headers_read: list[Path] = []
    plan_file = series_plan._plan_file
    monkeypatch.setattr(
        series_plan, "_plan_file", lambda path: headers_read.append(path) or plan_file(path)
    )
    result = evaluate_model(context_model, sparse_phantom, out_dir=tmp_path / "e")
    assert sorted(headers_read) == sorted((sparse_phantom / "dicoms").rglob("*.dcm"))
    table = result.per_slice
    series = read_series(sparse_phantom / "dicoms" / "sub03")  # all five, neighbours included
    labels = predict_slices(load_bundle(context_model), series, device="cpu")
    for image, label in zip(series, labels, strict=True):
        mine = table[table["key"] == f"sub03/{image.name}"]
        if image.name.endswith(("s01", "s03")):
            assert mine.empty  # unlabelled: read as a neighbour, not evaluated
            continue
        pixel_mm2 = float(image.spacing_mm[0] * image.spacing_mm[1])  # type: ignore[index]
        expected = [np.count_nonzero(label == roi) * pixel_mm2 for roi in mine["roi"]]
        assert mine["area_auto_mm2"].to_numpy() == pytest.approx(expected)


class _Below(torch.nn.Module):
    """A 2.5D 'network': ROI 1 where the neighbour before the slice (channel 0) is bright."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 2, 1)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[1, 0] = 4.0
            self.conv.bias.zero_()

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [self.conv(x)]


_ROWS, _COLS = np.mgrid[0:64, 0:64]


def _disc(level: int) -> np.ndarray:
    """Level 0, 1, 2 (z = 0, 3, 6 mm): a disc of radius 10 px centred on column 16 + 16·level."""
    return (_ROWS - 32) ** 2 + (_COLS - 16 - 16 * level) ** 2 < 100


def _axial_series(*, mirrored: bool, location_sign: float = 1.0) -> list[Slice]:
    """Three axial slices 3 mm apart, stored as scanners do or with columns reversed (patient
    right on image right); ``position_mm`` as read: SliceLocation times ``location_sign``, or
    for the mirrored series (no SliceLocation) ImagePositionPatient on the stored normal, −z."""
    series = []
    for level, z in enumerate((0.0, 3.0, 6.0)):
        pixels = np.where(_disc(level), 300.0, 100.0).astype(np.float32)
        series.append(
            Slice(
                pixels=np.ascontiguousarray(pixels[:, ::-1]) if mirrored else pixels,
                spacing_mm=(1.0, 1.0),
                spacing_source="PixelSpacing",
                source=Path(f"/scans/ax/s{level}.dcm"),
                series_uid="1.2.9",
                instance_number=level + 1,
                position_mm=-z if mirrored else location_sign * z,
                orientation=(-1, 0, 0, 0, 1, 0) if mirrored else (1, 0, 0, 0, 1, 0),
                image_position_mm=(63.0 if mirrored else 0.0, 0.0, z),
            )
        )
    return series


@pytest.mark.parametrize(("mirrored", "location_sign"), [(False, 1.0), (True, 1.0), (False, -1.0)])
def test_the_neighbour_before_is_the_one_below_however_the_series_is_stored(
    mirrored, location_sign
):
    """The middle slice's label is the disc of the slice below it (z = 0), on the DICOM's own
    grid. Before, a series stored mirrored (its stored normal pointing to the feet) or one
    whose SliceLocation runs from head to feet gave the network the slice above as the one
    before: the label was the disc of z = 6 mm."""
    from sliceseg.inference.predict import predict_slices
    from sliceseg.models.bundle import Bundle, ModelMetadata

    metadata = ModelMetadata(
        arch="unet",
        hyperparameters={},
        num_classes=2,
        input_size=64,
        roi_names=("a",),
        target_spacing_mm=(1.0, 1.0),
        context_slices=1,
    )
    series = _axial_series(mirrored=mirrored, location_sign=location_sign)
    label = predict_slices(Bundle(_Below(), metadata), series, device="cpu")[1]
    expected = _disc(0)[:, ::-1] if mirrored else _disc(0)
    assert np.array_equal(label, expected.astype(np.uint8))
